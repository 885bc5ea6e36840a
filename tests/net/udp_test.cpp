// UDP: the session table's expiry and eviction on a manual clock, and the
// forwarder over real multi-bound sockets (a reply leaves from the address
// the client sent to).
#include "net/listen.hpp"
#include "net/udp_forwarder.hpp"
#include "net/udp_sessions.hpp"

#include "test_util.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::net;
namespace asio = boost::asio;
using asio::ip::udp;

namespace {
udp_session_key key(std::uint16_t port, std::size_t listener = 0) {
  return {listener, udp::endpoint(test::v4_loopback(), port)};
}
} // namespace

TEST(UdpSessionTable, ExpiresOnlyIdleSessions) {
  manual_clock clock;
  udp_session_table<int> table(10);
  table.insert(key(1), 1, clock.now());
  clock.advance(30s);
  table.insert(key(2), 2, clock.now());
  clock.advance(29s);
  EXPECT_TRUE(table.expire(clock.now(), 60s).empty());
  clock.advance(1s); // session 1 idle for 60 s
  EXPECT_EQ(table.expire(clock.now(), 60s), std::vector<int>{1});
  EXPECT_EQ(table.size(), 1u);
}

TEST(UdpSessionTable, ActivityKeepsASessionAlive) {
  manual_clock clock;
  udp_session_table<int> table(10);
  table.insert(key(1), 1, clock.now());
  clock.advance(50s);
  ASSERT_NE(table.find(key(1), clock.now()), nullptr);
  clock.advance(50s);
  table.touch(key(1), clock.now()); // a reply counts as activity too
  clock.advance(59s);
  EXPECT_TRUE(table.expire(clock.now(), 60s).empty());
  clock.advance(1s);
  EXPECT_EQ(table.expire(clock.now(), 60s).size(), 1u);
}

TEST(UdpSessionTable, FullTableEvictsLeastRecentlyActive) {
  manual_clock clock;
  udp_session_table<int> table(3);
  for (int i = 1; i <= 3; ++i) {
    table.insert(key(static_cast<std::uint16_t>(i)), i, clock.now());
    clock.advance(1s);
  }
  table.find(key(1), clock.now()); // 1 is now the most recent
  auto evicted = table.insert(key(4), 4, clock.now());
  ASSERT_TRUE(evicted);
  EXPECT_EQ(*evicted, 2);
  EXPECT_EQ(table.size(), 3u);
}

TEST(UdpSessionTable, SameClientOnDifferentListenersIsTwoSessions) {
  manual_clock clock;
  udp_session_table<int> table(10);
  table.insert(key(7, 0), 1, clock.now());
  table.insert(key(7, 1), 2, clock.now());
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(*table.find(key(7, 1), clock.now()), 2);
}

TEST(UdpForwarder, RepliesLeaveFromTheAddressTheClientUsed) {
  asio::io_context io;
  // Upstream echo server on 127.0.0.1.
  udp::socket echo(io, udp::endpoint(test::v4_loopback(), 0));
  std::array<char, 2048> echo_buf{};
  udp::endpoint echo_peer;
  std::function<void()> echo_loop = [&] {
    echo.async_receive_from(asio::buffer(echo_buf), echo_peer, [&](error_code ec, std::size_t n) {
      if (ec)
        return;
      echo.send_to(asio::buffer(echo_buf.data(), n), echo_peer);
      echo_loop();
    });
  };
  echo_loop();

  auto a = parse_listen_address("localhost:0");
  auto p = plan_listen(*a);
  auto bound = bind_udp(io.get_executor(), *p);
  ASSERT_TRUE(bound) << bound.error();
  std::vector<udp::endpoint> listen_eps;
  for (auto& s : bound.value())
    listen_eps.push_back(s.local_endpoint());
  system_resolver resolver;
  auto fwd =
      std::make_shared<udp_forwarder>(io.get_executor(), resolver, std::move(bound).value(),
                                      host_port{"127.0.0.1", echo.local_endpoint().port()}, udp_forwarder_options{});
  fwd->start();

  for (const auto& ep : listen_eps) {
    udp::socket client(io, udp::endpoint(ep.address(), 0));
    const std::string msg = "ping via " + ep.address().to_string();
    client.send_to(asio::buffer(msg), ep);
    std::array<char, 2048> buf{};
    udp::endpoint from;
    std::size_t got = 0;
    bool done = false;
    client.async_receive_from(asio::buffer(buf), from, [&](error_code ec, std::size_t n) {
      got = ec ? 0 : n;
      done = true;
    });
    ASSERT_TRUE(test::run_until(io, [&] { return done; }));
    EXPECT_EQ(std::string(buf.data(), got), msg);
    EXPECT_EQ(from, ep) << "reply must come from the address and port the client sent to";
  }
  EXPECT_EQ(fwd->sessions(), 2u);
  EXPECT_EQ(fwd->counters().datagrams_down, 2u);
  fwd->stop();
  echo.close();
}

TEST(UdpForwarder, SessionTableStaysBounded) {
  asio::io_context io;
  udp::socket sink(io, udp::endpoint(test::v4_loopback(), 0));
  auto a = parse_listen_address("127.0.0.1:0");
  auto p = plan_listen(*a);
  auto bound = bind_udp(io.get_executor(), *p);
  ASSERT_TRUE(bound);
  const auto listen_ep = bound->front().local_endpoint();
  system_resolver resolver;
  udp_forwarder_options options;
  options.max_sessions = 8;
  auto fwd = std::make_shared<udp_forwarder>(io.get_executor(), resolver, std::move(bound).value(),
                                             host_port{"127.0.0.1", sink.local_endpoint().port()}, options);
  fwd->start();
  std::vector<udp::socket> clients;
  for (int i = 0; i < 40; ++i) {
    clients.emplace_back(io, udp::endpoint(test::v4_loopback(), 0));
    clients.back().send_to(asio::buffer("x", 1), listen_ep);
  }
  ASSERT_TRUE(test::run_until(io, [&] { return fwd->counters().sessions_opened == 40; }));
  EXPECT_LE(fwd->sessions(), 8u);
  EXPECT_EQ(fwd->counters().sessions_evicted, 32u);
  fwd->stop();
}
