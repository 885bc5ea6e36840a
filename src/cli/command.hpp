// A subcommand: registers its options on the CLI11 app and runs when chosen.
// main.cpp owns the app; each subcommand lives in its own file.
#pragma once

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

/// Registers `warren relay`; returns the function that runs it after parsing.
/// `check`, when given, is set to the kind's "arguments → options" step on
/// what was parsed (no side effects): its error, or empty. The config check
/// (cli/config_schema.cpp) runs it on every section.
std::function<int()> add_relay_command(CLI::App& app, std::function<std::string()>* check = nullptr);
std::function<int()> add_server_command(CLI::App& app, std::function<std::string()>* check = nullptr);
std::function<int()> add_client_command(CLI::App& app, std::function<std::string()>* check = nullptr);
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
