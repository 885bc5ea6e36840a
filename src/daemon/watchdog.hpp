// systemd's watchdog for a daemon of several event loops (issue 12): with
// WatchdogSec= set, systemd passes $WATCHDOG_USEC (and $WATCHDOG_PID) and
// ends the service when no "WATCHDOG=1" arrives within that time. A timer
// that only proves the process is alive would keep a daemon whose unit loop
// is stuck (a blocking call, an endless loop) "healthy", so loop_watchdog
// sends WATCHDOG=1 only when EVERY event loop has run a ping posted to it
// since the last round: one stuck loop stops the watchdog, and is named in
// the log once.
//
// loop_watchdog is the logic, driven by tick(now) (the time seam,
// core/clock.hpp: tests call it with a manual_clock and poll the loops by
// hand). watchdog_thread runs it on a thread of its own every timeout/2, so
// a stuck control-plane loop is reported too.
#pragma once

#include "core/clock.hpp"
#include "core/expected.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace warren::daemon {

/// What $WATCHDOG_USEC and $WATCHDOG_PID ask of process `self`
/// (sd_watchdog_enabled(3)): nullopt when no watchdog is wanted (no
/// WATCHDOG_USEC, or WATCHDOG_PID names another process); the timeout when
/// it is; a failure when a variable is not a positive decimal number.
expected<std::optional<duration>> watchdog_timeout(const char* usec, const char* pid, pid_t self);

class loop_watchdog {
 public:
  using notify_fn = std::function<void(std::string_view)>;

  /// `notify` gets "WATCHDOG=1" (daemon::sd_notify in the daemon). The
  /// executors must outlive the pings posted to them; a ping left unrun in
  /// a destroyed io_context is simply destroyed.
  loop_watchdog(std::vector<boost::asio::any_io_executor> loops, notify_fn notify);

  /// One round (every timeout/2): sends WATCHDOG=1 when every loop has run
  /// the ping it was last given (nothing the first time: no loop has been
  /// asked yet), logs a loop that has not (once, until it answers again),
  /// then posts a new ping to every loop that answered. A late loop gets no
  /// second ping, so a stuck one collects one handler, not one per round.
  /// Returns true when WATCHDOG=1 was sent. Call from one thread.
  bool tick(time_point now);

  std::size_t loops() const { return slots_.size(); }

 private:
  struct answers; // what the loops write (atomics), shared with the pings in flight
  struct slot {
    boost::asio::any_io_executor executor;
    std::uint64_t pinged = 0; // the last ping's number; 0: none yet
    time_point pinged_at{};
    bool reported_late = false;
  };
  std::vector<slot> slots_;
  std::shared_ptr<answers> answers_;
  notify_fn notify_;
};

/// loop_watchdog::tick() every timeout/2 on a thread of its own (steady_clock).
class watchdog_thread {
 public:
  watchdog_thread(std::vector<boost::asio::any_io_executor> loops, duration timeout, loop_watchdog::notify_fn notify);
  ~watchdog_thread(); // stop() and join
  watchdog_thread(const watchdog_thread&) = delete;
  watchdog_thread& operator=(const watchdog_thread&) = delete;

  /// Ends the thread; no WATCHDOG=1 after this returns. Idempotent.
  void stop();

 private:
  struct state;
  std::shared_ptr<state> state_;
  std::thread thread_;
};

/// The daemon's watchdog from its environment: nullptr when systemd asks
/// for none (or the variables are unusable: logged as a warning), else a
/// running watchdog_thread over `loops` sending through daemon::sd_notify.
std::unique_ptr<watchdog_thread> start_watchdog_from_env(std::vector<boost::asio::any_io_executor> loops);

} // namespace warren::daemon
