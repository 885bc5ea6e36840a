// Fuzzes the daemon's control API codec (src/daemon/control_frame.*,
// jsonrpc.*, dispatch.*) the way a connection handler drives it: arbitrary
// bytes, cut into reads of fuzzer-chosen sizes, through one frame_decoder;
// each frame through parse_message() and dispatch() with a toy method table,
// on a Unix admin, Unix read-only or TCP (auth-first) connection.
// Properties checked, not only "no crash":
// - the decoder takes every byte it is given until it fails, hands out
//   frames of 1..limit bytes, and never holds more than the limit allocated;
// - every reply is one well-formed frame of at most the reply limit holding
//   a JSON-RPC 2.0 response (or a non-empty array of them), whose error
//   messages are short (the input is never echoed at length);
// - a TCP connection is closed by its first frame unless that was an auth
//   with the admin token, and nothing runs before auth;
// - what the encoders write round-trips: a parsed request re-encoded parses
//   to the same id, method and params; a frame re-encoded decodes the same.
#include "daemon/dispatch.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace warren::daemon;
using nlohmann::json;

constexpr std::uint32_t k_max_response = 4096;
int g_handler_calls = 0;

const method_table& toy_table() {
  static const method_table table = [] {
    method_table t;
    t.add(
        "echo",
        [](const json& params, const connection_state&) -> method_result {
          ++g_handler_calls;
          return params;
        },
        true);
    t.add(
        "units.add",
        [](const json& params, const connection_state& caller) -> method_result {
          ++g_handler_calls;
          if (caller.read_only())
            std::abort(); // the read-only rule must stop this before the handler
          if (!params.is_object() || !params.contains("name") || !params["name"].is_string())
            return method_result::invalid_params("units.add takes {\"name\": string}");
          return json{{"added", params["name"]}};
        },
        false);
    t.add(
        "throw",
        [](const json& params, const connection_state&) -> method_result {
          ++g_handler_calls;
          return json(params.at("missing")); // throws on most params: -32603
        },
        true);
    t.add(
        "big",
        [](const json& params, const connection_state&) -> method_result {
          ++g_handler_calls;
          std::size_t n =
              params.is_array() && !params.empty() && params[0].is_number_unsigned() ? params[0].get<std::size_t>() : 0;
          return json(std::string(n % 10000, 'x'));
        },
        true);
    return t;
  }();
  return table;
}

void check_response_object(const json& r) {
  if (!r.is_object() || r.value("jsonrpc", "") != "2.0" || !r.contains("id"))
    std::abort();
  const bool has_result = r.contains("result");
  const bool has_error = r.contains("error");
  if (has_result == has_error)
    std::abort();
  if (has_error) {
    const auto& e = r["error"];
    if (!e.is_object() || !e.contains("code") || !e["code"].is_number_integer() || !e.contains("message") ||
        !e["message"].is_string() || e["message"].get_ref<const std::string&>().size() > 200)
      std::abort();
  }
  const auto& id = r["id"];
  if (!id.is_null() && !id.is_number_integer() && !id.is_string())
    std::abort();
}

void check_reply(const std::string& reply) {
  if (reply.empty())
    return;
  frame_decoder d(k_max_response);
  std::string_view in = reply;
  if (d.decode(in) != frame_status::frame || !in.empty())
    std::abort();
  const json r = json::parse(d.frame()); // must be valid JSON; throws (and crashes the fuzzer) if not
  if (r.is_array()) {
    if (r.empty())
      std::abort();
    for (const auto& one : r)
      check_response_object(one);
  } else {
    check_response_object(r);
  }
}

