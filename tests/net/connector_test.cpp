// The connector with real sockets on loopback. A listener with a full accept
// queue stands in for a black-holed address (SYNs dropped, no answer), so the
// Happy Eyeballs fallback is exercised without privileges; the network
// namespace version with real packet drops is tests/integration.
#include "net/connector.hpp"

#include "test_util.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <gtest/gtest.h>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::net;
namespace asio = boost::asio;
using asio::ip::tcp;
using test::v4_loopback;
using test::v6_loopback;

namespace {

struct connector : ::testing::Test {
  asio::io_context io;
  test::fake_resolver resolver;

  tcp::acceptor listen_on(const asio::ip::address& address, std::uint16_t port = 0) {
    tcp::acceptor a(io);
    const tcp::endpoint ep(address, port);
    a.open(ep.protocol());
    if (address.is_v6())
      a.set_option(asio::ip::v6_only(true));
    a.set_option(tcp::acceptor::reuse_address(true));
    a.bind(ep);
    a.listen();
    return a;
  }

  std::uint16_t closed_port(const asio::ip::address& address) {
    auto a = listen_on(address);
    return a.local_endpoint().port(); // closed when `a` goes
  }

  void both_answer() {
    resolver.script[ip_family::v6] = {0ms, {}, {v6_loopback()}};
    resolver.script[ip_family::v4] = {0ms, {}, {v4_loopback()}};
  }

  connect_result connect(const std::string& host, std::uint16_t port, connect_options options = {}) {
    std::optional<connect_result> result;
    async_connect(io.get_executor(), resolver, host_port{host, port}, options,
                  [&](connect_result r) { result = std::move(r); });
    EXPECT_TRUE(test::run_until(
        io, [&] { return result.has_value(); }, 15s));
    return result ? std::move(*result) : connect_result{};
  }
};

} // namespace

TEST_F(connector, LiteralNeedsNoResolver) {
  auto server = listen_on(v4_loopback());
  auto r = connect("127.0.0.1", server.local_endpoint().port());
  ASSERT_FALSE(r.ec) << r.detail;
  ASSERT_TRUE(r.socket);
  EXPECT_TRUE(r.socket->is_open());
  EXPECT_EQ(r.peer, server.local_endpoint());
  EXPECT_TRUE(resolver.asked.empty());
  tcp::no_delay nd;
  r.socket->get_option(nd);
  EXPECT_TRUE(nd.value()) << "TCP_NODELAY on connected sockets";
}

TEST_F(connector, AutoPrefersIpv6WhenBothWork) {
  auto v6 = listen_on(v6_loopback());
  auto v4 = listen_on(v4_loopback(), v6.local_endpoint().port());
  both_answer();
  auto r = connect("dual.test", v6.local_endpoint().port());
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_TRUE(r.peer.address().is_v6());
}

TEST_F(connector, PreferIpv4PicksIpv4WhenBothWork) {
  auto v6 = listen_on(v6_loopback());
  auto v4 = listen_on(v4_loopback(), v6.local_endpoint().port());
  both_answer();
  auto r = connect("dual.test", v6.local_endpoint().port(), {.he = {.policy = family_policy::prefer_ipv4}});
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_TRUE(r.peer.address().is_v4());
}

TEST_F(connector, RefusedIpv4FallsBackToIpv6) {
  auto v6 = listen_on(v6_loopback());
  both_answer();
  auto r = connect("dual.test", v6.local_endpoint().port(), {.he = {.policy = family_policy::prefer_ipv4}});
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_TRUE(r.peer.address().is_v6());
}

TEST_F(connector, SilentIpv6FallsBackToIpv4AfterAttemptDelay) {
  test::hanging_listener hang(io, v6_loopback());
  auto v4 = listen_on(v4_loopback(), hang.port());
  both_answer();
  const int fds_before = test::open_fd_count();
  auto r = connect("dual.test", hang.port());
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_TRUE(r.peer.address().is_v4());
  EXPECT_GE(r.elapsed, 240ms) << "IPv4 must wait for the attempt delay";
  // The losing IPv6 attempt is closed: only the winner remains open.
  EXPECT_EQ(test::open_fd_count(), fds_before + 1);
}

TEST_F(connector, Ipv4PolicyNeverAsksForAaaa) {
  auto v4 = listen_on(v4_loopback());
  both_answer();
  auto r = connect("dual.test", v4.local_endpoint().port(), {.he = {.policy = family_policy::ipv4_only}});
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_EQ(resolver.asked[ip_family::v6], 0);
  EXPECT_EQ(resolver.asked[ip_family::v4], 1);
}

