#include "net/listen.hpp"

#include "test_util.hpp"

#include <boost/asio/ip/v6_only.hpp>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

using namespace warren;
using namespace warren::net;
namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

listen_plan plan(const char* text) {
  auto a = parse_listen_address(text);
  EXPECT_TRUE(a) << a.error();
  auto p = plan_listen(*a);
  EXPECT_TRUE(p) << p.error();
  return *p;
}

} // namespace

TEST(ListenPlan, LocalhostMeansBothLoopbacks) {
  auto p = plan("localhost:8080");
  EXPECT_FALSE(p.literal);
  EXPECT_EQ(p.port, 8080);
  EXPECT_EQ(p.addresses, (std::vector<asio::ip::address>{test::v4_loopback(), test::v6_loopback()}));
}

TEST(ListenPlan, WildcardIsTwoSockets) {
  auto p = plan("*:0");
  EXPECT_EQ(p.addresses, (std::vector<asio::ip::address>{asio::ip::address_v4::any(), asio::ip::address_v6::any()}));
}

TEST(ListenPlan, LiteralIsExact) {
  auto p = plan("[::1]:9");
  EXPECT_TRUE(p.literal);
  EXPECT_EQ(p.addresses, std::vector<asio::ip::address>{test::v6_loopback()});
}

TEST(ListenPlan, AnIpv4MappedAddressIsAnErrorNamingTheIpv4One) {
  auto a = parse_listen_address("[::ffff:127.0.0.1]:8443");
  ASSERT_TRUE(a) << a.error();
  auto p = plan_listen(*a);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().find("listen on 127.0.0.1:8443 instead"), std::string::npos) << p.error();
}

TEST(ListenPlan, OverlapsComparesAddressesNotText) {
  EXPECT_TRUE(overlaps(plan("*:47001"), plan("localhost:47001")));
  EXPECT_TRUE(overlaps(plan("*:47001"), plan("0.0.0.0:47001")));
  EXPECT_TRUE(overlaps(plan("0.0.0.0:47001"), plan("127.0.0.1:47001"))) << "a wildcard overlaps its family";
  EXPECT_TRUE(overlaps(plan("localhost:47001"), plan("127.0.0.1:47001")));
  EXPECT_TRUE(overlaps(plan("[::1]:47001"), plan("[0:0::1]:47001")));
  EXPECT_TRUE(overlaps(plan("[0::0]:47001"), plan("[::1]:47001")));
  EXPECT_FALSE(overlaps(plan("[::]:47001"), plan("127.0.0.1:47001"))) << "[::] is IPv6 only";
  EXPECT_FALSE(overlaps(plan("0.0.0.0:47001"), plan("[::1]:47001")));
  EXPECT_FALSE(overlaps(plan("127.0.0.1:47001"), plan("127.0.0.2:47001")));
  EXPECT_FALSE(overlaps(plan("*:47001"), plan("*:47002")));
  EXPECT_FALSE(overlaps(plan("*:0"), plan("*:0"))) << "port 0: each its own port";
}

TEST(ListenPlan, Ipv6OnlyByAddressNotText) {
  EXPECT_TRUE(ipv6_only(plan("[::]:9")));
  EXPECT_TRUE(ipv6_only(plan("[0::0]:9")));
  EXPECT_TRUE(ipv6_only(plan("[0:0:0:0:0:0:0:0]:9")));
  EXPECT_FALSE(ipv6_only(plan("*:9")));
  EXPECT_FALSE(ipv6_only(plan("[::1]:9")));
  EXPECT_FALSE(ipv6_only(plan("0.0.0.0:9")));
}

TEST(BindTcp, LocalhostBindsBothWithOnePortAndV6Only) {
  asio::io_context io;
  auto bound = bind_tcp(io.get_executor(), plan("localhost:0"));
  ASSERT_TRUE(bound) << bound.error();
  ASSERT_EQ(bound->size(), 2u);
  const auto& v4 = bound.value()[0];
  const auto& v6 = bound.value()[1];
  EXPECT_EQ(v4.local_endpoint().address(), test::v4_loopback());
  EXPECT_EQ(v6.local_endpoint().address(), test::v6_loopback());
  EXPECT_EQ(v4.local_endpoint().port(), v6.local_endpoint().port());
  asio::ip::v6_only only;
  v6.get_option(only);
  EXPECT_TRUE(only.value());
  tcp::acceptor::reuse_address reuse;
  v4.get_option(reuse);
  EXPECT_TRUE(reuse.value());
  // Both accept real connections.
  for (const auto& a : bound.value()) {
    tcp::socket c(io);
    c.connect(a.local_endpoint());
    EXPECT_TRUE(c.is_open());
  }
}

TEST(BindTcp, LiteralInUseFailsNamingThePort) {
  asio::io_context io;
  auto first = bind_tcp(io.get_executor(), plan("127.0.0.1:0"));
  ASSERT_TRUE(first);
  const auto port = first->front().local_endpoint().port();
  const std::string text = "127.0.0.1:" + std::to_string(port);
  auto second = bind_tcp(io.get_executor(), plan(text.c_str()));
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().find("port " + std::to_string(port) + " is already in use"), std::string::npos)
      << second.error();
}

