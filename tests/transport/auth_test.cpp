// Tests of the server's authentication helpers (src/transport/auth.*):
// token comparison (equal, different, different lengths; an empty configured
// token never matches) and the per-source failure limiter on a manual
// clock: blocked after k_max_failures within the window, free again when
// the window has passed, not cleared by a success, per source (an IPv4
// address or an IPv6 /64), and bounded in size with the oldest source
// forgotten first; the Bearer scheme of the Authorization header.
#include "transport/auth.hpp"
#include "transport/http_auth.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::transport;
namespace ip = boost::asio::ip;

namespace {

ip::address a(const std::string& text) { return ip::make_address(text); }

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
  const auto src = a("203.0.113.7");
  for (int i = 0; i < auth_limiter::k_max_failures; ++i) {
    EXPECT_TRUE(l.allowed(src, clock.now())) << "before failure " << i + 1;
    l.record_failure(src, clock.now());
    clock.advance(1s);
  }
  EXPECT_FALSE(l.allowed(src, clock.now()));
  EXPECT_TRUE(l.allowed(a("203.0.113.8"), clock.now())) << "other sources are not affected";
  EXPECT_EQ(l.tracked(), 1u);
}

TEST(AuthLimiter, FourFailuresStillAllowed) {
  manual_clock clock;
  auth_limiter l;
  for (int i = 0; i < auth_limiter::k_max_failures - 1; ++i)
    l.record_failure(a("198.51.100.1"), clock.now());
  EXPECT_TRUE(l.allowed(a("198.51.100.1"), clock.now()));
}

TEST(AuthLimiter, WindowExpiryUnblocks) {
  manual_clock clock;
  const auto start = clock.now();
  auth_limiter l;
  for (int i = 0; i < auth_limiter::k_max_failures; ++i)
    l.record_failure(a("198.51.100.1"), start);
  clock.set(start + auth_limiter::k_window - 1ms);
  EXPECT_FALSE(l.allowed(a("198.51.100.1"), clock.now()));
  clock.set(start + auth_limiter::k_window);
  EXPECT_TRUE(l.allowed(a("198.51.100.1"), clock.now()));
  EXPECT_EQ(l.tracked(), 0u) << "the expired entry is forgotten";
}

TEST(AuthLimiter, FailuresInANewWindowStartAgain) {
  manual_clock clock;
  const auto start = clock.now();
  auth_limiter l;
  for (int i = 0; i < auth_limiter::k_max_failures - 1; ++i)
    l.record_failure(a("198.51.100.1"), start);
  // The window is fixed from the first failure: a failure after it starts a new count.
  clock.set(start + auth_limiter::k_window + 1s);
  l.record_failure(a("198.51.100.1"), clock.now());
  EXPECT_TRUE(l.allowed(a("198.51.100.1"), clock.now()));
  for (int i = 0; i < auth_limiter::k_max_failures - 2; ++i)
    l.record_failure(a("198.51.100.1"), clock.now());
  EXPECT_TRUE(l.allowed(a("198.51.100.1"), clock.now()));
  l.record_failure(a("198.51.100.1"), clock.now());
  EXPECT_FALSE(l.allowed(a("198.51.100.1"), clock.now()));
}

TEST(AuthLimiter, ASuccessDoesNotClearTheCount) {
  // Issue 10: a success from the same source cleared its failures, so a
  // peer with one credential could keep guessing another without limit.
  manual_clock clock;
  auth_limiter l;
  const auto src = a("198.51.100.1");
  for (int i = 0; i < auth_limiter::k_max_failures; ++i)
    l.record_failure(src, clock.now());
  EXPECT_FALSE(l.allowed(src, clock.now()));
  EXPECT_EQ(l.tracked(), 1u);
}

TEST(AuthLimiter, AnIpv6SourceIsItsSlash64) {
  // Issue 10: 200 guesses from 40 addresses of one /64 were all answered.
  manual_clock clock;
  auth_limiter l;
  for (int i = 0; i < auth_limiter::k_max_failures; ++i) {
    const auto src = a("2001:db8:1:2::" + std::to_string(i + 1));
    EXPECT_TRUE(l.allowed(src, clock.now())) << i;
    l.record_failure(src, clock.now());
  }
  EXPECT_FALSE(l.allowed(a("2001:db8:1:2:ffff::9"), clock.now())) << "another address of the same /64";
  EXPECT_TRUE(l.allowed(a("2001:db8:1:3::1"), clock.now())) << "the next /64 is another source";
  EXPECT_EQ(l.tracked(), 1u);
}

TEST(AuthLimiter, AMappedIpv4SourceIsItsIpv4Address) {
  manual_clock clock;
  auth_limiter l;
  for (int i = 0; i < auth_limiter::k_max_failures; ++i)
    l.record_failure(a("::ffff:203.0.113.9"), clock.now());
  EXPECT_FALSE(l.allowed(a("203.0.113.9"), clock.now()));
  EXPECT_TRUE(l.allowed(a("203.0.113.10"), clock.now())) << "IPv4 sources are single addresses";
}

