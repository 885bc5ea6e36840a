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

namespace {

/// The text as a JSON-RPC 2.0 object, after the pre-scan; or why not.
expected<nlohmann::json> rpc_object(std::string_view text) {
  parse_limits limits;
  limits.max_depth = k_max_reply_depth;
  limits.max_values = k_max_reply_values;
  if (auto refused = prescan(text, limits))
    return expected<nlohmann::json>::failure("protocol mismatch: the reply is not usable: " + refused->message);
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded())
    return expected<nlohmann::json>::failure("protocol mismatch: the reply is not JSON (it starts " +
                                             quote_untrusted(text.substr(0, 40)) + ")");
  if (!doc.is_object())
    return expected<nlohmann::json>::failure("protocol mismatch: the reply is not a JSON-RPC response object");
  const auto version = doc.find("jsonrpc");
  if (version == doc.end() || !version->is_string() || version->get_ref<const std::string&>() != "2.0")
    return expected<nlohmann::json>::failure("protocol mismatch: the reply is not JSON-RPC 2.0");
  return doc;
}

} // namespace

expected<ctl_notification> parse_notification(std::string_view text) {
  using result = expected<ctl_notification>;
  auto doc = rpc_object(text);
  if (!doc)
    return result::failure(doc.error());
  const auto method = doc->find("method");
  if (doc->contains("id") || method == doc->end() || !method->is_string() ||
      method->get_ref<const std::string&>().size() > 128)
    return result::failure("protocol mismatch: a message that is not a notification");
  ctl_notification out;
  out.method = printable(method->get_ref<const std::string&>());
  if (const auto params = doc->find("params"); params != doc->end() && params->is_object())
    out.params = std::move(*params);
  else
    out.params = nlohmann::json::object();
  return out;
}

expected<ctl_reply> parse_reply(std::string_view text, std::int64_t id) {
  auto parsed = rpc_object(text);
  if (!parsed)
    return expected<ctl_reply>::failure(parsed.error());
  auto& doc = *parsed;
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
  if (const auto data = error->find("data"); data != error->end() && data->is_object())
    if (const auto errors = data->find("errors"); errors != data->end() && errors->is_array())
      for (const auto& e : *errors)
        if (e.is_string() && out.details.size() < 100)
          out.details.push_back(printable(e.get_ref<const std::string&>()));
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
