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

} // namespace warren::cli
