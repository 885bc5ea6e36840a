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
//
// Refused credentials are slow: every refused token counts against all
// clients of our address at the server's failure limiter (5 per 60 s,
// then HTTP 429 for everyone there). After a refused token (the server's
// token changed under a running client) the next attempt waits at least
// k_refused_gap (the backoff when longer); after a 429 ("TM") the
// server's Retry-After (at most k_max_retry_after; k_limited_default when
// not said). Waiting local connections do not bring these forward (they
// are refused at their --wait-tunnel); a new token (SIGHUP) does: one
// attempt at once.
#pragma once

#include "core/clock.hpp"
#include "tunnel/backoff.hpp"

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>

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
  static constexpr std::chrono::milliseconds k_refused_gap{20'000};
  static constexpr std::chrono::seconds k_max_retry_after{120};
  static constexpr std::chrono::seconds k_limited_default{60};

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
    held_ = false;
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

  /// A dial the server refused: our token, or (`limited`) our address over
  /// its failure limit, with its Retry-After (0: not said). Plans a slow
  /// attempt that waiting connections do not bring forward.
  template <class Rng>
  void refused_credentials(bool limited, std::chrono::seconds retry_after, time_point now, Rng& rng) {
    std::chrono::milliseconds wait = std::max<std::chrono::milliseconds>(k_refused_gap, backoff_.next(rng));
    if (limited) {
      const auto said = retry_after.count() > 0 ? std::min(retry_after, k_max_retry_after) : k_limited_default;
      std::uniform_int_distribution<long long> spread(0, 1000); // clients refused together do not return in step
      wait = std::chrono::milliseconds(said) + std::chrono::milliseconds(spread(rng));
    }
    planned_ = now + wait;
    held_ = true;
  }

  /// When to dial next, given the local connections waiting (if any).
  time_point next_attempt(time_point now, const std::optional<waiting_connections>& waiting) const {
    time_point at = planned_;
    if (waiting && !held_) {
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
  void redial_now(time_point now) {
    planned_ = std::min(planned_, now);
    held_ = false;
  }
  /// Whether the planned attempt waits out a refusal (refused_credentials()).
  bool held() const { return held_; }

  int attempt() const { return backoff_.attempt(); }
  std::chrono::milliseconds ceiling() const { return backoff_.ceiling(); }

 private:
  backoff backoff_{k_base, k_cap, k_stable};
  time_point planned_{};
  time_point last_attempt_{};
  bool attempted_ = false;
  bool held_ = false; // refused_credentials(): waiting connections do not bring the attempt forward
  std::optional<time_point> immediate_; // the last immediate redial after a drain
};

} // namespace warren::tunnel