TEST(BearerToken, SchemeIsCaseInsensitive) {
  // Issue 10: `Authorization: bearer ...` was refused and counted as a failure.
  for (const char* header : {"Bearer tok", "bearer tok", "BEARER tok", "bEaReR tok", "Bearer   tok", " Bearer tok ",
                             "Bearer\ttok"})
    EXPECT_EQ(bearer_token(header), std::optional<std::string_view>("tok")) << header;
}

TEST(BearerToken, OtherSchemesAndMalformedHeadersGiveNothing) {
  for (const char* header : {"", "Bearer", "Bearer ", "Bearertok", "Basic dXNlcjpwYXNz", "Bearer_ tok", "Bearx tok"})
    EXPECT_EQ(bearer_token(header), std::nullopt) << "'" << header << "'";
}

TEST(AuthLimiter, BoundedSizeForgetsOldestFirst) {
  manual_clock clock;
  auth_limiter l;
  // The first source fails early and gets blocked...
  for (int i = 0; i < auth_limiter::k_max_failures; ++i)
    l.record_failure(a("192.0.2.1"), clock.now());
  ASSERT_FALSE(l.allowed(a("192.0.2.1"), clock.now()));
  // ...then many others fail once each.
  for (std::size_t i = 0; i < auth_limiter::k_max_sources + 100; ++i) {
    clock.advance(1ms);
    l.record_failure(a("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256)), clock.now());
    ASSERT_LE(l.tracked(), auth_limiter::k_max_sources);
  }
  EXPECT_EQ(l.tracked(), auth_limiter::k_max_sources);
  EXPECT_TRUE(l.allowed(a("192.0.2.1"), clock.now())) << "the oldest entry was not the one forgotten";
  // The most recent ones are still tracked: four more failures block the newest.
  const auto newest = a("10.0." + std::to_string((auth_limiter::k_max_sources + 99) / 256) + "." +
                        std::to_string((auth_limiter::k_max_sources + 99) % 256));
  for (int i = 0; i < auth_limiter::k_max_failures - 1; ++i)
    l.record_failure(newest, clock.now());
  EXPECT_FALSE(l.allowed(newest, clock.now()));
}

// The users table: a token maps to its user's name, an unknown or empty one
// to none; a digest from a users file matches its token.
TEST(UserTableTest, MatchesTokensToNames) {
  user_table t;
  t.add("alice", user_table::hash("alice-token"));
  const auto d = user_table::parse_digest("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08");
  ASSERT_TRUE(d);
  t.add("bob", *d); // the SHA-256 of "test"
  EXPECT_EQ(t.match("alice-token"), "alice");
  EXPECT_EQ(t.match("test"), "bob");
  EXPECT_FALSE(t.match("alice-tokeN"));
  EXPECT_FALSE(t.match("alice"));
  EXPECT_FALSE(t.match(""));
  EXPECT_FALSE(user_table::single("x", "")->match("")) << "an empty token never matches";
  EXPECT_FALSE(user_table::parse_digest("9f86"));
  EXPECT_FALSE(user_table::parse_digest("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0g"));
  ASSERT_NE(t.find("bob"), nullptr);
  EXPECT_EQ(t.find("carol"), nullptr);
}

// Tokens of revoked users are told apart from wrong ones (the server does
// not count them as guesses), and never match as users.
TEST(UserTableTest, RevokedTokensAreKnownButNotAccepted) {
  user_table t;
  t.add("alice", user_table::hash("alice-token"));
  EXPECT_FALSE(t.match_revoked("carol-token"));
  t.set_revoked({{"carol", user_table::hash("carol-token")}});
  EXPECT_FALSE(t.match("carol-token"));
  EXPECT_EQ(t.match_revoked("carol-token"), "carol");
  EXPECT_FALSE(t.match_revoked("alice-token"));
  EXPECT_FALSE(t.match_revoked(""));
  EXPECT_EQ(t.revoked().size(), 1u);
}

} // namespace

TEST(AuthLimiter, RetryAfterIsWhatIsLeftOfTheWindow) {
  // Issue 11 review: the 429's Retry-After, so a refused client waits it out.
  manual_clock clock;
  auth_limiter l;
  const auto src = a("198.51.100.7");
  for (int i = 0; i < auth_limiter::k_max_failures; ++i)
    l.record_failure(src, clock.now());
  EXPECT_EQ(l.retry_after(src, clock.now()), 60s);
  clock.advance(20500ms);
  EXPECT_EQ(l.retry_after(src, clock.now()), 40s) << "rounded up";
  clock.advance(39500ms);
  EXPECT_EQ(l.retry_after(src, clock.now()), 1s) << "never 0";
  EXPECT_EQ(l.retry_after(a("198.51.100.8"), clock.now()), 1s) << "an unknown source";
}

TEST(RetryAfter, DelaySecondsOnlyBounded) {
  EXPECT_EQ(parse_retry_after("42"), 42s);
  EXPECT_EQ(parse_retry_after(" 7\t"), 7s);
  EXPECT_EQ(parse_retry_after("999999"), 3600s);
  for (const char* bad : {"", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "12345678901", "4 2", "0x10"})
    EXPECT_EQ(parse_retry_after(bad), 0s) << bad;
}
