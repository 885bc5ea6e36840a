// Tests of the reconnect backoff (src/tunnel/backoff.hpp) with a seeded
// std::mt19937_64 and a manual clock: the ceiling doubles from the base to
// the 30 s cap and stays there, every delay is drawn from [0, ceiling] with
// full jitter (spread across the whole range, not clustered at the top), a
// connection that stayed up for the stable period resets the attempt count
// and a shorter one does not.
#include "tunnel/backoff.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::tunnel;
using std::chrono::milliseconds;

namespace {

TEST(Backoff, CeilingDoublesToTheCap) {
  backoff b;
  std::mt19937_64 rng(1);
  const std::vector<milliseconds> expected = {250ms,  500ms,   1000ms,  2000ms,  4000ms,
                                              8000ms, 16000ms, 30000ms, 30000ms, 30000ms};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(b.ceiling(), expected[i]) << "attempt " << i;
    EXPECT_EQ(b.attempt(), static_cast<int>(i));
    b.next(rng);
  }
}

TEST(Backoff, StaysAtCapForever) {
  backoff b;
  std::mt19937_64 rng(2);
  for (int i = 0; i < 10'000; ++i) {
    const auto d = b.next(rng);
    ASSERT_GE(d, 0ms);
    ASSERT_LE(d, 30s) << "attempt " << i;
  }
  EXPECT_EQ(b.ceiling(), 30s);
  EXPECT_EQ(b.attempt(), 10'000);
}

TEST(Backoff, CustomBaseAndCap) {
  backoff b(100ms, 1s, 10s);
  std::mt19937_64 rng(3);
  std::vector<milliseconds> ceilings;
  for (int i = 0; i < 6; ++i) {
    ceilings.push_back(b.ceiling());
    b.next(rng);
  }
  EXPECT_EQ(ceilings, (std::vector<milliseconds>{100ms, 200ms, 400ms, 800ms, 1000ms, 1000ms}));
}

// Full jitter: for each attempt, delays fall in [0, ceiling] and cover the
// range (some below a quarter, some above three quarters, mean near half).
TEST(Backoff, FullJitterWithinCeiling) {
  std::mt19937_64 rng(42);
  for (int attempt = 0; attempt < 10; ++attempt) {
    backoff probe;
    for (int i = 0; i < attempt; ++i)
      probe.next(rng);
    const auto ceiling = probe.ceiling();
    std::vector<long long> samples;
    for (int i = 0; i < 2000; ++i) {
      backoff b = probe; // same state, fresh draw
      const auto d = b.next(rng);
      ASSERT_GE(d, 0ms);
      ASSERT_LE(d, ceiling) << "attempt " << attempt;
      samples.push_back(d.count());
    }
    const auto [lo, hi] = std::minmax_element(samples.begin(), samples.end());
    double mean = 0;
    for (auto s : samples)
      mean += static_cast<double>(s);
    mean /= static_cast<double>(samples.size());
    const auto c = static_cast<double>(ceiling.count());
    EXPECT_LT(static_cast<double>(*lo), c / 4) << "attempt " << attempt;
    EXPECT_GT(static_cast<double>(*hi), 3 * c / 4) << "attempt " << attempt;
    EXPECT_NEAR(mean, c / 2, c / 10) << "attempt " << attempt;
  }
}

TEST(Backoff, SameSeedSameDelays) {
  auto run = [](std::uint64_t seed) {
    backoff b;
    std::mt19937_64 rng(seed);
    std::vector<milliseconds> out;
    for (int i = 0; i < 20; ++i)
      out.push_back(b.next(rng));
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(Backoff, StableConnectionResets) {
  manual_clock clock;
  backoff b;
  std::mt19937_64 rng(4);
  for (int i = 0; i < 5; ++i)
    b.next(rng);
  ASSERT_EQ(b.attempt(), 5);
  b.connected(clock.now());
  clock.advance(60s);
  b.disconnected(clock.now());
  EXPECT_EQ(b.attempt(), 0);
  EXPECT_EQ(b.ceiling(), 250ms);
}

TEST(Backoff, ShortConnectionKeepsGrowing) {
  manual_clock clock;
  backoff b;
  std::mt19937_64 rng(5);
  for (int i = 0; i < 5; ++i)
    b.next(rng);
  b.connected(clock.now());
  clock.advance(59'999ms);
  b.disconnected(clock.now());
  EXPECT_EQ(b.attempt(), 5);
  EXPECT_EQ(b.ceiling(), 8s);
}

TEST(Backoff, DisconnectWithoutConnectDoesNotReset) {
  manual_clock clock;
  backoff b;
  std::mt19937_64 rng(6);
  for (int i = 0; i < 3; ++i)
    b.next(rng);
  b.connected(clock.now());
  clock.advance(120s);
  b.disconnected(clock.now()); // stable: resets
  ASSERT_EQ(b.attempt(), 0);
  for (int i = 0; i < 3; ++i)
    b.next(rng);
  clock.advance(120s);
  b.disconnected(clock.now()); // no connected() since: the old connection does not count twice
  EXPECT_EQ(b.attempt(), 3);
}

TEST(Backoff, CustomStablePeriod) {
  manual_clock clock;
  backoff b(250ms, 30s, 5s);
  std::mt19937_64 rng(7);
  b.next(rng);
  b.next(rng);
  b.connected(clock.now());
  clock.advance(4999ms);
  b.disconnected(clock.now());
  EXPECT_EQ(b.attempt(), 2);
  b.connected(clock.now());
  clock.advance(5s);
  b.disconnected(clock.now());
  EXPECT_EQ(b.attempt(), 0);
}

} // namespace
