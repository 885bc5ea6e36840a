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

/// A default state directory: $XDG_STATE_HOME/warren or ~/.local/state/warren.
std::string default_state_dir();

} // namespace warren::cli
