// A subcommand: registers its options on the CLI11 app and runs when chosen.
// main.cpp owns the app; each subcommand lives in its own file.
#pragma once

#include "core/expected.hpp"
#include "unit/unit.hpp"

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

namespace warren::cli {

/// An error the user caused or can fix: printed as one line, exit code 1.
class user_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// How a unit is built under the daemon (cli/daemon_units.cpp): secrets
/// only from the files the section names (WARREN_TOKEN is not read), and a
/// server's generated certificate in the daemon's state directory unless
/// the section gives state_dir.
struct unit_context {
  std::string state_dir;
};
/// Builds the unit of what was parsed on `ex`: the options step, then the
/// secrets read; or the first mistake in one line.
using unit_builder =
    std::function<expected<std::unique_ptr<unit::unit>>(boost::asio::any_io_executor ex, const unit_context& ctx)>;

/// Registers `warren relay`; returns the function that runs it after parsing.
/// `check`, when given, is set to the kind's "arguments → options" step on
/// what was parsed (no side effects): its error, or empty. The config check
/// (cli/config_schema.cpp) runs it on every section. `build`, when given,
/// is set to the builder of the daemon's unit from what was parsed.
std::function<int()> add_relay_command(CLI::App& app, std::function<std::string()>* check = nullptr,
                                       unit_builder* build = nullptr);
std::function<int()> add_server_command(CLI::App& app, std::function<std::string()>* check = nullptr,
                                        unit_builder* build = nullptr);
std::function<int()> add_client_command(CLI::App& app, std::function<std::string()>* check = nullptr,
                                        unit_builder* build = nullptr);
/// `warren tun` (cli/tun.cpp).
std::function<int()> add_tun_command(CLI::App& app, std::function<std::string()>* check = nullptr,
                                     unit_builder* build = nullptr);
/// `warren config check|example` (cli/config.cpp).
std::function<int()> add_config_command(CLI::App& app);
/// `warren daemon` (cli/daemon.cpp) and `warren ctl` (cli/ctl.cpp).
std::function<int()> add_daemon_command(CLI::App& app);
std::function<int()> add_ctl_command(CLI::App& app);

/// $XDG_CONFIG_HOME/warren/warren.toml, ~/.config/... when unset,
/// /etc/warren/warren.toml as root (cli/config.cpp).
std::string default_config_path();
/// Reads a config file (at most 1 MiB) into `text`; returns one line saying
/// why not (never its contents), empty on success.
std::string read_config(const std::string& path, std::string& text);

} // namespace warren::cli
