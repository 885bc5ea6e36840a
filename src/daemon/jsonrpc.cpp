// JSON-RPC 2.0 messages (jsonrpc.hpp): the pre-scan, the request checks and
// the encoders.
#include "daemon/jsonrpc.hpp"

#include <limits>
#include <string>

namespace warren::daemon {

using nlohmann::json;

namespace {

rpc_error error(error_code code, std::string message) {
  return rpc_error{code, std::move(message), std::nullopt};
}

} // namespace

std::optional<rpc_error> prescan(std::string_view text, const parse_limits& limits) {
  std::size_t bad = 0;
  if (!valid_utf8(text, &bad))
    return error(error_code::parse_error, "invalid UTF-8 at byte " + std::to_string(bad));
  std::size_t depth = 0;
  std::size_t values = 1;
  bool in_string = false;
  bool escaped = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    switch (c) {
    case '"':
      in_string = true;
      break;
    case '[':
    case '{':
      if (++depth > limits.max_depth)
        return error(error_code::invalid_request,
                     "JSON nested deeper than " + std::to_string(limits.max_depth) + " levels");
      ++values;
      break;
    case ']':
    case '}':
      if (depth > 0)
        --depth;
      break;
    case ',':
    case ':':
      ++values;
      break;
    default:
      break;
    }
    if (values > limits.max_values)
      return error(error_code::invalid_request,
                   "JSON holds more than " + std::to_string(limits.max_values) + " values");
  }
  return std::nullopt;
}

namespace {

// The id member, if it is one the protocol allows.
std::optional<request_id> read_id(const json& value, const parse_limits& limits) {
  if (value.is_null())
    return request_id{nullptr};
  if (value.is_number_integer() && !value.is_number_unsigned())
    return request_id{value.get<std::int64_t>()};
  if (value.is_number_unsigned()) {
    const auto u = value.get<std::uint64_t>();
    if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return request_id{static_cast<std::int64_t>(u)};
    return std::nullopt;
  }
  if (value.is_string() && value.get_ref<const std::string&>().size() <= limits.max_id_length)
    return request_id{value.get<std::string>()};
  return std::nullopt;
}

message_entry read_entry(const json& value, const parse_limits& limits) {
  if (!value.is_object())
    return invalid_request{nullptr, error(error_code::invalid_request, "a request must be a JSON object")};
  std::optional<request_id> id;
  const auto id_member = value.find("id");
  if (id_member != value.end()) {
    id = read_id(*id_member, limits);
    if (!id)
      return invalid_request{
          nullptr, error(error_code::invalid_request, "\"id\" must be an integer, a string of at most " +
                                                          std::to_string(limits.max_id_length) + " bytes, or null")};
  }
  const request_id reply_id = id.value_or(request_id{nullptr});
  const auto version = value.find("jsonrpc");
  if (version == value.end() || !version->is_string() || version->get_ref<const std::string&>() != "2.0")
    return invalid_request{reply_id, error(error_code::invalid_request, "\"jsonrpc\" must be \"2.0\"")};
  const auto method = value.find("method");
  if (method == value.end() || !method->is_string())
    return invalid_request{reply_id, error(error_code::invalid_request, "\"method\" must be a string")};
  const auto& name = method->get_ref<const std::string&>();
  if (name.empty() || name.size() > limits.max_method_length)
    return invalid_request{reply_id,
                           error(error_code::invalid_request,
                                 "\"method\" must hold 1 to " + std::to_string(limits.max_method_length) + " bytes")};
  request r;
  r.id = std::move(id);
  r.method = name;
  const auto params = value.find("params");
  if (params != value.end()) {
    if (!params->is_object() && !params->is_array())
      return invalid_request{reply_id, error(error_code::invalid_request, "\"params\" must be an object or an array")};
    r.params = *params;
  }
  return r;
}

} // namespace

