// Logging: spdlog to stderr, one line per event, timestamps in ms. Secrets
// (tokens, keys) are never passed to these functions.
#pragma once

#include <spdlog/spdlog.h>

#include <optional>
#include <string_view>

namespace warren::log {

/// "trace", "debug", "info", "warn", "error", "off"; nullopt when unknown.
std::optional<spdlog::level::level_enum> parse_level(std::string_view name);

/// Sets up the default logger (stderr, colour on a terminal).
void init(spdlog::level::level_enum level);

} // namespace warren::log
