// The tunnel server (src/tunnel/server.*) against a raw client that speaks
// the wire protocol frame by frame over a real loopback tcp:// tunnel, as a
// hostile but authenticated client would. The outbound side is a scripted
// resolver and, for sockets, a listener whose accept queue is full (connects
// to it hang), so the tests see every lookup and socket the server starts.
#include "tunnel/server.hpp"

#include "../net/test_util.hpp"
#include "wire/frame.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <optional>
#include <sstream>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::wire;
namespace asio = boost::asio;
using asio::ip::tcp;
using bytes = std::vector<std::uint8_t>;

namespace {

constexpr std::string_view k_token = "server-test-token";      // user "default"
constexpr std::string_view k_other_token = "other-user-token"; // user "other"

target_address target(const std::string& host, std::uint16_t port) {
  auto t = target_address::from_host_port({host, port});
  EXPECT_TRUE(t) << t.error();
  return *t;
}

class server_test : public ::testing::Test {
 protected:
  asio::io_context io;
  test::fake_resolver resolver;
  std::shared_ptr<tunnel::server> srv;
  tcp::socket peer{io};
  bytes inbox;                // what the server sent after its "OK\n"
  bool authenticated = false; // "OK\n" arrived
  bool peer_closed = false;
  std::uint64_t next_ping = 1;
  tcp::endpoint endpoint_;

  /// Server options: outbound connects to `slow.test` (which the resolver
  /// never answers) and to 127.0.0.1 are allowed.
  static tunnel::server_options options(std::uint32_t max_streams) {
    tunnel::server_options o;
    o.session.max_streams = max_streams;
    o.connect.he.timeout = 30s; // longer than any test: only cancellation ends a connect early
    o.drain_timeout = 100ms;    // TearDown stops the server
    for (const char* rule : {"slow.test", "127.0.0.1"}) {
      auto r = tunnel::parse_allow_rule(rule);
      EXPECT_TRUE(r) << r.error();
      o.policy.add(*r);
    }
    return o;
  }

  /// A stopped server lets go of its sessions (whose handlers hold it).
  void TearDown() override {
    if (!srv)
      return;
    bool stopped = false;
    srv->stop([&stopped] { stopped = true; });
    EXPECT_TRUE(test::run_until(
        io, [&] { return stopped; }, 5s))
        << "the server did not stop";
  }

  /// Starts the server, connects the raw client and exchanges HELLO.
  void start(tunnel::server_options o) {
    auto url = transport::parse_url("tcp://127.0.0.1:0", true);
    ASSERT_TRUE(url) << url.error();
    o.listen = {*url};
    auto users = std::make_shared<transport::user_table>();
    users->add("default", transport::user_table::hash(k_token));
    users->add("other", transport::user_table::hash(k_other_token));
    o.accept.users = users;
    srv = std::make_shared<tunnel::server>(io.get_executor(), resolver, std::move(o));
    auto eps = srv->bind();
    ASSERT_TRUE(eps) << eps.error();
    srv->start();
    endpoint_ = eps->front();
    peer.connect(endpoint_);
    const std::string preamble = "WARREN/1 " + std::string(k_token) + "\n";
    send(bytes(preamble.begin(), preamble.end()));
    test::spawn(io, read_loop());
    ASSERT_TRUE(test::run_until(io, [&] { return authenticated; })) << "no OK from the server";
    bytes hello_frame;
    encode_hello(hello_frame, hello{});
    send(hello_frame);
    ASSERT_TRUE(test::run_until(io, [&] { return !frames().empty(); })) << "no HELLO from the server";
    ASSERT_EQ(frames().front().header.type, frame_type::hello);
  }

  asio::awaitable<void> read_loop() {
    std::array<std::uint8_t, 64 * 1024> buf;
    bytes raw;
    for (;;) {
      auto [ec, n] = co_await peer.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec) {
        peer_closed = true;
        co_return;
      }
      if (authenticated) {
        inbox.insert(inbox.end(), buf.begin(), buf.begin() + n);
        continue;
      }
      raw.insert(raw.end(), buf.begin(), buf.begin() + n);
      if (raw.size() >= 3) {
        EXPECT_EQ(std::string(raw.begin(), raw.begin() + 3), "OK\n");
        inbox.assign(raw.begin() + 3, raw.end());
        authenticated = true;
      }
    }
  }

