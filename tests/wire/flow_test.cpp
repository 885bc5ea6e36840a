// Tests of the mux session's timing rules (src/wire/flow.hpp) on a manual
// clock: window_tuner returns credit once half the window is consumed, grows
// the window (doubling, up to the ceiling) only when updates come faster
// than the smoothed round trip, and never grants more than it should;
// liveness pings once per interval, declares a silent peer dead after 7/4 of
// the interval (so, ticking every interval/4, within 2x the interval from
// any phase), and any received byte restarts the silence.
#include "wire/flow.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::wire;

namespace {

constexpr std::uint32_t k_kib = 1024;

// ---- window_tuner -----------------------------------------------------------

TEST(WindowTuner, NoCreditBelowHalfWindow) {
  manual_clock clock;
  window_tuner t(256 * k_kib, 16u << 20);
  EXPECT_EQ(t.on_consumed(100 * k_kib, clock.now(), 10ms), std::nullopt);
  EXPECT_EQ(t.on_consumed(27 * k_kib, clock.now(), 10ms), std::nullopt); // 127 KiB: still below 128
  EXPECT_EQ(t.window(), 256 * k_kib);
}

TEST(WindowTuner, ReturnsEverythingConsumedAtHalfWindow) {
  manual_clock clock;
  window_tuner t(256 * k_kib, 16u << 20);
  EXPECT_EQ(t.on_consumed(100 * k_kib, clock.now(), 10ms), std::nullopt);
  // Crossing half the window returns all the unacknowledged bytes, not just half.
  EXPECT_EQ(t.on_consumed(40 * k_kib, clock.now(), 10ms), 140 * k_kib);
  // The count starts again from zero.
  EXPECT_EQ(t.on_consumed(127 * k_kib, clock.now(), 10ms), std::nullopt);
}

TEST(WindowTuner, FirstUpdateNeverGrows) {
  manual_clock clock;
  window_tuner t(256 * k_kib, 16u << 20);
  // No previous update to compare with: the grant stays at the initial window.
  EXPECT_EQ(t.on_consumed(128 * k_kib, clock.now(), 10ms), 128 * k_kib);
  EXPECT_EQ(t.window(), 256 * k_kib);
}

TEST(WindowTuner, DoublesWhenUpdatesComeFasterThanSrtt) {
  manual_clock clock;
  window_tuner t(256 * k_kib, 16u << 20);
  ASSERT_EQ(t.on_consumed(128 * k_kib, clock.now(), 10ms), 128 * k_kib);
  clock.advance(9ms); // half a window in less than one round trip
  // The increment carries the consumed bytes plus the growth of the window.
  EXPECT_EQ(t.on_consumed(128 * k_kib, clock.now(), 10ms), 128 * k_kib + 256 * k_kib);
  EXPECT_EQ(t.window(), 512 * k_kib);
}

TEST(WindowTuner, DoesNotGrowWhenUpdatesAreSlowerThanSrtt) {
  manual_clock clock;
  window_tuner t(256 * k_kib, 16u << 20);
  ASSERT_TRUE(t.on_consumed(128 * k_kib, clock.now(), 10ms));
  for (int i = 0; i < 10; ++i) {
    clock.advance(10ms); // exactly one round trip per half window: the reader, not the window, is the limit
    EXPECT_EQ(t.on_consumed(128 * k_kib, clock.now(), 10ms), 128 * k_kib);
  }
  EXPECT_EQ(t.window(), 256 * k_kib);
}

TEST(WindowTuner, DoesNotGrowWithoutAnRttSample) {
  manual_clock clock;
  window_tuner t(256 * k_kib, 16u << 20);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(t.on_consumed(128 * k_kib, clock.now(), duration::zero()), 128 * k_kib);
    clock.advance(1us);
  }
  EXPECT_EQ(t.window(), 256 * k_kib);
}

