// line_limiter (src/core/log_limiter.hpp) on a manual clock.
#include "core/log_limiter.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using warren::line_limiter;
using warren::manual_clock;

TEST(LineLimiter, LetsABurstThroughThenCountsWhatItLeavesOut) {
  manual_clock clock;
  line_limiter limit(3, 10s);
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(limit.allow(clock.now())) << i;
  for (int i = 0; i < 100; ++i)
    EXPECT_FALSE(limit.allow(clock.now())) << i;
  EXPECT_EQ(limit.left_out_total(), 100u);
  clock.advance(9999ms);
  EXPECT_FALSE(limit.allow(clock.now())) << "still inside the interval";
  clock.advance(1ms);
  EXPECT_TRUE(limit.allow(clock.now())) << "a new interval";
  EXPECT_EQ(limit.take_left_out(), 101u);
  EXPECT_EQ(limit.take_left_out(), 0u) << "taken";
  EXPECT_TRUE(limit.allow(clock.now()));
  EXPECT_TRUE(limit.allow(clock.now()));
  EXPECT_FALSE(limit.allow(clock.now()));
  EXPECT_EQ(limit.left_out_total(), 102u);
}

TEST(LineLimiter, AQuietSourceIsNeverHeldBack) {
  manual_clock clock;
  line_limiter limit(2, 1s);
  for (int i = 0; i < 50; ++i) {
    EXPECT_TRUE(limit.allow(clock.now())) << i;
    clock.advance(600ms);
  }
  EXPECT_EQ(limit.left_out_total(), 0u);
}
