// Time seam. Logic that depends on time (Happy Eyeballs delays, UDP idle
// expiry, later ping timeouts and backoff) takes a time_point argument instead
// of reading a clock, so tests drive it with manual_clock and never sleep.
#pragma once

#include <chrono>

namespace warren {

using steady_clock = std::chrono::steady_clock;
using time_point = steady_clock::time_point;
using duration = steady_clock::duration;

/// A clock that only moves when told to. Not thread-safe; for tests.
class manual_clock {
 public:
  explicit manual_clock(time_point start = time_point{} + std::chrono::hours(1)) : now_(start) {}
  time_point now() const noexcept { return now_; }
  void advance(duration d) noexcept { now_ += d; }
  void set(time_point t) noexcept { now_ = t; }

 private:
  time_point now_;
};

inline long long to_ms(duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

} // namespace warren
