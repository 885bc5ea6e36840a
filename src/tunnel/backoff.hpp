// Reconnect delays: exponential backoff with full jitter (a uniform delay in
// [0, min(cap, base * 2^attempt)]) so many clients dropped at once do not
// return in step; reset once a connection has stayed up for a stable period.
// Pure: takes `now` and a random source; tested on a manual clock.
#pragma once

#include "core/clock.hpp"

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>

namespace warren::tunnel {

class backoff {
 public:
  explicit backoff(std::chrono::milliseconds base = std::chrono::milliseconds(250),
                   std::chrono::milliseconds cap = std::chrono::seconds(30),
                   std::chrono::milliseconds stable = std::chrono::seconds(60))
      : base_(base), cap_(cap), stable_(stable) {}

  /// The delay before the next attempt; counts the attempt.
  template <class Rng>
  std::chrono::milliseconds next(Rng& rng) {
    const auto ceiling = this->ceiling();
    ++attempt_;
    std::uniform_int_distribution<long long> pick(0, ceiling.count());
    return std::chrono::milliseconds(pick(rng));
  }

  /// The upper bound of the next delay.
  std::chrono::milliseconds ceiling() const {
    const int shift = std::min(attempt_, 20);
    return std::min<std::chrono::milliseconds>(cap_, base_ * (1LL << shift));
  }

  void connected(time_point now) {
    connected_at_ = now;
    connected_ = true;
  }
  void disconnected(time_point now) {
    if (connected_ && now - connected_at_ >= stable_)
      attempt_ = 0;
    connected_ = false;
  }
  /// The connection was refused after it came up (the server's GOAWAY
  /// "too many clients"): however long it lasted, it does not reset.
  void refused() { connected_ = false; }
  int attempt() const { return attempt_; }

 private:
  std::chrono::milliseconds base_;
  std::chrono::milliseconds cap_;
  std::chrono::milliseconds stable_;
  int attempt_ = 0;
  time_point connected_at_{}; // valid when connected_
  bool connected_ = false;
};

} // namespace warren::tunnel
