// The work a peer can make a session do, beyond the memory it can make it
// hold (src/wire/session.*, "Work bounds"): OPENs beyond the open rate stop
// the reader until they are due, in order and without refusing any; and a
// reader with many frames to decode lets the other handlers on its
// executor run between bounded turns. A session faces a raw socket that
// plays the peer, over real loopback TCP, on one io_context.
#include "wire/session.hpp"

#include "../net/test_util.hpp"
#include "stream/tcp_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <cstring>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::wire;
namespace asio = boost::asio;
using asio::ip::tcp;
using bytes = std::vector<std::uint8_t>;

namespace {

class pacing_test : public ::testing::Test {
 protected:
  asio::io_context io; // first: destroyed last
  std::shared_ptr<session> s;
  tcp::socket raw{io};
  bytes inbox; // what the session sent
  std::vector<std::unique_ptr<mux_stream>> opened;

  void TearDown() override {
    if (s)
      s->close("test over");
    io.restart();
    io.poll();
  }

  /// A server session on one end of a loopback pair, the raw peer on the
  /// other. Big socket buffers, so that what the peer writes before the
  /// session starts is all waiting for its first read.
  void start(session_config config) {
    auto [a, b] = test::tcp_pair(io);
    a.set_option(asio::socket_base::receive_buffer_size(1 << 20));
    b.set_option(asio::socket_base::send_buffer_size(1 << 20));
    raw = std::move(b);
    config.is_client = false;
    config.label = "server";
    s = session::create(stream::make_tcp_stream(std::move(a), "session end"), config);
    s->set_open_handler([this](std::unique_ptr<mux_stream> m, open_request) { opened.push_back(std::move(m)); });
  }

  void go() {
    s->start();
    test::spawn(io, read_loop());
  }

