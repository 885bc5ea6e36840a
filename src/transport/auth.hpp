// Server-side authentication helpers: constant-time token comparison and a
// per-source failure limiter (pure; takes `now`, tested on a manual clock).
// After k_max_failures bad tokens from one address within k_window, that
// address is refused without a check until the window passes, so a token
// cannot be guessed at line rate. Memory stays bounded: at most k_max_sources
// addresses are tracked, oldest forgotten first.
#pragma once

#include "core/clock.hpp"

#include <chrono>
#include <map>
#include <string>
#include <string_view>

namespace warren::transport {

/// Compares in time independent of where the strings differ (and of their lengths).
bool token_equal(std::string_view a, std::string_view b);

class auth_limiter {
 public:
  static constexpr int k_max_failures = 5;
  static constexpr std::chrono::seconds k_window{60};
  static constexpr std::size_t k_max_sources = 4096;

  /// Whether this source may try now.
  bool allowed(const std::string& source, time_point now);
  void record_failure(const std::string& source, time_point now);
  void record_success(const std::string& source);
  std::size_t tracked() const { return sources_.size(); }

 private:
  struct entry {
    int failures = 0;
    time_point window_start;
  };
  std::map<std::string, entry> sources_;
};

} // namespace warren::transport
