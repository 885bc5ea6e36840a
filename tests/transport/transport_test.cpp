// Tests of dial() and accept_stream() (src/transport/transport.*) over real
// loopback connections, with a self-signed certificate made in a temporary
// state directory: a round trip of bytes and a half-close for each scheme
// (tcp, tls and wss pinned, ws), a wrong token (401 / refusal) and the
// failure limiter answering 429 after five, a wrong pin, CA verification of
// a self-signed server (fails, suggesting --pin; passes with the
// certificate as CA), a slow-loris client cut at the handshake deadline, a
// plain HTTP GET answered 426, a wrong path answered 404, and the refusal
// to send a token in clear text to a non-loopback host, which happens
// before any connection is attempted.
#include "transport/transport.hpp"

#include "../net/test_util.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <random>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::transport;
namespace asio = boost::asio;
namespace fs = std::filesystem;
using asio::ip::tcp;
using bytes = std::vector<std::uint8_t>;

namespace {

using test::random_bytes;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
const std::string k_token = "correct-horse-battery-staple";

using test::spawn;

struct io_job {
  bool done = false;
  bytes data;
  error_code ec;
};

asio::awaitable<void> write_all(std::shared_ptr<stream::byte_stream> s, bytes data, std::shared_ptr<io_job> job) {
  for (std::size_t off = 0; off < data.size() && !job->ec; off += 64 * 1024) {
    const asio::const_buffer b(data.data() + off, std::min<std::size_t>(64 * 1024, data.size() - off));
    co_await s->write(std::span(&b, 1), job->ec);
  }
  job->done = true;
}

asio::awaitable<void> read_all(std::shared_ptr<stream::byte_stream> s, std::shared_ptr<io_job> job, std::size_t limit) {
  std::vector<std::uint8_t> buf(64 * 1024);
  while (job->data.size() < limit) {
    error_code ec;
    const auto n = co_await s->read_some(asio::buffer(buf.data(), std::min(buf.size(), limit - job->data.size())), ec);
    job->data.insert(job->data.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    if (ec) {
      job->ec = ec;
      break;
    }
  }
  job->done = true;
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

class transport_test : public ::testing::Test {
 protected:
  asio::io_context io; // first: destroyed last
  fs::path state_dir;
  generated_certificate cert;
  tcp::acceptor acceptor{io, tcp::endpoint(test::v4_loopback(), 0)};
  accept_options server_options;
  auth_limiter limiter;
  net::system_resolver resolver{1};
  std::vector<std::shared_ptr<accept_result>> server_results;
  bytes server_greeting; // when set, written by the server as soon as accept_stream returns a stream

  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "warren-transport-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    state_dir = pattern;
    auto made = ensure_self_signed(state_dir.string(), {}); // localhost, 127.0.0.1, ::1
    ASSERT_TRUE(made) << made.error();
    cert = *made;
    auto ctx = make_server_context({cert.cert_file, cert.key_file, {}});
    ASSERT_TRUE(ctx) << ctx.error();
    server_options.tls = *ctx;
    server_options.users = user_table::single("default", k_token);
  }

  void TearDown() override {
    std::error_code ec;
    fs::remove_all(state_dir, ec);
  }

  std::uint16_t port() const { return acceptor.local_endpoint().port(); }

  url make_url(scheme s, const std::string& host = "127.0.0.1", const std::string& path = "") const {
    const std::string text = std::string(to_string(s)) + "://" + net::format_host_port(host, port()) + path;
    auto u = parse_url(text);
    EXPECT_TRUE(u) << u.error();
    return u ? *u : url{};
  }

  /// Accepts `count` connections; each goes through accept_stream concurrently.
  void serve(const url& listen_url, int count) {
    spawn(io, [this, listen_url, count]() -> asio::awaitable<void> {
      for (int i = 0; i < count; ++i) {
        auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
        if (ec)
          co_return;
        auto slot = std::make_shared<accept_result>();
        server_results.push_back(slot);
        spawn(io, [this, listen_url, slot, s = std::move(socket)]() mutable -> asio::awaitable<void> {
          *slot = co_await accept_stream(std::move(s), listen_url, server_options, limiter);
          if (slot->stream && !server_greeting.empty()) {
            // Like a session's HELLO: the server speaks first, at once.
            const asio::const_buffer b(server_greeting.data(), server_greeting.size());
            error_code write_ec;
            co_await slot->stream->write(std::span(&b, 1), write_ec);
          }
          if (!slot->stream && slot->error.empty())
            slot->error = "(accept_stream returned neither a stream nor an error)";
        });
      }
    });
  }

  /// Server results that have completed (stream or error).
  std::size_t server_done() const {
    return static_cast<std::size_t>(std::count_if(server_results.begin(), server_results.end(), [](const auto& r) {
      return r->stream != nullptr || !r->error.empty();
    }));
  }

  dial_result dial_now(const url& target, const dial_options& options, net::resolver& r,
                       std::chrono::milliseconds limit = 15s) {
    auto out = std::make_shared<std::optional<dial_result>>();
    spawn(io, [out, target, options, &r]() -> asio::awaitable<void> { *out = co_await dial(target, options, r); });
    EXPECT_TRUE(test::run_until(
        io, [&] { return out->has_value(); }, limit))
        << "dial did not finish";
    return out->has_value() ? std::move(**out) : dial_result{};
  }

  dial_options client_options(scheme s) const {
    dial_options o;
    o.token = k_token;
    if (s == scheme::tls || s == scheme::wss)
      o.tls.pin = cert.fingerprint;
    return o;
  }

  bool run(const std::function<bool()>& pred, std::chrono::milliseconds limit = 15s) {
    return test::run_until(io, pred, limit);
  }
};

// ---- round trips ----------------------------------------------------------------

class round_trip_test : public transport_test, public ::testing::WithParamInterface<scheme> {};

TEST_P(round_trip_test, BytesBothWaysAndHalfClose) {
  const url u = make_url(GetParam());
  serve(u, 1);
  auto d = dial_now(u, client_options(GetParam()), resolver);
  ASSERT_TRUE(d.stream) << d.error;
  EXPECT_TRUE(d.error.empty());
  EXPECT_EQ(d.peer, acceptor.local_endpoint());
  ASSERT_TRUE(run([&] { return server_done() == 1; }));
  ASSERT_TRUE(server_results[0]->stream) << server_results[0]->error;

  const std::string name(to_string(GetParam()));
  EXPECT_TRUE(d.stream->description().starts_with(name + " ")) << d.stream->description();
  EXPECT_TRUE(server_results[0]->stream->description().starts_with(name + " "))
      << server_results[0]->stream->description();
  if (GetParam() == scheme::tls || GetParam() == scheme::wss) {
    EXPECT_TRUE(contains(d.stream->description(), "TLSv1.3")) << d.stream->description();
  }

  std::shared_ptr<stream::byte_stream> client = std::move(d.stream);
  std::shared_ptr<stream::byte_stream> server = std::move(server_results[0]->stream);
  const bytes up = random_bytes(1 << 20, 1);
  const bytes down = random_bytes(1 << 20, 2);
  auto cw = std::make_shared<io_job>();
  auto sw = std::make_shared<io_job>();
  auto cr = std::make_shared<io_job>();
  auto sr = std::make_shared<io_job>();
  spawn(io, write_all(client, up, cw));
  spawn(io, write_all(server, down, sw));
  spawn(io, read_all(client, cr, down.size()));
  spawn(io, read_all(server, sr, up.size()));
  ASSERT_TRUE(run([&] { return cw->done && sw->done && cr->done && sr->done; }, 30s));
  EXPECT_FALSE(cw->ec) << cw->ec.message();
  EXPECT_FALSE(sw->ec) << sw->ec.message();
  EXPECT_TRUE(sr->data == up) << sr->data.size() << " bytes arrived at the server";
  EXPECT_TRUE(cr->data == down) << cr->data.size() << " bytes arrived at the client";

  // The client's graceful end reaches the server as end of stream.
  auto end = std::make_shared<io_job>();
  spawn(io, read_all(server, end, SIZE_MAX));
  spawn(io, [client]() -> asio::awaitable<void> {
    error_code ec;
    co_await client->shutdown(ec);
  });
  ASSERT_TRUE(run([&] { return end->done; }));
  EXPECT_EQ(end->ec, asio::error::eof) << end->ec.message();
  EXPECT_TRUE(end->data.empty());
}

// The server's first bytes follow its authentication reply immediately (a
// session sends HELLO as soon as it starts); the client must not lose them
// while reading that reply.
TEST_P(round_trip_test, ServerSpeaksFirstRightAfterAccept) {
  const url u = make_url(GetParam());
  server_greeting = random_bytes(200, 11);
  serve(u, 1);
  auto d = dial_now(u, client_options(GetParam()), resolver);
  ASSERT_TRUE(d.stream) << d.error;
  std::shared_ptr<stream::byte_stream> client = std::move(d.stream);
  auto r = std::make_shared<io_job>();
  spawn(io, read_all(client, r, server_greeting.size()));
  run([&] { return r->done; }, 3s);
  EXPECT_TRUE(r->done) << "only " << r->data.size() << " of " << server_greeting.size() << " bytes arrived";
  ASSERT_GE(r->data.size(), 1u);
  EXPECT_TRUE(r->data == server_greeting) << "the first " << r->data.size() << " bytes differ";
}

INSTANTIATE_TEST_SUITE_P(Schemes, round_trip_test, ::testing::Values(scheme::tcp, scheme::tls, scheme::ws, scheme::wss),
                         [](const ::testing::TestParamInfo<scheme>& p) { return std::string(to_string(p.param)); });

// ---- authentication ---------------------------------------------------------------

TEST_F(transport_test, WrongTokenOverWebSocketIs401) {
  const url u = make_url(scheme::ws);
  serve(u, 1);
  auto o = client_options(scheme::ws);
  o.token = "wrong";
  auto d = dial_now(u, o, resolver);
  EXPECT_FALSE(d.stream);
  EXPECT_TRUE(contains(d.error, "401")) << d.error;
  EXPECT_TRUE(contains(d.error, "token")) << d.error;
  ASSERT_TRUE(run([&] { return server_done() == 1; }));
  EXPECT_FALSE(server_results[0]->stream);
  EXPECT_TRUE(contains(server_results[0]->error, "wrong token")) << server_results[0]->error;
  EXPECT_FALSE(contains(server_results[0]->error, k_token)) << "the token must not be logged";
}

TEST_F(transport_test, MissingTokenOverWebSocketIs401) {
  const url u = make_url(scheme::ws);
  serve(u, 1);
  auto o = client_options(scheme::ws);
  o.token.clear();
  auto d = dial_now(u, o, resolver);
  EXPECT_FALSE(d.stream);
  EXPECT_TRUE(contains(d.error, "401")) << d.error;
  ASSERT_TRUE(run([&] { return server_done() == 1; }));
  EXPECT_TRUE(contains(server_results[0]->error, "no token")) << server_results[0]->error;
}

TEST_F(transport_test, WrongTokenOverTcpIsRefused) {
  const url u = make_url(scheme::tcp);
  serve(u, 1);
  auto o = client_options(scheme::tcp);
  o.token = "wrong";
  auto d = dial_now(u, o, resolver);
  EXPECT_FALSE(d.stream);
  EXPECT_TRUE(contains(d.error, "token")) << d.error;
  ASSERT_TRUE(run([&] { return server_done() == 1; }));
  EXPECT_TRUE(contains(server_results[0]->error, "wrong token")) << server_results[0]->error;
}

TEST_F(transport_test, WrongPinOverTlsIsRefusedByPreamble) {
  // tls:// with the right pin but a wrong token: the preamble refusal.
  const url u = make_url(scheme::tls);
  serve(u, 1);
  auto o = client_options(scheme::tls);
  o.token = "wrong";
  auto d = dial_now(u, o, resolver);
  EXPECT_FALSE(d.stream);
  EXPECT_TRUE(contains(d.error, "token")) << d.error;
}

TEST_F(transport_test, LimiterBlocksAfterFiveFailures) {
  const url u = make_url(scheme::ws);
  serve(u, auth_limiter::k_max_failures + 1);
  auto wrong = client_options(scheme::ws);
  wrong.token = "wrong";
  for (int i = 0; i < auth_limiter::k_max_failures; ++i) {
    auto d = dial_now(u, wrong, resolver);
    EXPECT_TRUE(contains(d.error, "401")) << "attempt " << i + 1 << ": " << d.error;
  }
  EXPECT_FALSE(limiter.allowed(boost::asio::ip::make_address("127.0.0.1"), steady_clock::now()));

  // Now even the right token is turned away, with 429, without a check.
  auto d = dial_now(u, client_options(scheme::ws), resolver);
  EXPECT_FALSE(d.stream);
  EXPECT_TRUE(contains(d.error, "429")) << d.error;
  ASSERT_TRUE(run([&] { return server_done() == static_cast<std::size_t>(auth_limiter::k_max_failures + 1); }));
  EXPECT_TRUE(contains(server_results.back()->error, "too many failed authentications"))
      << server_results.back()->error;
}

// ---- certificates -------------------------------------------------------------------

TEST_F(transport_test, WrongPinIsAMismatch) {
  auto other = ensure_self_signed((state_dir / "other").string(), {});
  ASSERT_TRUE(other) << other.error();
  for (auto s : {scheme::wss, scheme::tls}) {
    const url u = make_url(s);
    serve(u, 1);
    auto o = client_options(s);
    o.tls.pin = other->fingerprint;
    auto d = dial_now(u, o, resolver);
    EXPECT_FALSE(d.stream) << to_string(s);
    EXPECT_TRUE(contains(d.error, "pin mismatch")) << to_string(s) << ": " << d.error;
    EXPECT_TRUE(contains(d.error, cert.fingerprint)) << "the presented fingerprint is shown: " << d.error;
  }
}

TEST_F(transport_test, CaVerificationOfSelfSignedSuggestsPin) {
  const url u = make_url(scheme::wss);
  serve(u, 1);
  auto o = client_options(scheme::wss);
  o.tls = {}; // system CA store, no pin
  auto d = dial_now(u, o, resolver);
  EXPECT_FALSE(d.stream);
  EXPECT_TRUE(contains(d.error, "certificate verification failed")) << d.error;
  EXPECT_TRUE(contains(d.error, "--pin")) << d.error;
}

TEST_F(transport_test, CaFileVerificationAcceptsTheCertificate) {
  for (const char* host : {"127.0.0.1", "localhost"}) {
    const url u = make_url(scheme::wss, host);
    serve(u, 1);
    auto o = client_options(scheme::wss);
    o.tls = {};
    o.tls.ca_file = cert.cert_file;
    auto d = dial_now(u, o, resolver);
    EXPECT_TRUE(d.stream) << host << ": " << d.error;
  }
}

TEST_F(transport_test, CaFileVerificationChecksTheName) {
  // The certificate is trusted but names localhost, 127.0.0.1 and ::1 only;
  // app.localhost reaches the same server (RFC 6761) under another name.
  const url u = make_url(scheme::wss, "app.localhost");
  serve(u, 2);
  auto o = client_options(scheme::wss);
  o.tls = {};
  o.tls.ca_file = cert.cert_file;
  auto d = dial_now(u, o, resolver);
  EXPECT_FALSE(d.stream);
  EXPECT_TRUE(contains(d.error, "not for this host name")) << d.error;
}

TEST_F(transport_test, CaFileOfAnotherCertificateFails) {
  auto other = ensure_self_signed((state_dir / "other").string(), {});
  ASSERT_TRUE(other) << other.error();
  const url u = make_url(scheme::wss);
  serve(u, 1);
  auto o = client_options(scheme::wss);
  o.tls = {};
  o.tls.ca_file = other->cert_file;
  auto d = dial_now(u, o, resolver);
  EXPECT_FALSE(d.stream);
  EXPECT_TRUE(contains(d.error, "certificate verification failed")) << d.error;
}

// ---- hostile or confused clients ----------------------------------------------------------

class slow_loris_test : public transport_test, public ::testing::WithParamInterface<scheme> {};

TEST_P(slow_loris_test, SilentClientIsCutAtTheHandshakeDeadline) {
  server_options.handshake_timeout = 300ms;
  serve(make_url(GetParam()), 1);
  tcp::socket loris(io);
  loris.connect(acceptor.local_endpoint());
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(run([&] { return server_done() == 1; }, 5s));
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_FALSE(server_results[0]->stream);
  EXPECT_TRUE(contains(server_results[0]->error, "handshake not finished within")) << server_results[0]->error;
  EXPECT_GE(elapsed, 250ms); // the accept itself may have been queued a little before `started`
  EXPECT_LT(elapsed, 3s);

  // The server hung up.
  auto job = std::make_shared<std::pair<bool, error_code>>();
  std::array<char, 64> buf{};
  loris.async_read_some(asio::buffer(buf), [job](error_code ec, std::size_t) {
    job->first = true;
    job->second = ec;
  });
  ASSERT_TRUE(run([&] { return job->first; }, 5s));
  EXPECT_TRUE(job->second) << "the connection is still open";
}

INSTANTIATE_TEST_SUITE_P(Schemes, slow_loris_test, ::testing::Values(scheme::tcp, scheme::tls, scheme::ws, scheme::wss),
                         [](const ::testing::TestParamInfo<scheme>& p) { return std::string(to_string(p.param)); });

// The client side of the same deadline: a server that accepts the TCP
// connection and then says nothing fails the dial after handshake_timeout.
TEST_P(slow_loris_test, SilentServerFailsTheDialAtTheHandshakeDeadline) {
  std::vector<tcp::socket> held;
  acceptor.async_accept([&](error_code ec, tcp::socket s) {
    if (!ec)
      held.push_back(std::move(s)); // accepted, never answered
  });
  auto o = client_options(GetParam());
  o.handshake_timeout = 300ms;
  const auto started = std::chrono::steady_clock::now();
  auto d = dial_now(make_url(GetParam()), o, resolver, 5s);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_FALSE(d.stream);
  EXPECT_TRUE(contains(d.error, "timed out after")) << d.error;
  EXPECT_EQ(held.size(), 1u);
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 3s);
}

TEST_F(transport_test, PartialHttpRequestIsCutAtTheHandshakeDeadline) {
  server_options.handshake_timeout = 300ms;
  serve(make_url(scheme::ws), 1);
  tcp::socket loris(io);
  loris.connect(acceptor.local_endpoint());
  asio::write(loris, asio::buffer(std::string_view("GET / HTTP/1.1\r\nHost: x\r\n")));
  ASSERT_TRUE(run([&] { return server_done() == 1; }, 5s));
  EXPECT_TRUE(contains(server_results[0]->error, "handshake not finished within")) << server_results[0]->error;
}

std::string read_to_eof(asio::io_context& io, tcp::socket& s) {
  auto text = std::make_shared<std::string>();
  auto done = std::make_shared<bool>(false);
  spawn(io, [&s, text, done]() -> asio::awaitable<void> {
    std::array<char, 4096> buf{};
    for (;;) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
      text->append(buf.data(), n);
      if (ec)
        break;
    }
    *done = true;
  });
  EXPECT_TRUE(test::run_until(
      io, [&] { return *done; }, 10s));
  return *text;
}

