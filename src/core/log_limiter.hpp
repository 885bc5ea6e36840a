// line_limiter: bounds how many lines of one kind a source (a tunnel client)
// can make us log. Log volume is a resource like memory: a client that opens
// stream after stream to a refused target must not make the server write a
// line for each. At most `burst` lines per `interval` are let through; the
// rest are counted, so that the next line let through, or a summary when the
// source goes away, can say how many were left out. Pure: takes `now`
// (core/clock.hpp), tested on a manual clock. Not thread-safe.
#pragma once

#include "core/clock.hpp"

#include <cstddef>
#include <cstdint>

namespace warren {

class line_limiter {
 public:
  line_limiter(std::size_t burst, duration interval) : burst_(burst), interval_(interval) {}

  /// True if a line may be logged now; false if it is to be left out (and counted).
  bool allow(time_point now) {
    if (!started_ || now - window_start_ >= interval_) {
      started_ = true;
      window_start_ = now;
      in_window_ = 0;
    }
    if (in_window_ < burst_) {
      ++in_window_;
      return true;
    }
    ++left_out_;
    ++left_out_total_;
    return false;
  }

  /// Lines left out since the last call (for the next line let through).
  std::uint64_t take_left_out() {
    const auto n = left_out_;
    left_out_ = 0;
    return n;
  }

  /// Lines left out in all.
  std::uint64_t left_out_total() const { return left_out_total_; }

 private:
  std::size_t burst_;
  duration interval_;
  time_point window_start_{};
  bool started_ = false;
  std::size_t in_window_ = 0;
  std::uint64_t left_out_ = 0;
  std::uint64_t left_out_total_ = 0;
};

} // namespace warren
