// Dispatch of the control API (docs/CONTROL.md, "Authentication" and
// "Dispatch"): the method table, the per-connection authentication state,
// and dispatch(), which turns one frame's message into the reply bytes.
// Pure: no I/O, no clock reads (time comes in as an argument), no logging.
//
// Design: the connection handler the daemon runs over every transport is a
// loop of "decode frames; dispatch each; write what it returns; close when
// told" — every protocol rule lives here, where it is tested without
// sockets. Who may call what is decided by two inputs the handler cannot
// get wrong: a `connection_state` (built once at accept: a Unix peer whose
// uid the listener checked is authenticated from the start, a TCP/TLS one
// is not and must send `auth` first, within a deadline) and the table's
// `read_only_ok` flag per method. The token comparison and the per-source
// failure limit are the caller's (`token_check`), so this layer never sees
// a token table or an address.
#pragma once

#include "core/clock.hpp"
#include "daemon/control_frame.hpp"
#include "daemon/jsonrpc.hpp"

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace warren::daemon {

enum class transport_kind { unix_socket, tcp, tls };
enum class access_level { none, read_only, admin };

/// "none", "read-only", "admin" (as the `auth` method reports it).
std::string_view access_name(access_level a) noexcept;

/// The authentication state of one control connection. Built by the
/// listener at accept; changed only by dispatch() (a successful `auth`).
/// Not thread-safe: belongs to its connection.
class connection_state {
 public:
  /// A Unix socket peer whose uid (SO_PEERCRED) the listener has already
  /// judged: `admin` (the daemon's uid or root) or `read_only` (a member of
  /// --control-group). Peers judged `none` are closed at accept; a state
  /// built with `none` refuses every method.
  static connection_state unix_peer(access_level granted) noexcept;

  /// A TCP or TLS connection accepted at `accepted`: nothing is allowed
  /// until its first frame, a single `auth` request with a valid token,
  /// arrives before `accepted + auth_timeout`.
  static connection_state network(transport_kind kind, time_point accepted, duration auth_timeout) noexcept;

  transport_kind transport() const noexcept { return transport_; }
  access_level access() const noexcept { return access_; }
  bool authenticated() const noexcept { return access_ != access_level::none; }
  bool read_only() const noexcept { return access_ == access_level::read_only; }
  /// Waiting for its first frame to be `auth` (TCP/TLS, not yet authenticated).
  bool awaiting_auth() const noexcept { return awaiting_auth_; }
  /// When the handler must close a connection still awaiting auth.
  std::optional<time_point> auth_deadline() const noexcept;
  bool auth_expired(time_point now) const noexcept { return awaiting_auth_ && now >= deadline_; }

  /// The outcome of the first frame on TCP/TLS: `admin` or `read_only`
  /// authenticates; `none` leaves it refused for good.
  void complete_auth(access_level granted) noexcept;

 private:
  connection_state() = default;
  transport_kind transport_ = transport_kind::unix_socket;
  access_level access_ = access_level::none;
  bool awaiting_auth_ = false;
  time_point deadline_{};
};

/// A handler's answer: a result value, or an error (-32602 for bad params,
/// or one of the application codes).
class method_result {
 public:
  method_result(nlohmann::json value) : value_(std::move(value)) {} // NOLINT(google-explicit-constructor)
  method_result(rpc_error error) : error_(std::move(error)) {}      // NOLINT(google-explicit-constructor)
  static method_result invalid_params(std::string message);

  bool ok() const noexcept { return !error_.has_value(); }
  const nlohmann::json& value() const noexcept { return value_; }
  const rpc_error& error() const { return *error_; }

 private:
  nlohmann::json value_;
  std::optional<rpc_error> error_;
};

/// A method's handler: runs on the dispatching thread with the request's
/// params (an object, an array, or null when absent) and the caller's
/// state; checks the params itself. A thrown exception becomes -32603
/// without its text (it may hold anything).
using method_handler = std::function<method_result(const nlohmann::json& params, const connection_state& caller)>;

/// Delivers an asynchronous method's answer. Callable from any thread,
/// once; the control server posts it back to its own executor. It must not
/// be called after the control server's io_context is destroyed.
using method_reply = std::function<void(method_result)>;

/// A method that answers later (it posts to a unit's executor and waits):
/// `caller` and `params` are valid only during the call — copy what is
/// needed. A thrown exception becomes -32603. The control server answers
/// -32603 itself when `reply` is not called within its call timeout.
using async_method_handler =
    std::function<void(const nlohmann::json& params, const connection_state& caller, method_reply reply)>;

struct method_info {
  method_handler handler;             // one of the two is set
  async_method_handler async_handler; // needs plan_dispatch()/complete_call(): dispatch() runs it only if it answers inline
  bool read_only_ok = false;          // read-only callers may call it (status, list, get, metrics, events)
};

/// Method name -> handler. Built once at start, then only read (safe to
/// share between threads once built).
class method_table {
 public:
  /// Adds `name`; false if it is taken or is the built-in `auth`.
  bool add(std::string name, method_handler handler, bool read_only_ok);
  /// Adds an asynchronous method; false as add().
  bool add_async(std::string name, async_method_handler handler, bool read_only_ok);
  const method_info* find(std::string_view name) const;
  std::size_t size() const noexcept { return methods_.size(); }

 private:
  std::map<std::string, method_info, std::less<>> methods_;
};

/// The built-in method a TCP/TLS connection must send first:
/// {"jsonrpc":"2.0","method":"auth","params":{"token":"…"},"id":1}.
inline constexpr std::string_view k_auth_method = "auth";
inline constexpr std::size_t k_max_token_length = 4096;

/// The method that makes a connection an event subscriber (the control
/// server's: see control_server.hpp).
inline constexpr std::string_view k_subscribe_method = "events.subscribe";

/// What the caller's token check decided.
enum class auth_verdict { admin, read_only, wrong_token, rate_limited };

/// Checks a presented token: compares it with the admin and read-only
/// tokens in constant time and counts failures per source. Never called on
/// Unix connections.
using token_check = std::function<auth_verdict(std::string_view token)>;

struct dispatch_options {
  std::uint32_t max_response = k_default_max_frame; // a reply longer than this becomes -32603
  parse_limits limits;
};

/// What to do after one frame.
struct dispatch_outcome {
  std::string reply;        // framed bytes to write (empty: nothing to send)
  bool close = false;       // close the connection after writing `reply`
  bool auth_failed = false; // a wrong token was presented (already counted by token_check)
};

/// Answers one frame's message on a connection in `state`: parses it,
/// enforces the auth-first rule and the read-only rule, calls handlers and
/// assembles the reply (single or batch; none for notifications). `now`
/// is checked against the auth deadline. Equal to plan_dispatch(), then
/// run_call() on each call in order, then assemble().
dispatch_outcome dispatch(const method_table& table, connection_state& state, std::string_view frame, time_point now,
                          const token_check& check_token, const dispatch_options& options = {});

// ---- the same in steps, for handlers that must wait -----------------------
// A daemon whose methods post to a unit's executor and wait for it runs the
// calls itself (co_await, in order) between plan_dispatch() and assemble();
// every rule above still applies, since only allowed calls are planned.

/// One element of a planned frame: a call to make, or a reply already known.
struct planned_call {
  request req;
  const method_info* method = nullptr; // to call (found, and allowed for the caller); nullptr: nothing to call
  std::optional<nlohmann::json> reply; // the reply object once known; stays empty for notifications
};

/// A frame's work. `outcome` set: the frame is answered already (auth
/// frames, parse errors, refusals) and `calls` is empty. The plan points
/// into the method table, which must outlive it.
struct dispatch_plan {
  std::optional<dispatch_outcome> outcome;
  bool batch = false;
  std::vector<planned_call> calls;
};

dispatch_plan plan_dispatch(const method_table& table, connection_state& state, std::string_view frame, time_point now,
                            const token_check& check_token, const dispatch_options& options = {});

/// Calls `call.method`'s handler (an exception becomes -32603) and records
/// the reply (none for a notification). An asynchronous handler that does
/// not answer before it returns gets -32603 (use the control server).
void run_call(planned_call& call, const connection_state& caller);

/// Records `result` as the reply to `call` (for calls run elsewhere).
void complete_call(planned_call& call, const method_result& result);

/// The framed reply to a plan whose calls have all completed.
dispatch_outcome assemble(const dispatch_plan& plan, const dispatch_options& options = {});

/// The framed error that answers a frame the decoder refused (too large:
/// -32005 with the limit in `data`; zero length: -32600). The caller
/// writes it and closes.
std::string frame_error_reply(frame_status status, std::uint32_t announced, std::uint32_t limit);

} // namespace warren::daemon
