// Tests of the server's authentication helpers (src/transport/auth.*):
// token comparison (equal, different, different lengths; an empty configured
// token never matches) and the per-source failure limiter on a manual
// clock: blocked after k_max_failures within the window, free again when
// the window has passed, cleared by a success, per source, and bounded in
// size with the oldest source forgotten first.
#include "transport/auth.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::transport;

namespace {

TEST(TokenEqual, Compares) {
  EXPECT_TRUE(token_equal("s3cret-token", "s3cret-token"));
  EXPECT_FALSE(token_equal("s3cret-token", "s3cret-tokeN"));
  EXPECT_FALSE(token_equal("X3cret-token", "s3cret-token"));
  EXPECT_FALSE(token_equal("s3cret", "s3cret-token")) << "a prefix";
  EXPECT_FALSE(token_equal("s3cret-token-and-more", "s3cret-token")) << "an extension";
  EXPECT_FALSE(token_equal("", "s3cret-token"));
  const std::string with_nul("a\0b", 3);
  EXPECT_TRUE(token_equal(with_nul, with_nul));
  EXPECT_FALSE(token_equal(std::string("a\0c", 3), with_nul)) << "bytes after a NUL count";
}

TEST(TokenEqual, EmptyConfiguredTokenNeverMatches) {
  // A server without a token must not accept an empty Authorization.
  EXPECT_FALSE(token_equal("", ""));
  EXPECT_FALSE(token_equal("anything", ""));
}

TEST(AuthLimiter, BlocksAfterMaxFailures) {
  manual_clock clock;
  auth_limiter l;
  const std::string src = "203.0.113.7";
  for (int i = 0; i < auth_limiter::k_max_failures; ++i) {
    EXPECT_TRUE(l.allowed(src, clock.now())) << "before failure " << i + 1;
    l.record_failure(src, clock.now());
    clock.advance(1s);
  }
  EXPECT_FALSE(l.allowed(src, clock.now()));
  EXPECT_TRUE(l.allowed("203.0.113.8", clock.now())) << "other sources are not affected";
  EXPECT_EQ(l.tracked(), 1u);
}

TEST(AuthLimiter, FourFailuresStillAllowed) {
  manual_clock clock;
  auth_limiter l;
  for (int i = 0; i < auth_limiter::k_max_failures - 1; ++i)
    l.record_failure("a", clock.now());
  EXPECT_TRUE(l.allowed("a", clock.now()));
}

TEST(AuthLimiter, WindowExpiryUnblocks) {
  manual_clock clock;
  const auto start = clock.now();
  auth_limiter l;
  for (int i = 0; i < auth_limiter::k_max_failures; ++i)
    l.record_failure("a", start);
  clock.set(start + auth_limiter::k_window - 1ms);
  EXPECT_FALSE(l.allowed("a", clock.now()));
  clock.set(start + auth_limiter::k_window);
  EXPECT_TRUE(l.allowed("a", clock.now()));
  EXPECT_EQ(l.tracked(), 0u) << "the expired entry is forgotten";
}

TEST(AuthLimiter, FailuresInANewWindowStartAgain) {
  manual_clock clock;
  const auto start = clock.now();
  auth_limiter l;
  for (int i = 0; i < auth_limiter::k_max_failures - 1; ++i)
    l.record_failure("a", start);
  // The window is fixed from the first failure: a failure after it starts a new count.
  clock.set(start + auth_limiter::k_window + 1s);
  l.record_failure("a", clock.now());
  EXPECT_TRUE(l.allowed("a", clock.now()));
  for (int i = 0; i < auth_limiter::k_max_failures - 2; ++i)
    l.record_failure("a", clock.now());
  EXPECT_TRUE(l.allowed("a", clock.now()));
  l.record_failure("a", clock.now());
  EXPECT_FALSE(l.allowed("a", clock.now()));
}

TEST(AuthLimiter, SuccessClears) {
  manual_clock clock;
  auth_limiter l;
  for (int i = 0; i < auth_limiter::k_max_failures - 1; ++i)
    l.record_failure("a", clock.now());
  l.record_success("a");
  EXPECT_EQ(l.tracked(), 0u);
  for (int i = 0; i < auth_limiter::k_max_failures - 1; ++i)
    l.record_failure("a", clock.now());
  EXPECT_TRUE(l.allowed("a", clock.now())) << "the count restarted after the success";
}

TEST(AuthLimiter, BoundedSizeForgetsOldestFirst) {
  manual_clock clock;
  auth_limiter l;
  // The first source fails early and gets blocked...
  for (int i = 0; i < auth_limiter::k_max_failures; ++i)
    l.record_failure("first", clock.now());
  ASSERT_FALSE(l.allowed("first", clock.now()));
  // ...then many others fail once each.
  for (std::size_t i = 0; i < auth_limiter::k_max_sources + 100; ++i) {
    clock.advance(1ms);
    l.record_failure("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256), clock.now());
    ASSERT_LE(l.tracked(), auth_limiter::k_max_sources);
  }
  EXPECT_EQ(l.tracked(), auth_limiter::k_max_sources);
  EXPECT_TRUE(l.allowed("first", clock.now())) << "the oldest entry was not the one forgotten";
  // The most recent ones are still tracked: four more failures block the newest.
  const std::string newest = "10.0." + std::to_string((auth_limiter::k_max_sources + 99) / 256) + "." +
                             std::to_string((auth_limiter::k_max_sources + 99) % 256);
  for (int i = 0; i < auth_limiter::k_max_failures - 1; ++i)
    l.record_failure(newest, clock.now());
  EXPECT_FALSE(l.allowed(newest, clock.now()));
}

} // namespace
