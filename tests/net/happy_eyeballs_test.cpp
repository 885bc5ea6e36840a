// The Happy Eyeballs state machine on a manual clock: every delay of
// RFC 8305 is checked to the millisecond without sleeping.
#include "net/happy_eyeballs.hpp"

#include <boost/asio/error.hpp>
#include <gtest/gtest.h>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::net;
using he = happy_eyeballs;
namespace ip = boost::asio::ip;

namespace {

ip::address a(const char* text) {
  return ip::make_address(text);
}

struct fixture : ::testing::Test {
  manual_clock clock;

  std::vector<he::start_attempt> starts(const he::actions& acts) {
    std::vector<he::start_attempt> out;
    for (auto& x : acts)
      if (auto* s = std::get_if<he::start_attempt>(&x))
        out.push_back(*s);
    return out;
  }
  std::vector<std::size_t> cancels(const he::actions& acts) {
    std::vector<std::size_t> out;
    for (auto& x : acts)
      if (auto* c = std::get_if<he::cancel_attempt>(&x))
        out.push_back(c->id);
    return out;
  }
  std::optional<error_code> failure(const he::actions& acts) {
    for (auto& x : acts)
      if (auto* f = std::get_if<he::failed>(&x))
        return f->ec;
    return std::nullopt;
  }
  std::optional<std::size_t> winner(const he::actions& acts) {
    for (auto& x : acts)
      if (auto* w = std::get_if<he::succeeded>(&x))
        return w->id;
    return std::nullopt;
  }
  // Advance the clock to the machine's next wake-up and fire it.
  he::actions fire(he& m) {
    auto t = m.next_wakeup();
    EXPECT_TRUE(t.has_value());
    clock.set(*t);
    return m.on_timer(clock.now());
  }
};

} // namespace

TEST_F(fixture, AaaaFirstStartsIpv6AtOnceThenIpv4AfterAttemptDelay) {
  he m({}, clock.now());
  auto s = starts(m.on_resolved(clock.now(), ip_family::v6, {a("2001:db8::1")}, {}));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].address, a("2001:db8::1"));
  EXPECT_TRUE(starts(m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1")}, {})).empty());
  const auto t0 = clock.now();
  EXPECT_EQ(*m.next_wakeup(), t0 + 250ms);
  clock.advance(249ms);
  EXPECT_TRUE(starts(m.on_timer(clock.now())).empty()) << "no attempt before the attempt delay";
  auto second = starts(fire(m));
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].address, a("192.0.2.1"));
  EXPECT_EQ(clock.now() - t0, 250ms);
  // IPv4 wins: the IPv6 attempt is cancelled, nothing else starts.
  auto done = m.on_connected(clock.now(), second[0].id);
  EXPECT_EQ(winner(done), second[0].id);
  EXPECT_EQ(cancels(done), std::vector<std::size_t>{0});
  EXPECT_TRUE(m.finished());
  EXPECT_FALSE(m.next_wakeup());
  EXPECT_TRUE(m.on_timer(clock.now() + 10s).empty());
  EXPECT_TRUE(m.on_attempt_failed(clock.now(), 0, boost::asio::error::connection_refused).empty());
}

TEST_F(fixture, AFirstWaitsResolutionDelayForAaaa) {
  he m({}, clock.now());
  const auto t0 = clock.now();
  EXPECT_TRUE(starts(m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1")}, {})).empty());
  EXPECT_EQ(*m.next_wakeup(), t0 + 50ms);
  clock.advance(49ms);
  EXPECT_TRUE(starts(m.on_timer(clock.now())).empty());
  auto s = starts(fire(m));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].address, a("192.0.2.1"));
  EXPECT_EQ(clock.now() - t0, 50ms);
}

TEST_F(fixture, AaaaArrivingWithinResolutionDelayGoesFirst) {
  he m({}, clock.now());
  m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1")}, {});
  clock.advance(20ms);
  auto s = starts(m.on_resolved(clock.now(), ip_family::v6, {a("2001:db8::1")}, {}));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].address, a("2001:db8::1"));
  auto s2 = starts(fire(m));
  ASSERT_EQ(s2.size(), 1u);
  EXPECT_EQ(s2[0].address, a("192.0.2.1"));
}

