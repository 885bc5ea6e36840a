// Tests of the reconnect schedule (src/tunnel/reconnect.hpp) on a manual
// clock: a drain redials at once (once per stable period), other ends back
// off; a local connection arriving while the client sleeps a long backoff
// gets an attempt at once, waiting ones get attempts within their wait, and
// attempts never start closer than the minimum gap; the backoff resets
// after a tunnel stable for 5 s, not after a shorter or a refused one.
#include "tunnel/reconnect.hpp"

#include <gtest/gtest.h>

#include <random>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::tunnel;

namespace {

struct fixture {
  manual_clock clock;
  reconnect_schedule s;
  std::mt19937_64 rng{11};

  /// Fails `n` dials in a row, each at its planned time (nobody waiting).
  void fail_dials(int n) {
    for (int i = 0; i < n; ++i) {
      clock.set(std::max(clock.now(), s.next_attempt(clock.now(), std::nullopt)));
      s.attempting(clock.now());
      s.ended(tunnel_end::dial_failed, clock.now(), rng);
    }
  }
  /// How long until the next attempt (0: now, or overdue).
  duration delay(const std::optional<waiting_connections>& w = std::nullopt) const {
    return std::max<duration>(s.next_attempt(clock.now(), w) - clock.now(), 0ms);
  }
};

TEST(Reconnect, FirstAttemptAtOnce) {
  fixture f;
  EXPECT_EQ(f.delay(), 0ms);
}

TEST(Reconnect, DialFailuresBackOffToTheCap) {
  fixture f;
  f.fail_dials(12);
  EXPECT_EQ(f.s.ceiling(), 30s);
  EXPECT_LE(f.delay(), 30s);
}

TEST(Reconnect, DrainRedialsAtOnce) {
  fixture f;
  f.fail_dials(8); // a large backoff before the tunnel came up
  f.clock.advance(40s);
  f.s.attempting(f.clock.now());
  f.s.connected(f.clock.now());
  f.clock.advance(2s); // up for less than the stable period: no reset
  f.s.ended(tunnel_end::drained, f.clock.now(), f.rng);
  EXPECT_EQ(f.delay(), 0ms);
  EXPECT_EQ(f.s.attempt(), 8) << "a drain does not count as a failed attempt";
}

TEST(Reconnect, DrainRightAfterTheDialWaitsTheMinimumGap) {
  fixture f;
  f.s.attempting(f.clock.now());
  f.s.connected(f.clock.now());
  f.clock.advance(100ms);
  f.s.ended(tunnel_end::drained, f.clock.now(), f.rng);
  EXPECT_EQ(f.delay(), 400ms);
}

TEST(Reconnect, RepeatedDrainsBackOff) {
  // A server that drains every tunnel at once: one immediate redial (no
  // backoff attempt counted) per stable period, the backoff otherwise.
  fixture f;
  const auto start = f.clock.now();
  int immediate = 0;
  for (int i = 0; i < 20; ++i) {
    f.clock.set(std::max(f.clock.now(), f.s.next_attempt(f.clock.now(), std::nullopt)));
    f.s.attempting(f.clock.now());
    f.s.connected(f.clock.now());
    f.clock.advance(10ms);
    const int before = f.s.attempt();
    f.s.ended(tunnel_end::drained, f.clock.now(), f.rng);
    if (f.s.attempt() == before)
      ++immediate;
  }
  const auto periods = (f.clock.now() - start) / reconnect_schedule::k_stable;
  EXPECT_LE(immediate, periods + 1);
  EXPECT_GE(f.s.attempt(), 20 - immediate);
  EXPECT_GE(f.clock.now() - start, 10s) << "20 drains in a row took no time: a hot loop";
}

TEST(Reconnect, RefusalGoawayBacksOff) {
  fixture f;
  f.fail_dials(4);
  const auto ceiling = f.s.ceiling();
  f.clock.advance(40s);
  f.s.attempting(f.clock.now());
  f.s.connected(f.clock.now());
  f.clock.advance(20s); // even a long-lived refused tunnel does not reset the backoff
  f.s.ended(tunnel_end::refused, f.clock.now(), f.rng);
  EXPECT_EQ(f.s.attempt(), 5);
  EXPECT_EQ(f.s.ceiling(), ceiling * 2);
}

TEST(Reconnect, StableTunnelResetsTheBackoff) {
  fixture f;
  f.fail_dials(8);
  f.clock.advance(40s);
  f.s.attempting(f.clock.now());
  f.s.connected(f.clock.now());
  f.clock.advance(reconnect_schedule::k_stable);
  f.s.ended(tunnel_end::lost, f.clock.now(), f.rng);
  EXPECT_EQ(f.s.attempt(), 1);
  EXPECT_LE(f.delay(), 250ms);
}

TEST(Reconnect, ShortTunnelKeepsTheBackoff) {
  // An authenticated tunnel the server drops at once (too many clients
  // without GOAWAY): no reset.
  fixture f;
  f.fail_dials(8);
  f.clock.advance(40s);
  f.s.attempting(f.clock.now());
  f.s.connected(f.clock.now());
  f.clock.advance(reconnect_schedule::k_stable - 1ms);
  f.s.ended(tunnel_end::lost, f.clock.now(), f.rng);
  EXPECT_EQ(f.s.attempt(), 9);
}

TEST(Reconnect, ConnectionArrivingDuringABackoffGetsAnAttemptAtOnce) {
  // The outage of issue 11: the client sleeps a long backoff; a local
  // connection comes; it must not wait for the backoff.
  fixture f;
  f.fail_dials(10);
  f.clock.advance(1s);
  ASSERT_GT(f.delay(), 1s) << "seed gives a long backoff";
  const waiting_connections w{f.clock.now() + 10s, f.clock.now()};
  EXPECT_EQ(f.delay(w), 0ms);
}

TEST(Reconnect, AttemptsWhileWaitingKeepTheMinimumGap) {
  fixture f;
  f.fail_dials(10);
  f.clock.advance(200ms); // the last attempt started 200 ms ago
  const waiting_connections w{f.clock.now() + 10s, f.clock.now()};
  EXPECT_EQ(f.delay(w), 300ms);
}

TEST(Reconnect, WaitingConnectionsSeeAttemptsWithinTheirWait) {
  // A connection that waits 10 s while every dial fails at once: each delay
  // is at most half of what it has left (and at least the gap), so it sees
  // several attempts before its deadline, the last one with time to spare.
  fixture f;
  f.fail_dials(10);
  f.clock.advance(30s);
  const auto arrival = f.clock.now();
  const waiting_connections w{arrival + 10s, arrival};
  int attempts = 0;
  time_point last{};
  for (;;) {
    const auto at = f.s.next_attempt(f.clock.now(), w);
    if (at >= w.earliest_deadline)
      break;
    f.clock.set(std::max(f.clock.now(), at));
    f.s.attempting(f.clock.now());
    f.s.ended(tunnel_end::dial_failed, f.clock.now(), f.rng);
    ++attempts;
    last = f.clock.now();
  }
  EXPECT_GE(attempts, 4);
  EXPECT_LE(attempts, 20) << "at most one attempt per 500 ms";
  EXPECT_GE(w.earliest_deadline - last, 0ms);
}

TEST(Reconnect, ArrivalsDoNotMakeAHotLoop) {
  // The server is down and a new local connection arrives every 10 ms for
  // 10 s: attempts start at least 500 ms apart.
  fixture f;
  int attempts = 0;
  time_point previous{};
  const auto start = f.clock.now();
  while (f.clock.now() - start < 10s) {
    const waiting_connections w{f.clock.now() + 10s, f.clock.now()};
    if (f.s.next_attempt(f.clock.now(), w) <= f.clock.now()) {
      if (attempts > 0) {
        EXPECT_GE(f.clock.now() - previous, reconnect_schedule::k_min_gap);
      }
      previous = f.clock.now();
      f.s.attempting(f.clock.now());
      f.s.ended(tunnel_end::dial_failed, f.clock.now(), f.rng);
      ++attempts;
    }
    f.clock.advance(10ms);
  }
  EXPECT_LE(attempts, 21);
  EXPECT_GE(attempts, 19);
}

TEST(Reconnect, NobodyWaitingKeepsThePlannedBackoff) {
  fixture f;
  f.fail_dials(10);
  const auto planned = f.s.next_attempt(f.clock.now(), std::nullopt);
  // Connections that waited through the last attempt and gave up: none left.
  EXPECT_EQ(f.s.next_attempt(f.clock.now(), std::nullopt), planned);
}

TEST(Reconnect, RedialNowSkipsTheBackoffNotTheGap) {
  // SIGHUP with a new token: the next dial need not wait out the backoff.
  fixture f;
  f.fail_dials(10);
  f.clock.advance(100ms);
  f.s.redial_now(f.clock.now());
  EXPECT_EQ(f.delay(), 400ms);
  f.clock.advance(1s);
  EXPECT_EQ(f.delay(), 0ms);
}

} // namespace

