// The tunnel client unit (src/unit/client_unit.*) against a real server
// unit on loopback (tcp://), with a -L forward to a test-owned target.
#include "unit/client_unit.hpp"
#include "unit/server_unit.hpp"

#include "unit_fixture.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace warren;
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr const char* k_token = "client-unit-test-token";

using test::port_after_colon;

class client_unit_test : public test::unit_fixture {
 protected:
  std::unique_ptr<unit::server_unit> server;
  std::unique_ptr<unit::client_unit> client;

  void SetUp() override {
    unit::server_args s;
    s.listen = {"tcp://127.0.0.1:0"};
    s.token_env = k_token;
    s.allow = {"127.0.0.1"};
    s.drain_timeout = "200ms";
    s.ping_interval = "1s"; // the server's first RTT sample, in rtt_is_measured_on_both_sides
    auto o = unit::server_options_from(s);
    ASSERT_TRUE(o) << o.error();
    server = std::make_unique<unit::server_unit>(io.get_executor(), std::move(o).value());
    ASSERT_TRUE(server->start());
  }

  void TearDown() override {
    if (client)
      client->abandon();
    server->abandon();
  }

  unit::client_args args() const {
    unit::client_args a;
    a.url = "tcp://127.0.0.1:" + std::to_string(port_after_colon(server->status().listening.at(0)));
    a.local = {"127.0.0.1:0:127.0.0.1:" + std::to_string(target.local_endpoint().port())};
    a.proxy.proxy = "none";
    return a;
  }

  void make(const unit::client_args& a, std::string token = k_token) {
    auto o = unit::client_options_from(a);
    ASSERT_TRUE(o) << o.error();
    o.value().client.dial.token = std::move(token);
    o.value().read_token = [] { return expected<std::string>(std::string(k_token)); };
    client = std::make_unique<unit::client_unit>(io.get_executor(), std::move(o).value());
    watch(*client);
  }

  std::uint16_t local_port() const {
    const auto line = client->status().listening.at(0); // "TCP 127.0.0.1:PORT -> 127.0.0.1:PORT"
    return port_after_colon(line.substr(0, line.find(" ->")));
  }

  std::vector<unit::unit_event::kind> kinds() const {
    std::vector<unit::unit_event::kind> k;
    for (const auto& e : events)
      k.push_back(e.what);
    return k;
  }
};

TEST(client_options, each_mistake_is_one_sentence_naming_the_flag) {
  unit::client_args a;
  a.url = "tcp://127.0.0.1:1";
  a.dynamic = {"1080"};
  EXPECT_TRUE(unit::client_options_from(a));
  auto bad = [&](auto change, std::string_view says) {
    auto b = a;
    change(b);
    auto o = unit::client_options_from(b);
    ASSERT_FALSE(o);
    EXPECT_NE(o.error().find(says), std::string::npos) << o.error();
  };
  bad([](auto& b) { b.dynamic.clear(); }, "nothing to forward");
  bad([](auto& b) { b.pin = "md5:x"; }, "--pin: ");
  bad([](auto& b) { b.wait_tunnel = "x"; }, "--wait-tunnel: ");
  bad([](auto& b) { b.socks_handshake_timeout = "10ms"; }, "--socks-handshake-timeout must be at least 100ms");
  bad([](auto& b) { b.socks_user = "u"; }, "--socks-user needs --socks-password-file");
}

