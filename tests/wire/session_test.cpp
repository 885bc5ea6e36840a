// Tests of the mux session (src/wire/session.*) over real loopback TCP
// connections: a client session and a server session on the two ends of one
// socket pair (or one session facing a raw socket that plays a scripted or
// misbehaving peer). Covers 0-RTT data before OPEN_OK, accept and refuse,
// bulk data both ways, the zero-copy prepare/commit and peek/consume calls, half-close, reset on close(), per-stream
// flow control without head-of-line blocking, many concurrent streams, UDP flows and their drop accounting, HELLO
// checks, transport end of stream, GOAWAY draining and the ping timeout. Everything runs on one io_context driven by
// run_until.
#include "wire/session.hpp"

#include "../net/test_util.hpp"
#include "stream/pump.hpp"
#include "stream/tcp_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <random>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::wire;
namespace asio = boost::asio;
using asio::ip::tcp;
using bytes = std::vector<std::uint8_t>;

namespace {

using test::random_bytes;
using test::tcp_pair;

constexpr std::size_t k_mib = 1u << 20;

bytes text(std::string_view s) {
  return bytes(s.begin(), s.end());
}

using test::spawn;

target_address target(const std::string& host, std::uint16_t port) {
  auto t = target_address::from_host_port({host, port});
  EXPECT_TRUE(t) << t.error();
  return *t;
}

/// Result slots filled by the coroutines below.
struct write_job {
  bool done = false;
  error_code ec;
};
struct read_job {
  bool done = false;
  bytes data;
  error_code ec; // the error that ended the read (eof for a clean end)
};

/// Writes `data` in `chunk`-sized writes; with `fin`, shuts the direction down after.
asio::awaitable<void> write_all(stream::byte_stream& s, bytes data, write_job& job, std::size_t chunk, bool fin) {
  for (std::size_t off = 0; off < data.size() && !job.ec; off += chunk) {
    const asio::const_buffer b(data.data() + off, std::min(chunk, data.size() - off));
    co_await s.write(std::span(&b, 1), job.ec);
  }
  if (!job.ec && fin)
    co_await s.shutdown(job.ec);
  job.done = true;
}

/// Reads until an error (eof included) or until `limit` bytes arrived.
asio::awaitable<void> read_all(stream::byte_stream& s, read_job& job,
                               std::size_t limit = std::numeric_limits<std::size_t>::max()) {
  std::vector<std::uint8_t> buf(64 * 1024);
  while (job.data.size() < limit) {
    error_code ec;
    const std::size_t n =
        co_await s.read_some(asio::buffer(buf.data(), std::min(buf.size(), limit - job.data.size())), ec);
    job.data.insert(job.data.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    if (ec) {
      job.ec = ec;
      break;
    }
  }
  job.done = true;
}

struct open_job {
  bool done = false;
  std::optional<reset_info> reset;
};

asio::awaitable<void> wait_open(mux_stream& s, open_job& job) {
  job.reset = co_await s.wait_open();
  job.done = true;
}

session_config client_config() {
  session_config c;
  c.is_client = true;
  c.label = "client";
  return c;
}

session_config server_config() {
  session_config c;
  c.is_client = false;
  c.label = "server";
  return c;
}

class session_test : public ::testing::Test {
 protected:
  asio::io_context io; // first: destroyed last
  std::shared_ptr<session> client;
  std::shared_ptr<session> server;
  std::vector<std::unique_ptr<mux_stream>> accepted; // server side streams, in order of arrival
  std::vector<open_request> requests;
  std::function<void(mux_stream&)> on_accept; // optional, runs for each new server stream
  std::optional<std::string> client_closed;
  std::optional<std::string> server_closed;

  void start(session_config cc = client_config(), session_config sc = server_config()) {
    auto [a, b] = tcp_pair(io);
    client = session::create(stream::make_tcp_stream(std::move(a), "client end"), cc);
    server = session::create(stream::make_tcp_stream(std::move(b), "server end"), sc);
    server->set_open_handler([this](std::unique_ptr<mux_stream> s, open_request r) {
      accepted.push_back(std::move(s));
      requests.push_back(std::move(r));
      if (on_accept)
        on_accept(*accepted.back());
    });
    client->set_closed_handler([this](const std::string& why) { client_closed = why; });
    server->set_closed_handler([this](const std::string& why) { server_closed = why; });
    client->start();
    server->start();
  }

  bool run(const std::function<bool()>& pred, std::chrono::milliseconds limit = 20s) {
    return test::run_until(io, pred, limit);
  }

  // No TearDown that runs the loop: after a failed ASSERT, coroutines may
  // still point at the test body's locals. Destroying io (declared first,
  // so destroyed last) destroys their frames without resuming them, which
  // releases the sessions.
};

// ---- opening streams ----------------------------------------------------------

TEST_F(session_test, DataWrittenBeforeOpenOkReachesTheServer) {
  start();
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  write_job w;
  spawn(io, write_all(*s, text("early data"), w, 1024, false));
  open_job o;
  spawn(io, wait_open(*s, o));

  ASSERT_TRUE(run([&] { return w.done && accepted.size() == 1; }));
  EXPECT_FALSE(w.ec) << w.ec.message();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].kind, stream_kind::tcp);
  EXPECT_EQ(requests[0].target, target("example.com", 80));

  // The server has not answered yet, but the bytes are already there.
  read_job r;
  spawn(io, read_all(*accepted[0], r, 10));
  ASSERT_TRUE(run([&] { return r.done; }));
  EXPECT_EQ(r.data, text("early data"));
  EXPECT_FALSE(o.done) << "wait_open() returned before the server accepted";

  accepted[0]->accept();
  ASSERT_TRUE(run([&] { return o.done; }));
  EXPECT_EQ(o.reset, std::nullopt);
}

// max_buffered bounds the receive windows a session grants in total, which
// is all a peer can make it buffer: a stream whose window would not fit is
// refused (limit reached), as one beyond max_streams is; once a stream
// ends, its share is free again.
TEST_F(session_test, OpenBeyondTheBufferLimitIsRefused) {
  auto sc = server_config();
  sc.max_buffered = 3 * std::uint64_t{sc.initial_window};
  start(client_config(), sc);
  std::vector<std::unique_ptr<mux_stream>> streams;
  std::vector<std::unique_ptr<open_job>> opens;
  for (int i = 0; i < 4; ++i) {
    streams.push_back(client->open(stream_kind::tcp, target("example.com", 80)));
    ASSERT_TRUE(streams.back());
    opens.push_back(std::make_unique<open_job>());
    spawn(io, wait_open(*streams.back(), *opens.back()));
  }
  ASSERT_TRUE(run([&] { return opens[3]->done; }));
  ASSERT_TRUE(opens[3]->reset) << "a fourth 256 KiB window was granted within a 768 KiB limit";
  EXPECT_EQ(opens[3]->reset->code, reset_code::limit_reached);
  EXPECT_NE(opens[3]->reset->reason.find("buffer limit"), std::string::npos) << opens[3]->reset->reason;
  ASSERT_EQ(accepted.size(), 3u);
  accepted[0]->close();
  streams[0].reset();
  ASSERT_TRUE(run([&] { return server->stream_count() == 2; }));
  auto again = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(again);
  ASSERT_TRUE(run([&] { return accepted.size() == 4; })) << "the freed share was not given back";
}

