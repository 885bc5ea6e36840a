// Real units behind the --metrics endpoint, in process: a tunnel server unit
// and a client unit with a -L forward on loopback, their snapshot read on
// their executor (as the daemon does, by posting) and scraped over HTTP.
// The byte counters move as data flows; the client's RTT series appears.
#include "daemon/metrics_http.hpp"
#include "daemon/metrics_text.hpp"
#include "unit/client_unit.hpp"
#include "unit/server_unit.hpp"

#include "../net/test_util.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <optional>
#include <string>

using namespace std::chrono_literals;
using namespace warren;
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr const char* k_token = "metrics-units-test-token";

std::uint16_t port_after_colon(const std::string& text) {
  return static_cast<std::uint16_t>(std::stoi(text.substr(text.rfind(':') + 1)));
}

daemon::unit_snapshot snapshot_of(const unit::unit& u) {
  return {u.name(), std::string(u.kind()), u.status(), u.counters()};
}

/// The value of the one series `line_prefix` (name and labels) in `text`; nullopt when absent.
std::optional<double> value_of(const std::string& text, const std::string& line_prefix) {
  const auto at = text.find("\n" + line_prefix + " ");
  if (at == std::string::npos)
    return std::nullopt;
  const auto start = at + 1 + line_prefix.size() + 1;
  return std::stod(text.substr(start, text.find('\n', start) - start));
}

TEST(metrics_units, byte_counters_move_as_data_flows) {
  asio::io_context io;
  tcp::acceptor target{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};

  unit::server_args s;
  s.listen = {"tcp://127.0.0.1:0"};
  s.token_env = k_token;
  s.allow = {"127.0.0.1"};
  auto so = unit::server_options_from(s);
  ASSERT_TRUE(so) << so.error();
  unit::server_unit server(io.get_executor(), std::move(so).value());
  server.set_name("srv");
  ASSERT_TRUE(server.start());

  unit::client_args a;
  a.url = "tcp://127.0.0.1:" + std::to_string(port_after_colon(server.status().listening.at(0)));
  a.local = {"127.0.0.1:0:127.0.0.1:" + std::to_string(target.local_endpoint().port())};
  a.proxy.proxy = "none";
  auto co = unit::client_options_from(a);
  ASSERT_TRUE(co) << co.error();
  co.value().client.dial.token = k_token;
  unit::client_unit client(io.get_executor(), std::move(co).value());
  client.set_name("office");
  ASSERT_TRUE(client.start());

  // As the daemon collects: post to each unit's executor, read it there.
  daemon::metrics_http_options o;
  o.plan.addresses = {asio::ip::make_address("127.0.0.1")};
  o.plan.literal = true;
  const daemon::daemon_info info{"0.0.0-test", std::chrono::system_clock::now()};
  daemon::metrics_http http(
      io.get_executor(),
      [&](daemon::metrics_reply reply) {
        asio::post(server.executor(), [&, reply] {
          auto units = std::make_shared<std::vector<daemon::unit_snapshot>>();
          units->push_back(snapshot_of(server));
          asio::post(client.executor(), [&, reply, units] {
            units->push_back(snapshot_of(client));
            reply(daemon::metrics_text(*units, info));
          });
        });
      },
      o);
  ASSERT_TRUE(http.start());
  const auto http_port = port_after_colon(http.describe());

  const auto scrape = [&] {
    auto sock = std::make_shared<tcp::socket>(io);
    sock->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), http_port));
    asio::write(*sock, asio::buffer(std::string("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")));
    auto text = std::make_shared<std::string>();
    bool done = false;
    auto buf = std::make_shared<std::array<char, 4096>>();
    std::function<void()> more = [&, sock, text, buf] {
      sock->async_read_some(asio::buffer(*buf), [&, sock, text, buf](error_code ec, std::size_t n) {
        text->append(buf->data(), n);
        if (ec)
          done = true;
        else
          more();
      });
    };
    more();
    EXPECT_TRUE(test::run_until(io, [&] { return done; }));
    EXPECT_TRUE(text->starts_with("HTTP/1.1 200 OK\r\n")) << *text;
    return *text;
  };

  const std::string c = "{unit=\"office\",kind=\"client\"";
  const std::string up = "warren_unit_bytes_total" + c + ",direction=\"up\"}";
  const std::string down = "warren_unit_bytes_total" + c + ",direction=\"down\"}";
  ASSERT_TRUE(test::run_until(io, [&] { return client.counters().tunnel_rtt_us > 0; }));
  auto before = scrape();
  EXPECT_EQ(value_of(before, "warren_unit_up" + c + "}"), 1);
  EXPECT_EQ(value_of(before, "warren_unit_connections_open" + c + "}"), 1);
  ASSERT_TRUE(value_of(before, "warren_unit_tunnel_rtt_seconds" + c + "}"));
  EXPECT_GT(*value_of(before, "warren_unit_tunnel_rtt_seconds" + c + "}"), 0);
  EXPECT_TRUE(value_of(before, "warren_unit_connected_since_timestamp_seconds" + c + "}"));
  const auto up0 = value_of(before, up);
  const auto down0 = value_of(before, down);
  ASSERT_TRUE(up0 && down0) << before;

  // 256 KiB each way through the -L forward.
  tcp::socket near(io);
  near.connect(tcp::endpoint(
      asio::ip::make_address("127.0.0.1"),
      port_after_colon(client.status().listening.at(0).substr(0, client.status().listening.at(0).find(" ->")))));
  tcp::socket far(io);
  bool accepted = false;
  target.async_accept(far, [&](error_code ec) { accepted = !ec; });
  ASSERT_TRUE(test::run_until(io, [&] { return accepted; }));
  const std::vector<char> out(256 * 1024, 'u');
  std::vector<char> in(out.size());
  bool sent = false, got = false;
  asio::async_write(near, asio::buffer(out), [&](error_code ec, std::size_t) { sent = !ec; });
  asio::async_read(far, asio::buffer(in), [&](error_code ec, std::size_t) { got = !ec; });
  ASSERT_TRUE(test::run_until(io, [&] { return sent && got; }));
  sent = got = false;
  asio::async_write(far, asio::buffer(out), [&](error_code ec, std::size_t) { sent = !ec; });
  asio::async_read(near, asio::buffer(in), [&](error_code ec, std::size_t) { got = !ec; });
  ASSERT_TRUE(test::run_until(io, [&] { return sent && got; }));

  const auto after = scrape();
  ASSERT_TRUE(value_of(after, up) && value_of(after, down)) << after;
  EXPECT_GE(*value_of(after, up), *up0 + 256 * 1024) << after;
  EXPECT_GE(*value_of(after, down), *down0 + 256 * 1024) << after;
  EXPECT_EQ(value_of(after, "warren_unit_streams_open" + c + "}"), 1);
  EXPECT_GE(*value_of(after, "warren_unit_bytes_total{unit=\"srv\",kind=\"server\",direction=\"up\"}"), 256 * 1024);

  http.stop();
  client.abandon();
  server.abandon();
  io.poll();
}

} // namespace
