// tunnel_upstream against a real tunnel::server on loopback (tcp://): its
// client has no forwards and still keeps a tunnel; TCP to a local echo, a
// closed port and a destination the server's policy denies; UDP to two
// local echoes; a stopped server. As root, in a network namespace of its
// own (a forked child), an nftables rule rejects unmarked SYNs to the
// server: only an upstream given the mark gets its tunnel.
#include "tun/tunnel_upstream.hpp"
#include "tunnel/server.hpp"

#include "test_process.hpp"
#include "test_util.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

using namespace std::chrono_literals;
using namespace warren;
namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using bytes = std::vector<std::uint8_t>;

namespace {

constexpr std::string_view k_token = "tunnel-upstream-test-token";
const auto k_loopback = asio::ip::make_address("127.0.0.1");

/// A tunnel server on 127.0.0.1:`port` (0: any, then set to the one bound)
/// that may connect to 127.0.0.1 only.
std::shared_ptr<tunnel::server> make_server(asio::io_context& io, net::resolver& resolver, std::uint16_t& port) {
  tunnel::server_options o;
  o.drain_timeout = 100ms;
  auto rule = tunnel::parse_allow_rule("127.0.0.1");
  EXPECT_TRUE(rule) << rule.error();
  o.policy.add(*rule);
  auto url = transport::parse_url("tcp://127.0.0.1:" + std::to_string(port), true);
  EXPECT_TRUE(url) << url.error();
  o.listen = {*url};
  auto users = std::make_shared<transport::user_table>();
  users->add("default", transport::user_table::hash(k_token));
  o.accept.users = users;
  auto srv = std::make_shared<tunnel::server>(io.get_executor(), resolver, std::move(o));
  auto eps = srv->bind();
  EXPECT_TRUE(eps) << eps.error();
  if (!eps)
    return nullptr;
  port = eps->at(0).port();
  srv->start();
  return srv;
}

tun::tunnel_upstream_options upstream_options(std::uint16_t port) {
  tun::tunnel_upstream_options o;
  auto url = transport::parse_url("tcp://127.0.0.1:" + std::to_string(port));
  EXPECT_TRUE(url) << url.error();
  o.client.server = *url;
  o.client.dial.token = std::string(k_token);
  o.client.wait_for_tunnel = 1s;
  o.connect_timeout = 5s;
  return o;
}

class tunnel_upstream_test : public ::testing::Test {
 protected:
  asio::io_context io;
  net::system_resolver resolver{1};
  std::shared_ptr<tunnel::server> srv;
  std::unique_ptr<tun::tunnel_upstream> upstream;
  std::string fatal;
  std::uint16_t port = 0; // the server's

  void SetUp() override {
    srv = make_server(io, resolver, port);
    ASSERT_TRUE(srv);
    upstream = std::make_unique<tun::tunnel_upstream>(io.get_executor(), resolver, upstream_options(port));
    upstream->start([this](const std::string& why) { fatal = why; });
    ASSERT_TRUE(test::run_until(io, [&] { return upstream->client().counters().tunnels_total == 1; }))
        << "no tunnel with zero forwards; fatal: " << fatal;
  }

  void TearDown() override {
    upstream->stop();
    EXPECT_TRUE(test::run_until(
        io, [&] { return upstream->client().idle(); }, 5s));
    stop_server();
  }

  void stop_server() {
    if (!srv)
      return;
    bool stopped = false;
    srv->stop([&stopped] { stopped = true; });
    EXPECT_TRUE(test::run_until(
        io, [&] { return stopped; }, 5s))
        << "the server did not stop";
    srv.reset();
  }

  tun::tcp_connection connect(tcp::endpoint target, std::chrono::milliseconds limit = 10s) {
    std::optional<tun::tcp_connection> out;
    test::spawn(io, [&]() -> asio::awaitable<void> { out = co_await upstream->connect(target); });
    EXPECT_TRUE(test::run_until(
        io, [&] { return out.has_value(); }, limit))
        << "connect() did not end in time";
    return out ? std::move(*out) : tun::tcp_connection{};
  }