TEST_F(transport_test, PlainGetIsAnswered426) {
  serve(make_url(scheme::ws), 1);
  tcp::socket browser(io);
  browser.connect(acceptor.local_endpoint());
  asio::write(browser, asio::buffer(std::string_view("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")));
  const auto response = read_to_eof(io, browser);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 426")) << response;
  EXPECT_TRUE(contains(response, "warren")) << response;
  ASSERT_TRUE(run([&] { return server_done() == 1; }));
  EXPECT_TRUE(contains(server_results[0]->error, "plain HTTP request")) << server_results[0]->error;
}

TEST_F(transport_test, WrongPathIs404) {
  serve(make_url(scheme::ws, "127.0.0.1", "/tunnel"), 1);
  auto d = dial_now(make_url(scheme::ws, "127.0.0.1", "/other"), client_options(scheme::ws), resolver);
  EXPECT_FALSE(d.stream);
  EXPECT_TRUE(contains(d.error, "404")) << d.error;
  EXPECT_TRUE(contains(d.error, "path")) << d.error;
}

TEST_F(transport_test, NonWarrenClientOverTcpIsRefused) {
  serve(make_url(scheme::tcp), 1);
  tcp::socket other(io);
  other.connect(acceptor.local_endpoint());
  asio::write(other, asio::buffer(std::string_view("SSH-2.0-OpenSSH_9.2\r\n")));
  const auto reply = read_to_eof(io, other);
  EXPECT_EQ(reply, "NO\n");
  ASSERT_TRUE(run([&] { return server_done() == 1; }));
  EXPECT_TRUE(contains(server_results[0]->error, "bad preamble")) << server_results[0]->error;
  EXPECT_EQ(limiter.tracked(), 1u) << "a bad preamble counts as a failure";
}