TEST(WindowTuner, GrowthIsCappedAtMax) {
  manual_clock clock;
  const std::uint32_t max = 1024 * k_kib;
  window_tuner t(256 * k_kib, max);
  std::uint32_t previous = t.window();
  std::vector<std::uint32_t> windows;
  for (int i = 0; i < 20; ++i) {
    auto inc = t.on_consumed(t.window() / 2, clock.now(), 10ms);
    ASSERT_TRUE(inc);
    EXPECT_LE(t.window(), max);
    EXPECT_TRUE(t.window() == previous || t.window() == 2 * previous) << "window grows only by doubling";
    previous = t.window();
    windows.push_back(t.window());
    clock.advance(1ms);
  }
  EXPECT_EQ(t.window(), max);
  // 256 KiB (first update) -> 512 -> 1024, then stays.
  EXPECT_EQ(windows[0], 256 * k_kib);
  EXPECT_EQ(windows[1], 512 * k_kib);
  EXPECT_EQ(windows[2], 1024 * k_kib);
  EXPECT_EQ(windows.back(), 1024 * k_kib);
  // Once capped, the increment is exactly what was consumed.
  EXPECT_EQ(t.on_consumed(max / 2, clock.now(), 10ms), max / 2);
}

TEST(WindowTuner, NoGrowthWhenTheSessionBudgetIsSpent) {
  manual_clock clock;
  window_tuner t(256 * k_kib, 16u << 20);
  ASSERT_TRUE(t.on_consumed(128 * k_kib, clock.now(), 10ms));
  clock.advance(1ms); // fast enough to grow...
  EXPECT_EQ(t.on_consumed(128 * k_kib, clock.now(), 10ms, false), 128 * k_kib) << "...but not allowed to";
  EXPECT_EQ(t.window(), 256 * k_kib);
  clock.advance(1ms);
  EXPECT_EQ(t.on_consumed(128 * k_kib, clock.now(), 10ms, true), 128 * k_kib + 256 * k_kib);
  EXPECT_EQ(t.window(), 512 * k_kib);
}

TEST(WindowTuner, MaxBelowInitialKeepsInitial) {
  manual_clock clock;
  window_tuner t(256 * k_kib, 64 * k_kib);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(t.on_consumed(128 * k_kib, clock.now(), 10ms), 128 * k_kib);
    clock.advance(1us);
  }
  EXPECT_EQ(t.window(), 256 * k_kib);
}

// The sender may have (initial + all increments - consumed) bytes in flight;
// that must equal the current window minus what is consumed but not yet
// acknowledged, at every step, for any consumption pattern.
TEST(WindowTuner, GrantedCreditMatchesWindow) {
  manual_clock clock;
  const std::uint32_t initial = 64 * k_kib;
  window_tuner t(initial, 4096 * k_kib);
  std::uint64_t granted = initial;
  std::uint64_t consumed = 0;
  std::uint64_t unacked = 0;
  const std::uint32_t sizes[] = {1, 1500, 16 * k_kib, 64 * k_kib, 7, 33 * k_kib, 200 * k_kib};
  for (int i = 0; i < 500; ++i) {
    const std::uint32_t n = sizes[i % std::size(sizes)];
    consumed += n;
    unacked += n;
    if (auto inc = t.on_consumed(n, clock.now(), 5ms)) {
      granted += *inc;
      unacked = 0;
    }
    ASSERT_EQ(granted - consumed, t.window() - unacked) << "step " << i;
    clock.advance(i % 3 == 0 ? 6ms : 1ms); // sometimes slower than srtt, sometimes faster
  }
  EXPECT_GT(t.window(), initial) << "the pattern includes fast updates: the window should have grown";
}

// ---- liveness ---------------------------------------------------------------

TEST(Liveness, TickIsAQuarterInterval) {
  manual_clock clock;
  liveness l(4s, clock.now());
  EXPECT_EQ(l.tick(), 1s);
}

TEST(Liveness, PingsOncePerIntervalWhileThePeerTalks) {
  manual_clock clock;
  liveness l(4s, clock.now());
  int pings = 0;
  for (int i = 1; i <= 40; ++i) { // 40 ticks = 40 s
    clock.advance(l.tick());
    const auto a = l.on_tick(clock.now());
    ASSERT_NE(a, liveness::action::dead) << "tick " << i;
    if (a == liveness::action::send_ping) {
      ++pings;
      EXPECT_EQ(i % 4, 0) << "a ping on tick " << i << ", not on an interval boundary";
    }
    l.on_receive(clock.now()); // the peer keeps answering
  }
  EXPECT_EQ(pings, 10);
}

TEST(Liveness, FirstPingAfterOneInterval) {
  manual_clock clock;
  liveness l(4s, clock.now());
  clock.advance(3999ms);
  EXPECT_EQ(l.on_tick(clock.now()), liveness::action::none);
  clock.advance(1ms);
  EXPECT_EQ(l.on_tick(clock.now()), liveness::action::send_ping);
  EXPECT_EQ(l.on_tick(clock.now()), liveness::action::none) << "one ping per interval, not per tick";
}

