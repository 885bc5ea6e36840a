// token_bucket (src/core/token_bucket.hpp) on a manual clock: the burst, the
// rate to the nanosecond, the cap on what a quiet source saves up, and the
// time a caller that is refused is told to wait until.
#include "core/token_bucket.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using warren::manual_clock;
using warren::token_bucket;

TEST(TokenBucket, ABurstAtOnceThenOneTokenPerInterval) {
  manual_clock clock;
  token_bucket bucket(100, 5); // one every 10 ms, 5 at once
  EXPECT_EQ(bucket.available(clock.now()), 5u) << "a new bucket is full";
  for (int i = 0; i < 5; ++i)
    EXPECT_TRUE(bucket.try_take(clock.now())) << i;
  EXPECT_FALSE(bucket.try_take(clock.now())) << "the burst is spent";
  EXPECT_EQ(bucket.ready_at(clock.now()), clock.now() + 10ms);
  clock.advance(9999us);
  EXPECT_FALSE(bucket.try_take(clock.now())) << "1 us early";
  EXPECT_EQ(bucket.ready_at(clock.now()), clock.now() + 1us);
  clock.advance(1us);
  EXPECT_TRUE(bucket.try_take(clock.now()));
  EXPECT_FALSE(bucket.try_take(clock.now()));
  clock.advance(25ms); // two tokens and half of a third
  EXPECT_EQ(bucket.available(clock.now()), 2u);
  EXPECT_TRUE(bucket.try_take(clock.now()));
  EXPECT_TRUE(bucket.try_take(clock.now()));
  EXPECT_FALSE(bucket.try_take(clock.now()));
  EXPECT_EQ(bucket.ready_at(clock.now()), clock.now() + 5ms) << "the half token counts";
}

TEST(TokenBucket, AQuietSourceSavesUpNoMoreThanTheBurst) {
  manual_clock clock;
  token_bucket bucket(10, 3);
  EXPECT_TRUE(bucket.try_take(clock.now()));
  clock.advance(1h);
  EXPECT_EQ(bucket.available(clock.now()), 3u);
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(bucket.try_take(clock.now())) << i;
  EXPECT_FALSE(bucket.try_take(clock.now()));
  EXPECT_EQ(bucket.ready_at(clock.now()), clock.now() + 100ms);
}

TEST(TokenBucket, ASteadyFloodGetsExactlyTheRate) {
  manual_clock clock;
  token_bucket bucket(256, 512);
  // A flood that asks every 100 us from 0 to 10 s gets the burst plus 10 s x 256.
  int taken = 0;
  for (int i = 0; i <= 100'000; ++i) {
    taken += bucket.try_take(clock.now()) ? 1 : 0;
    clock.advance(100us);
  }
  EXPECT_EQ(taken, 512 + 2560);
  // One that waits until ready_at each time gets one per 1/256 s, no drift.
  clock.set(bucket.ready_at(clock.now()));
  ASSERT_TRUE(bucket.try_take(clock.now()));
  const auto start = clock.now();
  for (int i = 0; i < 2560; ++i) {
    clock.set(bucket.ready_at(clock.now()));
    ASSERT_TRUE(bucket.try_take(clock.now())) << i;
  }
  EXPECT_EQ(clock.now() - start, 10s);
}

TEST(TokenBucket, RateZeroIsNoLimit) {
  manual_clock clock;
  token_bucket bucket(0, 0);
  EXPECT_TRUE(bucket.unlimited());
  for (int i = 0; i < 1'000'000; ++i)
    ASSERT_TRUE(bucket.try_take(clock.now()));
  EXPECT_EQ(bucket.ready_at(clock.now()), clock.now());
}
