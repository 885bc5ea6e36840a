// The tunnel server unit (src/unit/server_unit.*) with real sockets on
// loopback: a tcp:// listener, a real tunnel::client with a -L forward to a
// test-owned target, and bytes through them. run_until bounds every wait.
#include "unit/server_unit.hpp"

#include "unit_fixture.hpp"
#include "tunnel/client.hpp"

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

constexpr const char* k_token = "server-unit-test-token";

using test::port_after_colon;

class server_unit_test : public test::unit_fixture {
 protected:
  std::unique_ptr<unit::server_unit> server;
  net::system_resolver resolver;
  std::shared_ptr<tunnel::client> client;
  std::uint16_t local_port = 0; // the client's -L port

  static unit::server_args args() {
    unit::server_args a;
    a.listen = {"tcp://127.0.0.1:0"};
    a.token_env = k_token;
    a.allow = {"127.0.0.1"};
    a.drain_timeout = "300ms";
    return a;
  }

  void make(const unit::server_args& a) {
    auto o = unit::server_options_from(a);
    ASSERT_TRUE(o) << o.error();
    server = std::make_unique<unit::server_unit>(io.get_executor(), std::move(o).value());
    watch(*server);
  }

  void TearDown() override {
    if (client)
      client->stop();
    if (server)
      server->abandon();
  }

  /// A tunnel client with one -L forward to `target`, its tunnel up.
  void connect_client() {
    tunnel::client_options o;
    auto url =
        transport::parse_url("tcp://127.0.0.1:" + std::to_string(port_after_colon(server->status().listening.at(0))));
    ASSERT_TRUE(url) << url.error();
    o.server = *url;
    o.dial.token = k_token;
    auto f = tunnel::parse_local_forward("127.0.0.1:0:127.0.0.1:" + std::to_string(target.local_endpoint().port()));
    ASSERT_TRUE(f) << f.error();
    o.forwards.push_back(*f);
    client = std::make_shared<tunnel::client>(io.get_executor(), resolver, o);
    auto bound = client->bind();
    ASSERT_TRUE(bound) << bound.error();
    const auto& line = bound->at(0); // "TCP 127.0.0.1:PORT -> 127.0.0.1:PORT"
    local_port = port_after_colon(line.substr(0, line.find(" ->")));
    client->start([](const std::string& why) { FAIL() << why; });
    ASSERT_TRUE(test::run_until(io, [&] { return server->counters().connections_open == 1; }));
  }

  std::pair<tcp::socket, tcp::socket> open_stream() { return connect_via(local_port); }
};

TEST(server_options, each_mistake_is_one_sentence_naming_the_flag) {
  unit::server_args a;
  a.listen = {"tcp://127.0.0.1:0"};
  EXPECT_TRUE(unit::server_options_from(a));
  auto bad = [&](auto change, std::string_view says) {
    auto b = a;
    change(b);
    auto o = unit::server_options_from(b);
    ASSERT_FALSE(o);
    EXPECT_NE(o.error().find(says), std::string::npos) << o.error();
  };
  bad([](auto& b) { b.listen = {"tcp://127.0.0.1:9000", "tcp://127.0.0.1:9000"}; }, "share an address");
  bad([](auto& b) { b.listen = {"ftp://x:1"}; }, "--listen: ");
  bad([](auto& b) { b.cert = "c.pem"; }, "--cert and --key go together");
  bad([](auto& b) { b.max_lookups = 64; }, "--max-lookups-per-client 64 is more than --lookup-threads 32");
  bad([](auto& b) { b.drain_timeout = "soon"; }, "--drain-timeout: ");
  bad([](auto& b) { b.family = "x"; }, "--family 'x'");
  bad([](auto& b) { b.max_buffer = 10; }, "--max-buffer-per-client 10");
  auto b = a;
  b.cert_names = {"example.org"};
  b.trust_proxy = {"10.0.0.0/8"};
  auto o = unit::server_options_from(b);
  ASSERT_TRUE(o) << o.error();
  EXPECT_EQ(o->warnings.size(), 2u); // --trust-proxy without ws, --cert-name without TLS
}

TEST_F(server_unit_test, serves_a_tunnel_counts_its_bytes_and_drains) {
  make(args());
  auto started = server->start();
  ASSERT_TRUE(started) << started.error();
  EXPECT_EQ(server->status().state, unit::unit_state::running);
  EXPECT_EQ(server->kind(), "server");
  ASSERT_EQ(server->status().listening.size(), 1u);
  EXPECT_EQ(server->status().listening[0].rfind("tcp://127.0.0.1:", 0), 0u) << server->status().listening[0];

  connect_client();
  auto [near, far] = open_stream();
  carry(near, far, 20000);
  carry(far, near, 7000);
  auto c = server->counters();
  EXPECT_GE(c.bytes_up, 20000u); // transport bytes: the data and its framing
  EXPECT_GE(c.bytes_down, 7000u);
  EXPECT_EQ(c.connections_total, 1u);
  EXPECT_EQ(c.streams_open, 1u);
  EXPECT_EQ(c.streams_total, 1u);

  // Stop with the stream open: done within the 300 ms drain (+ one tick).
  bool done = false;
  const auto began = std::chrono::steady_clock::now();
  server->stop(300ms, [&] { done = true; });
  EXPECT_EQ(server->status().state, unit::unit_state::draining);
  ASSERT_TRUE(test::run_until(
      io, [&] { return done; }, 5s));
  const auto took = std::chrono::steady_clock::now() - began;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s);
  EXPECT_EQ(server->status().state, unit::unit_state::stopped);
  EXPECT_EQ(states(), (std::vector<unit::unit_state>{unit::unit_state::running, unit::unit_state::draining,
                                                     unit::unit_state::stopped}));
  EXPECT_EQ(server->counters().connections_open, 0u);
  EXPECT_GE(server->counters().bytes_up, 20000u); // kept after the tunnel ended
}

TEST_F(server_unit_test, reload_reads_the_access_settings_again) {
  make(args());
  ASSERT_TRUE(server->start());
  const auto r = server->reload("test");
  EXPECT_TRUE(r.ok) << r.summary;
  EXPECT_EQ(events.back().what, unit::unit_event::kind::reloaded);
}

TEST_F(server_unit_test, start_fails_cleanly_on_a_port_in_use) {
  tcp::acceptor taken(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto a = args();
  a.listen = {"tcp://127.0.0.1:" + std::to_string(taken.local_endpoint().port())};
  make(a);
  auto started = server->start();
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().find(std::to_string(taken.local_endpoint().port())), std::string::npos) << started.error();
  EXPECT_EQ(server->status().state, unit::unit_state::failed);
  EXPECT_EQ(server->status().last_error, started.error());
  bool done = false;
  server->stop(1s, [&] { done = true; });
  ASSERT_TRUE(test::run_until(io, [&] { return done; }));
}

TEST_F(server_unit_test, start_fails_cleanly_without_any_user) {
  auto a = args();
  a.token_env.clear();
  make(a);
  auto started = server->start();
  ASSERT_FALSE(started);
  EXPECT_EQ(server->status().state, unit::unit_state::failed);
}

} // namespace