TEST(Liveness, DeadAfterSevenQuartersOfSilence) {
  manual_clock clock;
  const auto start = clock.now();
  liveness l(4s, start);
  clock.set(start + 7s - 1ms);
  EXPECT_NE(l.on_tick(clock.now()), liveness::action::dead);
  clock.set(start + 7s);
  EXPECT_EQ(l.on_tick(clock.now()), liveness::action::dead);
  EXPECT_EQ(l.silent_for(clock.now()), 7s);
}

// Whatever the phase between the last received byte and the tick schedule,
// a silent peer is noticed no later than 2x the interval after it went quiet,
// and never before 7/4 of it.
TEST(Liveness, DetectionWithinTwoIntervalsFromAnyPhase) {
  const auto interval = 4s;
  for (auto phase = 0ms; phase < 1000ms; phase += 50ms) {
    manual_clock clock;
    liveness l(interval, clock.now());
    // Ticks at k*tick(); the peer's last byte arrives `phase` after a tick.
    clock.advance(l.tick());
    ASSERT_NE(l.on_tick(clock.now()), liveness::action::dead);
    const auto last_rx = clock.now() + phase;
    l.on_receive(last_rx);
    std::optional<time_point> dead_at;
    for (int i = 0; i < 20 && !dead_at; ++i) {
      clock.advance(l.tick());
      if (l.on_tick(clock.now()) == liveness::action::dead)
        dead_at = clock.now();
    }
    ASSERT_TRUE(dead_at) << "phase " << phase.count();
    EXPECT_GE(*dead_at - last_rx, interval * 7 / 4) << "phase " << phase.count();
    EXPECT_LE(*dead_at - last_rx, interval * 2) << "phase " << phase.count();
  }
}

TEST(Liveness, ReceiveRestartsSilence) {
  manual_clock clock;
  const auto start = clock.now();
  liveness l(4s, start);
  clock.set(start + 6s);
  EXPECT_NE(l.on_tick(clock.now()), liveness::action::dead);
  l.on_receive(clock.now());
  EXPECT_EQ(l.silent_for(clock.now()), 0s);
  clock.set(start + 6s + 6999ms);
  EXPECT_NE(l.on_tick(clock.now()), liveness::action::dead);
  clock.set(start + 13s);
  EXPECT_EQ(l.on_tick(clock.now()), liveness::action::dead);
}

TEST(RttEstimator, FirstSampleIsTheSmoothedValue) {
  manual_clock clock;
  rtt_estimator r;
  EXPECT_EQ(r.smoothed(), 0us);
  EXPECT_EQ(r.samples(), 0u);
  const auto sent = clock.now();
  clock.advance(40ms);
  ASSERT_TRUE(r.on_pong(sent, clock.now()));
  EXPECT_EQ(r.smoothed(), 40ms);
  EXPECT_EQ(r.last(), 40ms);
  EXPECT_EQ(r.samples(), 1u);
}

TEST(RttEstimator, SmoothsSevenEighthsOldOneEighthNew) {
  manual_clock clock;
  rtt_estimator r;
  auto sent = clock.now();
  clock.advance(80ms);
  r.on_pong(sent, clock.now());
  sent = clock.now();
  clock.advance(16ms); // 7/8 * 80 + 1/8 * 16 = 72
  r.on_pong(sent, clock.now());
  EXPECT_EQ(r.smoothed(), 72ms);
  EXPECT_EQ(r.last(), 16ms);
  sent = clock.now();
  clock.advance(8ms); // 7/8 * 72 + 1/8 * 8 = 64
  r.on_pong(sent, clock.now());
  EXPECT_EQ(r.smoothed(), 64ms);
  EXPECT_EQ(r.last(), 8ms);
  EXPECT_EQ(r.samples(), 3u);
}

TEST(RttEstimator, AnEchoFromTheFutureIsIgnored) {
  manual_clock clock;
  rtt_estimator r;
  const auto sent = clock.now();
  clock.advance(10ms);
  r.on_pong(sent, clock.now());
  EXPECT_FALSE(r.on_pong(clock.now() + 1s, clock.now()));
  EXPECT_EQ(r.smoothed(), 10ms);
  EXPECT_EQ(r.last(), 10ms);
  EXPECT_EQ(r.samples(), 1u);
}

} // namespace