TEST_F(session_test, RefuseReachesWaitOpenWithCodeAndReason) {
  start();
  auto s = client->open(stream_kind::tcp, target("10.0.0.1", 22));
  ASSERT_TRUE(s);
  open_job o;
  spawn(io, wait_open(*s, o));
  ASSERT_TRUE(run([&] { return accepted.size() == 1; }));
  accepted[0]->refuse(reset_code::refused, "x");
  ASSERT_TRUE(run([&] { return o.done; }));
  ASSERT_TRUE(o.reset);
  EXPECT_EQ(o.reset->code, reset_code::refused);
  EXPECT_EQ(o.reset->reason, "x");
  EXPECT_EQ(s->reset_reason(), o.reset);

  // The stream is gone on both sides, and reading it reports the refusal.
  read_job r;
  spawn(io, read_all(*s, r));
  ASSERT_TRUE(run([&] { return r.done; }));
  EXPECT_EQ(r.ec, asio::error::connection_refused);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

TEST_F(session_test, ClientRefusesStreamsOpenedByTheServer) {
  start();
  // A server-side open() is allowed by the API; the client has no handler
  // for it and answers RESET refused.
  auto s = server->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  open_job o;
  spawn(io, wait_open(*s, o));
  ASSERT_TRUE(run([&] { return o.done; }));
  ASSERT_TRUE(o.reset);
  EXPECT_EQ(o.reset->code, reset_code::refused);
}

// ---- data -------------------------------------------------------------------

TEST_F(session_test, EightMebibytesBothWaysIntact) {
  const bytes up = random_bytes(8 * k_mib, 1);
  const bytes down = random_bytes(8 * k_mib, 2);
  write_job server_w;
  read_job server_r;
  on_accept = [&](mux_stream& s) {
    s.accept();
    spawn(io, write_all(s, down, server_w, 100'000, true));
    spawn(io, read_all(s, server_r));
  };
  start();
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  write_job client_w;
  read_job client_r;
  spawn(io, write_all(*s, up, client_w, 1 * k_mib, true));
  spawn(io, read_all(*s, client_r));

  ASSERT_TRUE(run([&] { return client_w.done && client_r.done && server_w.done && server_r.done; }, 60s));
  EXPECT_FALSE(client_w.ec) << client_w.ec.message();
  EXPECT_FALSE(server_w.ec) << server_w.ec.message();
  EXPECT_EQ(server_r.ec, asio::error::eof);
  EXPECT_EQ(client_r.ec, asio::error::eof);
  EXPECT_TRUE(server_r.data == up) << "client -> server: " << server_r.data.size() << " bytes arrived";
  EXPECT_TRUE(client_r.data == down) << "server -> client: " << client_r.data.size() << " bytes arrived";
  // Both directions finished: the stream is gone on both sides.
  EXPECT_TRUE(run([&] { return client->stream_count() == 0 && server->stream_count() == 0; }));
  // The writer counts a write when it completes, which may be after the peer
  // has read it: wait for the count rather than read it at once.
  EXPECT_TRUE(run([&] { return client->stats().bytes_out > 8 * k_mib; })) << client->stats().bytes_out;
  EXPECT_GT(client->stats().bytes_in, 8 * k_mib);
}

// The pump's zero-copy calls: prepare() hands out frame payload space as far
// as the window allows, commit() sends only what was filled; peek() shows the
// received bytes in place and consume() takes them (returning window).
TEST_F(session_test, PrepareCommitAndPeekConsumeMoveBytesInPlace) {
  on_accept = [](mux_stream& s) { s.accept(); };
  start();
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  open_job opened;
  spawn(io, wait_open(*s, opened));
  ASSERT_TRUE(run([&] { return opened.done; })); // HELLO arrived: the full initial window applies
  ASSERT_FALSE(opened.reset);

  std::array<asio::mutable_buffer, 16> space;
  error_code ec;
  std::size_t pieces = s->prepare(1 << 20, space, ec);
  ASSERT_FALSE(ec) << ec.message();
  std::size_t room = 0;
  for (std::size_t i = 0; i < pieces; ++i) {
    EXPECT_LE(space[i].size(), k_default_max_payload);
    room += space[i].size();
  }
  EXPECT_EQ(room, k_default_initial_window);
  const bytes data = random_bytes(room, 7);
  std::size_t off = 0;
  for (std::size_t i = 0; i < pieces; ++i) {
    std::memcpy(space[i].data(), data.data() + off, space[i].size());
    off += space[i].size();
  }
  s->commit(100'000); // only this much was "read"

  // Takes whatever the server stream has buffered, in place.
  bytes got;
  auto drain = [&] {
    std::array<asio::const_buffer, 16> view;
    error_code e;
    const std::size_t n = accepted.empty() ? 0 : accepted[0]->peek(view, e);
    std::size_t taken = 0;
    for (std::size_t i = 0; !e && i < n; ++i) {
      const auto* p = static_cast<const std::uint8_t*>(view[i].data());
      got.insert(got.end(), p, p + view[i].size());
      taken += view[i].size();
    }
    if (taken)
      accepted[0]->consume(taken);
    return e;
  };
  ASSERT_TRUE(run([&] {
    drain();
    return got.size() >= 100'000;
  }));
  EXPECT_EQ(got.size(), 100'000u);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), data.begin()));
  got.clear();

  // A short payload (copied into a small frame) and commit(0), which sends nothing.
  pieces = s->prepare(1 << 20, space, ec);
  ASSERT_FALSE(ec);
  std::memcpy(space[0].data(), "abc", 3);
  s->commit(3);
  ASSERT_TRUE(run([&] {
    drain();
    return got.size() >= 3;
  }));
  EXPECT_EQ(got, text("abc"));
  got.clear();
  pieces = s->prepare(1 << 20, space, ec);
  ASSERT_FALSE(ec);
  s->commit(0);

  // Filling the window leaves prepare() would_block.
  std::size_t sent = 0;
  for (;;) {
    pieces = s->prepare(1 << 20, space, ec);
    if (ec)
      break;
    std::size_t n = 0;
    for (std::size_t i = 0; i < pieces; ++i) {
      std::memset(space[i].data(), 'x', space[i].size());
      n += space[i].size();
    }
    s->commit(n);
    sent += n;
  }
  EXPECT_EQ(ec, asio::error::would_block);
  EXPECT_GT(sent, 0u);
  bool writable = false;
  EXPECT_TRUE(s->async_wait_writable([&](error_code e) {
    EXPECT_FALSE(e);
    writable = true;
  }));
  EXPECT_FALSE(run([&] { return writable; }, 200ms)) << "writable while the window is used up";
  // The server reads: WINDOW frames come back and the writer may go on.
  ASSERT_TRUE(run([&] {
    drain();
    return writable;
  }));

  // End of stream and reset show through peek() and prepare().
  write_job fin;
  spawn(io, write_all(*s, {}, fin, 1, true));
  error_code end;
  ASSERT_TRUE(run([&] {
    end = drain();
    return end && end != asio::error::would_block;
  }));
  EXPECT_EQ(end, asio::error::eof);
  EXPECT_EQ(got.size(), sent);
  accepted[0]->close();
  ASSERT_TRUE(run([&] { return s->reset_reason().has_value(); }));
  s->prepare(1 << 20, space, ec);
  EXPECT_EQ(ec, asio::error::connection_reset);
}

// A tunnel stream as the server relays it: pump(mux stream, TCP socket),
// moving bytes in place both ways. The socket's far end reads nothing for a
// while (the socket fills, the pump waits for it to drain, the rest waits in
// the mux stream and the client's window runs out), then everything; and the
// far end's reply comes back through recvmsg() straight into DATA frames.
TEST_F(session_test, PumpToASocketWaitsOutAStalledReceiverAndLosesNothing) {
  auto [near, far] = tcp_pair(io);
  stream::byte_stream_ptr near_stream = stream::make_tcp_stream(std::move(near), "near");
  std::optional<stream::pump_stats> pumped;
  on_accept = [&](mux_stream& s) {
    s.accept();
    stream::start_pump(s, *near_stream, [&](stream::pump_stats st) { pumped = st; });
  };
  start();
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  const bytes up = random_bytes(32 * k_mib, 11); // more than socket buffers and window hold
  write_job w;
  spawn(io, write_all(*s, up, w, 1 * k_mib, true));
  EXPECT_FALSE(run([&] { return w.done; }, 300ms)) << "32 MiB went through while nobody read";

  bytes down = random_bytes(3 * k_mib + 5, 12);
  bytes got(up.size());
  bool far_done = false;
  spawn(io, [&]() -> asio::awaitable<void> {
    co_await asio::async_write(far, asio::buffer(down), asio::use_awaitable);
    far.shutdown(tcp::socket::shutdown_send);
    co_await asio::async_read(far, asio::buffer(got), asio::use_awaitable);
    far_done = true;
  });
  read_job r;
  spawn(io, read_all(*s, r));
  ASSERT_TRUE(run([&] { return w.done && far_done && r.done && pumped; }, 60s));
  EXPECT_FALSE(w.ec) << w.ec.message();
  EXPECT_TRUE(got == up);
  EXPECT_EQ(r.ec, asio::error::eof);
  EXPECT_TRUE(r.data == down) << r.data.size() << " bytes came back";
  EXPECT_EQ(pumped->a_to_b, up.size());
  EXPECT_EQ(pumped->b_to_a, down.size());
  EXPECT_FALSE(pumped->error) << pumped->error.message();
}

// The client's side of a tunnel stream: pump(TCP socket, mux stream) with the
// window used up (the server reads nothing), so the socket -> mux direction
// waits for the stream to become writable. When the tunnel dies, that wait
// ends, the pump ends both directions, and the local application sees its
// connection close.
TEST_F(session_test, PumpWaitingForTheWindowEndsWhenTheTunnelDies) {
  on_accept = [](mux_stream& s) { s.accept(); }; // and never read
  start();
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  auto [near, far] = tcp_pair(io);
  stream::byte_stream_ptr near_stream = stream::make_tcp_stream(std::move(near), "near");
  std::optional<stream::pump_stats> pumped;
  stream::start_pump(*near_stream, *s, [&](stream::pump_stats st) { pumped = st; });
  const bytes data = random_bytes(4 * k_mib, 13);
  std::size_t sent = 0;
  bool far_ended = false;
  spawn(io, [&]() -> asio::awaitable<void> {
    auto [ec, n] = co_await asio::async_write(far, asio::buffer(data), asio::as_tuple(asio::use_awaitable));
    sent = n;
    std::array<std::uint8_t, 16> buf;
    co_await far.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable)); // EOF or reset
    far_ended = true;
  });
  EXPECT_FALSE(run([&] { return pumped.has_value(); }, 300ms)) << "the pump ended on its own";
  ASSERT_FALSE(accepted.empty());
  server->close("test: the gateway went away");
  ASSERT_TRUE(run([&] { return pumped && far_ended; }, 10s));
  EXPECT_TRUE(pumped->error) << "a dead tunnel is an error, not end of stream";
  EXPECT_LT(pumped->a_to_b, data.size());
}

// A socket holding more than one read can take (here: more than the
// stream's 64 KiB window), whose sender then goes quiet waiting for an
// answer. Readiness is edge-triggered: no new data, no new edge. The pump
// must go on reading what the socket already holds as the window reopens,
// not wait for readability that never comes again.
TEST_F(session_test, PumpDrainsWhatTheSocketHoldsAfterItsSenderWentQuiet) {
  session_config sc = server_config();
  sc.initial_window = k_min_initial_window; // the client may send 64 KiB per grant
  sc.max_window = k_min_initial_window;
  read_job r;
  constexpr std::size_t k_size = 200 * 1024;
  on_accept = [&](mux_stream& s) {
    s.accept();
    spawn(io, read_all(s, r, k_size));
  };
  start(client_config(), sc);
  auto [near, far] = tcp_pair(io);
  near.set_option(asio::socket_base::receive_buffer_size(400 * 1024)); // holds all of it
  const bytes data = random_bytes(k_size, 14);
  asio::write(far, asio::buffer(data)); // all in near's receive buffer; then nothing more
  ASSERT_TRUE(run([&] { return near.available() == k_size; }, 5s)) << near.available() << " bytes arrived";
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  stream::byte_stream_ptr near_stream = stream::make_tcp_stream(std::move(near), "near");
  // The pump outlives this test body (its other direction never ends): it
  // owns the streams, which the io_context's end abandons.
  auto& near_ref = *near_stream;
  auto& s_ref = *s;
  stream::start_pump(near_ref, s_ref, [near_stream = std::move(near_stream), s = std::move(s)](stream::pump_stats) {});
  ASSERT_TRUE(run([&] { return r.done; }, 10s)) << r.data.size() << " of " << k_size << " bytes arrived";
  EXPECT_TRUE(r.data == data);
}

TEST_F(session_test, HalfCloseEndsOneDirectionOnly) {
  on_accept = [](mux_stream& s) { s.accept(); };
  start();
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  write_job w;
  spawn(io, write_all(*s, text("request"), w, 1024, true)); // write, then shutdown()
  ASSERT_TRUE(run([&] { return w.done && accepted.size() == 1; }));
  ASSERT_FALSE(w.ec) << w.ec.message();

  read_job server_r;
  spawn(io, read_all(*accepted[0], server_r));
  ASSERT_TRUE(run([&] { return server_r.done; }));
  EXPECT_EQ(server_r.data, text("request"));
  EXPECT_EQ(server_r.ec, asio::error::eof);

  // The other direction still works after the client's FIN.
  EXPECT_EQ(server->stream_count(), 1u);
  write_job server_w;
  read_job client_r;
  spawn(io, read_all(*s, client_r));
  spawn(io, write_all(*accepted[0], text("response"), server_w, 1024, false));
  ASSERT_TRUE(run([&] { return server_w.done && client_r.data.size() == 8; }));
  EXPECT_FALSE(server_w.ec) << server_w.ec.message();
  EXPECT_EQ(client_r.data, text("response"));
  EXPECT_FALSE(client_r.done) << "the client's read ended before the server's FIN";

  // Writing after our own shutdown() fails; the stream is not reset by it.
  write_job late;
  spawn(io, write_all(*s, text("more"), late, 1024, false));
  ASSERT_TRUE(run([&] { return late.done; }));
  EXPECT_EQ(late.ec, asio::error::shut_down);

  error_code ec;
  spawn(io, [&]() -> asio::awaitable<void> { co_await accepted[0]->shutdown(ec); });
  ASSERT_TRUE(run([&] { return client_r.done; }));
  EXPECT_FALSE(ec);
  EXPECT_EQ(client_r.ec, asio::error::eof);
  EXPECT_TRUE(run([&] { return client->stream_count() == 0 && server->stream_count() == 0; }));
}

TEST_F(session_test, CloseResetsThePeer) {
  on_accept = [](mux_stream& s) { s.accept(); };
  start();
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  ASSERT_TRUE(run([&] { return accepted.size() == 1; }));
  read_job server_r;
  spawn(io, read_all(*accepted[0], server_r));
  s->close();
  ASSERT_TRUE(run([&] { return server_r.done; }));
  EXPECT_EQ(server_r.ec, asio::error::connection_reset);
  ASSERT_TRUE(accepted[0]->reset_reason());
  EXPECT_EQ(accepted[0]->reset_reason()->code, reset_code::closed);
  EXPECT_TRUE(run([&] { return server->stream_count() == 0; }));
  EXPECT_EQ(client->stream_count(), 0u);
}

// Bytes a stream wrote before it was reset reach the peer before the RESET,
// as a TCP peer's data arrives before its RST: the server reads a
// response from its target, then the target resets the connection; the
// client must still get the response. Written and closed on one stack, the
// DATA frames are still queued for the writer when the RESET is.
TEST_F(session_test, DataWrittenBeforeAResetArrivesBeforeIt) {
  on_accept = [](mux_stream& s) { s.accept(); };
  start();
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  ASSERT_TRUE(run([&] { return accepted.size() == 1; }));
  auto payload = random_bytes(100 * 1024, 7);
  const asio::const_buffer b(payload.data(), payload.size());
  error_code ec;
  const auto written = s->try_write_some(std::span(&b, 1), ec); // as much as the window allows
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_GT(written, 32u * 1024);
  payload.resize(written);
  s->close();
  read_job r;
  spawn(io, read_all(*accepted[0], r));
  ASSERT_TRUE(run([&] { return r.done; }));
  EXPECT_EQ(r.ec, asio::error::connection_reset);
  EXPECT_EQ(r.data.size(), payload.size()) << "the RESET overtook the stream's data";
  EXPECT_TRUE(r.data == payload);
  ASSERT_TRUE(accepted[0]->reset_reason());
  EXPECT_EQ(accepted[0]->reset_reason()->code, reset_code::closed);
}

TEST_F(session_test, DestroyingAStreamHandleResetsThePeer) {
  on_accept = [](mux_stream& s) { s.accept(); };
  start();
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(run([&] { return accepted.size() == 1; }));
  read_job server_r;
  spawn(io, read_all(*accepted[0], server_r));
  s.reset();
  ASSERT_TRUE(run([&] { return server_r.done; }));
  EXPECT_EQ(server_r.ec, asio::error::connection_reset);
}

// ---- flow control -------------------------------------------------------------

// A stream whose reader stalls pins at most one window: its writer stops
// after about initial_window bytes while another stream on the same session
// moves 4 MiB. Reading the stalled stream then lets its writer finish.
TEST_F(session_test, StalledStreamDoesNotBlockOthers) {
  on_accept = [](mux_stream& s) { s.accept(); };
  auto sc = server_config();
  sc.initial_window = k_default_initial_window; // 256 KiB
  start(client_config(), sc);

  auto stalled = client->open(stream_kind::tcp, target("stalled.example", 80));
  ASSERT_TRUE(stalled);
  const bytes stalled_data = random_bytes(1 * k_mib, 3);
  write_job stalled_w;
  spawn(io, write_all(*stalled, stalled_data, stalled_w, stalled_data.size(), false));
  // Wait until the whole first window has arrived at the server.
  ASSERT_TRUE(run([&] { return server->stats().bytes_in >= sc.initial_window; }));
  const std::uint64_t stalled_in = server->stats().bytes_in;

  auto busy = client->open(stream_kind::tcp, target("busy.example", 80));
  ASSERT_TRUE(busy);
  const bytes busy_data = random_bytes(4 * k_mib, 4);
  write_job busy_w;
  spawn(io, write_all(*busy, busy_data, busy_w, 256 * 1024, true));
  ASSERT_TRUE(run([&] { return accepted.size() == 2; }));
  read_job busy_r;
  spawn(io, read_all(*accepted[1], busy_r));
  ASSERT_TRUE(run([&] { return busy_r.done; }, 60s));
  EXPECT_EQ(busy_r.ec, asio::error::eof);
  EXPECT_TRUE(busy_r.data == busy_data) << busy_r.data.size() << " bytes arrived";

  // The stalled stream's writer is still blocked, having sent one window.
  EXPECT_FALSE(stalled_w.done) << "a write of 1 MiB completed although nobody read the stream";
  const std::uint64_t in = server->stats().bytes_in;
  EXPECT_LT(stalled_in, sc.initial_window + 4096u) << "more than one window (plus framing) was sent";
  EXPECT_GE(in - busy_data.size(), sc.initial_window);
  EXPECT_LT(in - busy_data.size(), sc.initial_window + 16 * 1024u)
      << "the stalled stream kept sending beyond its window while the other stream ran";

  // Reading the stalled stream returns credit and the writer completes.
  read_job stalled_r;
  spawn(io, read_all(*accepted[0], stalled_r, stalled_data.size()));
  ASSERT_TRUE(run([&] { return stalled_w.done && stalled_r.done; }, 30s));
  EXPECT_FALSE(stalled_w.ec) << stalled_w.ec.message();
  EXPECT_TRUE(stalled_r.data == stalled_data);
}

TEST_F(session_test, TwoHundredConcurrentStreams) {
  constexpr int k_streams = 200;
  std::vector<std::unique_ptr<write_job>> echo_w;
  std::vector<std::unique_ptr<read_job>> echo_r;
  // Echo server: read everything, then send it back and FIN.
  on_accept = [&](mux_stream& s) {
    s.accept();
    spawn(io, [&s]() -> asio::awaitable<void> {
      read_job r;
      co_await read_all(s, r);
      if (r.ec != asio::error::eof)
        co_return;
      write_job w;
      co_await write_all(s, r.data, w, 16 * 1024, true);
    });
  };
  start();
  std::vector<std::unique_ptr<mux_stream>> streams;
  std::vector<bytes> sent;
  std::vector<std::unique_ptr<write_job>> writes;
  std::vector<std::unique_ptr<read_job>> reads;
  for (int i = 0; i < k_streams; ++i) {
    streams.push_back(client->open(stream_kind::tcp, target("echo.example", static_cast<std::uint16_t>(1000 + i))));
    ASSERT_TRUE(streams.back()) << "open " << i;
    sent.push_back(random_bytes(1000 + 97 * static_cast<std::size_t>(i), static_cast<std::uint64_t>(100 + i)));
    writes.push_back(std::make_unique<write_job>());
    reads.push_back(std::make_unique<read_job>());
  }
  EXPECT_EQ(client->stream_count(), static_cast<std::size_t>(k_streams));
  for (int i = 0; i < k_streams; ++i) {
    spawn(io, write_all(*streams[i], sent[i], *writes[i], 4096, true));
    spawn(io, read_all(*streams[i], *reads[i]));
  }
  ASSERT_TRUE(run([&] { return std::all_of(reads.begin(), reads.end(), [](const auto& r) { return r->done; }); }, 60s));
  int intact = 0;
  for (int i = 0; i < k_streams; ++i) {
    EXPECT_FALSE(writes[i]->ec) << "stream " << i << ": " << writes[i]->ec.message();
    EXPECT_EQ(reads[i]->ec, asio::error::eof) << "stream " << i;
    if (reads[i]->data == sent[i])
      ++intact;
  }
  EXPECT_EQ(intact, k_streams);
  ASSERT_EQ(requests.size(), static_cast<std::size_t>(k_streams));
  for (int i = 0; i < k_streams; ++i)
    EXPECT_EQ(requests[i].target.port, 1000 + i);
  EXPECT_EQ(client->stats().streams_opened, static_cast<std::uint64_t>(k_streams));
  EXPECT_EQ(server->stats().streams_opened, static_cast<std::uint64_t>(k_streams));
  EXPECT_TRUE(run([&] { return client->stream_count() == 0 && server->stream_count() == 0; }));
}

TEST_F(session_test, StreamLimitRefusesBeyondMaxStreams) {
  auto sc = server_config();
  sc.max_streams = 2;
  start(client_config(), sc);
  // Wait for the server's HELLO (the first bytes the client reads, handled
  // in the same step) so the client knows the limit...
  ASSERT_TRUE(run([&] { return client->stats().bytes_in > 0; }));
  auto first = client->open(stream_kind::tcp, target("a.example", 1));
  ASSERT_TRUE(first);
  auto second = client->open(stream_kind::tcp, target("b.example", 1));
  ASSERT_TRUE(second);
  // ...after which it refuses locally rather than sending a doomed OPEN.
  EXPECT_EQ(client->open(stream_kind::tcp, target("c.example", 1)), nullptr);
}

// Sessions that share a peer_budget (the server: one user's tunnels) share
// max_streams and max_buffered: a second session gets what the first left,
// and gets it back when the first's streams end or the first closes.
TEST_F(session_test, SharedBudgetBoundsSessionsTogether) {
  auto budget = std::make_shared<peer_budget>();
  budget->scope = "all tunnels of user alice";
  auto sc = server_config();
  sc.max_streams = 3;
  sc.budget = budget;
  start(client_config(), sc);
  auto [a, b] = tcp_pair(io);
  auto client2 = session::create(stream::make_tcp_stream(std::move(a), "client2 end"), client_config());
  auto server2 = session::create(stream::make_tcp_stream(std::move(b), "server2 end"), sc);
  std::vector<std::unique_ptr<mux_stream>> accepted2;
  server2->set_open_handler([&](std::unique_ptr<mux_stream> m, open_request) {
    m->accept();
    accepted2.push_back(std::move(m));
  });
  client2->start();
  server2->start();
  on_accept = [](mux_stream& m) { m.accept(); };
  std::vector<std::unique_ptr<mux_stream>> mine;
  for (int i = 0; i < 2; ++i)
    mine.push_back(client->open(stream_kind::tcp, target("a.example", 1)));
  ASSERT_TRUE(run([&] { return accepted.size() == 2; }));
  EXPECT_EQ(budget->streams, 2u);
  EXPECT_EQ(budget->windows, 2u * sc.initial_window);
  // The second session has one stream left of the three.
  std::vector<std::unique_ptr<mux_stream>> theirs;
  std::vector<open_job> jobs(2);
  for (int i = 0; i < 2; ++i) {
    theirs.push_back(client2->open(stream_kind::tcp, target("b.example", 1)));
    ASSERT_TRUE(theirs.back());
    spawn(io, wait_open(*theirs.back(), jobs[i]));
  }
  ASSERT_TRUE(run([&] { return jobs[0].done && jobs[1].done; }));
  EXPECT_FALSE(jobs[0].reset);
  ASSERT_TRUE(jobs[1].reset);
  EXPECT_EQ(jobs[1].reset->code, reset_code::limit_reached);
  EXPECT_EQ(jobs[1].reset->reason, "too many open streams (limit 3, all tunnels of user alice)");
  // The first session closes: its streams go back to the budget.
  client->close("done");
  ASSERT_TRUE(run([&] { return server->closed(); }));
  EXPECT_EQ(budget->streams, 1u);
  EXPECT_EQ(budget->windows, std::uint64_t{sc.initial_window});
  open_job later;
  auto again = client2->open(stream_kind::tcp, target("b.example", 1));
  ASSERT_TRUE(again);
  spawn(io, wait_open(*again, later));
  ASSERT_TRUE(run([&] { return later.done; }));
  EXPECT_FALSE(later.reset) << later.reset->reason;
  client2->close("done");
  ASSERT_TRUE(run([&] { return server2->closed(); }));
  EXPECT_EQ(budget->streams, 0u);
  EXPECT_EQ(budget->windows, 0u);
}

// ---- UDP flows ----------------------------------------------------------------

struct datagram_job {
  bool done = false;
  std::vector<bytes> received;
};

asio::awaitable<void> receive_datagrams(mux_stream& s, datagram_job& job, std::size_t count) {
  while (job.received.size() < count) {
    auto d = co_await s.receive_datagram();
    if (!d)
      break;
    job.received.push_back(std::move(*d));
  }
  job.done = true;
}

TEST_F(session_test, DatagramsBothWaysKeepBoundaries) {
  start();
  auto flow = client->open(stream_kind::udp, target("10.0.0.53", 53));
  ASSERT_TRUE(flow);
  EXPECT_EQ(flow->kind(), stream_kind::udp);
  const std::vector<bytes> up = {text("a"), random_bytes(100, 5), random_bytes(1400, 6), bytes{}};
  for (const auto& d : up)
    EXPECT_TRUE(flow->send_datagram(d));
  ASSERT_TRUE(run([&] { return accepted.size() == 1; }));
  EXPECT_EQ(requests[0].kind, stream_kind::udp);
  EXPECT_EQ(accepted[0]->kind(), stream_kind::udp);
  accepted[0]->accept();

  datagram_job server_rx;
  spawn(io, receive_datagrams(*accepted[0], server_rx, up.size()));
  ASSERT_TRUE(run([&] { return server_rx.done; }));
  EXPECT_EQ(server_rx.received, up);

  const std::vector<bytes> down = {random_bytes(512, 7), text("reply")};
  for (const auto& d : down)
    EXPECT_TRUE(accepted[0]->send_datagram(d));
  datagram_job client_rx;
  spawn(io, receive_datagrams(*flow, client_rx, down.size()));
  ASSERT_TRUE(run([&] { return client_rx.done; }));
  EXPECT_EQ(client_rx.received, down);
  EXPECT_EQ(client->stats().datagrams_dropped, 0u);
  EXPECT_EQ(server->stats().datagrams_dropped, 0u);
}

TEST_F(session_test, ReceiveQueueOverflowDropsAndCounts) {
  auto sc = server_config();
  sc.max_queued_datagrams = 4;
  start(client_config(), sc);
  auto flow = client->open(stream_kind::udp, target("10.0.0.53", 53));
  ASSERT_TRUE(flow);
  std::vector<bytes> sent;
  for (int i = 0; i < 10; ++i) {
    sent.push_back(random_bytes(200, static_cast<std::uint64_t>(50 + i)));
    ASSERT_TRUE(flow->send_datagram(sent.back())) << i;
  }
  // Nobody reads the server's flow: 4 are queued, 6 dropped on arrival.
  ASSERT_TRUE(run([&] { return server->stats().datagrams_dropped >= 6; }));
  ASSERT_EQ(accepted.size(), 1u);
  datagram_job rx;
  spawn(io, receive_datagrams(*accepted[0], rx, 4));
  ASSERT_TRUE(run([&] { return rx.done; }));
  EXPECT_EQ(rx.received, std::vector<bytes>(sent.begin(), sent.begin() + 4)) << "the oldest ones are kept";
  EXPECT_EQ(server->stats().datagrams_dropped, 6u);
  EXPECT_EQ(client->stats().datagrams_dropped, 0u);

  // With room in the queue again, datagrams are delivered.
  ASSERT_TRUE(flow->send_datagram(text("after")));
  datagram_job rx2;
  spawn(io, receive_datagrams(*accepted[0], rx2, 1));
  ASSERT_TRUE(run([&] { return rx2.done; }));
  EXPECT_EQ(rx2.received, std::vector<bytes>{text("after")});
  EXPECT_EQ(server->stats().datagrams_dropped, 6u);
}

TEST_F(session_test, SendSideDropsOversizedAndCongestedDatagrams) {
  auto cc = client_config();
  cc.datagram_send_limit = 1000;
  start(cc, server_config());
  auto flow = client->open(stream_kind::udp, target("10.0.0.53", 53));
  ASSERT_TRUE(flow);
  EXPECT_FALSE(flow->send_datagram(bytes(k_default_max_payload + 1))) << "larger than a frame";
  EXPECT_EQ(client->stats().datagrams_dropped, 1u);
  // No I/O runs between these calls, so the first is still queued.
  EXPECT_TRUE(flow->send_datagram(bytes(600)));
  EXPECT_FALSE(flow->send_datagram(bytes(600))) << "beyond datagram_send_limit queued bytes";
  EXPECT_EQ(client->stats().datagrams_dropped, 2u);
}

// Both directions end (FIN each way) before the server accepts: the stream
// is finished and leaves the session, and wait_open() returns (the peer
// evidently took the stream) instead of waiting for an OPEN_OK or a reset
// that can no longer come, even after the session closes. Found by
// tests/fuzz/fuzz_session.cpp.
TEST_F(session_test, WaitOpenEndsWhenTheStreamFinishesBeforeOpenOk) {
  start();
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  open_job o;
  spawn(io, wait_open(*s, o));
  write_job cw;
  spawn(io, write_all(*s, text("request"), cw, 1024, true));
  ASSERT_TRUE(run([&] { return cw.done && accepted.size() == 1; }));
  write_job sw;
  spawn(io, write_all(*accepted[0], text("response"), sw, 1024, true)); // no accept()
  read_job cr;
  spawn(io, read_all(*s, cr));
  ASSERT_TRUE(run([&] { return sw.done && cr.done; }));
  EXPECT_EQ(cr.data, text("response"));
  EXPECT_EQ(cr.ec, asio::error::eof);
  EXPECT_TRUE(run([&] { return client->stream_count() == 0; }));
  EXPECT_TRUE(run([&] { return o.done; }, 2s)) << "wait_open() still waits on a finished stream";
  EXPECT_EQ(o.reset, std::nullopt);
  client->close("bye");
  EXPECT_TRUE(run([&] { return o.done; }, 2s)) << "wait_open() outlived the session";
}

// The same for a UDP flow: a receive_datagram() pending when the flow
// finishes returns nullopt.
TEST_F(session_test, ReceiveDatagramEndsWhenTheFlowFinishes) {
  start();
  auto flow = client->open(stream_kind::udp, target("10.0.0.53", 53));
  ASSERT_TRUE(flow);
  datagram_job rx;
  spawn(io, receive_datagrams(*flow, rx, 1));
  write_job cw;
  spawn(io, write_all(*flow, {}, cw, 1, true));
  ASSERT_TRUE(run([&] { return cw.done && accepted.size() == 1; }));
  write_job sw;
  spawn(io, write_all(*accepted[0], {}, sw, 1, true));
  ASSERT_TRUE(run([&] { return sw.done && client->stream_count() == 0; }));
  EXPECT_TRUE(run([&] { return rx.done; }, 2s)) << "receive_datagram() still waits on a finished flow";
  EXPECT_TRUE(rx.received.empty());
}

// A handler may end the session that called it (a server closing a
// tunnel from its open handler, a client from its GOAWAY handler): the
// session must not destroy the handler, and what it owns, while it runs.
// Found by tests/fuzz/fuzz_session.cpp (ASan: heap-use-after-free).
bool g_in_handler = false;
bool g_handler_died_while_running = false;

/// Owned by a handler; notices being destroyed while that handler runs.
struct handler_state {
  int calls = 0;
  ~handler_state() {
    if (g_in_handler)
      g_handler_died_while_running = true;
  }
};

TEST_F(session_test, OpenHandlerMayCloseTheSession) {
  start();
  g_handler_died_while_running = false;
  server->set_open_handler(
      [this, state = std::make_shared<handler_state>()](std::unique_ptr<mux_stream>, open_request) {
        g_in_handler = true;
        ++state->calls;
        server->close("closed by the open handler");
        g_in_handler = false; // nothing captured is touched after close()
      });
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  ASSERT_TRUE(run([&] { return server_closed.has_value() && client_closed.has_value(); }));
  EXPECT_EQ(*server_closed, "closed by the open handler");
  EXPECT_FALSE(g_handler_died_while_running) << "close() destroyed the open handler while it ran";
}

TEST_F(session_test, GoawayHandlerMayCloseTheSession) {
  start();
  g_handler_died_while_running = false;
  client->set_goaway_handler([this, state = std::make_shared<handler_state>()](const goaway_info&) {
    g_in_handler = true;
    ++state->calls;
    client->close("closed by the GOAWAY handler");
    g_in_handler = false;
  });
  server->goaway(reset_code::closed, "maintenance");
  ASSERT_TRUE(run([&] { return client_closed.has_value(); }));
  EXPECT_EQ(*client_closed, "closed by the GOAWAY handler");
  EXPECT_FALSE(g_handler_died_while_running) << "close() destroyed the GOAWAY handler while it ran";
}

// ---- session life -------------------------------------------------------------

/// One session against a raw socket that the test scripts byte by byte.
class raw_peer_test : public ::testing::Test {
 protected:
  asio::io_context io;
  std::shared_ptr<session> s;
  std::optional<std::string> closed;
  tcp::socket raw{io};

  /// `small_buffers`: both ends get 32 KiB socket buffers, so that a
  /// session writing to a peer that reads nothing blocks early.
  void start(session_config config, bool small_buffers = false) {
    auto [a, b] = tcp_pair(io);
    if (small_buffers) {
      for (tcp::socket* sock : {&a, &b}) {
        sock->set_option(asio::socket_base::send_buffer_size(32768));
        sock->set_option(asio::socket_base::receive_buffer_size(32768));
      }
    }
    raw = std::move(b);
    s = session::create(stream::make_tcp_stream(std::move(a), "session end"), config);
    s->set_closed_handler([this](const std::string& why) { closed = why; });
    s->start();
  }

  void send_raw(const bytes& b) { asio::write(raw, asio::buffer(b)); }

  /// Runs every handler that is ready until none is: the reader has
  /// handled all it read (it decodes in turns, posting itself between them).
  void settle() {
    io.restart();
    while (io.poll() != 0) {
    }
  }

  /// Everything the session wrote until it closed the connection.
  bytes read_raw_until_eof() {
    bytes out;
    read_job job;
    auto peer = stream::make_tcp_stream(std::move(raw), "raw");
    spawn(io, read_all(*peer, job));
    EXPECT_TRUE(test::run_until(io, [&] { return job.done; }));
    return job.data;
  }

  static bytes hello_frame() {
    bytes f;
    hello h;
    h.initial_window = k_default_initial_window;
    encode_hello(f, h);
    return f;
  }
};

std::vector<decoded_frame> frames_of(const bytes& b) {
  std::vector<decoded_frame> out;
  std::span<const std::uint8_t> rest(b);
  while (!rest.empty()) {
    auto r = decode(rest);
    auto* f = std::get_if<decoded_frame>(&r);
    if (!f)
      break;
    out.push_back(*f);
    rest = rest.subspan(f->consumed);
  }
  return out;
}

struct garbage_case {
  const char* name;
  bytes data;
};

void PrintTo(const garbage_case& c, std::ostream* os) {
  *os << c.name;
}

class garbage_test : public raw_peer_test, public ::testing::WithParamInterface<garbage_case> {};

// Whatever a non-warren peer sends first, the session answers GOAWAY
// (protocol error) and closes with a reason that says HELLO was expected
// (docs/PROTOCOL.md, "Connection" 2).
TEST_P(garbage_test, FirstFrameNotHelloClosesTheSession) {
  start(server_config());
  send_raw(GetParam().data);
  ASSERT_TRUE(test::run_until(io, [&] { return closed.has_value(); }));
  EXPECT_NE(closed->find("HELLO"), std::string::npos) << "close reason: " << *closed;
  EXPECT_TRUE(s->closed());

  const auto received = read_raw_until_eof(); // the frames point into it
  const auto frames = frames_of(received);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.front().header.type, frame_type::hello);
  const auto& last = frames.back();
  ASSERT_EQ(last.header.type, frame_type::goaway) << "the session did not send GOAWAY before closing";
  auto g = parse_goaway(last.payload);
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->code, reset_code::protocol_error) << "GOAWAY code " << reset_code_name(g->code);
}

INSTANTIATE_TEST_SUITE_P(
    Garbage, garbage_test,
    ::testing::Values(garbage_case{"DataFrame", bytes{0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00}},
                      garbage_case{"HttpResponse", text("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")},
                      garbage_case{"SshBanner", text("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")}),
    [](const ::testing::TestParamInfo<garbage_case>& p) { return std::string(p.param.name); });

TEST_F(raw_peer_test, WrongHelloVersionClosesTheSession) {
  start(server_config());
  bytes f = hello_frame();
  f[k_header_size + 3] = 2; // version byte after "WRN"
  send_raw(f);
  ASSERT_TRUE(test::run_until(io, [&] { return closed.has_value(); }));
  EXPECT_NE(closed->find("version"), std::string::npos) << *closed;
}

TEST_F(raw_peer_test, TransportEofClosesSessionAndFailsAllStreams) {
  start(client_config());
  send_raw(hello_frame());
  std::vector<std::unique_ptr<mux_stream>> streams;
  std::vector<std::unique_ptr<read_job>> reads;
  std::vector<std::unique_ptr<open_job>> opens;
  for (int i = 0; i < 3; ++i) {
    streams.push_back(s->open(stream_kind::tcp, target("example.com", 80)));
    ASSERT_TRUE(streams.back());
    reads.push_back(std::make_unique<read_job>());
    opens.push_back(std::make_unique<open_job>());
    spawn(io, read_all(*streams.back(), *reads.back()));
    spawn(io, wait_open(*streams.back(), *opens.back()));
  }
  // Let the session process the HELLO; nothing ends yet.
  ASSERT_TRUE(test::run_until(io, [&] { return s->stats().bytes_in > 0; }));
  EXPECT_FALSE(closed);
  raw.shutdown(tcp::socket::shutdown_send); // FIN: end of the transport stream

  ASSERT_TRUE(test::run_until(io, [&] { return closed.has_value(); }));
  EXPECT_NE(closed->find("closed the connection"), std::string::npos) << *closed;
  EXPECT_TRUE(s->closed());
  ASSERT_TRUE(test::run_until(io, [&] {
    return std::all_of(reads.begin(), reads.end(), [](const auto& r) { return r->done; }) &&
           std::all_of(opens.begin(), opens.end(), [](const auto& o) { return o->done; });
  }));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(reads[i]->ec, asio::error::connection_reset) << "stream " << i << ": " << reads[i]->ec.message();
    ASSERT_TRUE(opens[i]->reset) << "stream " << i;
    EXPECT_NE(opens[i]->reset->reason.find("tunnel closed"), std::string::npos) << opens[i]->reset->reason;
  }
  EXPECT_EQ(s->stream_count(), 0u);
  EXPECT_EQ(s->open(stream_kind::tcp, target("example.com", 80)), nullptr);
  write_job w;
  spawn(io, write_all(*streams[0], text("late"), w, 16, false));
  ASSERT_TRUE(test::run_until(io, [&] { return w.done; }));
  EXPECT_TRUE(w.ec) << "a write on a stream of a closed session succeeded";
}