  asio::awaitable<void> read_loop() {
    std::array<std::uint8_t, 64 * 1024> buf;
    for (;;) {
      auto [ec, n] = co_await raw.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec)
        co_return;
      inbox.insert(inbox.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
  }

  void send(const bytes& b) { asio::write(raw, asio::buffer(b)); }

  static bytes hello_frame() {
    bytes f;
    encode_hello(f, hello{});
    return f;
  }

  static bytes ping(std::uint64_t mark) {
    ping_payload p{};
    std::memcpy(p.data(), &mark, sizeof mark);
    bytes f;
    encode_ping(f, p, false);
    return f;
  }

  /// Whether the session has answered ping(mark).
  bool ponged(std::uint64_t mark) const {
    std::span<const std::uint8_t> rest(inbox);
    while (!rest.empty()) {
      auto r = decode(rest);
      auto* f = std::get_if<decoded_frame>(&r);
      if (!f)
        return false;
      if (f->header.type == frame_type::ping && (f->header.flags & k_flag_ack) && f->payload.size() == 8 &&
          std::memcmp(f->payload.data(), &mark, sizeof mark) == 0)
        return true;
      rest = rest.subspan(f->consumed);
    }
    return false;
  }

  std::size_t resets_sent() const {
    std::size_t n = 0;
    std::span<const std::uint8_t> rest(inbox);
    while (!rest.empty()) {
      auto r = decode(rest);
      auto* f = std::get_if<decoded_frame>(&r);
      if (!f)
        break;
      n += f->header.type == frame_type::reset ? 1 : 0;
      rest = rest.subspan(f->consumed);
    }
    return n;
  }
};

target_address target(const std::string& host, std::uint16_t port) {
  auto t = target_address::from_host_port({host, port});
  EXPECT_TRUE(t) << t.error();
  return *t;
}

} // namespace

// Four opens a second, three at once. The peer sends eight OPENs and then a
// PING: three are handled at once; the reader then stops, so the PING
// behind the OPENs waits too (nothing past an OPEN that is not due yet is
// read or handled), then the rest follow at the rate, none refused, and the
// PING is answered after the last of them.
TEST_F(pacing_test, OpensBeyondTheRatePauseTheReaderUntilTheyAreDue) {
  session_config config;
  config.max_opens_per_second = 4;
  config.open_burst = 3;
  start(config);
  bytes b = hello_frame();
  for (std::uint32_t i = 0; i < 8; ++i)
    encode_open(b, 2 * i + 1, stream_kind::tcp, target("example.com", 80));
  const auto ping_frame = ping(42);
  b.insert(b.end(), ping_frame.begin(), ping_frame.end());
  send(b);
  const auto t0 = steady_clock::now();
  go();
  ASSERT_TRUE(test::run_until(io, [&] { return opened.size() >= 3; }));
  test::run_until(
      io, [] { return false; }, 150ms);
  EXPECT_EQ(opened.size(), 3u) << "opens beyond the burst were handled at once";
  EXPECT_FALSE(ponged(42)) << "the PING behind the OPENs was read while they waited";
  EXPECT_GE(s->stats().open_pauses, 1u);
  ASSERT_TRUE(test::run_until(io, [&] { return ponged(42); }, 10s)) << "reading never resumed";
  const auto took = steady_clock::now() - t0;
  EXPECT_EQ(opened.size(), 8u);
  EXPECT_GE(took, 1000ms) << "five opens beyond the burst at 4/s take 1.25 s";
  EXPECT_EQ(resets_sent(), 0u) << "an open was refused instead of waiting";
  EXPECT_FALSE(s->closed());
  // Paced, not penalised: a PING now is answered at once.
  send(ping(43));
  EXPECT_TRUE(test::run_until(io, [&] { return ponged(43); }, 2s));
}

// Without a rate (the default, and the client's side) nothing waits.
TEST_F(pacing_test, NoRateNoPause) {
  start(session_config{});
  bytes b = hello_frame();
  for (std::uint32_t i = 0; i < 200; ++i)
    encode_open(b, 2 * i + 1, stream_kind::tcp, target("example.com", 80));
  const auto ping_frame = ping(7);
  b.insert(b.end(), ping_frame.begin(), ping_frame.end());
  send(b);
  go();
  ASSERT_TRUE(test::run_until(io, [&] { return ponged(7); }, 5s));
  EXPECT_EQ(opened.size(), 200u);
  EXPECT_EQ(s->stats().open_pauses, 0u);
}

// 10,000 frames that cost little each (an unknown type, skipped) wait in
// the socket when the session starts: one read takes them all. The reader
// still hands the thread back every turn of 256 frames, so a handler that
// re-posts itself runs dozens of times before the PING behind them is
// answered (once per read, a few times, if the reader decoded all at once).
TEST_F(pacing_test, AReaderWithManyFramesLetsOthersRunBetweenTurns) {
  start(session_config{});
  bytes b = hello_frame();
  constexpr int k_frames = 10'000;
  for (int i = 0; i < k_frames; ++i) {
    const std::uint8_t unknown[k_header_size] = {0x7F, 0, 0, 0, 0, 0, 0, 0, 0};
    b.insert(b.end(), std::begin(unknown), std::end(unknown));
  }
  const auto ping_frame = ping(9);
  b.insert(b.end(), ping_frame.begin(), ping_frame.end());
  send(b);
  int ticks = 0;
  bool done = false;
  bool ended = false; // the ticker must not outlive this function's locals
  test::spawn(io, [&]() -> asio::awaitable<void> {
    while (!done) {
      ++ticks;
      co_await asio::post(io, asio::use_awaitable);
    }
    ended = true;
  });
  go();
  const bool answered = test::run_until(io, [&] { return ponged(9); }, 5s);
  done = true;
  ASSERT_TRUE(test::run_until(io, [&] { return ended; }));
  ASSERT_TRUE(answered);
  EXPECT_GE(ticks, 20) << "the reader decoded " << k_frames << " frames in " << ticks
                       << " turns of the loop; a turn should hold 256";
  EXPECT_FALSE(s->closed());
}