  void send(const bytes& b) { asio::write(peer, asio::buffer(b)); }

  /// A TCP connection to the server from `source` (any 127/8 address).
  tcp::socket raw_connect(const char* source = "127.0.0.1") {
    tcp::socket s(io);
    s.open(tcp::v4());
    s.bind({asio::ip::make_address(source), 0});
    s.connect(endpoint_);
    return s;
  }

  /// Sends the token; true once the server's "OK\n" arrived.
  bool authenticate(tcp::socket& s, std::string_view token = k_token) {
    const std::string preamble = "WARREN/1 " + std::string(token) + "\n";
    asio::write(s, asio::buffer(preamble));
    std::array<char, 3> ok{};
    bool read = false;
    asio::async_read(s, asio::buffer(ok), [&](error_code ec, std::size_t) { read = !ec; });
    test::run_until(io, [&] { return read; });
    return read && std::string(ok.data(), ok.size()) == "OK\n";
  }

  /// True once the server has closed `s` (end of stream or reset).
  bool closed_by_server(tcp::socket& s) {
    std::array<char, 64> buf;
    std::optional<error_code> result;
    s.async_read_some(asio::buffer(buf), [&](error_code ec, std::size_t) { result = ec; });
    test::run_until(
        io, [&] { return result.has_value(); }, 2s);
    if (!result) {
      s.cancel();
      test::run_until(io, [&] { return result.has_value(); });
      return false;
    }
    return *result == asio::error::eof || *result == asio::error::connection_reset;
  }

  /// True if `s` is open and nothing has come on it yet.
  static bool still_open(tcp::socket& s) {
    s.non_blocking(true);
    std::array<char, 1> byte;
    error_code ec;
    s.read_some(asio::buffer(byte), ec);
    s.non_blocking(false);
    return ec == asio::error::would_block;
  }

  /// Another raw client of the same server, authenticated (by default as
  /// another user: "other"), past HELLO.
  tcp::socket second_client(std::string_view token = k_other_token) {
    auto s = raw_connect();
    EXPECT_TRUE(authenticate(s, token)) << "no OK from the server";
    bytes hello_frame;
    encode_hello(hello_frame, hello{});
    asio::write(s, asio::buffer(hello_frame));
    return s;
  }

  /// The frames received so far (they point into inbox).
  std::vector<decoded_frame> frames() const {
    std::vector<decoded_frame> out;
    std::span<const std::uint8_t> rest(inbox);
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

  /// A PING round trip, then every handler that is ready has run: whatever
  /// was sent before has been processed, and what it started has begun.
  void sync() {
    ping_payload p{};
    const std::uint64_t mark = next_ping++;
    std::memcpy(p.data(), &mark, sizeof mark);
    bytes f;
    encode_ping(f, p, false);
    send(f);
    ASSERT_TRUE(test::run_until(io, [&] {
      for (const auto& fr : frames())
        if (fr.header.type == frame_type::ping && (fr.header.flags & k_flag_ack) &&
            std::equal(fr.payload.begin(), fr.payload.end(), p.begin()))
          return true;
      return false;
    })) << "no answer to PING";
    io.restart();
    while (io.poll() != 0) {
    }
  }

  static bytes open_streams(std::uint32_t first, std::uint32_t n, stream_kind kind, const target_address& t) {
    bytes b;
    for (std::uint32_t i = 0; i < n; ++i)
      encode_open(b, first + 2 * i, kind, t);
    return b;
  }

  static bytes reset_streams(std::uint32_t first, std::uint32_t n) {
    bytes b;
    for (std::uint32_t i = 0; i < n; ++i)
      encode_reset(b, first + 2 * i, reset_code::closed, "changed my mind");
    return b;
  }

  /// OPEN then RESET at once, `n` times, from stream id `first` on.
  static bytes open_reset_churn(std::uint32_t first, std::uint32_t n, stream_kind kind, const target_address& t) {
    bytes b;
    for (std::uint32_t i = 0; i < n; ++i) {
      encode_open(b, first + 2 * i, kind, t);
      encode_reset(b, first + 2 * i, reset_code::closed, "changed my mind");
    }
    return b;
  }
};

} // namespace

