// The relay unit (src/unit/relay_unit.*) with real sockets on loopback: a
// test-owned target listener, a client socket, and the unit between them.
// Each test drives one io_context with run_until (bounded, never sleeps).
#include "unit/relay_unit.hpp"

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

using test::port_after_colon;

class relay_unit_test : public test::unit_fixture {
 protected:
  std::unique_ptr<unit::relay_unit> relay;

  unit::relay_args args() const {
    unit::relay_args a;
    a.listen = "127.0.0.1:0";
    a.target = "127.0.0.1:" + std::to_string(target.local_endpoint().port());
    return a;
  }

  void make(const unit::relay_args& a) {
    auto o = unit::relay_options_from(a);
    ASSERT_TRUE(o) << o.error();
    relay = std::make_unique<unit::relay_unit>(io.get_executor(), std::move(o).value());
    watch(*relay);
  }

  /// Starts the relay and runs until it serves.
  void start_running() {
    make(args());
    auto started = relay->start();
    ASSERT_TRUE(started) << started.error();
    ASSERT_TRUE(test::run_until(io, [&] { return relay->status().state == unit::unit_state::running; }));
    // The target check connected once; take that connection off the queue.
    tcp::socket check(io);
    target.accept(check);
  }

  /// A client connected through the relay, and the target's end of it.
  std::pair<tcp::socket, tcp::socket> connect_through() {
    return connect_via(port_after_colon(relay->status().listening.at(0)));
  }
};

TEST(relay_options, each_mistake_is_one_sentence_naming_the_flag) {
  unit::relay_args a;
  a.listen = "127.0.0.1:0";
  a.target = "127.0.0.1:9";
  EXPECT_TRUE(unit::relay_options_from(a));
  auto bad = [&](auto change, std::string_view says) {
    auto b = a;
    change(b);
    auto o = unit::relay_options_from(b);
    ASSERT_FALSE(o);
    EXPECT_NE(o.error().find(says), std::string::npos) << o.error();
  };
  bad([](auto& b) { b.family = "ipv5"; }, "--family 'ipv5'");
  bad([](auto& b) { b.connect_timeout = "10ms"; }, "--connect-timeout must be at least 100ms");
  bad([](auto& b) { b.attempt_delay = "5s"; }, "--attempt-delay must be between");
  bad([](auto& b) { b.source = "nope"; }, "--source 'nope'");
  bad([](auto& b) { b.udp = true, b.listen = "/tmp/x.sock"; }, "--udp cannot listen on a Unix");
  bad([](auto& b) { b.target = "nohost"; }, "target ");
  bad([](auto& b) { b.udp_idle_timeout = "abc"; }, "--udp-idle-timeout");
  bad([](auto& b) { b.max_connections = 0; }, "--max-connections");
  auto o = unit::relay_options_from(a);
  EXPECT_TRUE(o->check_target);
  a.no_target_check = true;
  a.no_splice = true;
  o = unit::relay_options_from(a);
  EXPECT_FALSE(o->check_target);
  EXPECT_EQ(o->mode, net::relay_mode::copy);
}

TEST_F(relay_unit_test, starts_counts_bytes_as_they_flow_and_stops) {
  start_running();
  EXPECT_EQ(relay->kind(), "relay");
  ASSERT_EQ(relay->status().listening.size(), 1u);
  EXPECT_EQ(relay->status().listening[0].rfind("TCP 127.0.0.1:", 0), 0u) << relay->status().listening[0];
  EXPECT_EQ(relay->counters().connections_total, 0u);

  auto [client, far] = connect_through();
  carry(client, far, 3000);
  carry(far, client, 500);
  // Counted while the connection is still open.
  ASSERT_TRUE(test::run_until(io, [&] { return relay->counters().bytes_up == 3000; }));
  auto c = relay->counters();
  EXPECT_EQ(c.bytes_down, 500u);
  EXPECT_EQ(c.connections_open, 1u);
  EXPECT_EQ(c.connections_total, 1u);

  client.close();
  far.close();
  ASSERT_TRUE(test::run_until(io, [&] { return relay->counters().connections_open == 0; }));
  c = relay->counters();
  EXPECT_EQ(c.bytes_up, 3000u); // the ended connection's bytes stay counted
  EXPECT_EQ(c.bytes_down, 500u);
  EXPECT_EQ(c.connections_total, 1u);

  bool done = false;
  relay->stop(5s, [&] { done = true; });
  ASSERT_TRUE(test::run_until(io, [&] { return done; }));
  EXPECT_EQ(relay->status().state, unit::unit_state::stopped);
  EXPECT_EQ(states(), (std::vector<unit::unit_state>{unit::unit_state::running, unit::unit_state::draining,
                                                     unit::unit_state::stopped}));
  // The listener is closed.
  tcp::socket late(io);
  error_code ec;
  late.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_after_colon(relay->status().listening[0])), ec);
  EXPECT_TRUE(ec);
}

