// The daemon's metrics, from one snapshot of its units, in two shapes: the
// Prometheus text exposition format 0.0.4 (`--metrics`, metrics_http.hpp)
// and the JSON result of `metrics.get` (docs/CONTROL.md). Pure: the caller
// collects the snapshot (each unit's status and counters read on its own
// executor) and hands it here, so both shapes say the same numbers and are
// tested without a socket.
//
// Prometheus names follow its conventions: `warren_` prefix, base units
// (seconds, bytes), `_total` for counters, one `# HELP` and `# TYPE` per
// family even when it has no series; a unit's state is one series per state
// valued 1 or 0 (as node_exporter's systemd collector does), so a query
// need not know the state names. Series whose value is unknown (a round trip
// not measured yet, no error so far, no tunnel up) are left out rather than
// reported as 0. Label values are escaped (\\, \", \n) — unit names are user
// input — and bytes that are not UTF-8 become U+FFFD in both shapes.
#pragma once

#include "unit/unit_status.hpp"

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace warren::daemon {

/// One unit as read on its executor.
struct unit_snapshot {
  std::string name;
  std::string kind; // "relay", "server", "client"
  unit::unit_status status;
  unit::unit_counters counters;
};

struct daemon_info {
  std::string version;
  unit::wall_time started{};
};

/// The Prometheus text (format 0.0.4), "\n"-terminated lines.
std::string metrics_text(const std::vector<unit_snapshot>& units, const daemon_info& info);

/// The `metrics.get` result: {"daemon": {...}, "units": [{...}, ...]}.
nlohmann::json metrics_json(const std::vector<unit_snapshot>& units, const daemon_info& info);

/// A label value as the text format wants it inside its quotes.
std::string escape_label_value(std::string_view value);

/// Seconds since the epoch, as the text format writes a float ("1718000000.25").
std::string format_seconds(unit::wall_time t);

} // namespace warren::daemon