// A client that opens streams to a slow name and resets each at once, or
// opens more than it may look up at a time: no more than
// max_lookups_per_client of its lookups reach the shared resolver, however it
// churns (getaddrinfo cannot be interrupted, so one a reset stream started
// keeps its place until it ends). Another client's lookups start at once.
TEST_F(server_test, OneClientHoldsAtMostItsLookupLimit) {
  auto o = options(8);
  o.max_lookups_per_client = 4;
  start(o);
  send(open_reset_churn(1, 200, stream_kind::tcp, target("slow.test", 80)));
  send(open_reset_churn(401, 200, stream_kind::udp, target("slow.test", 53)));
  sync();
  EXPECT_LE(resolver.asked_total(), 4);
  send(open_streams(801, 8, stream_kind::tcp, target("slow.test", 80))); // 16 lookups wanted
  sync();
  EXPECT_EQ(resolver.asked_total(), 4) << "the client's lookups fill its 4 places and no more";
  auto other = second_client();
  bytes open;
  encode_open(open, 1, stream_kind::tcp, target("slow.test", 80));
  asio::write(other, asio::buffer(open));
  EXPECT_TRUE(test::run_until(io, [&] { return resolver.asked_total() == 6; }))
      << "the second client's AAAA and A wait behind the first client's lookups";
  EXPECT_FALSE(peer_closed);
}

// The limit is the user's: a second tunnel with the same token gets no
// lookups of its own while the first holds them all.
TEST_F(server_test, OneUsersTunnelsShareItsLookupLimit) {
  auto o = options(8);
  o.max_lookups_per_client = 4;
  start(o);
  send(open_streams(1, 8, stream_kind::tcp, target("slow.test", 80)));
  sync();
  ASSERT_EQ(resolver.asked_total(), 4);
  auto same = second_client(k_token);
  bytes open;
  encode_open(open, 1, stream_kind::tcp, target("slow.test", 80));
  asio::write(same, asio::buffer(open));
  test::run_until(
      io, [] { return false; }, 200ms);
  EXPECT_EQ(resolver.asked_total(), 4) << "the user's second tunnel got lookups of its own";
  // Another user's tunnel is not held back.
  auto other = second_client();
  asio::write(other, asio::buffer(open));
  EXPECT_TRUE(test::run_until(io, [&] { return resolver.asked_total() == 6; }));
}

// Lookups still waiting for a place when their stream is reset never reach
// the resolver; the places free up when the ones running end.
TEST_F(server_test, ResetStreamsWaitingLookupsNeverReachTheResolver) {
  auto o = options(8);
  o.max_lookups_per_client = 4;
  start(o);
  send(open_streams(1, 8, stream_kind::tcp, target("slow.test", 80)));
  sync();
  ASSERT_EQ(resolver.asked_total(), 4);
  send(reset_streams(1, 8));
  sync();
  resolver.answer_pending(asio::error::host_not_found);
  sync();
  EXPECT_EQ(resolver.asked_total(), 4) << "lookups of reset streams started after the running ones ended";
  // The places are free again: a new stream's lookups start at once.
  send(open_streams(17, 1, stream_kind::udp, target("slow.test", 53)));
  sync();
  EXPECT_EQ(resolver.asked_total(), 5);
}

