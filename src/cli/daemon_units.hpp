// The daemon's units as the CLI knows them (cli/daemon.cpp): config file and
// drop-ins -> unit specs, checked exactly as `warren config check` checks a
// file; a units.add section (JSON) -> TOML text -> the same check; the
// factory the supervisor calls to build a unit from its spec through the
// subcommand's own options step; and the rule for the files a unit added
// through the API may name.
#pragma once

#include "cli/command.hpp"
#include "daemon/supervisor.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace warren::cli {

struct daemon_paths {
  std::string config;    // the config file; empty: none
  std::string state_dir; // --state-dir or default_state_dir()
  /// Where a unit added through the API may name files: the config file's
  /// directory and the state directory.
  std::vector<std::string> allowed_dirs() const;
  std::string dropins() const; // <state_dir>/units.d
};

struct loaded_units {
  std::vector<daemon::unit_spec> units; // complete only when `errors` is empty
  std::vector<std::string> errors;      // every error, "SOURCE:LINE:COLUMN: …"
};

/// The config file's sections (origin "file") and every drop-in's (origin
/// "drop-in"; one section each, named as its file; its files under the
/// allowed directories). A name in both is an error (at load the clash is
/// reported, never resolved).
loaded_units load_units(const daemon_paths& paths);

/// A units.add section: a JSON object with "kind", "name" and the keys of
/// the file, as TOML text ("[[KIND]]\nname = …"), or why not.
expected<std::string> section_toml(const nlohmann::json& section);

/// Checks TOML text holding one section (a drop-in, units.add, ctl add):
/// the config check, exactly one section, its files under `paths`'s allowed
/// directories. `source` names it in errors.
expected<daemon::unit_spec> check_one_section(const std::string& text, const std::string& source,
                                              const daemon_paths& paths, std::vector<std::string>& errors);

/// The keys whose values are files (token_file, cert, users_file, …).
bool file_key(std::string_view key);

/// The supervisor's factory: the spec's argv parsed by the subcommand's own
/// options, then built (secrets read from their files).
daemon::unit_maker unit_factory(unit_context ctx);

} // namespace warren::cli
