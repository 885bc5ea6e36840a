// The --metrics HTTP server (src/daemon/metrics_http.*) in process, with a
// source the test controls: a reply from another thread, a reply that never
// comes (the deadline closes the connection and other scrapes go on), a
// reply after the deadline or after stop() (dropped). The daemon-level
// behaviour (404/405/431, slowloris, the bound, a real Prometheus parser)
// is tests/integration/test_metrics.py.
#include "daemon/metrics_http.hpp"

#include "../net/test_util.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using namespace warren;
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

class metrics_http_test : public ::testing::Test {
 protected:
  asio::io_context io;
  std::optional<daemon::metrics_http> server;
  std::vector<daemon::metrics_reply> held; // replies the source keeps for later
  std::function<void(daemon::metrics_reply)> behaviour;
  int asked = 0;

  void start(duration deadline = 5s) {
    daemon::metrics_http_options o;
    o.plan.addresses = {asio::ip::make_address("127.0.0.1")};
    o.plan.port = 0;
    o.plan.literal = true;
    o.deadline = deadline;
    server.emplace(
        io.get_executor(),
        [this](daemon::metrics_reply reply) {
          ++asked;
          behaviour(std::move(reply));
        },
        o);
    auto ok = server->start();
    ASSERT_TRUE(ok) << ok.error();
  }

  std::uint16_t port() const {
    const auto d = server->describe(); // "127.0.0.1:PORT"
    return static_cast<std::uint16_t>(std::stoi(d.substr(d.rfind(':') + 1)));
  }

  struct client {
    tcp::socket socket;
    std::string reply;
    bool done = false;
  };

  /// Connects, sends a GET /metrics and reads until EOF, asynchronously.
  std::shared_ptr<client> scrape() {
    auto c = std::make_shared<client>(client{tcp::socket(io), {}, false});
    c->socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port()));
    asio::write(c->socket, asio::buffer(std::string("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")));
    read_more(c);
    return c;
  }

  static void read_more(std::shared_ptr<client> c) {
    auto buf = std::make_shared<std::array<char, 4096>>();
    c->socket.async_read_some(asio::buffer(*buf), [c, buf](error_code ec, std::size_t n) {
      c->reply.append(buf->data(), n);
      if (ec) {
        c->done = true;
        c->socket.close(); // as an HTTP client does after a Connection: close reply
      } else
        read_more(c);
    });
  }
};

TEST_F(metrics_http_test, a_reply_from_another_thread_is_served) {
  behaviour = [](daemon::metrics_reply reply) {
    std::thread([reply = std::move(reply)] { reply("warren_units 0\n"); }).join();
  };
  start();
  auto c = scrape();
  ASSERT_TRUE(test::run_until(io, [&] { return c->done; }));
  EXPECT_TRUE(c->reply.starts_with("HTTP/1.1 200 OK\r\n")) << c->reply;
  EXPECT_NE(c->reply.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos);
  EXPECT_NE(c->reply.find("Content-Length: 15\r\n"), std::string::npos) << c->reply;
  EXPECT_TRUE(c->reply.ends_with("\r\n\r\nwarren_units 0\n")) << c->reply;
  EXPECT_TRUE(test::run_until(io, [&] { return server->connections() == 0; }));
}

TEST_F(metrics_http_test, a_source_that_never_answers_holds_only_its_connection_until_the_deadline) {
  bool answer = false;
  behaviour = [&](daemon::metrics_reply reply) {
    if (answer)
      reply("ok\n");
    else
      held.push_back(std::move(reply));
  };
  start(300ms);
  const auto t0 = steady_clock::now();
  auto stuck = scrape();
  ASSERT_TRUE(test::run_until(io, [&] { return asked == 1; }));
  answer = true;
  auto second = scrape(); // served while the first waits
  ASSERT_TRUE(test::run_until(io, [&] { return second->done; }));
  EXPECT_TRUE(second->reply.starts_with("HTTP/1.1 200 OK\r\n")) << second->reply;
  EXPECT_FALSE(stuck->done);
  ASSERT_TRUE(test::run_until(io, [&] { return stuck->done; }));
  EXPECT_GE(steady_clock::now() - t0, 300ms);
  EXPECT_EQ(stuck->reply, "") << "closed without an answer";
  EXPECT_TRUE(test::run_until(io, [&] { return server->connections() == 0; }));
  // The answer after the deadline is dropped.
  ASSERT_EQ(held.size(), 1u);
  held[0]("late\n");
  io.poll();
  EXPECT_EQ(server->connections(), 0u);
}

TEST_F(metrics_http_test, stop_while_collecting_closes_and_a_late_reply_is_harmless) {
  behaviour = [&](daemon::metrics_reply reply) { held.push_back(std::move(reply)); };
  start();
  const auto listening = port();
  auto c = scrape();
  ASSERT_TRUE(test::run_until(io, [&] { return asked == 1; }));
  server->stop();
  ASSERT_TRUE(test::run_until(io, [&] { return c->done; }));
  EXPECT_EQ(c->reply, "");
  EXPECT_EQ(server->connections(), 0u);
  held[0]("late\n");
  server.reset();
  io.poll();
  tcp::socket again(io);
  error_code ec;
  again.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), listening), ec);
  EXPECT_EQ(ec, asio::error::connection_refused) << "the listener is closed";
}

TEST_F(metrics_http_test, parse_metrics_listen) {
  auto bare = daemon::parse_metrics_listen("9100");
  ASSERT_TRUE(bare) << bare.error();
  EXPECT_TRUE(bare->loopback_only);
  EXPECT_EQ(bare->plan.port, 9100);
  EXPECT_GE(bare->plan.addresses.size(), 1u);
  for (const auto& a : bare->plan.addresses)
    EXPECT_TRUE(a.is_loopback()) << a.to_string();
  auto v4 = daemon::parse_metrics_listen("127.0.0.1:9100");
  ASSERT_TRUE(v4);
  EXPECT_TRUE(v4->loopback_only);
  auto any = daemon::parse_metrics_listen("*:9100");
  ASSERT_TRUE(any);
  EXPECT_FALSE(any->loopback_only);
  auto wide = daemon::parse_metrics_listen("0.0.0.0:9100");
  ASSERT_TRUE(wide);
  EXPECT_FALSE(wide->loopback_only);
  EXPECT_FALSE(daemon::parse_metrics_listen("/run/x.sock"));
  EXPECT_FALSE(daemon::parse_metrics_listen("0"));
  EXPECT_FALSE(daemon::parse_metrics_listen("::1:9100"));
  EXPECT_FALSE(daemon::parse_metrics_listen(""));
}

} // namespace