// Connections that have not authenticated hold at most
// max_handshakes_per_source slots from one source (one over is closed at
// once) and max_handshakes in all. With all taken, a newcomer evicts the
// oldest connection of the source holding the most, or with the slots spread
// evenly the oldest of all. A slot is free again when its handshake ends.
// (Authenticated clients, like the fixture's, hold none.)
TEST_F(server_test, UnauthenticatedConnectionsAreBoundedInAllAndPerSource) {
  auto o = options(8);
  o.max_handshakes = 3;
  o.max_handshakes_per_source = 2;
  start(o);
  auto a1 = raw_connect("127.0.0.2");
  auto a2 = raw_connect("127.0.0.2");
  auto a3 = raw_connect("127.0.0.2");
  EXPECT_TRUE(closed_by_server(a3)) << "a third from one source";
  auto b1 = raw_connect("127.0.0.3");
  auto c1 = raw_connect("127.0.0.4");
  EXPECT_TRUE(closed_by_server(a1)) << "c1 evicts the oldest of the source holding the most";
  auto d1 = raw_connect("127.0.0.5");
  EXPECT_TRUE(closed_by_server(a2)) << "one each: d1 evicts the oldest of all";
  for (auto* s : {&b1, &c1, &d1})
    EXPECT_TRUE(still_open(*s)) << "an admitted connection was closed";
  EXPECT_TRUE(authenticate(b1)) << "a handshake that completes";
  sync(); // whatever b1's handshake ending started has run
  auto e1 = raw_connect("127.0.0.6");
  sync();
  EXPECT_TRUE(still_open(c1) && still_open(d1)) << "b1's slot was free: nobody evicted for e1";
  e1.close();
  sync(); // the server has seen e1's end
  auto f1 = raw_connect("127.0.0.7");
  sync();
  EXPECT_TRUE(still_open(c1) && still_open(d1)) << "e1's slot was free: nobody evicted for f1";
  EXPECT_TRUE(authenticate(f1));
  EXPECT_FALSE(peer_closed);
}

// A trusted reverse proxy (--trust-proxy) speaks for many clients: it may
// hold every handshake slot, not one source's share; --max-handshakes
// still bounds it, and other sources still evict its oldest.
TEST_F(server_test, ATrustedProxyIsBoundedInAllNotPerSource) {
  auto o = options(8);
  o.max_handshakes = 4;
  o.max_handshakes_per_source = 2;
  o.accept.trusted_proxies = {*transport::parse_ip_network("127.0.0.2/32")};
  start(o);
  auto p1 = raw_connect("127.0.0.2");
  auto p2 = raw_connect("127.0.0.2");
  auto p3 = raw_connect("127.0.0.2");
  sync();
  EXPECT_TRUE(still_open(p1) && still_open(p2) && still_open(p3)) << "the proxy is not bound per source";
  auto p4 = raw_connect("127.0.0.2");
  auto p5 = raw_connect("127.0.0.2");
  EXPECT_TRUE(closed_by_server(p5)) << "--max-handshakes bounds the proxy";
  auto b1 = raw_connect("127.0.0.3");
  EXPECT_TRUE(closed_by_server(p1)) << "another source evicts the proxy's oldest";
  EXPECT_TRUE(still_open(b1) && still_open(p4));
  // An untrusted source keeps its per-source share.
  auto c1 = raw_connect("127.0.0.4");
  auto c2 = raw_connect("127.0.0.4");
  auto c3 = raw_connect("127.0.0.4");
  EXPECT_TRUE(closed_by_server(c3)) << "a third from an untrusted source";
}

// The same with a target whose connects hang: no socket outlives its stream.
TEST_F(server_test, OpenResetChurnLeavesNoConnectsBehind) {
  test::hanging_listener hang(io, test::v4_loopback());
  start(options(8));
  const int fds_before = test::open_fd_count();
  send(open_reset_churn(1, 200, stream_kind::tcp, target("127.0.0.1", hang.port())));
  sync();
  EXPECT_LE(test::open_fd_count(), fds_before) << "connects for streams the client reset are still in flight";
  // Streams that stay open keep their connects (the stream limit bounds them)
  // until they are reset.
  send(open_streams(401, 8, stream_kind::tcp, target("127.0.0.1", hang.port())));
  sync();
  EXPECT_EQ(test::open_fd_count(), fds_before + 8);
  send(reset_streams(401, 8));
  sync();
  EXPECT_EQ(test::open_fd_count(), fds_before) << "connects for streams the client reset are still in flight";
}

// A client that disconnects with streams still resolving: the lookups that
// wait for a place end with the session, so reconnecting cannot pile them up.
TEST_F(server_test, DisconnectEndsTheLookupsOfItsStreams) {
  start(options(8));
  send(open_streams(1, 4, stream_kind::tcp, target("slow.test", 80)));
  send(open_streams(9, 4, stream_kind::udp, target("slow.test", 53)));
  sync();
  EXPECT_EQ(resolver.asked_total(), 8) << "4 x (AAAA, A) + 4 x A wanted; 8 places";
  peer.close();
  ASSERT_TRUE(test::run_until(io, [&] { return srv->sessions() == 0; }));
  resolver.answer_pending(asio::error::host_not_found);
  test::run_until(
      io, [] { return false; }, 100ms);
  EXPECT_EQ(resolver.asked_total(), 8) << "lookups of a disconnected client started after it left";
}