// ---- clear-text tokens ----------------------------------------------------------------

// Refused before any step of the connect: no resolution, no socket, and the
// dial finishes at once although 192.0.2.1 (TEST-NET-1) would never answer.
TEST_F(transport_test, TokenIsNotSentInClearTextToANonLoopbackHost) {
  std::vector<std::unique_ptr<test::fake_resolver>> resolvers; // outlive any dial left pending
  for (const char* text : {"ws://192.0.2.1:1", "tcp://192.0.2.1:1", "ws://gw.example/t", "tcp://[2001:db8::1]:7"}) {
    auto u = parse_url(text);
    ASSERT_TRUE(u) << u.error();
    resolvers.push_back(std::make_unique<test::fake_resolver>());
    auto& never = *resolvers.back(); // answers nothing: a dial that got past the check would hang
    dial_options o;
    o.token = k_token;
    auto d = dial_now(*u, o, never, 2s);
    EXPECT_FALSE(d.stream) << text;
    EXPECT_TRUE(contains(d.error, "clear text")) << text << ": " << d.error;
    EXPECT_TRUE(contains(d.error, "--insecure-token")) << d.error;
    EXPECT_EQ(d.peer, tcp::endpoint()) << text << ": a connection was made";
    EXPECT_EQ(d.connect_time, 0ms);
    EXPECT_TRUE(never.asked.empty()) << text << ": the name was resolved";
  }
}

