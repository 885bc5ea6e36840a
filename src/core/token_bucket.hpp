// token_bucket: bounds how often a source (a tunnel client) may cause a
// costly piece of work — the server uses one per tunnel for stream opens,
// each of which costs a connect. `rate` tokens per second flow in, at most
// `burst` are kept; taking one that is not there yet is refused and the
// caller learns when it will be (`ready_at`), so it can wait instead of
// refusing: the session stops reading the tunnel until then.
//
// Kept as one time point (GCRA, the "virtual scheduling" form of a token
// bucket): `empty_at_` is when the bucket was, or will be, empty. A token is
// there when now - empty_at_ >= interval; the bucket never holds more than
// `burst`, i.e. empty_at_ never lags now by more than burst x interval.
// Integer time, so no drift however long it runs. Pure: takes `now`
// (core/clock.hpp), tested on a manual clock. Not thread-safe.
#pragma once

#include "core/clock.hpp"

#include <algorithm>
#include <cstdint>

namespace warren {

class token_bucket {
 public:
  /// rate: tokens per second (0: no limit, every take succeeds); burst: at
  /// most this many at once (at least 1). A new bucket is full.
  token_bucket(std::uint32_t rate, std::uint32_t burst)
      : interval_(rate == 0 ? duration::zero() : duration(std::chrono::seconds(1)) / rate),
        depth_(interval_ * std::max<std::uint32_t>(burst, 1)) {}

  bool unlimited() const { return interval_ == duration::zero(); }

  /// Takes a token if one is there now.
  bool try_take(time_point now) {
    if (unlimited())
      return true;
    const auto from = floor(now);
    if (now - from < interval_)
      return false;
    empty_at_ = from + interval_;
    return true;
  }

  /// When the next token is there (now, if one is).
  time_point ready_at(time_point now) const {
    if (unlimited())
      return now;
    return std::max(now, floor(now) + interval_);
  }

  /// Tokens there now (for tests and logs).
  std::uint64_t available(time_point now) const {
    if (unlimited())
      return UINT64_MAX;
    return static_cast<std::uint64_t>((now - floor(now)) / interval_);
  }

 private:
  /// empty_at_, but no earlier than a full bucket's: what was not taken
  /// beyond `burst` is lost.
  time_point floor(time_point now) const { return std::max(empty_at_, now - depth_); }

  duration interval_;
  duration depth_;
  time_point empty_at_ = time_point::min();
};

} // namespace warren
