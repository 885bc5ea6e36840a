// Logging: spdlog to stderr, one line per event, timestamps in ms. Secrets
// (tokens, keys) are never passed to these functions.
#pragma once

#include "core/log_limiter.hpp"

#include <spdlog/spdlog.h>

#include <optional>
#include <string>
#include <string_view>

namespace warren::log {

/// "trace", "debug", "info", "warn", "error", "off"; nullopt when unknown.
std::optional<spdlog::level::level_enum> parse_level(std::string_view name);

/// Sets up the default logger (stderr, colour on a terminal).
void init(spdlog::level::level_enum level);

} // namespace warren::log

namespace warren {

/// Logs `line` if `limiter` lets one through now, saying how many lines of
/// its `kind` were left out before it: "... (12 more failures not logged)".
/// For every line a peer can make us repeat (log volume is a resource that
/// peers and clients can spend).
void log_within_budget(line_limiter& limiter, spdlog::level::level_enum level, std::string_view kind,
                       const std::string& line);

} // namespace warren
