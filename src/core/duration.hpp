// Human durations on the command line: "250ms", "10s", "1.5s", "2m", "1h".
// A bare number is rejected: a unit is always required so "10" is never
// silently read as 10 ms or 10 s.
#pragma once

#include "core/expected.hpp"

#include <chrono>
#include <string>
#include <string_view>

namespace warren {

expected<std::chrono::milliseconds> parse_duration(std::string_view text);
std::string format_duration(std::chrono::milliseconds d);

} // namespace warren
