// The one reader of the command line's secret files (--token-file,
// --proxy-password-file, --socks-password-file): the first line, read
// within a bound, so that a wrong path (/dev/zero, a log file) is an error
// at start-up rather than memory, and a FIFO or pipe is waited for at most
// 2 s (never forever: under the daemon the reader is a unit's event loop).
// Pure (no Asio, no logging).
#pragma once

#include "core/expected.hpp"

#include <cstddef>
#include <string>
#include <string_view>

namespace warren {

inline constexpr std::size_t k_max_secret_line = 4096;

/// The first line of `path` without its line end (LF or CRLF). Errors name
/// `what` (the option) and the path, never the content: unreadable, or a
/// first line longer than k_max_secret_line bytes. An empty line is
/// returned as such (the caller says what is missing); so is a FIFO that
/// nothing has open for writing. A pipe or FIFO whose writer gives no line
/// within 2 s is an error.
expected<std::string> read_secret_line(const std::string& path, std::string_view what);

} // namespace warren
