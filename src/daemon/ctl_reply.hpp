// The client side of the control API (`warren ctl`): the requests it sends
// and the parser of the daemon's replies. The reply is untrusted input (a
// socket anyone could bind, a TCP peer that is not warren): it is checked
// before nlohmann builds anything from it (valid UTF-8, nesting at most
// k_max_reply_depth), must be one JSON-RPC 2.0 response object to the id we
// sent (or, for an error, id null: a frame the daemon refused whole), and
// anything else is a protocol mismatch described in one sentence that quotes
// at most a short, sanitized excerpt. Pure; fuzzed by
// tests/fuzz/fuzz_ctl_reply.cpp.
#pragma once

#include "core/expected.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace warren::daemon {

inline constexpr std::size_t k_max_reply_depth = 64;
inline constexpr std::size_t k_max_reply_values = 1u << 20; // a frame is at most 1 MiB anyway

/// One reply: a result, or the daemon's error.
struct ctl_reply {
  bool ok = false;
  nlohmann::json result; // ok
  int code = 0;          // !ok: the JSON-RPC error code
  std::string message;   // !ok: the daemon's message, printable ASCII only
  std::vector<std::string> details; // !ok: data.errors (every config error), printable, at most 100
};

/// The reply to the request with `id`; failure: a sentence saying why the
/// text is not one (a protocol mismatch).
expected<ctl_reply> parse_reply(std::string_view text, std::int64_t id);

/// One notification from the daemon (an event to a subscriber).
struct ctl_notification {
  std::string method;    // printable ASCII only, at most 128 bytes
  nlohmann::json params; // an object (empty when the daemon sent none); its strings are untrusted
};

/// A notification (`method`, no `id`); failure: a protocol mismatch, as parse_reply's.
expected<ctl_notification> parse_notification(std::string_view text);

/// The framed request `{"id":id,"jsonrpc":"2.0","method":…,"params":…}`.
std::string encode_ctl_request(std::int64_t id, std::string_view method, const nlohmann::json& params = nullptr);

} // namespace warren::daemon
