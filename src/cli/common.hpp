// Helpers shared by the subcommands: logging set-up, durations, tokens.
#pragma once

#include "cli/command.hpp"

#include <chrono>
#include <string>

namespace warren::cli {

void init_logging(const std::string& level);
std::chrono::milliseconds duration_arg(const std::string& text, const char* option);

/// The token from --token-file (first line, trailing whitespace removed) or,
/// without a file, the WARREN_TOKEN environment variable; empty when neither.
std::string load_token(const std::string& token_file);

/// CLI11 reads "-1" into an unsigned option as 2^64-1: every unsigned
/// option of `cmd` refuses a negative value ("must not be negative").
/// Call it last in an add_*_command(), after the options are added; an
/// option that also transforms its text (a size with a unit) gets
/// `k_not_negative` before its transform.
void refuse_negative_numbers(CLI::App& cmd);
extern const CLI::Validator k_not_negative;

/// A default state directory: $STATE_DIRECTORY (what systemd's
/// StateDirectory=warren gives the service; its first entry), else
/// /var/lib/warren as root (as the config is /etc/warren and the control
/// socket /run/warren: a root $HOME is hidden by ProtectHome=), else
/// $XDG_STATE_HOME/warren or ~/.local/state/warren.
std::string default_state_dir();

} // namespace warren::cli