// A peer that floods PINGs (each asks for a PONG) and reads nothing back:
// the session must not queue replies without bound. It stops reading once
// k_max_queued_replies wait, so the flood stalls in the peer's socket, and
// the ping timeout then ends the session with a reason that says why.
TEST_F(raw_peer_test, PingFloodFromAPeerThatReadsNothingStallsAndIsCutOff) {
  auto config = server_config();
  config.ping_interval = 300ms;
  start(config, true);
  bytes flood = hello_frame();
  bytes ping;
  encode_ping(ping, ping_payload{}, false);
  constexpr std::size_t k_pings = 200'000; // 3.4 MB: far more than buffers and the reply bound hold
  flood.reserve(flood.size() + k_pings * ping.size());
  for (std::size_t i = 0; i < k_pings; ++i)
    flood.insert(flood.end(), ping.begin(), ping.end());
  bool written = false;
  spawn(io, [&]() -> asio::awaitable<void> {
    auto [ec, n] = co_await asio::async_write(raw, asio::buffer(flood), asio::as_tuple(asio::use_awaitable));
    written = !ec;
  });
  ASSERT_TRUE(test::run_until(
      io, [&] { return closed.has_value(); }, 10s));
  EXPECT_FALSE(written) << "the session read all " << k_pings << " PINGs and queued a PONG for each";
  EXPECT_NE(closed->find("replies to its frames waited"), std::string::npos) << *closed;
}

