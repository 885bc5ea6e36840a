// Timing rules of a mux session as pure classes that take `now` (tested on a
// manual clock):
//  - window_tuner: receive-window credit. Credit is returned once half the
//    window has been consumed; when a whole window is consumed in less than
//    two round trips the grant doubles (up to max_window), so one stream can
//    fill a long fat path while a stalled reader pins at most one window.
//  - liveness: PING every interval; a peer silent for 7/4 of the interval,
//    checked every interval/4, is dead — noticed within 2x the interval even
//    when the OS reports nothing.
//  - rtt_estimator: the round trip from our PINGs and their PONGs (the PING
//    carries its send time; the PONG echoes it): the last sample and a
//    smoothed value as TCP's SRTT (RFC 6298: the first sample, then 7/8 old
//    + 1/8 new), which window tuning and the metrics read.
#pragma once

#include "core/clock.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>

namespace warren::wire {

class window_tuner {
 public:
  window_tuner(std::uint32_t initial, std::uint32_t max) : window_(initial), max_(std::max(initial, max)) {}

  /// The application consumed `n` bytes; returns the WINDOW increment to send, if any.
  /// `may_grow` false (the session's memory budget is spent) keeps the window as is.
  std::optional<std::uint32_t> on_consumed(std::uint32_t n, time_point now, duration srtt, bool may_grow = true) {
    unacked_ += n;
    if (unacked_ < window_ / 2)
      return std::nullopt;
    std::uint64_t increment = unacked_;
    if (may_grow && updated_ && srtt > duration::zero() && now - last_update_ < srtt && window_ < max_) {
      // Half a window per round trip or faster: the window limits throughput.
      const std::uint32_t grown = std::min<std::uint64_t>(std::uint64_t{window_} * 2, max_);
      increment += grown - window_;
      window_ = grown;
    }
    unacked_ = 0;
    last_update_ = now;
    updated_ = true;
    return static_cast<std::uint32_t>(increment);
  }

  std::uint32_t window() const { return window_; }

 private:
  std::uint32_t window_;
  std::uint32_t max_;
  std::uint64_t unacked_ = 0;
  time_point last_update_{}; // valid when updated_ (no std::optional: GCC 12 -O2 false warnings)
  bool updated_ = false;
};

class liveness {
 public:
  enum class action { none, send_ping, dead };

  liveness(duration interval, time_point now) : interval_(interval), last_rx_(now), last_ping_(now) {}

  duration tick() const { return interval_ / 4; }
  void on_receive(time_point now) { last_rx_ = now; }

  action on_tick(time_point now) {
    if (now - last_rx_ >= interval_ * 7 / 4)
      return action::dead;
    if (now - last_ping_ >= interval_) {
      last_ping_ = now;
      return action::send_ping;
    }
    return action::none;
  }

  duration silent_for(time_point now) const { return now - last_rx_; }

 private:
  duration interval_;
  time_point last_rx_;
  time_point last_ping_;
};

class rtt_estimator {
 public:
  /// A PONG echoed the PING sent at `sent`; it arrived at `now`. A sample
  /// from the future (a forged or garbled echo) is ignored: false.
  bool on_pong(time_point sent, time_point now) {
    if (sent > now)
      return false;
    const auto sample = std::chrono::duration_cast<std::chrono::microseconds>(now - sent);
    last_ = sample;
    srtt_ = samples_ == 0 ? sample : (srtt_ * 7 + sample) / 8;
    ++samples_;
    return true;
  }

  std::chrono::microseconds smoothed() const { return srtt_; } // 0 before the first sample
  std::chrono::microseconds last() const { return last_; }
  std::uint64_t samples() const { return samples_; }

 private:
  std::chrono::microseconds srtt_{0};
  std::chrono::microseconds last_{0};
  std::uint64_t samples_ = 0;
};

} // namespace warren::wire
