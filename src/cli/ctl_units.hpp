// What `warren ctl` prints for the unit actions (ls, show, add, rm,
// restart, reload), and `ctl add FILE`'s reading of the TOML file into the
// units.add params. The daemon's strings are untrusted on a terminal: every
// one goes through tunnel::printable.
#pragma once

#include "core/expected.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace warren::cli {

/// "3m ago" for a unix time `then` seen at `now`.
std::string ago(std::int64_t then, std::int64_t now);
/// 1536 -> "1.5 KiB".
std::string human_bytes(std::uint64_t n);

/// The table of `ctl ls` (name, kind, state, since, listening, peer, up, down, last error).
std::string units_table(const nlohmann::json& units, std::int64_t now, bool colour);
/// `ctl show UNIT`: one unit, a field a line.
std::string unit_details(const nlohmann::json& unit, std::int64_t now, bool colour);
/// `ctl events`: one notification as a line ("16:40:01  unit.state  web  state=running").
std::string event_line(std::string_view method, const nlohmann::json& params, bool colour);
/// `ctl reload`: what the reload did.
std::string reload_summary(const nlohmann::json& report);

/// A TOML file with exactly one [[relay]], [[server]] or [[client]] section,
/// as the units.add params ({"kind": …, "name": …, keys}); or why not.
expected<nlohmann::json> section_json(const std::string& path);

} // namespace warren::cli
