// Helpers shared by the subcommands: logging set-up, durations, tokens.
#pragma once

#include "cli/command.hpp"

#include <chrono>
#include <cstdint>
#include <string>

namespace warren::cli {

void init_logging(const std::string& level);
std::chrono::milliseconds duration_arg(const std::string& text, const char* option);

/// The token from --token-file (first line, trailing whitespace removed) or,
/// without a file, the WARREN_TOKEN environment variable; empty when neither.
std::string load_token(const std::string& token_file);

/// Raises the soft limit on open files to the hard limit (each tunnel stream
/// or relayed connection costs a socket or two, and the usual soft limit,
/// 1,024, is what one client may open by default); returns the limit now in
/// effect, and the one before.
struct fd_limit {
  std::uint64_t before = 0;
  std::uint64_t now = 0;
};
fd_limit raise_fd_limit();

/// A default state directory: $XDG_STATE_HOME/warren or ~/.local/state/warren.
std::string default_state_dir();

} // namespace warren::cli