// The same for OPENs beyond the stream limit: each is refused with a RESET.
TEST_F(raw_peer_test, OpenFloodBeyondTheLimitFromAPeerThatReadsNothingStalls) {
  auto config = server_config();
  config.ping_interval = 300ms;
  config.max_streams = 1;
  start(config, true);
  std::vector<std::unique_ptr<mux_stream>> kept; // never accepted: the one slot stays taken
  s->set_open_handler([&kept](std::unique_ptr<mux_stream> m, open_request) { kept.push_back(std::move(m)); });
  bytes flood = hello_frame();
  constexpr std::uint32_t k_opens = 100'000;
  auto t = target_address::from_host_port({"example.com", 80});
  ASSERT_TRUE(t);
  for (std::uint32_t i = 0; i < k_opens; ++i)
    encode_open(flood, 2 * i + 1, stream_kind::tcp, *t);
  bool written = false;
  spawn(io, [&]() -> asio::awaitable<void> {
    auto [ec, n] = co_await asio::async_write(raw, asio::buffer(flood), asio::as_tuple(asio::use_awaitable));
    written = !ec;
  });
  ASSERT_TRUE(test::run_until(
      io, [&] { return closed.has_value(); }, 10s));
  EXPECT_FALSE(written) << "the session read all " << k_opens << " OPENs and queued a refusal for each";
  EXPECT_NE(closed->find("replies to its frames waited"), std::string::npos) << *closed;
}

