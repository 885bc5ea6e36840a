// Tests of stream::pump (src/stream/pump.*) between two TCP byte_streams on
// loopback: app_a <-> [A  pump  B] <-> app_b, where the apps are plain
// sockets. Data crosses intact both ways at once, end of stream on one side
// becomes a half-close on the other while the reverse direction keeps
// working, the pump ends with byte counts once both directions are done,
// and an error in one direction (a reset) closes both streams. Also the
// non-blocking try_read_some / try_write_some of a TCP stream (fast path).
#include "stream/pump.hpp"

#include "../net/test_util.hpp"
#include "stream/tcp_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <random>
#include <thread>

using namespace std::chrono_literals;
using namespace warren;
namespace asio = boost::asio;
using asio::ip::tcp;
using bytes = std::vector<std::uint8_t>;

namespace {

using test::random_bytes;
using test::tcp_pair;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct write_job {
  bool done = false;
  error_code ec;
};
struct read_job {
  bool done = false;
  bytes data;
  error_code ec;
};

asio::awaitable<void> write_all(tcp::socket& s, const bytes& data, write_job& job, bool fin) {
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(data), use_tuple);
  job.ec = ec;
  if (!ec && fin)
    s.shutdown(tcp::socket::shutdown_send, job.ec);
  job.done = true;
}