// Issue 11 review: a client whose token the server stopped accepting,
// driven by local connections at 2/s, tripped the server's failure limiter
// (5 per 60 s) and locked out every client of its address.
TEST(Reconnect, RefusedTokenWaitsAndWaitingConnectionsDoNotShortenIt) {
  fixture f;
  f.s.attempting(f.clock.now());
  f.s.refused_credentials(false, 0s, f.clock.now(), f.rng);
  EXPECT_TRUE(f.s.held());
  const waiting_connections w{f.clock.now() + 10s, f.clock.now() + 1s};
  f.clock.advance(1s); // a connection arrived after the attempt
  EXPECT_GE(f.delay(w), reconnect_schedule::k_refused_gap - 1s);
  EXPECT_LE(f.delay(w), reconnect_schedule::k_cap);
  // Whatever arrives, at most 60 s / k_refused_gap refusals per minute.
  int attempts = 0;
  for (auto t = 0ms; t < 60s; t += 100ms) {
    f.clock.advance(100ms);
    const waiting_connections now_waiting{f.clock.now() + 10s, f.clock.now()};
    if (f.s.next_attempt(f.clock.now(), now_waiting) <= f.clock.now()) {
      ++attempts;
      f.s.attempting(f.clock.now());
      f.s.refused_credentials(false, 0s, f.clock.now(), f.rng);
    }
  }
  EXPECT_LE(attempts, 3) << "under the server's 5 failures per 60 s";
}

TEST(Reconnect, TooManyFailuresHonoursRetryAfterBounded) {
  fixture f;
  f.s.attempting(f.clock.now());
  f.s.refused_credentials(true, 45s, f.clock.now(), f.rng);
  EXPECT_GE(f.delay(), 45s);
  EXPECT_LE(f.delay(), 46s);
  f.s.refused_credentials(true, 3000s, f.clock.now(), f.rng);
  EXPECT_GE(f.delay(), reconnect_schedule::k_max_retry_after);
  EXPECT_LE(f.delay(), reconnect_schedule::k_max_retry_after + 1s);
  f.s.refused_credentials(true, 0s, f.clock.now(), f.rng);
  EXPECT_GE(f.delay(), reconnect_schedule::k_limited_default) << "not said: the server's window";
}

TEST(Reconnect, NewTokenDialsAtOnceDespiteARefusal) {
  fixture f;
  f.s.attempting(f.clock.now());
  f.s.refused_credentials(true, 60s, f.clock.now(), f.rng);
  f.clock.advance(1s);
  f.s.redial_now(f.clock.now());
  EXPECT_FALSE(f.s.held());
  EXPECT_EQ(f.delay(), 0ms);
}