// Within the stream limit, OPENs cost replies too: OPEN_OK when the stream
// is accepted, RESET when it is refused or breaks a rule. A peer that
// resets (or gets reset) each stream at once frees its slot for the next
// OPEN, so without a bound on those replies a peer that reads nothing
// makes the session queue one per OPEN without end.
enum class open_answer { accept, refuse, flow_control_error };

class open_churn_test : public raw_peer_test, public ::testing::WithParamInterface<open_answer> {};

TEST_P(open_churn_test, FromAPeerThatReadsNothingStalls) {
  auto config = server_config();
  config.ping_interval = 300ms;
  config.max_streams = 4;
  start(config, true);
  std::vector<std::unique_ptr<mux_stream>> kept;
  s->set_open_handler([&](std::unique_ptr<mux_stream> m, open_request) {
    if (GetParam() == open_answer::accept)
      m->accept();
    else if (GetParam() == open_answer::refuse)
      m->refuse(reset_code::denied, "connect to example.com:80 denied by the destination policy");
    kept.push_back(std::move(m)); // as the server does while it connects
  });
  bytes flood = hello_frame();
  constexpr std::uint32_t k_opens = 100'000;
  auto t = target_address::from_host_port({"example.com", 80});
  ASSERT_TRUE(t);
  for (std::uint32_t i = 0; i < k_opens; ++i) {
    const std::uint32_t id = 2 * i + 1;
    encode_open(flood, id, stream_kind::tcp, *t);
    if (GetParam() == open_answer::accept)
      encode_reset(flood, id, reset_code::closed, "");
    else if (GetParam() == open_answer::flow_control_error)
      encode_window(flood, id, 0xFFFFFFFF); // beyond 2 GiB: the session resets the stream
  }
  bool written = false;
  spawn(io, [&]() -> asio::awaitable<void> {
    auto [ec, n] = co_await asio::async_write(raw, asio::buffer(flood), asio::as_tuple(asio::use_awaitable));
    written = !ec;
  });
  ASSERT_TRUE(test::run_until(
      io, [&] { return closed.has_value(); }, 10s));
  EXPECT_FALSE(written) << "the session read all " << k_opens << " OPENs and queued a reply to each";
  EXPECT_NE(closed->find("replies to its frames waited"), std::string::npos) << *closed;
}