TEST(BindTcp, PortInUseOnOneAddressOfANameIsFatal) {
  asio::io_context io;
  // Another program holds [::1]:P: clients trying ::1 first would reach it,
  // so localhost:P must not come up on 127.0.0.1 alone.
  auto holder = bind_tcp(io.get_executor(), plan("[::1]:0"));
  ASSERT_TRUE(holder);
  const auto port = holder->front().local_endpoint().port();
  const std::string text = "localhost:" + std::to_string(port);
  auto bound = bind_tcp(io.get_executor(), plan(text.c_str()));
  ASSERT_FALSE(bound);
  EXPECT_NE(
      bound.error().find("[::1]:" + std::to_string(port) + ": port " + std::to_string(port) + " is already in use"),
      std::string::npos)
      << bound.error();
}

TEST(BindTcp, PortInUseOnOneAddressOfTheWildcardIsFatal) {
  asio::io_context io;
  auto holder = bind_tcp(io.get_executor(), plan("0.0.0.0:0"));
  ASSERT_TRUE(holder);
  const auto port = holder->front().local_endpoint().port();
  const std::string text = "*:" + std::to_string(port);
  auto bound = bind_tcp(io.get_executor(), plan(text.c_str()));
  ASSERT_FALSE(bound);
  EXPECT_NE(bound.error().find("is already in use"), std::string::npos) << bound.error();
}

TEST(BindUdp, PortInUseOnOneAddressOfANameIsFatal) {
  asio::io_context io;
  auto holder = bind_udp(io.get_executor(), plan("[::1]:0"));
  ASSERT_TRUE(holder);
  const std::string text = "localhost:" + std::to_string(holder->front().local_endpoint().port());
  auto bound = bind_udp(io.get_executor(), plan(text.c_str()));
  ASSERT_FALSE(bound);
  EXPECT_NE(bound.error().find("is already in use"), std::string::npos) << bound.error();
}

TEST(BindTcp, AnAddressThatCannotExistHereIsSkipped) {
  // What a name's address not assigned to this host (or ::1 with IPv6
  // disabled) gives: EADDRNOTAVAIL. 203.0.113.201 (TEST-NET-3) is on no interface.
  asio::io_context io;
  listen_plan p;
  p.addresses = {test::v4_loopback(), asio::ip::make_address("203.0.113.201")};
  p.display = "example:0";
  auto bound = bind_tcp(io.get_executor(), p);
  ASSERT_TRUE(bound) << bound.error();
  ASSERT_EQ(bound->size(), 1u);
  EXPECT_EQ(bound->front().local_endpoint().address(), test::v4_loopback());
  // Typed as a literal, the same address is an error.
  p.addresses = {asio::ip::make_address("203.0.113.201")};
  p.literal = true;
  auto literal = bind_tcp(io.get_executor(), p);
  ASSERT_FALSE(literal);
  EXPECT_NE(literal.error().find("not assigned to any interface"), std::string::npos) << literal.error();
}

TEST(BindTcp, NothingBoundIsAnErrorListingEachReason) {
  asio::io_context io;
  listen_plan p;
  p.addresses = {asio::ip::make_address("203.0.113.201"), asio::ip::make_address("198.51.100.201")};
  p.display = "example:0";
  auto bound = bind_tcp(io.get_executor(), p);
  ASSERT_FALSE(bound);
  EXPECT_NE(bound.error().find("nothing could be bound"), std::string::npos) << bound.error();
  EXPECT_NE(bound.error().find("203.0.113.201:0"), std::string::npos) << bound.error();
  EXPECT_NE(bound.error().find("198.51.100.201:0"), std::string::npos) << bound.error();
}

TEST(BindUdp, LocalhostBindsBothWithOnePort) {
  asio::io_context io;
  auto bound = bind_udp(io.get_executor(), plan("localhost:0"));
  ASSERT_TRUE(bound) << bound.error();
  ASSERT_EQ(bound->size(), 2u);
  EXPECT_EQ(bound.value()[0].local_endpoint().port(), bound.value()[1].local_endpoint().port());
  asio::ip::v6_only only;
  bound.value()[1].get_option(only);
  EXPECT_TRUE(only.value());
}

TEST(BindUnix, ReplacesStaleSocketRefusesLiveOne) {
  asio::io_context io;
  char dir_template[] = "/tmp/warren-listen-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string path = std::string(dir_template) + "/s.sock";
  {
    auto first = bind_unix(io.get_executor(), path);
    ASSERT_TRUE(first) << first.error();
    auto second = bind_unix(io.get_executor(), path);
    ASSERT_FALSE(second);
    EXPECT_NE(second.error().find("another process is listening"), std::string::npos) << second.error();
  } // closed, file left behind: stale
  auto again = bind_unix(io.get_executor(), path);
  ASSERT_TRUE(again) << again.error();
  again.value().close();
  ::unlink(path.c_str());
  ::rmdir(dir_template);
}