// A name no rule can allow (only name rules, or address rules for other
// ports) is denied without a lookup: a client cannot make the server query
// DNS for names it could never reach.
TEST_F(server_test, NamesThePolicyCannotAllowAreNotLookedUp) {
  auto o = options(8);
  o.policy = {};
  for (const char* rule : {"slow.test", "10.0.0.0/8:443"}) {
    auto r = tunnel::parse_allow_rule(rule);
    ASSERT_TRUE(r) << r.error();
    o.policy.add(*r);
  }
  start(o);
  send(open_streams(1, 2, stream_kind::tcp, target("elsewhere.test", 80)));
  send(open_streams(5, 1, stream_kind::udp, target("elsewhere.test", 53)));
  sync();
  std::vector<reset_code> resets;
  for (const auto& f : frames())
    if (f.header.type == frame_type::reset)
      if (auto r = parse_reset(f.payload))
        resets.push_back(r->code);
  EXPECT_EQ(resets, std::vector<reset_code>(3, reset_code::denied));
  EXPECT_EQ(resolver.asked[net::ip_family::v4] + resolver.asked[net::ip_family::v6], 0);
  // A name with a rule, or a port some address rule covers, is looked up.
  send(open_streams(7, 1, stream_kind::tcp, target("slow.test", 80)));
  send(open_streams(9, 1, stream_kind::tcp, target("elsewhere.test", 443)));
  sync();
  EXPECT_EQ(resolver.pending(), 4);
}

namespace {
/// Sends the default logger's lines to a string for one test.
class captured_log {
 public:
  captured_log() : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_st>(text_));
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  ~captured_log() { spdlog::set_default_logger(previous_); }
  captured_log(const captured_log&) = delete;
  captured_log& operator=(const captured_log&) = delete;

  std::size_t count(std::string_view needle) const {
    const std::string all = text_.str();
    std::size_t n = 0;
    for (auto at = all.find(needle); at != std::string::npos; at = all.find(needle, at + 1))
      ++n;
    return n;
  }
  std::string text() const { return text_.str(); }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::logger> previous_;
};
} // namespace

// Log volume is a resource too: a client that opens stream after stream to
// a target the policy denies gets a few of them logged, not one line per
// OPEN, and its disconnect line says how many were left out.
TEST_F(server_test, RefusedStreamsAreNotLoggedOneLinePerOpen) {
  captured_log log;
  start(options(1024));
  constexpr std::uint32_t k_opens = 300;
  send(open_streams(1, k_opens, stream_kind::tcp, target("10.9.9.9", 80))); // not allowed
  ASSERT_TRUE(test::run_until(io, [&] {
    const auto fs = frames();
    return std::count_if(fs.begin(), fs.end(), [](const auto& f) { return f.header.type == frame_type::reset; }) ==
           k_opens;
  })) << "not every OPEN was refused";
  const std::size_t logged = log.count("denied by the destination policy");
  EXPECT_GE(logged, 1u);
  EXPECT_LE(logged, 20u) << "one log line per refused OPEN";
  peer.close();
  ASSERT_TRUE(test::run_until(io, [&] { return log.count("disconnected") == 1; }));
  EXPECT_EQ(log.count(std::to_string(k_opens - logged) + " refused streams not logged"), 1u) << log.text();
}

namespace {
/// Whether `frames` hold the answer to a PING carrying `mark`.
bool has_pong(const std::vector<decoded_frame>& frames, std::uint64_t mark) {
  return std::any_of(frames.begin(), frames.end(), [mark](const decoded_frame& f) {
    return f.header.type == frame_type::ping && (f.header.flags & k_flag_ack) && f.payload.size() == sizeof mark &&
           std::memcmp(f.payload.data(), &mark, sizeof mark) == 0;
  });
}

bytes ping_frame(std::uint64_t mark) {
  ping_payload p{};
  std::memcpy(p.data(), &mark, sizeof mark);
  bytes f;
  encode_ping(f, p, false);
  return f;
}

std::size_t count_frames(const std::vector<decoded_frame>& frames, frame_type t) {
  return static_cast<std::size_t>(
      std::count_if(frames.begin(), frames.end(), [t](const decoded_frame& f) { return f.header.type == t; }));
}
} // namespace