void check_round_trip(std::string_view frame) {
  auto parsed = parse_message(frame);
  const auto* m = std::get_if<message>(&parsed);
  if (m == nullptr)
    return;
  if (m->entries.empty() || (!m->batch && m->entries.size() != 1))
    std::abort();
  for (const auto& entry : m->entries) {
    const auto* r = std::get_if<request>(&entry);
    if (r == nullptr)
      continue;
    auto again = parse_message(encode_request(*r));
    const auto* m2 = std::get_if<message>(&again);
    if (m2 == nullptr || m2->batch || m2->entries.size() != 1)
      std::abort();
    const auto* r2 = std::get_if<request>(&m2->entries[0]);
    if (r2 == nullptr || r2->id != r->id || r2->method != r->method || r2->params != r->params)
      std::abort();
    // A result echoing the params parses back with the same id.
    const json res = json::parse(encode_result(r->id.value_or(request_id{nullptr}), r->params));
    if (res["id"] != to_json_value(r->id.value_or(request_id{nullptr})) || res["result"] != r->params)
      std::abort();
  }
}

token_check toy_tokens() {
  return [](std::string_view token) {
    if (token == "admin")
      return auth_verdict::admin;
    if (token == "reader")
      return auth_verdict::read_only;
    return token.size() % 7 == 3 ? auth_verdict::rate_limited : auth_verdict::wrong_token;
  };
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2)
    return 0;
  const std::uint8_t mode = data[0];
  std::uint32_t chunk_seed = data[1];
  std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

  static constexpr std::uint32_t k_limits[] = {64, 4096, k_default_max_frame, 1};
  const std::uint32_t limit = k_limits[mode & 3];
  const auto t0 = warren::time_point{} + std::chrono::hours(1);
  connection_state state = (mode & 0x0C) == 0 ? connection_state::unix_peer(access_level::admin)
                           : (mode & 0x0C) == 4
                               ? connection_state::unix_peer(access_level::read_only)
                               : connection_state::network(transport_kind::tcp, t0, std::chrono::seconds(5));
  const bool network = state.awaiting_auth();
  dispatch_options options;
  options.max_response = k_max_response;

  frame_decoder decoder(limit);
  const auto& table = toy_table();
  const auto tokens = toy_tokens();
  std::size_t frames = 0;
  bool closed = false;
  while (!input.empty() && !closed) {
    // Read sizes from a small generator: 1..64 bytes, or all that is left.
    chunk_seed = chunk_seed * 1103515245U + 12345U;
    std::size_t n = (chunk_seed >> 16) % 65;
    n = n == 0 ? input.size() : std::min(n, input.size());
    std::string_view read = input.substr(0, n);
    input.remove_prefix(n);
    for (;;) {
      const std::size_t before = read.size();
      const auto st = decoder.decode(read);
      if (decoder.buffered_capacity() > limit)
        std::abort();
      if (st == frame_status::need_more) {
        if (!read.empty())
          std::abort(); // need_more only when the read is used up
        break;
      }
      if (st == frame_status::too_large || st == frame_status::zero_length) {
        if (st == frame_status::too_large && decoder.announced_length() <= limit)
          std::abort();
        check_reply(frame_error_reply(st, decoder.announced_length(), limit));
        closed = true;
        break;
      }
      if (before == read.size())
        std::abort(); // a frame completes only on a byte it was just given
      const std::string_view frame = decoder.frame();
      if (frame.empty() || frame.size() > limit)
        std::abort();
      if (encode_frame(frame, limit).substr(4) != frame)
        std::abort();
      check_round_trip(frame);
      const int calls_before = g_handler_calls;
      const bool was_awaiting = state.awaiting_auth();
      auto out = dispatch(table, state, frame, t0, tokens, options);
      check_reply(out.reply);
      if (was_awaiting) {
        if (g_handler_calls != calls_before)
          std::abort(); // nothing runs on the auth frame
        if (out.close == state.authenticated())
          std::abort(); // closed exactly when auth failed
      }
      if (network && frames == 0 && !out.close && !state.authenticated())
        std::abort();
      ++frames;
      if (out.close) {
        closed = true;
        break;
      }
    }
  }
  (void)decoder.finish();
  return 0;
}