INSTANTIATE_TEST_SUITE_P(OpenChurn, open_churn_test,
                         ::testing::Values(open_answer::accept, open_answer::refuse, open_answer::flow_control_error),
                         [](const ::testing::TestParamInfo<open_answer>& p) {
                           switch (p.param) {
                           case open_answer::accept:
                             return std::string("AcceptedThenResetByThePeer");
                           case open_answer::refuse:
                             return std::string("Refused");
                           case open_answer::flow_control_error:
                             return std::string("ResetForAFlowControlError");
                           }
                           return std::string();
                         });

// A peer that opens UDP flows (up to the stream limit) and floods them
// while nobody takes their datagrams (the server still resolves the
// targets, say): queued datagrams are bounded for the whole session, not
// just per flow (256 datagrams x 64 KiB x 1,024 flows would be 16 GiB).
TEST_F(raw_peer_test, DatagramFloodOnManyFlowsIsBoundedPerSession) {
  auto config = server_config();
  start(config);
  std::vector<std::unique_ptr<mux_stream>> kept; // flows nobody reads
  s->set_open_handler([&kept](std::unique_ptr<mux_stream> m, open_request) { kept.push_back(std::move(m)); });
  constexpr std::uint32_t k_flows = 8;
  constexpr std::size_t k_per_flow = 200; // within max_queued_datagrams (256)
  constexpr std::size_t k_size = 16 * 1024;
  const auto t = target("10.0.0.53", 53);
  bytes flood = hello_frame();
  const bytes payload(k_size, 0x55);
  for (std::uint32_t f = 0; f < k_flows; ++f)
    encode_open(flood, 2 * f + 1, stream_kind::udp, t);
  for (std::size_t i = 0; i < k_per_flow; ++i) {
    for (std::uint32_t f = 0; f < k_flows; ++f) {
      encode_datagram_header(flood, 2 * f + 1, static_cast<std::uint32_t>(k_size));
      flood.insert(flood.end(), payload.begin(), payload.end());
    }
  }
  spawn(io, [&]() -> asio::awaitable<void> {
    co_await asio::async_write(raw, asio::buffer(flood), asio::as_tuple(asio::use_awaitable));
  });
  ASSERT_TRUE(test::run_until(io, [&] { return s->stats().bytes_in >= flood.size(); }));
  const std::size_t total = k_flows * k_per_flow;
  const std::size_t kept_max = config.max_queued_datagram_bytes / k_size; // a little less: overhead counts
  EXPECT_GE(s->stats().datagrams_dropped, total - kept_max)
      << "the session queued " << (total - s->stats().datagrams_dropped) * k_size / k_mib
      << " MiB of datagrams nobody took";
  EXPECT_FALSE(closed);

  // Flows that end give their share back.
  const auto dropped = s->stats().datagrams_dropped;
  bytes more;
  for (std::uint32_t f = 0; f < k_flows; ++f)
    encode_reset(more, 2 * f + 1, reset_code::closed, "");
  encode_open(more, 101, stream_kind::udp, t);
  encode_datagram_header(more, 101, static_cast<std::uint32_t>(k_size));
  more.insert(more.end(), payload.begin(), payload.end());
  send_raw(more);
  ASSERT_TRUE(test::run_until(io, [&] { return s->stats().bytes_in >= flood.size() + more.size(); }));
  EXPECT_EQ(s->stats().datagrams_dropped, dropped);
  ASSERT_EQ(kept.size(), k_flows + 1);
  std::optional<bytes> got;
  spawn(io, [&]() -> asio::awaitable<void> {
    auto d = co_await kept.back()->receive_datagram();
    if (d)
      got = std::move(*d);
  });
  ASSERT_TRUE(test::run_until(io, [&] { return got.has_value(); }));
  EXPECT_EQ(*got, payload);
}