TEST_F(connector, Ipv6PolicyFailsWhenOnlyIpv4Listens) {
  auto v4 = listen_on(v4_loopback());
  both_answer();
  auto r = connect("dual.test", v4.local_endpoint().port(), {.he = {.policy = family_policy::ipv6_only}});
  EXPECT_EQ(r.ec, asio::error::connection_refused);
  EXPECT_NE(r.detail.find("[::1]"), std::string::npos) << r.detail;
  EXPECT_EQ(r.detail.find("127.0.0.1"), std::string::npos) << r.detail;
  EXPECT_EQ(resolver.asked[ip_family::v4], 0);
}

TEST_F(connector, EveryAttemptRefusedNamesEachAddress) {
  const auto port = closed_port(v4_loopback());
  both_answer();
  auto r = connect("dual.test", port);
  EXPECT_EQ(r.ec, asio::error::connection_refused);
  EXPECT_NE(r.detail.find("[::1]:" + std::to_string(port) + ": connection refused"), std::string::npos) << r.detail;
  EXPECT_NE(r.detail.find("127.0.0.1:" + std::to_string(port) + ": connection refused"), std::string::npos) << r.detail;
}

TEST_F(connector, UnresolvableNameSaysSo) {
  resolver.script[ip_family::v6] = {0ms, asio::error::host_not_found, {}};
  resolver.script[ip_family::v4] = {0ms, asio::error::host_not_found, {}};
  auto r = connect("nosuch.test", 80);
  EXPECT_EQ(r.ec, asio::error::host_not_found);
  EXPECT_NE(r.detail.find("cannot resolve nosuch.test"), std::string::npos) << r.detail;
}

TEST_F(connector, OverallTimeoutWhenNothingAnswers) {
  test::hanging_listener hang(io, v4_loopback());
  resolver.script[ip_family::v4] = {0ms, {}, {v4_loopback()}};
  const int fds_before = test::open_fd_count();
  auto r = connect("slow.test", hang.port(), {.he = {.policy = family_policy::ipv4_only, .timeout = 300ms}});
  EXPECT_EQ(r.ec, warren::errc::timed_out);
  EXPECT_NE(r.detail.find("timed out after 300ms"), std::string::npos) << r.detail;
  EXPECT_EQ(test::open_fd_count(), fds_before) << "the timed-out attempt's socket is closed";
}

TEST_F(connector, ResolverThatNeverAnswersTimesOut) {
  auto r = connect("dead-dns.test", 80, {.he = {.timeout = 200ms}});
  EXPECT_EQ(r.ec, warren::errc::timed_out);
  EXPECT_NE(r.detail.find("name resolution did not finish"), std::string::npos) << r.detail;
}

TEST_F(connector, CancellationClosesEveryAttempt) {
  test::hanging_listener hang6(io, v6_loopback());
  resolver.script[ip_family::v6] = {0ms, {}, {v6_loopback()}};
  resolver.script[ip_family::v4] = {0ms, {}, {v4_loopback()}}; // refused: nothing listens there
  const int fds_before = test::open_fd_count();
  asio::cancellation_signal signal;
  std::optional<connect_result> result;
  async_connect(io.get_executor(), resolver, host_port{"hang.test", hang6.port()}, {},
                asio::bind_cancellation_slot(signal.slot(), [&](connect_result r) { result = std::move(r); }));
  // Let the first attempt start and the second become due.
  test::run_until(
      io, [] { return false; }, 400ms);
  EXPECT_GT(test::open_fd_count(), fds_before) << "attempts are in flight";
  signal.emit(asio::cancellation_type::terminal);
  ASSERT_TRUE(test::run_until(io, [&] { return result.has_value(); }));
  EXPECT_EQ(result->ec, warren::errc::cancelled);
  EXPECT_FALSE(result->socket);
  EXPECT_EQ(test::open_fd_count(), fds_before);
}

TEST_F(connector, SourceAddressPinsTheFamily) {
  auto v4 = listen_on(v4_loopback());
  both_answer();
  auto r = connect("dual.test", v4.local_endpoint().port(), {.source = v4_loopback()});
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_EQ(r.socket->local_endpoint().address(), v4_loopback());
  EXPECT_EQ(resolver.asked[ip_family::v6], 0);
}

TEST_F(connector, LocalhostIsLoopbackWithoutAsking) {
  auto v4 = listen_on(v4_loopback());
  system_resolver real;
  std::optional<connect_result> result;
  async_connect(io.get_executor(), real, host_port{"localhost", v4.local_endpoint().port()}, {},
                [&](connect_result r) { result = std::move(r); });
  ASSERT_TRUE(test::run_until(io, [&] { return result.has_value(); }));
  ASSERT_FALSE(result->ec) << result->detail;
  EXPECT_TRUE(result->peer.address().is_loopback());
}
