// A unit: one long-running thing a user starts (a relay, a tunnel server, a
// tunnel client), built from one options struct, with the same life under
// `warren relay …` in the foreground (unit/foreground.hpp) and, later,
// under the daemon, which runs many.
//
// The design choice: a unit runs on the executor it is given and is touched
// only from it. It owns no thread and no io_context; nothing in it locks.
// Anything outside (a signal handler, the control plane, the network
// monitor) reaches a unit by posting to executor(), and reads its status and
// counters there. The daemon can then run N event loops and place units on
// them (--threads) with no change here: a unit on loop 2 is reached by
// posting to loop 2. What units share (the resolver pool, limiters, metrics)
// is what must become thread-safe then, not the units.
//
// Life: constructed (state `starting`) → start() binds its listeners, or
// fails with a sentence and leaves nothing open → `running` (a relay checks
// its target first) → stop(deadline, done): `draining` until its open
// connections finish or the deadline passes, then they are cut → `stopped`,
// and `done` runs on the executor. abandon() skips the drain. A unit that
// fails after start (a relay's target unreachable, a client refused by its
// server) goes to `failed` with its last error, and frees what it held.
// Destroy a unit only on its executor, after `done` has run or abandon().
#pragma once

#include "core/expected.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace warren::unit {

enum class unit_state { starting, running, draining, stopped, failed };
std::string_view to_string(unit_state s);

using wall_time = std::chrono::system_clock::time_point;

/// What a unit is doing now; a plain copy, safe to hand to another thread.
struct unit_status {
  unit_state state = unit_state::starting;
  std::vector<std::string> listening; // "TCP 127.0.0.1:8080", "unix /run/x.sock", …
  std::string peer;                   // a client's server while its tunnel is up; else empty
  wall_time since{};                  // when `state` was entered
  std::string last_error;             // empty when none yet
  wall_time last_error_at{};
};

/// Cheap counters, plain integers touched only on the unit's executor. What
/// a kind does not have stays 0 (a relay has no streams or reconnects).
struct unit_counters {
  std::uint64_t bytes_up = 0;   // from the side that opened the connection toward its target
  std::uint64_t bytes_down = 0; // back; a tunnel's are transport bytes (data and framing)
  std::uint64_t connections_open = 0;
  std::uint64_t connections_total = 0;
  std::uint64_t streams_open = 0;
  std::uint64_t streams_total = 0;
  std::uint64_t reconnects = 0;
};

/// One thing worth telling the owner (the foreground runner logs nothing of
/// these: the unit logs its own lines; the daemon will forward them).
struct unit_event {
  enum class kind { state_changed, tunnel_connected, tunnel_disconnected, reloaded, reload_failed, error };
  kind what;
  unit_state state = unit_state::starting; // for state_changed: the new state
  std::string detail;                      // the reason, the error, the reload summary
  wall_time at{};
};
std::string_view to_string(unit_event::kind k);

/// What reload() did: `ok` false when the new settings were refused and the
/// running ones stay; `summary` is the sentence for a log line.
struct reload_result {
  bool ok = true;
  std::string summary;
};

class unit {
 public:
  using events_hook = std::function<void(const unit_event&)>;

  explicit unit(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}
  virtual ~unit() = default;
  unit(const unit&) = delete;
  unit& operator=(const unit&) = delete;

  /// "relay", "server" or "client".
  virtual std::string_view kind() const = 0;
  /// The section's name (empty for a unit started from the command line).
  const std::string& name() const { return name_; }
  void set_name(std::string n) { name_ = std::move(n); }

  /// The only executor the unit is touched from; post here from outside.
  const boost::asio::any_io_executor& executor() const { return ex_; }

  /// Reads what the settings name (a server's certificate and access
  /// files) without binding anything; start() calls it when nobody has.
  /// The foreground installs its SIGHUP handler between the two, so a
  /// SIGHUP before the files are read is ignored and one after is a reload.
  virtual expected<bool> prepare() { return true; }

  /// Binds the listeners and begins serving. A failure says what and where
  /// (a port in use, a bad certificate) and leaves nothing open, so a
  /// daemon reports it and carries on. Called once.
  virtual expected<bool> start() = 0;

  /// Stops taking new work, lets what is open finish for up to `drain`,
  /// then cuts the rest; `done` runs on the executor once stopped (also
  /// when the unit had already stopped or failed). Called at most once.
  virtual void stop(std::chrono::milliseconds drain, std::function<void()> done) = 0;

  /// Stop now, with no drain: every connection reset, every socket closed,
  /// no handler of the unit's runs afterwards with it alive. A second
  /// signal, or a daemon giving up on a drain. Safe after stop().
  virtual void abandon() = 0;

  /// What SIGHUP does for this kind (a server re-reads its access files,
  /// a client its token; a relay has nothing to reload). The unit logs its
  /// own lines, "KIND: <cause>; …" ("SIGHUP received" in the foreground),
  /// and reports the result as an event too.
  virtual reload_result reload(std::string_view cause) = 0;

  /// Takes the settings of `replacement` (a unit of the same kind built
  /// from the changed section, never started) that can change while
  /// running — a server's token, users and allow files, allow rules and
  /// certificate; a client's token file — all or nothing: on failure the
  /// running settings stay. The daemon calls it only when nothing else
  /// changed (daemon/supervisor.hpp, changes_in_place). Logs and reports
  /// an event like reload(). By default nothing can change in place.
  virtual reload_result reconfigure(unit& replacement, std::string_view cause) {
    (void)replacement;
    (void)cause;
    return {false, std::string(kind()) + " settings cannot change in place"};
  }

  /// The drain bound the foreground runner gives stop() on SIGTERM.
  virtual std::chrono::milliseconds drain_bound() const = 0;
  /// How the foreground announces a stop, after "KIND: SIGTERM received":
  /// ", shutting down" or "; letting open streams finish (up to 10s)".
  virtual std::string stop_announcement() const = 0;

  unit_status status() const { return status_; }
  virtual unit_counters counters() const = 0;

  /// The owner's hook; called on the executor, never re-entrantly into the unit.
  void set_events(events_hook h) { events_ = std::move(h); }

 protected:
  /// Enters `s` (no event when already there).
  void set_state(unit_state s);
  /// Records `error` as the last error and reports it; the state is unchanged.
  void record_error(std::string error);
  /// Records `error` and enters `failed`.
  void fail(std::string error);
  void emit(unit_event::kind k, std::string detail);
  unit_status& mutable_status() { return status_; }

 private:
  boost::asio::any_io_executor ex_;
  std::string name_;
  unit_status status_{unit_state::starting, {}, {}, std::chrono::system_clock::now(), {}, {}};
  events_hook events_;
};

} // namespace warren::unit