TEST_F(fixture, LateAaaaJoinsTheRace) {
  he m({}, clock.now());
  m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1"), a("192.0.2.2")}, {});
  auto first = starts(fire(m)); // resolution delay over: IPv4 goes
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].address, a("192.0.2.1"));
  clock.advance(100ms);
  EXPECT_TRUE(starts(m.on_resolved(clock.now(), ip_family::v6, {a("2001:db8::1")}, {})).empty())
      << "a late answer waits for the attempt delay";
  auto next = starts(fire(m));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].address, a("2001:db8::1")) << "families alternate";
  auto last = starts(fire(m));
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].address, a("192.0.2.2"));
}

TEST_F(fixture, InterleavesFamiliesPreferredFirst) {
  he m({}, clock.now());
  m.on_resolved(clock.now(), ip_family::v6, {a("2001:db8::1"), a("2001:db8::2")}, {});
  m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1"), a("192.0.2.2")}, {});
  std::vector<ip::address> order;
  order.push_back(m.attempts().back().address);
  for (int i = 0; i < 3; ++i)
    for (auto& s : starts(fire(m)))
      order.push_back(s.address);
  EXPECT_EQ(order, (std::vector<ip::address>{a("2001:db8::1"), a("192.0.2.1"), a("2001:db8::2"), a("192.0.2.2")}));
}

TEST_F(fixture, FailureStartsNextAttemptAtOnce) {
  he m({}, clock.now());
  m.on_resolved(clock.now(), ip_family::v6, {a("2001:db8::1")}, {});
  m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1")}, {});
  clock.advance(3ms);
  auto s = starts(m.on_attempt_failed(clock.now(), 0, boost::asio::error::connection_refused));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].address, a("192.0.2.1"));
}

TEST_F(fixture, AllAttemptsFailingReportsTheLastError) {
  he m({}, clock.now());
  m.on_resolved(clock.now(), ip_family::v6, {a("2001:db8::1")}, {});
  m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1")}, {});
  m.on_attempt_failed(clock.now(), 0, boost::asio::error::network_unreachable);
  auto acts = m.on_attempt_failed(clock.now(), 1, boost::asio::error::connection_refused);
  ASSERT_TRUE(failure(acts));
  EXPECT_EQ(*failure(acts), boost::asio::error::connection_refused);
  EXPECT_TRUE(m.finished());
}

TEST_F(fixture, OverallTimeoutCancelsRunningAttempts) {
  he m({.timeout = 1000ms}, clock.now());
  m.on_resolved(clock.now(), ip_family::v6, {a("2001:db8::1")}, {});
  m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1")}, {});
  fire(m); // second attempt at 250 ms
  auto acts = fire(m);
  ASSERT_TRUE(failure(acts));
  EXPECT_EQ(*failure(acts), warren::errc::timed_out);
  EXPECT_EQ(cancels(acts).size(), 2u);
}

TEST_F(fixture, TimeoutWhileResolving) {
  he m({.timeout = 300ms}, clock.now());
  const auto t0 = clock.now();
  auto acts = fire(m);
  EXPECT_EQ(clock.now() - t0, 300ms);
  ASSERT_TRUE(failure(acts));
  EXPECT_EQ(*failure(acts), warren::errc::timed_out);
}

