// The daemon's supervisor (issue 12, "Daemon"): runs the units of the config
// file and of the drop-ins on N event loops, and changes the running set as
// a diff.
//
// Threads. The supervisor lives on the control executor (the daemon's own
// loop) and owns N more loops, each an io_context on its own thread. Each
// unit is placed on the least-loaded loop and is touched only there: the
// supervisor posts to the unit's loop to start, stop, reload it or read its
// status and counters, and the answer comes back by posting to the control
// executor. No lock guards a unit and the control thread never waits for a
// loop. The supervisor's own table (name -> spec, loop, state of the
// operation) is touched only on the control executor.
//
// Operations that change the set (apply, add, remove, restart) run one at a
// time, in the order asked; reads (list, get, counts) never wait for them:
// a unit in the middle of an operation reads as "starting" or "draining".
//
// The supervisor knows nothing of the CLI: a unit_spec is kind, name and the
// argv "warren KIND" would get, and the daemon gives a factory that turns it
// into a unit on an executor (through the subcommands' own *_options_from).
#pragma once

#include "core/expected.hpp"
#include "daemon/metrics_text.hpp"
#include "unit/unit.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace warren::daemon {

/// One unit as configured: what a config section or a drop-in says.
struct unit_spec {
  std::string kind;              // relay, server, client
  std::string name;              // unique (regardless of case)
  std::vector<std::string> args; // the argv after "warren KIND": --key=value, --flag, then "--" and positionals
  std::string origin;            // "file" (the config file) or "drop-in" (added through the API)
  bool operator==(const unit_spec&) const = default;
};

// ---- the diff (pure) --------------------------------------------------------

enum class change { keep, in_place, restart, stop, start };
std::string_view to_string(change c);

struct diff_step {
  std::string name;
  change what;
};

/// True when `from` and `to` differ only in keys a running unit of their
/// kind can take in place (unit::reconfigure): server: token_file,
/// users_file, allow_file, allow, cert and key (when both give a cert: a
/// generated certificate is not swapped for a given one in place); client:
/// token_file; log_level too, which is never applied (one logger for the
/// whole daemon). Specs equal but for log_level are not "in place".
bool changes_in_place(const unit_spec& from, const unit_spec& to);

/// What turns `running` into `wanted`, by name: the same spec -> keep
/// (a failed unit with the same spec -> restart: a reload retries it);
/// changed in place -> in_place; any other change (kind, a listen address, a
/// target, the origin) -> restart; gone -> stop; new -> start. A spec that
/// differs only in log_level is kept (the new one recorded). Steps in the
/// order of `running`, then the new ones in the order of `wanted`.
std::vector<diff_step> diff_units(const std::vector<unit_spec>& running, const std::vector<unit_spec>& wanted,
                                  const std::vector<std::string>& failed = {});

/// The index of the least-loaded loop (the first of equals).
std::size_t least_loaded(const std::vector<std::size_t>& loads);

// ---- the supervisor ---------------------------------------------------------

/// Builds the unit `spec` describes on `ex` (the factory runs on that
/// loop), or says why not in one line (a token file that cannot be read).
using unit_maker =
    std::function<expected<std::unique_ptr<unit::unit>>(const unit_spec& spec, boost::asio::any_io_executor ex)>;

/// Receives every event, on the control executor: the units' own
/// ({"event":"unit.state","unit":…,"state":…}, "unit.tunnel", "unit.error",
/// "unit.reload") and the supervisor's ("unit.added", "unit.removed",
/// "unit.restarted", "reload.done", "reload.failed").
using event_sink = std::function<void(nlohmann::json event)>;

/// What apply() did; `failed` lists units that could not start (or change).
struct apply_report {
  std::vector<std::string> kept, reloaded, in_place, restarted, stopped, started;
  std::vector<std::pair<std::string, std::string>> failed; // name, error
  nlohmann::json to_json() const;
  std::string summary() const; // "2 started, 1 kept, 1 restarted, 0 stopped"
};

