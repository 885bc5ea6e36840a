// The daemon's config file: one TOML file of [[relay]], [[client]] and
// [[server]] sections, each a unit with a `name` and the keys of that
// subcommand's long options (`token_file` or `token-file`), checked into
// the argv the subcommand would be given.
//
// The schema is the CLI itself, so the two cannot drift: the keys of a
// [[client]] are read from the options `add_client_command()` registers
// (positionals too: `url`), and the argv a section becomes is parsed by a
// fresh CLI::App with those same functions (the run function they return
// is never called). It lives in cli/ for that reason: the add_*_command()
// functions are cli code, and a layer below cannot include them.
//
// Secrets are only ever named by file (`token_file`): a key such as `token`
// or `proxy_password` is refused, and no error quotes a value.
#pragma once

#include "cli/command.hpp"
#include "core/toml.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace warren::cli {

struct unit_section {
  std::string kind;              // relay, client or server
  std::string name;              // unique in the file
  std::vector<std::string> args; // the argv after "warren KIND"
  toml::position at;             // of the [[KIND]] header
};

struct config_check {
  std::vector<unit_section> units; // the sections without errors
  std::vector<std::string> errors; // every error, "SOURCE:LINE:COLUMN: ..."
};

/// Bounds on one file: sections (each is parsed as a command line, so this
/// bounds the check's time) and errors listed (the rest are counted).
inline constexpr std::size_t k_max_units = 1024;
inline constexpr std::size_t k_max_errors = 100;

/// Every section of the file checked; `units` are complete only when
/// `errors` is empty.
config_check check_config(std::string_view text, std::string_view source);

/// "3 units: relay web, client office, server gw".
std::string config_summary(const std::vector<unit_section>& units);

/// The keys a section of `kind` accepts (besides `name`), underscore form.
std::vector<std::string> config_keys(std::string_view kind);

/// Registers the subcommand of `kind` (relay, client, server) on `app`.
std::function<int()> add_unit_command(CLI::App& app, std::string_view kind, std::function<std::string()>* check,
                                      unit_builder* build);

/// The annotated example `warren config example` prints.
std::string_view config_example();

} // namespace warren::cli