TEST_F(transport_test, InsecureTokenFlagGoesAheadToConnect) {
  // The counterpart of the test above: with the flag the dial proceeds to
  // resolve the name (and hangs on the silent resolver).
  auto u = parse_url("ws://gw.example/t");
  ASSERT_TRUE(u);
  auto never = std::make_shared<test::fake_resolver>();
  dial_options o;
  o.token = k_token;
  o.insecure_token = true;
  auto out = std::make_shared<std::optional<dial_result>>();
  spawn(io, [out, target = *u, o, never]() -> asio::awaitable<void> { *out = co_await dial(target, o, *never); });
  ASSERT_TRUE(run([&] { return !never->asked.empty(); }, 5s));
  EXPECT_FALSE(out->has_value());
}

TEST_F(transport_test, NoTokenNeedsNoTls) {
  // Without a token there is nothing to leak: ws:// to anyone goes ahead.
  auto u = parse_url("ws://gw.example/t");
  ASSERT_TRUE(u);
  auto never = std::make_shared<test::fake_resolver>();
  dial_options o;
  auto out = std::make_shared<std::optional<dial_result>>();
  spawn(io, [out, target = *u, o, never]() -> asio::awaitable<void> { *out = co_await dial(target, o, *never); });
  ASSERT_TRUE(run([&] { return !never->asked.empty(); }, 5s));
}

TEST_F(transport_test, TokenOverClearTextToLoopbackIsAllowed) {
  const url u = make_url(scheme::ws, "localhost");
  serve(u, 1);
  auto d = dial_now(u, client_options(scheme::ws), resolver);
  EXPECT_TRUE(d.stream) << d.error;
}

} // namespace
