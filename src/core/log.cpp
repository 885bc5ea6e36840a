#include "core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace warren::log {

std::optional<spdlog::level::level_enum> parse_level(std::string_view name) {
  if (name == "trace")
    return spdlog::level::trace;
  if (name == "debug")
    return spdlog::level::debug;
  if (name == "info")
    return spdlog::level::info;
  if (name == "warn" || name == "warning")
    return spdlog::level::warn;
  if (name == "error")
    return spdlog::level::err;
  if (name == "off")
    return spdlog::level::off;
  return std::nullopt;
}

void init(spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_color_mt("warren");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  logger->set_level(level);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

} // namespace warren::log

namespace warren {

void log_within_budget(line_limiter& limiter, spdlog::level::level_enum level, std::string_view kind,
                       const std::string& line) {
  if (!limiter.allow(steady_clock::now()))
    return;
  const auto left_out = limiter.take_left_out();
  if (left_out == 0)
    spdlog::log(level, "{}", line);
  else
    spdlog::log(level, "{} ({} more {} not logged)", line, left_out, kind);
}

} // namespace warren