// Empty datagrams are not free to queue (a list node, an allocation): they
// count against the session's bound too.
TEST_F(raw_peer_test, EmptyDatagramsCountTowardsTheSessionBound) {
  auto config = server_config();
  start(config);
  std::vector<std::unique_ptr<mux_stream>> kept;
  s->set_open_handler([&kept](std::unique_ptr<mux_stream> m, open_request) { kept.push_back(std::move(m)); });
  constexpr std::uint32_t k_flows = 400;
  const std::size_t per_flow = config.max_queued_datagrams;
  bytes flood = hello_frame();
  for (std::uint32_t f = 0; f < k_flows; ++f) {
    encode_open(flood, 2 * f + 1, stream_kind::udp, target("10.0.0.53", 53));
    for (std::size_t i = 0; i < per_flow; ++i)
      encode_datagram_header(flood, 2 * f + 1, 0);
  }
  spawn(io, [&]() -> asio::awaitable<void> {
    co_await asio::async_write(raw, asio::buffer(flood), asio::as_tuple(asio::use_awaitable));
  });
  ASSERT_TRUE(test::run_until(io, [&] { return s->stats().bytes_in >= flood.size(); }));
  settle(); // read is not yet handled: the reader decodes in turns
  EXPECT_GT(s->stats().datagrams_dropped, 0u) << k_flows * per_flow << " empty datagrams queued";
}