// The open rate is the user's too: with its burst spent by one tunnel, the
// user's second tunnel waits for the rate; another user's opens go at once.
TEST_F(server_test, OneUsersTunnelsShareItsOpenRate) {
  auto o = options(64);
  o.max_opens_per_second = 1;
  o.open_burst = 2;
  o.max_lookups_per_client = 32; // not the bound under test
  start(o);
  send(open_streams(1, 2, stream_kind::tcp, target("slow.test", 80)));
  ASSERT_TRUE(test::run_until(io, [&] { return resolver.asked_total() == 4; })); // AAAA and A each
  auto same = second_client(k_token);
  bytes open;
  encode_open(open, 1, stream_kind::tcp, target("slow.test", 80));
  asio::write(same, asio::buffer(open));
  test::run_until(
      io, [] { return false; }, 300ms);
  EXPECT_EQ(resolver.asked_total(), 4) << "the user's second tunnel had a burst of its own";
  auto other = second_client();
  asio::write(other, asio::buffer(open));
  EXPECT_TRUE(test::run_until(
      io, [&] { return resolver.asked_total() == 6; }, 500ms))
      << "another user waited for this user's rate";
  EXPECT_TRUE(test::run_until(
      io, [&] { return resolver.asked_total() == 8; }, 3s))
      << "the user's paced open never went";
}

// A client that opens streams faster than its rate pauses its own tunnel,
// nobody else's. Two opens a second, four at once: of ten streams to a slow
// name, four start their lookups (AAAA and A) at once and the rest follow
// at the rate, none refused; the client's PING, behind its OPENs, waits for
// them, while a second client's PING is answered at once.
TEST_F(server_test, OpensBeyondTheRatePauseOnlyThatClient) {
  auto o = options(64);
  o.max_opens_per_second = 2;
  o.open_burst = 4;
  o.max_lookups_per_client = 32; // not the bound under test
  start(o);
  const auto t0 = steady_clock::now();
  send(open_streams(1, 10, stream_kind::tcp, target("slow.test", 80)));
  send(ping_frame(100));
  ASSERT_TRUE(test::run_until(io, [&] { return resolver.asked_total() == 8; }));
  test::run_until(
      io, [] { return false; }, 200ms);
  EXPECT_EQ(resolver.asked_total(), 8) << "opens beyond the burst were handled at once";
  EXPECT_FALSE(has_pong(frames(), 100)) << "the client's PING behind its paced OPENs was read";

  auto other = second_client();
  asio::write(other, asio::buffer(ping_frame(200)));
  // Shared with the read's handler, which may run after this function
  // returns (a failed assertion), when the socket is closed.
  struct reading_state {
    std::array<std::uint8_t, 4096> buf;
    bytes inbox;
    bool reading = false;
  };
  auto rs = std::make_shared<reading_state>();
  const auto other_t0 = steady_clock::now();
  ASSERT_TRUE(test::run_until(
      io,
      [&] {
        if (!rs->reading) {
          rs->reading = true;
          other.async_read_some(asio::buffer(rs->buf), [rs](error_code ec, std::size_t n) {
            if (!ec)
              rs->inbox.insert(rs->inbox.end(), rs->buf.begin(), rs->buf.begin() + static_cast<std::ptrdiff_t>(n));
            rs->reading = false;
          });
        }
        std::vector<decoded_frame> other_frames;
        std::span<const std::uint8_t> rest(rs->inbox);
        while (!rest.empty()) {
          auto r = decode(rest);
          auto* f = std::get_if<decoded_frame>(&r);
          if (!f)
            break;
          other_frames.push_back(*f);
          rest = rest.subspan(f->consumed);
        }
        return has_pong(other_frames, 200);
      },
      5s))
      << "the second client waited for the first one's opens";
  EXPECT_LT(steady_clock::now() - other_t0, 400ms) << "the second client waited for the first one's opens";
  EXPECT_FALSE(has_pong(frames(), 100));

  ASSERT_TRUE(test::run_until(io, [&] { return has_pong(frames(), 100); }, 10s)) << "reading never resumed";
  EXPECT_GE(steady_clock::now() - t0, 2500ms) << "six opens beyond the burst at 2/s take 3 s";
  EXPECT_EQ(resolver.asked_total(), 20);
  EXPECT_EQ(count_frames(frames(), frame_type::reset), 0u) << "an open was refused instead of paced";
  EXPECT_FALSE(peer_closed);
}