TEST_F(relay_unit_test, a_drain_ends_when_the_last_connection_does) {
  start_running();
  auto [client, far] = connect_through();
  bool done = false;
  relay->stop(60s, [&] { done = true; });
  EXPECT_EQ(relay->status().state, unit::unit_state::draining);
  carry(client, far, 100); // still relayed while draining
  EXPECT_FALSE(done);
  client.close();
  far.close();
  ASSERT_TRUE(test::run_until(
      io, [&] { return done; }, 5s)); // long before the 60 s deadline
  EXPECT_EQ(relay->status().state, unit::unit_state::stopped);
}

TEST_F(relay_unit_test, stops_within_its_deadline_with_a_stream_open_and_resets_it) {
  start_running();
  auto [client, far] = connect_through();
  carry(client, far, 100);
  bool done = false;
  const auto began = std::chrono::steady_clock::now();
  relay->stop(300ms, [&] { done = true; });
  ASSERT_TRUE(test::run_until(
      io, [&] { return done; }, 5s));
  const auto took = std::chrono::steady_clock::now() - began;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s);
  // The client sees the cut as a reset, not a clean end.
  char byte = 0;
  error_code ec;
  bool ended = false;
  client.async_read_some(asio::buffer(&byte, 1), [&](error_code e, std::size_t) {
    ec = e;
    ended = true;
  });
  ASSERT_TRUE(test::run_until(io, [&] { return ended; }));
  EXPECT_EQ(ec, asio::error::connection_reset) << ec.message();
  EXPECT_EQ(relay->counters().bytes_up, 100u);
}

TEST_F(relay_unit_test, abandon_resets_everything_at_once) {
  start_running();
  auto [client, far] = connect_through();
  relay->abandon();
  EXPECT_EQ(relay->status().state, unit::unit_state::stopped);
  char byte = 0;
  error_code ec;
  bool ended = false;
  far.async_read_some(asio::buffer(&byte, 1), [&](error_code e, std::size_t) {
    ec = e;
    ended = true;
  });
  ASSERT_TRUE(test::run_until(io, [&] { return ended; }));
  EXPECT_EQ(ec, asio::error::connection_reset) << ec.message();
}

TEST_F(relay_unit_test, start_fails_cleanly_on_a_port_in_use) {
  tcp::acceptor taken(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto a = args();
  a.listen = "127.0.0.1:" + std::to_string(taken.local_endpoint().port());
  make(a);
  const int fds = test::open_fd_count();
  auto started = relay->start();
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().find(std::to_string(taken.local_endpoint().port())), std::string::npos) << started.error();
  EXPECT_EQ(relay->status().state, unit::unit_state::failed);
  EXPECT_EQ(relay->status().last_error, started.error());
  EXPECT_EQ(test::open_fd_count(), fds); // nothing left open
  EXPECT_EQ(states(), std::vector<unit::unit_state>{unit::unit_state::failed});
  bool done = false;
  relay->stop(1s, [&] { done = true; }); // stopping a failed unit still completes
  ASSERT_TRUE(test::run_until(io, [&] { return done; }));
  EXPECT_EQ(relay->status().state, unit::unit_state::failed);
}

TEST_F(relay_unit_test, an_unreachable_target_fails_the_unit_after_start) {
  auto a = args();
  target.close(); // nothing listens there now: connects are refused
  make(a);
  ASSERT_TRUE(relay->start());
  ASSERT_TRUE(test::run_until(io, [&] { return relay->status().state == unit::unit_state::failed; }));
  EXPECT_NE(relay->status().last_error.find("--no-target-check"), std::string::npos) << relay->status().last_error;
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].what, unit::unit_event::kind::error);
  EXPECT_EQ(events[1].what, unit::unit_event::kind::state_changed);
  EXPECT_EQ(events[1].state, unit::unit_state::failed);
}

TEST_F(relay_unit_test, reload_says_a_relay_has_nothing_to_reload) {
  start_running();
  const auto r = relay->reload("test");
  EXPECT_TRUE(r.ok);
  EXPECT_NE(r.summary.find("nothing to reload"), std::string::npos);
  EXPECT_EQ(events.back().what, unit::unit_event::kind::reloaded);
}

TEST_F(relay_unit_test, udp_relay_counts_sessions) {
  asio::ip::udp::socket far(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  unit::relay_args a;
  a.udp = true;
  a.listen = "127.0.0.1:0";
  a.target = "127.0.0.1:" + std::to_string(far.local_endpoint().port());
  make(a);
  ASSERT_TRUE(relay->start());
  ASSERT_TRUE(test::run_until(io, [&] { return relay->status().state == unit::unit_state::running; }));
  EXPECT_EQ(relay->status().listening.at(0).rfind("UDP 127.0.0.1:", 0), 0u);
  asio::ip::udp::socket client(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  client.send_to(asio::buffer("ping", 4),
                 asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), port_after_colon(relay->status().listening[0])));
  char in[16];
  asio::ip::udp::endpoint from;
  bool got = false;
  far.async_receive_from(asio::buffer(in), from, [&](error_code ec, std::size_t n) { got = !ec && n == 4; });
  ASSERT_TRUE(test::run_until(io, [&] { return got; }));
  EXPECT_EQ(relay->counters().connections_total, 1u);
  EXPECT_EQ(relay->counters().connections_open, 1u);
  bool done = false;
  relay->stop(1s, [&] { done = true; });
  ASSERT_TRUE(test::run_until(io, [&] { return done; }));
}

} // namespace