// A peer that spends its window one byte per DATA frame on a stream whose
// target reads nothing: the window bounds the bytes, but kept one frame per
// allocation (and list node) they would cost ~80 bytes of memory each,
// 20 MiB per 256 KiB window. The session keeps them in a few chunks.
TEST_F(raw_peer_test, TinyDataFramesAreKeptInFewChunks) {
  start(server_config());
  std::unique_ptr<mux_stream> kept;
  s->set_open_handler([&kept](std::unique_ptr<mux_stream> m, open_request) { kept = std::move(m); });
  bytes flood = hello_frame();
  encode_open(flood, 1, stream_kind::tcp, target("example.com", 80));
  constexpr std::size_t k_frames = 200'000; // within the 256 KiB window
  for (std::size_t i = 0; i < k_frames; ++i) {
    encode_data_header(flood, 1, 1, false);
    flood.push_back(static_cast<std::uint8_t>(i));
  }
  spawn(io, [&]() -> asio::awaitable<void> {
    co_await asio::async_write(raw, asio::buffer(flood), asio::as_tuple(asio::use_awaitable));
  });
  ASSERT_TRUE(test::run_until(io, [&] { return s->stats().bytes_in >= flood.size(); }));
  settle(); // read is not yet handled: the reader decodes in turns
  ASSERT_TRUE(kept);
  std::array<asio::const_buffer, 16> view;
  error_code ec;
  const std::size_t pieces = kept->peek(view, ec);
  ASSERT_FALSE(ec) << ec.message();
  std::size_t in_view = 0;
  for (std::size_t i = 0; i < pieces; ++i)
    in_view += view[i].size();
  EXPECT_GE(in_view, 16 * 4000u) << "16 pieces hold " << in_view << " bytes: one chunk per tiny frame";
  // Every byte is there, in order.
  bytes got(k_frames + 1);
  const std::size_t n = kept->try_read_some(asio::buffer(got), ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_EQ(n, k_frames);
  for (std::size_t i = 0; i < k_frames; ++i)
    ASSERT_EQ(got[i], static_cast<std::uint8_t>(i)) << "byte " << i;
  EXPECT_FALSE(closed);
}

// After a protocol error the GOAWAY is the last frame the session writes,
// even when a stream writes between the error and the writer's turn.
// Found by tests/fuzz/fuzz_session.cpp.
TEST_F(raw_peer_test, NothingFollowsTheProtocolErrorGoaway) {
  start(client_config());
  auto stream = s->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(stream);
  bytes frames = hello_frame();
  const bytes again = hello_frame(); // a second HELLO: a connection error
  frames.insert(frames.end(), again.begin(), again.end());
  send_raw(frames);
  ASSERT_TRUE(test::run_until(io, [&] { return s->draining(); }));
  // The GOAWAY is queued, not yet written: the stream writes and ends now.
  error_code ec;
  const bytes late = text("late");
  stream->try_write_some(asio::buffer(late), ec);
  write_job fin;
  spawn(io, write_all(*stream, {}, fin, 1, true));

  const auto received = read_raw_until_eof(); // the frames point into it
  EXPECT_TRUE(closed);
  const auto frames_out = frames_of(received);
  ASSERT_FALSE(frames_out.empty());
  const auto& last = frames_out.back();
  ASSERT_EQ(last.header.type, frame_type::goaway)
      << "the last frame is " << frame_type_name(last.header.type) << " on stream " << last.header.stream;
  auto g = parse_goaway(last.payload);
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->code, reset_code::protocol_error);
}

// goaway() before the peer's HELLO arrived: the session still reads the
// peer (PINGs are answered, end of stream closes it) instead of going deaf
// after the HELLO. Found by tests/fuzz/fuzz_session.cpp.
TEST_F(raw_peer_test, GoawayBeforeThePeersHelloKeepsReading) {
  start(server_config());
  s->goaway(reset_code::closed, "maintenance");
  bytes frames = hello_frame();
  const ping_payload p{1, 2, 3, 4, 5, 6, 7, 8};
  encode_ping(frames, p, false);
  send_raw(frames);
  raw.shutdown(tcp::socket::shutdown_send);

  const auto received = read_raw_until_eof();
  ASSERT_TRUE(closed) << "the session missed the end of its transport";
  EXPECT_NE(closed->find("closed the connection"), std::string::npos) << *closed;
  const auto frames_out = frames_of(received);
  EXPECT_TRUE(std::any_of(frames_out.begin(), frames_out.end(), [&](const decoded_frame& f) {
    auto q = parse_ping(f.payload);
    return f.header.type == frame_type::ping && (f.header.flags & k_flag_ack) && q && *q == p;
  })) << "the PING after HELLO was not answered";
}

// The peer says HELLO and then nothing, not even PING replies: the session
// gives up between 7/4 and 2 ping intervals later.
TEST_F(raw_peer_test, SilentPeerTimesOut) {
  auto config = client_config();
  config.ping_interval = 200ms;
  const auto started = std::chrono::steady_clock::now();
  start(config);
  send_raw(hello_frame());
  ASSERT_TRUE(test::run_until(
      io, [&] { return closed.has_value(); }, 5s));
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_NE(closed->find("ping timeout"), std::string::npos) << *closed;
  EXPECT_GE(elapsed, 350ms);
}

TEST_F(session_test, GoawayDrainsButExistingStreamsContinue) {
  on_accept = [](mux_stream& s) { s.accept(); };
  start();
  std::optional<goaway_info> seen;
  client->set_goaway_handler([&](const goaway_info& g) { seen = g; });
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(s);
  ASSERT_TRUE(run([&] { return accepted.size() == 1; }));

  server->goaway(reset_code::closed, "maintenance");
  EXPECT_TRUE(server->draining());
  ASSERT_TRUE(run([&] { return seen.has_value(); }));
  EXPECT_EQ(seen->code, reset_code::closed);
  EXPECT_EQ(seen->reason, "maintenance");
  EXPECT_EQ(seen->last_stream, s->id());
  EXPECT_TRUE(client->draining());
  EXPECT_FALSE(client->closed());
  EXPECT_EQ(client->open(stream_kind::tcp, target("example.com", 80)), nullptr);

  // The stream opened before GOAWAY still works both ways.
  const bytes up = random_bytes(300'000, 8);
  const bytes down = random_bytes(300'000, 9);
  write_job cw;
  write_job sw;
  read_job cr;
  read_job sr;
  spawn(io, write_all(*s, up, cw, 64 * 1024, true));
  spawn(io, write_all(*accepted[0], down, sw, 64 * 1024, true));
  spawn(io, read_all(*s, cr));
  spawn(io, read_all(*accepted[0], sr));
  ASSERT_TRUE(run([&] { return cw.done && sw.done && cr.done && sr.done; }));
  EXPECT_TRUE(sr.data == up);
  EXPECT_TRUE(cr.data == down);
  EXPECT_EQ(sr.ec, asio::error::eof);
  EXPECT_EQ(cr.ec, asio::error::eof);
  EXPECT_FALSE(client->closed());
  EXPECT_FALSE(server->closed());
}

TEST_F(session_test, SessionCloseFailsStreamsOnBothSides) {
  on_accept = [](mux_stream& s) { s.accept(); };
  start();
  auto s = client->open(stream_kind::tcp, target("example.com", 80));
  ASSERT_TRUE(run([&] { return accepted.size() == 1; }));
  read_job cr;
  read_job sr;
  spawn(io, read_all(*s, cr));
  spawn(io, read_all(*accepted[0], sr));
  client->close("bye");
  ASSERT_TRUE(run([&] { return cr.done && sr.done && client_closed && server_closed; }));
  EXPECT_EQ(*client_closed, "bye");
  EXPECT_TRUE(cr.ec);
  EXPECT_TRUE(sr.ec);
  EXPECT_TRUE(server->closed());
}

} // namespace
