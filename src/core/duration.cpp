#include "core/duration.hpp"

#include <cmath>
#include <cstdint>

namespace warren {

expected<std::chrono::milliseconds> parse_duration(std::string_view text) {
  using result = expected<std::chrono::milliseconds>;
  const std::string shown(text.substr(0, 64));
  std::size_t i = 0;
  std::uint64_t whole = 0;
  std::uint64_t frac = 0;
  std::uint64_t frac_scale = 1;
  bool any_digit = false;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (whole > 1'000'000'000ULL)
      return result::failure("duration '" + shown + "' is too large");
    whole = whole * 10 + static_cast<std::uint64_t>(text[i] - '0');
    any_digit = true;
    ++i;
  }
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (frac_scale < 1'000'000ULL) {
        frac = frac * 10 + static_cast<std::uint64_t>(text[i] - '0');
        frac_scale *= 10;
      }
      any_digit = true;
      ++i;
    }
  }
  if (!any_digit)
    return result::failure("duration '" + shown + "' must start with a number, e.g. 250ms or 10s");
  const std::string_view unit = text.substr(i);
  std::uint64_t unit_ms = 0;
  if (unit == "ms")
    unit_ms = 1;
  else if (unit == "s")
    unit_ms = 1000;
  else if (unit == "m")
    unit_ms = 60'000;
  else if (unit == "h")
    unit_ms = 3'600'000;
  else if (unit.empty())
    return result::failure("duration '" + shown + "' needs a unit: ms, s, m or h");
  else
    return result::failure("duration '" + shown + "' has an unknown unit; use ms, s, m or h");
  const std::uint64_t ms = whole * unit_ms + (frac * unit_ms) / frac_scale;
  if (ms > 365ULL * 24 * 3'600'000)
    return result::failure("duration '" + shown + "' is too large");
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms != 0 && ms % 1000 == 0)
    return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

} // namespace warren
