#include "daemon/ctl_reply.hpp"

#include "core/text.hpp"
#include "daemon/control_frame.hpp"
#include "daemon/jsonrpc.hpp"

#include <algorithm>
#include <cstdint>

namespace warren::daemon {

namespace {

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(std::min<std::size_t>(s.size(), 200));
  for (const char c : s.substr(0, 200))
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

expected<ctl_reply> mismatch(std::string why) {
  return expected<ctl_reply>::failure("protocol mismatch: " + std::move(why));
}

} // namespace

expected<ctl_reply> parse_reply(std::string_view text, std::int64_t id) {
  parse_limits limits;
  limits.max_depth = k_max_reply_depth;
  limits.max_values = k_max_reply_values;
  if (auto refused = prescan(text, limits))
    return mismatch("the reply is not usable: " + refused->message);
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded())
    return mismatch("the reply is not JSON (it starts " + quote_untrusted(text.substr(0, 40)) + ")");
  if (!doc.is_object())
    return mismatch("the reply is not a JSON-RPC response object");
  const auto version = doc.find("jsonrpc");
  if (version == doc.end() || !version->is_string() || version->get_ref<const std::string&>() != "2.0")
    return mismatch("the reply is not JSON-RPC 2.0");
  const auto rid = doc.find("id");
  if (rid == doc.end())
    return mismatch("the reply has no id");
  const auto result = doc.find("result");
  const auto error = doc.find("error");
  if ((result == doc.end()) == (error == doc.end()))
    return mismatch("the reply has neither or both of result and error");
  const bool our_id = rid->is_number_integer() && rid->get<std::int64_t>() == id;
  ctl_reply out;
  if (result != doc.end()) {
    if (!our_id)
      return mismatch("the reply answers another request");
    out.ok = true;
    out.result = std::move(*result);
    return out;
  }
  if (!our_id && !rid->is_null())
    return mismatch("the reply answers another request");
  if (!error->is_object())
    return mismatch("the reply's error is not an object");
  const auto code = error->find("code");
  const auto message = error->find("message");
  if (code == error->end() || !code->is_number_integer() || message == error->end() || !message->is_string())
    return mismatch("the reply's error has no integer code and string message");
  const auto c = code->get<std::int64_t>();
  if (c < INT32_MIN || c > INT32_MAX)
    return mismatch("the reply's error code is out of range");
  out.code = static_cast<int>(c);
  out.message = printable(message->get_ref<const std::string&>());
  return out;
}

std::string encode_ctl_request(std::int64_t id, std::string_view method, const nlohmann::json& params) {
  request r;
  r.id = request_id(id);
  r.method = std::string(method);
  r.params = params;
  return encode_frame(encode_request(r));
}

} // namespace warren::daemon
