// When the tunnel client dials next: the reconnect schedule. Pure (takes
// `now` and a random source), tested on a manual clock
// (tests/tunnel/reconnect_test.cpp).
//
//   why the last tunnel or dial ended   next attempt
//   ----------------------------------  -------------------------------------
//   drained (GOAWAY "closed": the       at once (the old tunnel's streams
//   server stops or restarts)           finish on it meanwhile); at most one
//                                       such immediate redial per stable
//                                       period, then the usual backoff
//   lost (no GOAWAY), dial failed,      backoff: full jitter in [0, ceiling],
//   refused (any other GOAWAY code,     the ceiling doubling from 250 ms to
//   e.g. too many clients)              30 s
//
// While local connections wait for the tunnel, one that arrived since the
// last attempt started is served by an attempt at once, and otherwise the
// delay is cut to half of what the earliest of them has left of its wait,
// so each waiting connection sees attempts within its --wait-tunnel. In
// every case attempts start at least k_min_gap apart: connections that keep
// arriving while the server is down make at most two attempts per second.
// A tunnel up (authenticated) for k_stable resets the backoff; one the
// server refuses after its handshake does not, however long it lasted.
#pragma once

#include "core/clock.hpp"
#include "tunnel/backoff.hpp"

#include <algorithm>
#include <chrono>
#include <optional>

namespace warren::tunnel {

enum class tunnel_end {
  dial_failed, // no tunnel came up
  lost,        // an established tunnel closed without GOAWAY
  drained,     // GOAWAY with code "closed": the server drains (stops, restarts)
  refused,     // GOAWAY with another code: too many clients, an error
};

/// Local connections waiting for a tunnel.
struct waiting_connections {
  time_point earliest_deadline; // when the first of them gives up
  time_point latest_arrival;    // when the newest of them came
};

class reconnect_schedule {
 public:
  static constexpr std::chrono::milliseconds k_min_gap{500};
  static constexpr std::chrono::milliseconds k_stable{5'000};
  static constexpr std::chrono::milliseconds k_base{250};
  static constexpr std::chrono::milliseconds k_cap{30'000};

  /// A dial starts.
  void attempting(time_point now) {
    last_attempt_ = now;
    attempted_ = true;
  }
  /// A dial gave an authenticated tunnel.
  void connected(time_point now) { backoff_.connected(now); }

  /// The dial or the tunnel ended: plans the next attempt.
  template <class Rng>
  void ended(tunnel_end why, time_point now, Rng& rng) {
    if (why == tunnel_end::refused)
      backoff_.refused();
    else if (why != tunnel_end::dial_failed)
      backoff_.disconnected(now);
    if (why == tunnel_end::drained && (!immediate_ || now - *immediate_ >= k_stable)) {
      immediate_ = now;
      planned_ = now;
      return;
    }
    planned_ = now + backoff_.next(rng);
  }

  /// When to dial next, given the local connections waiting (if any).
  time_point next_attempt(time_point now, const std::optional<waiting_connections>& waiting) const {
    time_point at = planned_;
    if (waiting) {
      if (!attempted_ || waiting->latest_arrival >= last_attempt_)
        at = now;
      else
        at = std::min(at, now + (waiting->earliest_deadline - now) / 2);
    }
    if (attempted_)
      at = std::max(at, last_attempt_ + k_min_gap);
    return at;
  }

  /// Something that made the last failures likely changed (a new token):
  /// the next attempt need not wait for the backoff (only the minimum gap).
  void redial_now(time_point now) { planned_ = std::min(planned_, now); }

  int attempt() const { return backoff_.attempt(); }
  std::chrono::milliseconds ceiling() const { return backoff_.ceiling(); }

 private:
  backoff backoff_{k_base, k_cap, k_stable};
  time_point planned_{};
  time_point last_attempt_{};
  bool attempted_ = false;
  std::optional<time_point> immediate_; // the last immediate redial after a drain
};

} // namespace warren::tunnel
