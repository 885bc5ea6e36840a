// The relay over real TCP connections on loopback, in both modes (splice
// and buffered copy): data integrity, half-close in each direction, and
// reset propagation.
#include "net/stream_relay.hpp"

#include "test_util.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <random>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::net;
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

struct pair_of_sockets {
  tcp::socket near; // the application's end
  tcp::socket far;  // the relay's end
};

pair_of_sockets connected_pair(asio::io_context& io) {
  tcp::acceptor a(io, tcp::endpoint(test::v4_loopback(), 0));
  tcp::socket near(io);
  near.connect(a.local_endpoint());
  tcp::socket far = a.accept();
  return {std::move(near), std::move(far)};
}

struct relay_test : ::testing::TestWithParam<relay_mode> {
  asio::io_context io;
  std::optional<relay_stats> stats;
  error_code relay_error;
  tcp::socket client{io};
  tcp::socket server{io};

  void SetUp() override {
    auto left = connected_pair(io);  // client <-> relay side A
    auto right = connected_pair(io); // relay side B <-> server
    client = std::move(left.near);
    server = std::move(right.near);
    start_relay(
        io.get_executor(), left.far.release(), right.far.release(),
        [this](relay_stats s, error_code ec) {
          stats = s;
          relay_error = ec;
        },
        GetParam());
  }

  // Runs the relay in a thread-free way: blocking I/O on the test side is
  // interleaved with io.poll() by doing it in small non-blocking steps.
  void pump_for(std::chrono::milliseconds d) {
    test::run_until(
        io, [] { return false; }, d);
  }
};

std::vector<char> random_bytes(std::size_t n) {
  std::vector<char> v(n);
  std::mt19937 rng(42);
  for (auto& c : v)
    c = static_cast<char>(rng());
  return v;
}

/// Writes `out` to `w` while reading everything from `r`, driving io meanwhile.
std::vector<char> transfer(asio::io_context& io, tcp::socket& w, tcp::socket& r, const std::vector<char>& out) {
  std::vector<char> in;
  std::size_t written = 0;
  w.non_blocking(true);
  r.non_blocking(true);
  std::array<char, 65536> buf{};
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (in.size() < out.size() && std::chrono::steady_clock::now() < deadline) {
    error_code ec;
    if (written < out.size())
      written += w.write_some(asio::buffer(out.data() + written, out.size() - written), ec);
    const auto n = r.read_some(asio::buffer(buf), ec);
    in.insert(in.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    io.restart();
    io.poll();
  }
  return in;
}

} // namespace

TEST_P(relay_test, CarriesBytesBothWaysIntact) {
  const auto up = random_bytes(8 << 20);
  EXPECT_EQ(transfer(io, client, server, up), up);
  const auto down = random_bytes(3 << 20);
  EXPECT_EQ(transfer(io, server, client, down), down);
}

TEST_P(relay_test, HalfCloseFromClientStillDeliversTheReply) {
  const std::string request = "request";
  asio::write(client, asio::buffer(request));
  client.shutdown(tcp::socket::shutdown_send);
  // The server reads until EOF...
  std::string got;
  server.non_blocking(true);
  std::array<char, 64> buf{};
  bool eof = false;
  ASSERT_TRUE(test::run_until(io, [&] {
    error_code ec;
    const auto n = server.read_some(asio::buffer(buf), ec);
    got.append(buf.data(), n);
    eof = ec == asio::error::eof;
    return eof;
  }));
  EXPECT_EQ(got, request);
  // ...and its reply still reaches the half-closed client.
  server.non_blocking(false);
  const std::string reply(100000, 'r');
  asio::write(server, asio::buffer(reply));
  server.shutdown(tcp::socket::shutdown_send);
  std::string received;
  client.non_blocking(true);
  ASSERT_TRUE(test::run_until(io, [&] {
    error_code ec;
    const auto n = client.read_some(asio::buffer(buf), ec);
    received.append(buf.data(), n);
    return ec == asio::error::eof;
  }));
  EXPECT_EQ(received, reply);
  ASSERT_TRUE(test::run_until(io, [&] { return stats.has_value(); }));
  EXPECT_EQ(stats->a_to_b, request.size());
  EXPECT_EQ(stats->b_to_a, reply.size());
  EXPECT_EQ(stats->spliced, GetParam() == relay_mode::automatic);
  EXPECT_FALSE(relay_error);
}

TEST_P(relay_test, ResetOnOneSideResetsTheOther) {
  asio::write(server, asio::buffer(std::string("x")));
  pump_for(50ms);
  // Abortive close of the server side (RST).
  server.set_option(asio::socket_base::linger(true, 0));
  server.close();
  ASSERT_TRUE(test::run_until(io, [&] { return stats.has_value(); }));
  EXPECT_TRUE(relay_error);
  client.non_blocking(true);
  std::array<char, 16> buf{};
  error_code ec;
  test::run_until(io, [&] {
    if (ec && ec != asio::error::would_block)
      return true; // keep the first real error
    client.read_some(asio::buffer(buf), ec);
    return ec && ec != asio::error::would_block;
  });
  EXPECT_EQ(ec, asio::error::connection_reset) << ec.message();
}

INSTANTIATE_TEST_SUITE_P(modes, relay_test, ::testing::Values(relay_mode::automatic, relay_mode::copy),
                         [](const auto& p) { return p.param == relay_mode::automatic ? "splice" : "copy"; });