TEST_F(fixture, Ipv4OnlyNeverAsksOrTriesIpv6) {
  he m({.policy = family_policy::ipv4_only}, clock.now());
  EXPECT_FALSE(m.wants(ip_family::v6));
  EXPECT_TRUE(m.on_resolved(clock.now(), ip_family::v6, {a("2001:db8::1")}, {}).empty());
  auto s = starts(m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1")}, {}));
  ASSERT_EQ(s.size(), 1u) << "no resolution delay when only IPv4 is wanted";
  EXPECT_EQ(s[0].address, a("192.0.2.1"));
  auto acts = m.on_attempt_failed(clock.now(), 0, boost::asio::error::connection_refused);
  EXPECT_TRUE(failure(acts));
}

TEST_F(fixture, Ipv6OnlyIgnoresIpv4) {
  he m({.policy = family_policy::ipv6_only}, clock.now());
  EXPECT_FALSE(m.wants(ip_family::v4));
  auto acts = m.on_resolved(clock.now(), ip_family::v6, {}, {});
  ASSERT_TRUE(failure(acts)) << "no IPv6 address and IPv4 not allowed";
  EXPECT_EQ(*failure(acts), warren::errc::no_addresses);
}

TEST_F(fixture, PreferIpv4StartsIpv4FirstAndWaitsForA) {
  he m({.policy = family_policy::prefer_ipv4}, clock.now());
  EXPECT_TRUE(starts(m.on_resolved(clock.now(), ip_family::v6, {a("2001:db8::1")}, {})).empty());
  clock.advance(10ms);
  auto s = starts(m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1")}, {}));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].address, a("192.0.2.1"));
  auto s2 = starts(fire(m));
  ASSERT_EQ(s2.size(), 1u);
  EXPECT_EQ(s2[0].address, a("2001:db8::1"));
}

TEST_F(fixture, ResolverErrorIsReportedWhenNothingWasTried) {
  he m({}, clock.now());
  m.on_resolved(clock.now(), ip_family::v6, {}, boost::asio::error::host_not_found);
  auto acts = m.on_resolved(clock.now(), ip_family::v4, {}, boost::asio::error::host_not_found);
  ASSERT_TRUE(failure(acts));
  EXPECT_EQ(*failure(acts), boost::asio::error::host_not_found);
}

TEST_F(fixture, OneFamilyFailingToResolveDoesNotStopTheOther) {
  he m({}, clock.now());
  m.on_resolved(clock.now(), ip_family::v6, {}, boost::asio::error::host_not_found_try_again);
  auto s = starts(m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1")}, {}));
  ASSERT_EQ(s.size(), 1u);
}

TEST_F(fixture, CancelEndsEverything) {
  he m({}, clock.now());
  m.on_resolved(clock.now(), ip_family::v6, {a("2001:db8::1")}, {});
  auto acts = m.cancel(clock.now());
  EXPECT_EQ(cancels(acts), std::vector<std::size_t>{0});
  ASSERT_TRUE(failure(acts));
  EXPECT_EQ(*failure(acts), warren::errc::cancelled);
  EXPECT_TRUE(m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1")}, {}).empty()) << "no attempt after the end";
}

TEST_F(fixture, DuplicateAddressesAreTriedOnce) {
  he m({.policy = family_policy::ipv4_only}, clock.now());
  m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1"), a("192.0.2.1")}, {});
  auto acts = m.on_attempt_failed(clock.now(), 0, boost::asio::error::connection_refused);
  EXPECT_TRUE(failure(acts));
  EXPECT_EQ(m.attempts().size(), 1u);
}

TEST_F(fixture, ConfigurableAttemptDelay) {
  he m({.attempt_delay = 100ms}, clock.now());
  m.on_resolved(clock.now(), ip_family::v6, {a("2001:db8::1")}, {});
  m.on_resolved(clock.now(), ip_family::v4, {a("192.0.2.1")}, {});
  const auto t0 = clock.now();
  fire(m);
  EXPECT_EQ(clock.now() - t0, 100ms);
  EXPECT_EQ(m.attempts().size(), 2u);
}

TEST(FamilyPolicy, ParsesNames) {
  EXPECT_EQ(parse_family_policy("auto"), family_policy::automatic);
  EXPECT_EQ(parse_family_policy("prefer-ipv4"), family_policy::prefer_ipv4);
  EXPECT_EQ(parse_family_policy("ipv4"), family_policy::ipv4_only);
  EXPECT_EQ(parse_family_policy("ipv6"), family_policy::ipv6_only);
  EXPECT_FALSE(parse_family_policy("both"));
}