asio::awaitable<void> read_all(tcp::socket& s, read_job& job, std::size_t limit = SIZE_MAX) {
  std::vector<std::uint8_t> buf(64 * 1024);
  while (job.data.size() < limit) {
    auto [ec, n] =
        co_await s.async_read_some(asio::buffer(buf.data(), std::min(buf.size(), limit - job.data.size())), use_tuple);
    job.data.insert(job.data.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    if (ec) {
      job.ec = ec;
      break;
    }
  }
  job.done = true;
}

class pump_test : public ::testing::Test {
 protected:
  asio::io_context io;
  tcp::socket app_a{io};
  tcp::socket app_b{io};
  stream::byte_stream_ptr a;
  stream::byte_stream_ptr b;
  std::optional<stream::pump_stats> result;

  void SetUp() override {
    auto [a_near, a_far] = tcp_pair(io);
    auto [b_near, b_far] = tcp_pair(io);
    app_a = std::move(a_near);
    app_b = std::move(b_near);
    a = stream::make_tcp_stream(std::move(a_far), "A");
    b = stream::make_tcp_stream(std::move(b_far), "B");
    asio::co_spawn(
        io, [this]() -> asio::awaitable<void> { result = co_await stream::pump(*a, *b); },
        [](const std::exception_ptr& e) {
          if (e)
            std::rethrow_exception(e);
        });
  }

  bool run(const std::function<bool()>& pred, std::chrono::milliseconds limit = 20s) {
    return test::run_until(io, pred, limit);
  }
};

TEST_F(pump_test, CarriesDataBothWaysAtOnce) {
  const bytes ab = random_bytes(4 << 20, 1);
  const bytes ba = random_bytes(3 << 20, 2);
  write_job wa;
  write_job wb;
  read_job ra;
  read_job rb;
  asio::co_spawn(io, write_all(app_a, ab, wa, true), asio::detached);
  asio::co_spawn(io, write_all(app_b, ba, wb, true), asio::detached);
  asio::co_spawn(io, read_all(app_a, ra), asio::detached);
  asio::co_spawn(io, read_all(app_b, rb), asio::detached);
  ASSERT_TRUE(run([&] { return ra.done && rb.done && result.has_value(); }, 60s));
  EXPECT_FALSE(wa.ec) << wa.ec.message();
  EXPECT_FALSE(wb.ec) << wb.ec.message();
  EXPECT_EQ(rb.ec, asio::error::eof);
  EXPECT_EQ(ra.ec, asio::error::eof);
  EXPECT_TRUE(rb.data == ab) << rb.data.size() << " bytes arrived at B";
  EXPECT_TRUE(ra.data == ba) << ra.data.size() << " bytes arrived at A";
  EXPECT_EQ(result->a_to_b, ab.size());
  EXPECT_EQ(result->b_to_a, ba.size());
  EXPECT_FALSE(result->error) << result->error.message();
}

TEST_F(pump_test, HalfClosePassesThroughAndReverseDirectionContinues) {
  // A says everything and ends its direction.
  const bytes request = random_bytes(100'000, 3);
  write_job wa;
  read_job rb;
  asio::co_spawn(io, write_all(app_a, request, wa, true), asio::detached);
  asio::co_spawn(io, read_all(app_b, rb), asio::detached);
  ASSERT_TRUE(run([&] { return rb.done; }));
  EXPECT_EQ(rb.ec, asio::error::eof) << "B did not see A's end of stream";
  EXPECT_TRUE(rb.data == request);
  EXPECT_FALSE(result) << "the pump ended while B -> A was still open";

  // B answers afterwards; A still receives it.
  const bytes response = random_bytes(2 << 20, 4);
  write_job wb;
  read_job ra;
  asio::co_spawn(io, write_all(app_b, response, wb, false), asio::detached);
  asio::co_spawn(io, read_all(app_a, ra, response.size()), asio::detached);
  ASSERT_TRUE(run([&] { return ra.done && wb.done; }));
  EXPECT_FALSE(wb.ec) << wb.ec.message();
  EXPECT_TRUE(ra.data == response);
  EXPECT_FALSE(result);

  // B ends too: A reads end of stream and the pump finishes cleanly.
  app_b.shutdown(tcp::socket::shutdown_send);
  read_job ra_end;
  asio::co_spawn(io, read_all(app_a, ra_end), asio::detached);
  ASSERT_TRUE(run([&] { return ra_end.done && result.has_value(); }));
  EXPECT_EQ(ra_end.ec, asio::error::eof);
  EXPECT_TRUE(ra_end.data.empty());
  EXPECT_EQ(result->a_to_b, request.size());
  EXPECT_EQ(result->b_to_a, response.size());
  EXPECT_FALSE(result->error) << result->error.message();
}

TEST_F(pump_test, ResetInOneDirectionClosesBoth) {
  // Some traffic first, so both directions are in their read loops.
  const bytes hello = {'h', 'i'};
  write_job wa;
  read_job rb;
  asio::co_spawn(io, write_all(app_a, hello, wa, false), asio::detached);
  asio::co_spawn(io, read_all(app_b, rb, hello.size()), asio::detached);
  ASSERT_TRUE(run([&] { return rb.done; }));

  // B's application aborts: RST instead of FIN.
  app_b.set_option(asio::socket_base::linger(true, 0));
  app_b.close();

  // The pump ends with the error, and A's application sees its connection
  // end although A itself never failed.
  read_job ra;
  asio::co_spawn(io, read_all(app_a, ra), asio::detached);
  ASSERT_TRUE(run([&] { return result.has_value() && ra.done; }));
  EXPECT_EQ(result->error, asio::error::connection_reset) << result->error.message();
  // A reset, not a FIN: a cut transfer must not look complete (the chaos
  // soak found -L connections ending in a FIN when their tunnel was lost).
  EXPECT_EQ(ra.ec, asio::error::connection_reset) << ra.ec.message();
  EXPECT_EQ(result->a_to_b, hello.size());
  EXPECT_EQ(result->b_to_a, 0u);
}

TEST(start_pump, DoneOwnsTheStreamsAndRunsOnceBothDirectionsEnded) {
  // The tunnel's way: nobody awaits the pump; its done handler owns the
  // streams and destroys them after it ran.
  asio::io_context io;
  auto [a_near, a_far] = tcp_pair(io);
  auto [b_near, b_far] = tcp_pair(io);
  auto a = stream::make_tcp_stream(std::move(a_far), "A");
  auto b = stream::make_tcp_stream(std::move(b_far), "B");
  auto& a_ref = *a;
  auto& b_ref = *b;
  std::optional<stream::pump_stats> result;
  stream::start_pump(a_ref, b_ref,
                     [&result, a = std::move(a), b = std::move(b)](stream::pump_stats stats) { result = stats; });
  const bytes hello = {'h', 'i'};
  asio::write(a_near, asio::buffer(hello));
  a_near.shutdown(tcp::socket::shutdown_send);
  b_near.shutdown(tcp::socket::shutdown_send);
  ASSERT_TRUE(test::run_until(
      io, [&] { return result.has_value(); }, 20s));
  EXPECT_EQ(result->a_to_b, hello.size());
  EXPECT_EQ(result->b_to_a, 0u);
  EXPECT_FALSE(result->error) << result->error.message();
  // The streams went with the handler: both applications see them closed.
  bytes got(16);
  error_code ec;
  const auto n = asio::read(b_near, asio::buffer(got), ec);
  EXPECT_EQ(n, hello.size());
  EXPECT_EQ(ec, asio::error::eof);
  a_near.read_some(asio::buffer(got), ec);
  EXPECT_EQ(ec, asio::error::eof);
}

TEST(start_pump, DestroyingTheContextDestroysARunningPumpAndItsStreams) {
  // io.stop() with streams still open, then the io_context goes: the pump
  // and the streams its done handler owns go with it, as pending operations
  // would (no leak; the done handler never runs).
  auto io = std::make_unique<asio::io_context>();
  auto [a_near, a_far] = tcp_pair(*io);
  auto [b_near, b_far] = tcp_pair(*io);
  auto a = stream::make_tcp_stream(std::move(a_far), "A");
  auto b = stream::make_tcp_stream(std::move(b_far), "B");
  auto& a_ref = *a;
  auto& b_ref = *b;
  auto alive = std::make_shared<int>(0);
  bool done = false;
  stream::start_pump(a_ref, b_ref,
                     [&done, alive, a = std::move(a), b = std::move(b)](stream::pump_stats) { done = true; });
  io->poll();
  EXPECT_EQ(alive.use_count(), 2);
  a_near.close();
  b_near.close();
  io.reset();
  EXPECT_EQ(alive.use_count(), 1) << "the pump's done handler outlived its io_context";
  EXPECT_FALSE(done);
}

TEST(start_pump, DestroyingTheContextResetsItsSockets) {
  // A second SIGTERM: io.stop(), and the io_context goes with transfers
  // running. Their peers must see a reset, not the FIN of a closing socket
  // that makes a cut transfer look complete.
  auto io = std::make_unique<asio::io_context>();
  auto [a_near, a_far] = tcp_pair(*io);
  auto [b_near, b_far] = tcp_pair(*io);
  auto a = stream::make_tcp_stream(std::move(a_far), "A");
  auto b = stream::make_tcp_stream(std::move(b_far), "B");
  auto& a_ref = *a;
  auto& b_ref = *b;
  stream::start_pump(a_ref, b_ref, [a = std::move(a), b = std::move(b)](stream::pump_stats) {});
  const std::string cut = "half of an upload";
  asio::write(a_near, asio::buffer(cut));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (b_near.available() < cut.size() && std::chrono::steady_clock::now() < deadline)
    io->run_for(10ms);
  std::string got(cut.size(), '\0');
  ASSERT_EQ(b_near.available(), cut.size());
  asio::read(b_near, asio::buffer(got));
  EXPECT_EQ(got, cut);
  // The near ends outlive the io_context as plain descriptors.
  const int near_fds[] = {a_near.release(), b_near.release()};
  io->stop();
  io.reset();
  for (int fd : near_fds) {
    std::array<char, 16> buf;
    const auto n = ::recv(fd, buf.data(), buf.size(), 0);
    const int err = errno;
    EXPECT_EQ(n, -1) << "the cut transfer ended with a FIN";
    EXPECT_EQ(err, ECONNRESET);
    ::close(fd);
  }
}

} // namespace

namespace {

// The non-blocking calls behind the pump's fast path, on a real TCP stream:
// nothing to read is would_block (not end of stream), data comes back at
// once, a write into a full socket buffer is partial and then would_block,
// and the peer's FIN is end of stream.
TEST(tcp_stream, TryReadAndTryWriteNeverBlock) {
  asio::io_context io;
  auto [near, far] = tcp_pair(io);
  auto s = stream::make_tcp_stream(std::move(far), "T");
  std::array<char, 64> buf{};
  error_code ec;
  EXPECT_EQ(s->try_read_some(asio::buffer(buf), ec), 0u);
  EXPECT_EQ(ec, asio::error::would_block);

  asio::write(near, asio::buffer("hello", 5));
  std::size_t n = 0;
  for (int i = 0; i < 100 && n == 0; ++i) { // loopback delivers at once, but do not depend on it
    n = s->try_read_some(asio::buffer(buf), ec);
    if (n == 0)
      std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(n, 5u) << ec.message();
  EXPECT_EQ(std::string(buf.data(), 5), "hello");

  const bytes big = random_bytes(64 << 20, 7);
  std::size_t sent = 0;
  for (;;) {
    const std::size_t w = s->try_write_some(asio::buffer(big.data() + sent, big.size() - sent), ec);
    sent += w;
    if (ec)
      break;
    ASSERT_GT(w, 0u);
    ASSERT_LT(sent, big.size()) << "64 MiB fit in the socket buffers of an unread connection?";
  }
  EXPECT_EQ(ec, asio::error::would_block);
  EXPECT_GT(sent, 0u);

  near.shutdown(tcp::socket::shutdown_send);
  n = 1;
  for (int i = 0; i < 100 && ec != asio::error::eof; ++i) {
    n = s->try_read_some(asio::buffer(buf), ec);
    if (ec == asio::error::would_block)
      std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_EQ(n, 0u);
}

} // namespace