  tun::udp_association_result open_udp(std::chrono::milliseconds limit = 10s) {
    std::optional<tun::udp_association_result> out;
    test::spawn(io, [&]() -> asio::awaitable<void> { out = co_await upstream->open_udp(); });
    EXPECT_TRUE(test::run_until(
        io, [&] { return out.has_value(); }, limit))
        << "open_udp() did not end in time";
    return out ? std::move(*out) : tun::udp_association_result{};
  }
};

TEST_F(tunnel_upstream_test, connect_carries_bytes_both_ways_to_a_local_echo) {
  tcp::acceptor echo(io, tcp::endpoint(k_loopback, 0));
  tcp::socket far(io);
  bool accepted = false;
  echo.async_accept(far, [&](error_code ec) { accepted = !ec; });
  auto c = connect(echo.local_endpoint());
  ASSERT_FALSE(c.failure) << c.failure.message;
  ASSERT_TRUE(c.stream);
  EXPECT_FALSE(c.socket);
  ASSERT_TRUE(test::run_until(io, [&] { return accepted; }));

  const auto up = test::random_bytes(100'000, 1);
  const auto down = test::random_bytes(70'000, 2);
  bytes at_far(up.size()), at_near;
  bool written = false, far_done = false, near_done = false;
  test::spawn(io, [&]() -> asio::awaitable<void> {
    const asio::const_buffer b(up.data(), up.size());
    error_code ec;
    co_await c.stream->write(std::span(&b, 1), ec);
    EXPECT_FALSE(ec) << ec.message();
    written = true;
  });
  asio::async_read(far, asio::buffer(at_far), [&](error_code ec, std::size_t) {
    EXPECT_FALSE(ec) << ec.message();
    far_done = true;
  });
  asio::write(far, asio::buffer(down));
  test::spawn(io, [&]() -> asio::awaitable<void> {
    bytes buf(16384);
    while (at_near.size() < down.size()) {
      error_code ec;
      const auto n = co_await c.stream->read_some(asio::buffer(buf), ec);
      if (ec)
        break;
      at_near.insert(at_near.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
    near_done = true;
  });
  ASSERT_TRUE(test::run_until(io, [&] { return written && far_done && near_done; }));
  EXPECT_EQ(at_far, up);
  EXPECT_EQ(at_near, down);
}

TEST_F(tunnel_upstream_test, a_closed_port_is_refused) {
  tcp::acceptor closed(io, tcp::endpoint(k_loopback, 0));
  const auto target = closed.local_endpoint();
  closed.close();
  auto c = connect(target);
  EXPECT_EQ(c.failure.kind, tun::upstream_error::refused) << c.failure.message;
  EXPECT_FALSE(c.stream);
}

TEST_F(tunnel_upstream_test, a_destination_the_server_denies_is_other) {
  auto c = connect(tcp::endpoint(asio::ip::make_address("127.0.0.2"), 9));
  EXPECT_EQ(c.failure.kind, tun::upstream_error::other) << c.failure.message;
  EXPECT_NE(c.failure.message.find("127.0.0.2"), std::string::npos) << c.failure.message;
  EXPECT_FALSE(c.stream);
}

TEST_F(tunnel_upstream_test, a_target_that_never_answers_is_a_timeout_at_connect_timeout) {
  test::hanging_listener silent(io, k_loopback); // the server's connect hangs (its own timeout is 10 s)
  auto o = upstream_options(port);
  o.connect_timeout = 300ms;
  tun::tunnel_upstream quick(io.get_executor(), resolver, o);
  quick.start([](const std::string&) {});
  std::optional<tun::tcp_connection> c;
  test::spawn(io,
              [&]() -> asio::awaitable<void> { c = co_await quick.connect(tcp::endpoint(k_loopback, silent.port())); });
  const auto started = steady_clock::now();
  ASSERT_TRUE(test::run_until(io, [&] { return c.has_value(); }, 5s));
  EXPECT_EQ(c->failure.kind, tun::upstream_error::timeout) << c->failure.message;
  EXPECT_LT(steady_clock::now() - started, 1s) << "the tunnel was up: only connect_timeout bounds the answer";
  EXPECT_FALSE(c->stream);
  // The abandoned open leaves nothing behind on the tunnel.
  EXPECT_TRUE(test::run_until(io, [&] { return quick.client().counters().streams_open == 0; }));
  quick.stop();
  EXPECT_TRUE(test::run_until(
      io, [&] { return quick.client().idle(); }, 5s));
}

TEST_F(tunnel_upstream_test, udp_reaches_two_echoes_and_replies_name_their_source) {
  udp::socket echo_a(io, udp::endpoint(k_loopback, 0));
  udp::socket echo_b(io, udp::endpoint(k_loopback, 0));
  // Each echo answers with its own tag after the payload.
  auto serve = [&](udp::socket& s, std::uint8_t tag) -> asio::awaitable<void> {
    bytes buf(2048);
    udp::endpoint from;
    for (;;) {
      auto [ec, n] = co_await s.async_receive_from(asio::buffer(buf), from, asio::as_tuple(asio::use_awaitable));
      if (ec)
        co_return;
      buf[n] = tag;
      s.send_to(asio::buffer(buf.data(), n + 1), from);
    }
  };
  asio::co_spawn(io, serve(echo_a, 'A'), asio::detached);
  asio::co_spawn(io, serve(echo_b, 'B'), asio::detached);

  auto r = open_udp();
  ASSERT_FALSE(r.failure) << r.failure.message;
  ASSERT_TRUE(r.association);
  auto& a = *r.association;
  const bytes hello{'h', 'i'};
  EXPECT_FALSE(a.try_send(echo_a.local_endpoint(), hello));
  // An IPv4-mapped destination is the IPv4 one.
  const udp::endpoint mapped(asio::ip::make_address("::ffff:127.0.0.1"), echo_b.local_endpoint().port());
  EXPECT_FALSE(a.try_send(mapped, hello));

  std::map<udp::endpoint, bytes> got;
  test::spawn(io, [&]() -> asio::awaitable<void> {
    while (got.size() < 2) {
      auto d = co_await a.receive();
      if (d.ec)
        co_return;
      got[d.source] = bytes(d.payload.begin(), d.payload.end());
    }
  });
  ASSERT_TRUE(test::run_until(io, [&] { return got.size() == 2; }));
  EXPECT_EQ(got[echo_a.local_endpoint()], (bytes{'h', 'i', 'A'}));
  EXPECT_EQ(got[echo_b.local_endpoint()], (bytes{'h', 'i', 'B'}));

  // close() ends wait_closed() and a pending receive().
  std::optional<error_code> closed, received;
  test::spawn(io, [&]() -> asio::awaitable<void> { closed = co_await a.wait_closed(); });
  test::spawn(io, [&]() -> asio::awaitable<void> { received = (co_await a.receive()).ec; });
  io.restart();
  io.poll(); // both start waiting
  EXPECT_FALSE(closed);
  a.close();
  ASSERT_TRUE(test::run_until(io, [&] { return closed && received; }));
  EXPECT_TRUE(*received);
  EXPECT_TRUE(a.try_send(echo_a.local_endpoint(), hello)) << "a closed association sends nothing";
}

TEST_F(tunnel_upstream_test, a_stopped_server_is_proxy_down_within_the_wait) {
  stop_server();
  ASSERT_TRUE(test::run_until(
      io, [&] { return upstream->client().idle(); }, 5s));
  const auto started = steady_clock::now();
  auto c = connect(tcp::endpoint(k_loopback, 9), 5s);
  EXPECT_EQ(c.failure.kind, tun::upstream_error::proxy_down) << c.failure.message;
  auto r = open_udp(5s);
  EXPECT_EQ(r.failure.kind, tun::upstream_error::proxy_down) << r.failure.message;
  EXPECT_FALSE(r.association);
  // Each waited its wait_for_tunnel (1 s), not the connect timeout.
  EXPECT_LT(steady_clock::now() - started, 4s);
}

TEST_F(tunnel_upstream_test, udp_flows_reopen_on_the_new_tunnel_after_a_restart) {
  udp::socket echo(io, udp::endpoint(k_loopback, 0));
  auto r = open_udp();
  ASSERT_TRUE(r.association) << r.failure.message;
  auto& a = *r.association;
  int answered = 0;
  auto serve = [&]() -> asio::awaitable<void> {
    bytes buf(2048);
    udp::endpoint from;
    for (;;) {
      auto [ec, n] = co_await echo.async_receive_from(asio::buffer(buf), from, asio::as_tuple(asio::use_awaitable));
      if (ec)
        co_return;
      echo.send_to(asio::buffer(buf.data(), n), from);
    }
  };
  asio::co_spawn(io, serve(), asio::detached);
  test::spawn(io, [&]() -> asio::awaitable<void> {
    for (;;) {
      auto d = co_await a.receive();
      if (d.ec)
        co_return;
      ++answered;
    }
  });
  const bytes ping{'p'};
  EXPECT_FALSE(a.try_send(echo.local_endpoint(), ping));
  ASSERT_TRUE(test::run_until(io, [&] { return answered == 1; }));

  stop_server();
  ASSERT_TRUE(test::run_until(
      io, [&] { return upstream->client().idle(); }, 5s));
  srv = make_server(io, resolver, port);
  ASSERT_TRUE(test::run_until(io, [&] { return upstream->client().counters().tunnels_total == 2; }));
  // The association outlived the tunnel: its flow reopens on the new one.
  EXPECT_FALSE(a.try_send(echo.local_endpoint(), ping));
  ASSERT_TRUE(test::run_until(io, [&] { return answered == 2; }));
  a.close();
}

// ---- the mark (root) ----

/// Runs `body` in a forked child inside a new network namespace with
/// loopback up; returns its exit status (0: passed).
int in_netns(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNET) != 0) {
      std::perror("unshare(CLONE_NEWNET)");
      ::_exit(90);
    }
    if (std::system("ip link set lo up") != 0)
      ::_exit(91);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

TEST(tunnel_upstream_mark, only_a_marked_upstream_gets_through_a_mark_filter) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root (a network namespace and nftables)";
  if (!test::have_program("nft"))
    GTEST_SKIP() << "needs nft (scripts/deps)";
  const int rc = in_netns([] {
    std::uint16_t port = 8443; // a fresh namespace: free
    const std::string rules = "nft -f - <<'EOF'\n"
                              "table inet warren_mark_test {\n"
                              "  chain out {\n"
                              "    type filter hook output priority 0;\n"
                              "    tcp dport " +
                              std::to_string(port) +
                              " meta mark != 0x2a reject with tcp reset\n"
                              "  }\n"
                              "}\nEOF";
    if (std::system(rules.c_str()) != 0)
      return 2;
    asio::io_context io;
    net::system_resolver resolver{1};
    auto srv = make_server(io, resolver, port);
    auto tunnels = [&](std::optional<std::uint32_t> mark) {
      auto o = upstream_options(port);
      o.mark = mark;
      tun::tunnel_upstream u(io.get_executor(), resolver, o);
      u.start([](const std::string&) {});
      const bool up = test::run_until(
          io, [&] { return u.client().counters().tunnels_total == 1; }, 2s);
      u.stop();
      test::run_until(
          io, [&] { return u.client().idle(); }, 2s);
      return up;
    };
    if (tunnels(std::nullopt))
      return 3; // the filter lets unmarked SYNs through: the test proves nothing
    if (!tunnels(0x2a))
      return 4;
    bool stopped = false;
    srv->stop([&stopped] { stopped = true; });
    test::run_until(
        io, [&] { return stopped; }, 5s);
    return 0;
  });
  EXPECT_EQ(rc, 0) << "2: nft rules not loaded, 3: an unmarked tunnel came up, 4: the marked one did not";
}

} // namespace