// A client's connects in flight are bounded: beyond max_connects_per_client
// its streams wait for a slot (they are not refused) and start, in order,
// as connects end; a stream reset while it waits never connects.
TEST_F(server_test, ConnectsInFlightAreBoundedAndTheRestWait) {
  test::hanging_listener hang(io, test::v4_loopback());
  auto o = options(64);
  o.max_connects_per_client = 4;
  start(o);
  const int fds_before = test::open_fd_count();
  send(open_streams(1, 10, stream_kind::tcp, target("127.0.0.1", hang.port())));
  sync();
  EXPECT_EQ(test::open_fd_count(), fds_before + 4) << "connects in flight beyond the bound";
  send(reset_streams(1, 2)); // two connects end: the next two waiting start
  send(reset_streams(17, 2)); // two waiting streams give up: they never connect
  sync();
  EXPECT_EQ(test::open_fd_count(), fds_before + 4);
  send(reset_streams(5, 6)); // the four connecting (5..11) and the two left waiting (13, 15)
  sync();
  EXPECT_EQ(test::open_fd_count(), fds_before) << "a stream connected after it was reset";
  EXPECT_EQ(count_frames(frames(), frame_type::reset), 0u) << "a stream over the bound was refused";
  EXPECT_FALSE(peer_closed);
}

// The bound slows a client with many streams, never stops it: 40 streams
// through 2 connect slots all connect.
TEST_F(server_test, ManyStreamsAllConnectThroughFewSlots) {
  tcp::acceptor acceptor(io, {test::v4_loopback(), 0});
  std::vector<tcp::socket> targets;
  std::function<void()> accept_next = [&] {
    acceptor.async_accept([&](error_code ec, tcp::socket sock) {
      if (ec)
        return;
      targets.push_back(std::move(sock));
      accept_next();
    });
  };
  accept_next();
  auto o = options(64);
  o.max_connects_per_client = 2;
  start(o);
  send(open_streams(1, 40, stream_kind::tcp, target("127.0.0.1", acceptor.local_endpoint().port())));
  EXPECT_TRUE(test::run_until(io, [&] { return count_frames(frames(), frame_type::open_ok) == 40; }))
      << count_frames(frames(), frame_type::open_ok) << " of 40 streams connected";
  EXPECT_EQ(count_frames(frames(), frame_type::reset), 0u);
  acceptor.close();
}

// A reload that revokes a user closes that user's tunnels (GOAWAY, then the
// connection ends); another user's tunnel stays. One whose token is not in
// the table any more cannot authenticate again.
TEST_F(server_test, ReloadClosesTheTunnelsOfRevokedUsers) {
  start(options(8));
  auto other = second_client();
  auto access = srv->access();
  auto users = std::make_shared<transport::user_table>();
  users->add("default", transport::user_table::hash(k_token));
  access.users = users;
  const auto change = srv->reload(access);
  EXPECT_EQ(change.revoked, std::vector<std::string>{"other"});
  bool closed = false; // after the GOAWAY (read as data here), the end
  for (int reads = 0; reads < 5 && !closed; ++reads)
    closed = closed_by_server(other);
  EXPECT_TRUE(closed) << "the revoked user's tunnel is still open";
  EXPECT_FALSE(peer_closed) << "the remaining user's tunnel was closed";
  send(ping_frame(7));
  EXPECT_TRUE(test::run_until(io, [&] { return has_pong(frames(), 7); }));
  auto again = raw_connect();
  EXPECT_FALSE(authenticate(again, k_other_token)) << "a revoked token was accepted";
}