TEST_F(client_unit_test, connects_reports_its_peer_counts_bytes_and_stops) {
  make(args());
  auto started = client->start();
  ASSERT_TRUE(started) << started.error();
  ASSERT_TRUE(test::run_until(io, [&] { return !client->status().peer.empty(); }));
  EXPECT_EQ(client->status().peer, "127.0.0.1:" + std::to_string(port_after_colon(server->status().listening[0])));
  EXPECT_EQ(client->counters().connections_total, 1u);

  tcp::socket near(io);
  near.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), local_port()));
  tcp::socket far(io);
  bool accepted = false;
  target.async_accept(far, [&](error_code ec) { accepted = !ec; });
  ASSERT_TRUE(test::run_until(io, [&] { return accepted; }));
  std::vector<char> out(10000, 'z');
  std::vector<char> in(10000);
  asio::write(near, asio::buffer(out));
  bool got = false;
  asio::async_read(far, asio::buffer(in), [&](error_code ec, std::size_t) { got = !ec; });
  ASSERT_TRUE(test::run_until(io, [&] { return got; }));
  const auto c = client->counters();
  EXPECT_GE(c.bytes_up, 10000u);
  EXPECT_EQ(c.streams_open, 1u);
  EXPECT_EQ(c.streams_total, 1u);
  EXPECT_EQ(c.connections_open, 1u);

  bool done = false;
  client->stop(client->drain_bound(), [&] { done = true; });
  ASSERT_TRUE(test::run_until(
      io, [&] { return done; }, 5s));
  EXPECT_EQ(client->status().state, unit::unit_state::stopped);
  EXPECT_TRUE(client->status().peer.empty());
  using k = unit::unit_event::kind;
  EXPECT_EQ(kinds(), (std::vector<k>{k::state_changed, k::tunnel_connected, k::state_changed, k::tunnel_disconnected,
                                     k::state_changed}));
}

// The client PINGs at once when its tunnel comes up (window tuning wants
// the round trip early), the server after its first ping interval; each
// side's PONG gives a sample. Real sockets, so the value is only bounded:
// above 0, below the test's patience.
TEST_F(client_unit_test, rtt_is_measured_on_both_sides) {
  make(args());
  ASSERT_TRUE(client->start());
  EXPECT_EQ(client->counters().tunnel_rtt_us, 0u);
  EXPECT_EQ(client->status().connected_since, unit::wall_time{});
  const auto before = std::chrono::system_clock::now();
  ASSERT_TRUE(test::run_until(io, [&] { return !client->status().peer.empty(); }));
  EXPECT_GE(client->status().connected_since, before - 1s);
  ASSERT_TRUE(test::run_until(io, [&] { return client->counters().tunnel_rtt_us > 0; }));
  auto c = client->counters();
  EXPECT_GT(c.tunnel_rtt_last_us, 0u);
  EXPECT_LT(c.tunnel_rtt_us, 5'000'000u);
  ASSERT_TRUE(test::run_until(
      io, [&] { return server->counters().tunnel_rtt_us > 0; }, 10s));
  EXPECT_GT(server->counters().tunnel_rtt_last_us, 0u);
  EXPECT_LT(server->counters().tunnel_rtt_us, 5'000'000u);

  // With the tunnel down, the client has no round trip to report.
  bool done = false;
  client->stop(client->drain_bound(), [&] { done = true; });
  ASSERT_TRUE(test::run_until(
      io, [&] { return done; }, 5s));
  c = client->counters();
  EXPECT_EQ(c.tunnel_rtt_us, 0u);
  EXPECT_EQ(client->status().connected_since, unit::wall_time{});
}

TEST_F(client_unit_test, a_refused_token_fails_the_unit) {
  make(args(), "wrong-token");
  ASSERT_TRUE(client->start());
  ASSERT_TRUE(test::run_until(io, [&] { return client->status().state == unit::unit_state::failed; }));
  EXPECT_EQ(client->status().last_error.rfind("cannot connect to tcp://127.0.0.1:", 0), 0u)
      << client->status().last_error;
}

TEST_F(client_unit_test, start_fails_cleanly_on_a_port_in_use) {
  tcp::acceptor taken(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto a = args();
  a.local = {"127.0.0.1:" + std::to_string(taken.local_endpoint().port()) + ":127.0.0.1:9"};
  make(a);
  auto started = client->start();
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().find(std::to_string(taken.local_endpoint().port())), std::string::npos) << started.error();
  EXPECT_EQ(client->status().state, unit::unit_state::failed);
}

TEST_F(client_unit_test, reload_reads_the_token_again) {
  make(args());
  ASSERT_TRUE(client->start());
  const auto r = client->reload("test");
  EXPECT_TRUE(r.ok) << r.summary;
  EXPECT_EQ(events.back().what, unit::unit_event::kind::reloaded);
}

} // namespace
