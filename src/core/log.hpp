// Logging: spdlog to stderr, one line per event, timestamps in ms. Secrets
// (tokens, keys) are never passed to these functions. Under journald (stderr
// is the stream $JOURNAL_STREAM names) a line is "<N>message" instead: N is
// the syslog priority, and journald adds the time itself.
#pragma once

#include "core/log_limiter.hpp"

#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace warren::log {

/// "trace", "debug", "info", "warn", "error", "off"; nullopt when unknown.
std::optional<spdlog::level::level_enum> parse_level(std::string_view name);

/// Sets up the default logger (stderr, colour on a terminal; journald's
/// "<N>" priorities without timestamps when stderr_is_journal()).
void init(spdlog::level::level_enum level);

/// The syslog priority journald reads from a "<N>" prefix: trace and debug
/// 7, info 6, warn 4, error 3, critical 2.
int syslog_priority(spdlog::level::level_enum level);

/// True when `journal_stream` ($JOURNAL_STREAM, "DEVICE:INODE" in decimal)
/// names the file whose fstat(2) gave `dev` and `ino` (systemd.exec(5): a
/// process checks this before it trusts that its stderr is still the
/// journal's stream, not a file or pipe a child of the service was given).
bool journal_stream_matches(std::string_view journal_stream, unsigned long long dev, unsigned long long ino);

/// journal_stream_matches() for $JOURNAL_STREAM and fd 2.
bool stderr_is_journal();

/// The formatter init() installs: "<N>message" for the journal, else
/// "2024-05-01T12:00:00.123 info  message" (level coloured on a terminal).
std::unique_ptr<spdlog::formatter> make_formatter(bool journal);

} // namespace warren::log

namespace warren {

/// Logs `line` if `limiter` lets one through now, saying how many lines of
/// its `kind` were left out before it: "... (12 more failures not logged)".
/// For every line a peer can make us repeat (log volume is a resource that
/// peers and clients can spend).
void log_within_budget(line_limiter& limiter, spdlog::level::level_enum level, std::string_view kind,
                       const std::string& line);

} // namespace warren
