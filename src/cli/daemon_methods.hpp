// The daemon's control methods (docs/CONTROL.md): daemon.status,
// daemon.stop, units.list/get/add/remove/restart and config.reload. Those
// that read or change a unit are async: the supervisor answers from the
// unit's loop by posting to the control executor, and the reply goes back
// through the control server (never a blocking wait on the control thread).
#pragma once

#include "cli/daemon_units.hpp"
#include "core/clock.hpp"
#include "daemon/dispatch.hpp"

#include <functional>
#include <string>
#include <vector>

namespace warren::cli {

/// What the methods need; everything lives on the control executor.
struct daemon_context {
  daemon_paths paths;
  daemon::supervisor& supervisor;
  time_point started;
  std::vector<std::string>& listeners;
  std::function<void()> stop;
};

daemon::method_table daemon_methods(daemon_context& ctx);

/// config.reload (and SIGHUP): the file and the drop-ins read and checked
/// again; any error rejects the whole config (every error logged and in the
/// reply's data) and the running set stays; else the supervisor applies the
/// diff. `reply` gets the report. sd_notify RELOADING=1 / READY=1 around it.
void reload_config(daemon_context& ctx, const std::string& cause, std::function<void(daemon::method_result)> reply);

} // namespace warren::cli
