// JSON-RPC 2.0 messages of the daemon's control API (docs/CONTROL.md,
// "Messages" and "Errors"): one frame's text parsed into a request or a
// batch of them, and the encoders for results, errors, notifications and
// requests. Pure (no I/O, no Asio); fuzzed by tests/fuzz/fuzz_control.cpp.
//
// Design: hostile text is checked before nlohmann-json builds anything from
// it. A linear pre-scan validates UTF-8 (-32700 with the byte offset) and
// bounds nesting depth and the number of values (-32600), so `[[[[…` cannot
// recurse in anything that later walks the document (dump, copy, compare)
// and one frame cannot make a DOM of millions of nodes. Only then does
// nlohmann parse. A batch yields one entry per element, each either a
// request or the error it earns; what spoils the whole message (invalid
// JSON, an empty or oversize batch, a scalar) is one error answered with id
// null. Error messages name the member and the rule, never the peer's
// bytes beyond a short quoted excerpt (core/text.hpp).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace warren::daemon {

/// JSON-RPC error codes: the five of the specification and ours, in the
/// range it reserves for implementation-defined server errors.
enum class error_code : int {
  parse_error = -32700,      // invalid JSON, invalid UTF-8
  invalid_request = -32600,  // not a request object, bad member, empty or oversize batch, too deep
  method_not_found = -32601, // no such method
  invalid_params = -32602,   // the method's handler refused its params
  internal_error = -32603,   // the handler failed, or the response would be too large
  unauthorized = -32000,     // TCP/TLS: first frame not `auth`, wrong token, deadline passed
  read_only = -32001,        // a read-only caller called a method that changes something
  unit_not_found = -32002,   // units.get/remove/restart: no unit of that name
  unit_exists = -32003,      // units.add: the name is taken
  invalid_config = -32004,   // units.add, config.reload: the section or file does not validate
  frame_too_large = -32005,  // the frame's length is over the limit (the connection is closed)
  rate_limited = -32006,     // too many failed auths from this source: not checked, closed
  shutting_down = -32007,    // the daemon is stopping
  unit_in_config = -32008,   // units.remove: the unit comes from the config file (edit it and reload)
  unit_failed = -32009,      // units.add/restart: the unit did not start (its error in the message)
};

/// A request's id: null, an integer (int64) or a string. Absent (a
/// notification) is std::nullopt around it.
using request_id = std::variant<std::nullptr_t, std::int64_t, std::string>;

nlohmann::json to_json_value(const request_id& id);

struct rpc_error {
  error_code code = error_code::internal_error;
  std::string message;
  std::optional<nlohmann::json> data;
};

struct request {
  std::optional<request_id> id; // nullopt: a notification, which gets no response
  std::string method;
  nlohmann::json params; // an object or an array; null when absent
  bool notification() const noexcept { return !id.has_value(); }
};

/// An element that is not a valid request: answered with `error`, under
/// the element's id when it had a valid one, else null.
struct invalid_request {
  request_id id = nullptr;
  rpc_error error;
};

using message_entry = std::variant<request, invalid_request>;

/// A parsed message: one entry, or a batch of 1..max_batch.
struct message {
  bool batch = false;
  std::vector<message_entry> entries;
};

/// Bounds on what one message may hold. Each has a reason in the name.
struct parse_limits {
  std::size_t max_depth = 32;          // arrays/objects inside each other (the message itself is 1)
  std::size_t max_values = 65536;      // values and members in all: bounds the DOM one frame builds
  std::size_t max_batch = 64;          // requests in one batch: bounds the work one frame causes
  std::size_t max_id_length = 256;     // a string id, echoed back in every reply
  std::size_t max_method_length = 128; // no method name is longer
};

/// A message, or the one error (id null) that answers the whole frame.
using parse_result = std::variant<message, rpc_error>;

parse_result parse_message(std::string_view text, const parse_limits& limits = {});

/// The linear pre-scan parse_message() runs before building anything:
/// UTF-8 (-32700 "invalid UTF-8 at byte N", N from 0), then nesting over
/// `max_depth` or more than `max_values` values (-32600). Also what `warren
/// ctl` runs over a reply before parsing it.
std::optional<rpc_error> prescan(std::string_view text, const parse_limits& limits);

/// Whether `text` is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF);
/// on failure `bad_offset` is where it stops being valid.
bool valid_utf8(std::string_view text, std::size_t* bad_offset = nullptr) noexcept;

// ---- encoders -------------------------------------------------------------
// The *_object functions build the value (for batch replies); the encode_*
// ones dump it. Strings that are not valid UTF-8 are dumped with U+FFFD in
// place of the bad bytes, never thrown over.

nlohmann::json result_object(const request_id& id, nlohmann::json result);
nlohmann::json error_object(const request_id& id, const rpc_error& error);
nlohmann::json request_object(const request& r);

std::string dump(const nlohmann::json& value);
std::string encode_result(const request_id& id, nlohmann::json result);
std::string encode_error(const request_id& id, const rpc_error& error);
std::string encode_notification(std::string_view method, nlohmann::json params = nullptr);
std::string encode_request(const request& r);

/// "parse error", "invalid request", ... (for logs and docs).
std::string_view error_code_name(error_code c) noexcept;

} // namespace warren::daemon