bool valid_utf8(std::string_view text, std::size_t* bad_offset) noexcept {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned lo = 0x80;
    unsigned hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0)
        lo = 0xA0; // no overlongs
      if (c == 0xED)
        hi = 0x9F; // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0)
        lo = 0x90; // no overlongs
      if (c == 0xF4)
        hi = 0x8F; // nothing above U+10FFFF
    } else {
      if (bad_offset != nullptr)
        *bad_offset = i;
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      const bool ok = i + k < n && s[i + k] >= (k == 1 ? lo : 0x80U) && s[i + k] <= (k == 1 ? hi : 0xBFU);
      if (!ok) {
        if (bad_offset != nullptr)
          *bad_offset = i;
        return false;
      }
    }
    i += len;
  }
  return true;
}

parse_result parse_message(std::string_view text, const parse_limits& limits) {
  if (auto refused = prescan(text, limits))
    return std::move(*refused);
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    // e.what() quotes the input; the offset is enough to find the mistake.
    // nlohmann counts from 1; offsets here count from 0, as the UTF-8 check's.
    return error(error_code::parse_error, "invalid JSON at byte " + std::to_string(e.byte > 0 ? e.byte - 1 : 0));
  } catch (const json::exception&) {
    return error(error_code::parse_error, "invalid JSON (a number out of range)");
  }
  message m;
  if (doc.is_object()) {
    m.entries.push_back(read_entry(doc, limits));
    return m;
  }
  if (!doc.is_array())
    return error(error_code::invalid_request, "a message must be a request object or a batch array");
  if (doc.empty())
    return error(error_code::invalid_request, "empty batch");
  if (doc.size() > limits.max_batch)
    return error(error_code::invalid_request, "batch of " + std::to_string(doc.size()) + " requests; at most " +
                                                  std::to_string(limits.max_batch) + " are allowed");
  m.batch = true;
  m.entries.reserve(doc.size());
  for (const auto& element : doc)
    m.entries.push_back(read_entry(element, limits));
  return m;
}

// ---- encoders -------------------------------------------------------------

json to_json_value(const request_id& id) {
  if (const auto* n = std::get_if<std::int64_t>(&id))
    return *n;
  if (const auto* s = std::get_if<std::string>(&id))
    return *s;
  return nullptr;
}

json result_object(const request_id& id, json result) {
  json out = json::object();
  out["jsonrpc"] = "2.0";
  out["result"] = std::move(result);
  out["id"] = to_json_value(id);
  return out;
}

json error_object(const request_id& id, const rpc_error& e) {
  json err = json::object();
  err["code"] = static_cast<int>(e.code);
  err["message"] = e.message;
  if (e.data)
    err["data"] = *e.data;
  json out = json::object();
  out["jsonrpc"] = "2.0";
  out["error"] = std::move(err);
  out["id"] = to_json_value(id);
  return out;
}

json request_object(const request& r) {
  json out = json::object();
  out["jsonrpc"] = "2.0";
  out["method"] = r.method;
  if (!r.params.is_null())
    out["params"] = r.params;
  if (r.id)
    out["id"] = to_json_value(*r.id);
  return out;
}

std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_result(const request_id& id, json result) {
  return dump(result_object(id, std::move(result)));
}

std::string encode_error(const request_id& id, const rpc_error& e) {
  return dump(error_object(id, e));
}

std::string encode_notification(std::string_view method, json params) {
  request r;
  r.method = std::string(method);
  r.params = std::move(params);
  return dump(request_object(r));
}

std::string encode_request(const request& r) {
  return dump(request_object(r));
}

std::string_view error_code_name(error_code c) noexcept {
  switch (c) {
  case error_code::parse_error:
    return "parse error";
  case error_code::invalid_request:
    return "invalid request";
  case error_code::method_not_found:
    return "method not found";
  case error_code::invalid_params:
    return "invalid params";
  case error_code::internal_error:
    return "internal error";
  case error_code::unauthorized:
    return "unauthorized";
  case error_code::read_only:
    return "read-only caller";
  case error_code::unit_not_found:
    return "unit not found";
  case error_code::unit_exists:
    return "unit exists";
  case error_code::invalid_config:
    return "invalid config";
  case error_code::frame_too_large:
    return "frame too large";
  case error_code::rate_limited:
    return "rate limited";
  case error_code::shutting_down:
    return "shutting down";
  case error_code::unit_in_config:
    return "unit in config file";
  case error_code::unit_failed:
    return "unit failed";
  }
  return "server error";
}

} // namespace warren::daemon