class supervisor {
 public:
  /// `threads` loops (at least 1) start at once. `sink` may be empty.
  supervisor(boost::asio::any_io_executor control, std::size_t threads, unit_maker make, event_sink sink);
  /// Abandons every unit still running (no drain), on its loop, then joins
  /// the loops. Call stop_all() first for a clean end.
  ~supervisor();
  supervisor(const supervisor&) = delete;
  supervisor& operator=(const supervisor&) = delete;

  /// Makes the running set `wanted` (see diff_units): stops first (so a
  /// port moves from the old unit to the new), then reloads and in-place
  /// changes, then starts. `cause` names it in events and logs ("start",
  /// "config.reload", "SIGHUP"). `done` runs on the control executor.
  void apply(std::vector<unit_spec> wanted, std::string cause, std::function<void(apply_report)> done);
  /// apply() of the set `load` returns, read when this operation's turn
  /// comes: after every add and remove asked before it has written or
  /// deleted its drop-in (a set read when the reload was asked would stop
  /// a unit added meanwhile, or start one removed). No set (a config with
  /// errors, which `load` reports): nothing changes and `done` is not called.
  void reload(std::function<std::optional<std::vector<unit_spec>>()> load, std::string cause,
              std::function<void(apply_report)> done);

  /// Starts one more unit (its name must be free, regardless of case, also
  /// of units added before it that are still starting). `done` gets the unit's
  /// status, or the reason it did not start (the unit stays, failed).
  void add(unit_spec spec, std::function<void(expected<nlohmann::json>)> done);
  /// Drains and stops `name` and forgets it. false: no such unit.
  void remove(const std::string& name, std::function<void(bool)> done);
  /// Stops `name` and starts it again from its spec.
  void restart(const std::string& name, std::function<void(expected<nlohmann::json>)> done);
  /// Drains and stops every unit (each within its drain bound).
  void stop_all(std::function<void()> done);

  /// Each unit's status and counters, read on its loop; in name order.
  void list(std::function<void(nlohmann::json array)> done) const;
  /// One unit's; null when there is no such unit.
  void get(const std::string& name, std::function<void(nlohmann::json)> done) const;

  // Control executor only:
  bool has(const std::string& name) const;
  const unit_spec* spec(const std::string& name) const;
  std::vector<unit_spec> specs() const;
  /// Units per state ("running": 2, "failed": 1, ...) and "total", as last seen.
  nlohmann::json counts() const;
  /// Units per loop, and the loop of a unit (tests, daemon.status).
  std::vector<std::size_t> loads() const { return loads_; }
  std::size_t loop_of(const std::string& name) const;
  std::size_t threads() const { return loops_.size(); }
  /// Every unit's status and counters, read on its loop (for metrics.get
  /// and --metrics); `done` runs on the control executor.
  void snapshot(std::function<void(std::vector<unit_snapshot>)> done) const;
  /// The units' event loops (for the watchdog's pings).
  std::vector<boost::asio::any_io_executor> executors() const;

  struct loop;
  struct entry;

 private:
  using op = std::function<void(std::function<void()> next)>;
  void enqueue(op o);
  void run_apply(std::vector<unit_spec> wanted, std::string cause, std::function<void(apply_report)> done,
                 std::function<void()> next);
  void run_next();

  void start_unit(const unit_spec& spec, std::function<void(std::string error)> done);
  void stop_unit(const std::string& name, std::function<void()> done);
  void reload_unit(const std::string& name, std::string cause, std::function<void(unit::reload_result)> done);
  void reconfigure_unit(const std::string& name, const unit_spec& to, std::function<void(unit::reload_result)> done);
  void publish(nlohmann::json event);

  boost::asio::any_io_executor control_;
  std::vector<std::unique_ptr<loop>> loops_;
  std::vector<std::size_t> loads_;
  unit_maker make_;
  event_sink sink_;
  std::map<std::string, std::shared_ptr<entry>> units_;
  std::vector<op> queue_;
  bool busy_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

} // namespace warren::daemon
