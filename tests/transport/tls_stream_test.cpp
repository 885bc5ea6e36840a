// Tests of tls_stream / tls_engine (src/transport/tls_stream.*): two engines
// in memory handing each other their output in 1-byte and odd-sized pieces
// (every record boundary and partial header), small pieces of a write
// gathered into full records; then real loopback sockets:
// 8 MiB each way at once with one read and one write in flight on each side,
// a large write taken whole and sent in few system calls, close_notify read
// as end of stream and a bare TCP close as truncation, garbage after the
// handshake failing the read (and staying failed), a refused certificate
// ending both handshakes with a reason, and garbage instead of a ServerHello;
// AES-128-GCM negotiated first, the other TLS 1.3 suites still accepted.
// Found by tests/fuzz/fuzz_tls_engine.cpp and in its review: a fatal alert
// fails every later decrypt (OpenSSL alone says close_notify the second
// time); writes after a failure or after shutdown fail, complete, and do not
// stop reading; an empty write completes.
#include "transport/tls_stream.hpp"

#include "transport/tls.hpp"

#include "../net/test_util.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <openssl/err.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <optional>

using namespace warren;
using namespace warren::transport;
namespace asio = boost::asio;
namespace fs = std::filesystem;
using asio::ip::tcp;
using bytes = std::vector<std::uint8_t>;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

using test::spawn;

class tls_stream_test : public ::testing::Test {
 protected:
  asio::io_context io;
  fs::path state_dir;
  std::shared_ptr<asio::ssl::context> server_ctx;
  std::shared_ptr<asio::ssl::context> client_ctx;
  std::vector<unsigned char> pin;

  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "warren-tls-stream-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    state_dir = pattern;
    auto made = ensure_self_signed(state_dir.string(), {}); // localhost, 127.0.0.1, ::1
    ASSERT_TRUE(made) << made.error();
    auto s = make_server_context({made->cert_file, made->key_file, {}});
    ASSERT_TRUE(s) << s.error();
    server_ctx = *s;
    // Trust the certificate as a CA: chain and host name are checked for real.
    auto c = make_client_context({made->cert_file, {}, {}, {}});
    ASSERT_TRUE(c) << c.error();
    client_ctx = c->context;
  }

  void TearDown() override {
    std::error_code ec;
    fs::remove_all(state_dir, ec);
  }

  /// A connected pair of TCP sockets on loopback.
  std::pair<tcp::socket, tcp::socket> sockets() {
    tcp::acceptor acceptor(io, tcp::endpoint(test::v4_loopback(), 0));
    tcp::socket client(io);
    client.connect(acceptor.local_endpoint());
    tcp::socket server = acceptor.accept();
    return {std::move(client), std::move(server)};
  }

  struct stream_pair {
    tls_stream client;
    tls_stream server;
  };

  /// A client and a server stream over one loopback connection, not yet shaken hands.
  stream_pair make_pair(const std::string& server_name = "localhost") {
    auto [cs, ss] = sockets();
    stream_pair p{tls_stream(std::move(cs), *client_ctx, tls_stream::client),
                  tls_stream(std::move(ss), *server_ctx, tls_stream::server)};
    p.client.engine().set_server_name(server_name);
    return p;
  }

  /// make_pair() after both handshakes succeeded (the test fails otherwise).
  stream_pair connected_pair() {
    auto p = make_pair();
    auto [cec, sec] = handshake(p.client, p.server);
    EXPECT_FALSE(cec) << cec.message();
    EXPECT_FALSE(sec) << sec.message();
    return p;
  }

  /// One read_some of up to 16 bytes, run to completion (nullopt: it did not complete).
  std::optional<std::pair<error_code, std::size_t>> read_once(tls_stream& s) {
    std::optional<std::pair<error_code, std::size_t>> result;
    std::array<char, 16> buf{};
    s.async_read_some(asio::buffer(buf), [&](error_code ec, std::size_t n) { result.emplace(ec, n); });
    test::run_until(io, [&] { return result.has_value(); });
    return result;
  }

  /// One write_some, run to completion (nullopt: it did not complete within 2 s).
  std::optional<std::pair<error_code, std::size_t>> write_once(tls_stream& s, const bytes& data) {
    std::optional<std::pair<error_code, std::size_t>> result;
    s.async_write_some(asio::buffer(data), [&](error_code ec, std::size_t n) { result.emplace(ec, n); });
    test::run_until(io, [&] { return result.has_value(); }, std::chrono::seconds(2));
    return result;
  }

  /// Both handshakes, run to completion; returns their results.
  std::pair<error_code, error_code> handshake(tls_stream& client, tls_stream& server) {
    std::optional<error_code> cec, sec;
    client.async_handshake([&](error_code ec) { cec = ec; });
    server.async_handshake([&](error_code ec) { sec = ec; });
    test::run_until(io, [&] { return cec && sec; });
    EXPECT_TRUE(cec && sec) << "handshake did not finish";
    return {cec.value_or(asio::error::timed_out), sec.value_or(asio::error::timed_out)};
  }
};

/// An application-data record whose body does not authenticate.
bytes unauthenticated_record() {
  bytes junk{0x17, 0x03, 0x03, 0x00, 0x20};
  junk.resize(junk.size() + 0x20, 0xAB);
  return junk;
}

/// Moves everything `from` has produced into `to`, `piece` bytes at a time.
void shuttle(tls_engine& from, tls_engine& to, std::size_t piece) {
  if (!from.has_output())
    return;
  const auto out = from.begin_send();
  const auto* p = static_cast<const std::uint8_t*>(out.data());
  for (std::size_t off = 0; off < out.size(); off += piece) {
    const std::size_t n = std::min(piece, out.size() - off);
    const auto space = to.input_space();
    ASSERT_GE(space.size(), n);
    std::memcpy(space.data(), p + off, n);
    to.commit_input(n);
  }
  from.end_send();
}

TEST_F(tls_stream_test, EnginesAgreeWhateverTheChunking) {
  for (const std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, std::size_t{1} << 20}) {
    SCOPED_TRACE("piece " + std::to_string(piece));
    tls_engine client(client_ctx->native_handle(), false);
    tls_engine server(server_ctx->native_handle(), true);
    client.set_server_name("localhost");
    error_code cec, sec;
    auto c = tls_engine::result::want_input;
    auto s = tls_engine::result::want_input;
    for (int round = 0; round < 20 && (c != tls_engine::result::ok || s != tls_engine::result::ok); ++round) {
      c = client.handshake(cec);
      shuttle(client, server, piece);
      s = server.handshake(sec);
      shuttle(server, client, piece);
    }
    ASSERT_EQ(c, tls_engine::result::ok) << cec.message();
    ASSERT_EQ(s, tls_engine::result::ok) << sec.message();
    EXPECT_EQ(SSL_version(client.native_handle()), TLS1_3_VERSION);

    // 1 MiB + 3 bytes: many full records and a short last one, handed over
    // `piece` bytes at a time with a decrypt after each, as a socket would.
    const bytes data = test::random_bytes((1 << 20) + 3, static_cast<unsigned>(piece));
    ASSERT_EQ(client.encrypt(data.data(), data.size(), cec), tls_engine::result::ok) << cec.message();
    const auto out = client.begin_send();
    const auto* p = static_cast<const std::uint8_t*>(out.data());
    bytes got;
    std::vector<std::uint8_t> buf(100'000);
    for (std::size_t off = 0; off < out.size(); off += piece) {
      const std::size_t n = std::min(piece, out.size() - off);
      for (std::size_t moved = 0; moved < n;) {
        const auto space = server.input_space();
        const std::size_t m = std::min(space.size(), n - moved);
        std::memcpy(space.data(), p + off + moved, m);
        server.commit_input(m);
        moved += m;
        std::size_t got_now = 0;
        do {
          const auto r = server.decrypt(buf.data(), buf.size(), got_now, sec);
          ASSERT_NE(r, tls_engine::result::failed) << sec.message();
          got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(got_now));
        } while (got_now == buf.size());
      }
    }
    client.end_send();
    EXPECT_TRUE(got == data) << got.size() << " bytes, differ";
    std::size_t n = 0;

    client.shutdown();
    shuttle(client, server, piece);
    std::uint8_t byte = 0;
    EXPECT_EQ(server.decrypt(&byte, 1, n, sec), tls_engine::result::closed);
    EXPECT_EQ(n, 0u);
  }
}

/// Sizes of the TLS records in a stretch of ciphertext.
std::vector<std::size_t> record_sizes(asio::const_buffer out) {
  std::vector<std::size_t> sizes;
  const auto* p = static_cast<const std::uint8_t*>(out.data());
  for (std::size_t off = 0; off + 5 <= out.size();) {
    const std::size_t n = (std::size_t{p[off + 3]} << 8) | p[off + 4];
    sizes.push_back(n);
    off += 5 + n;
  }
  return sizes;
}

/// Both engines' handshakes, their output handed over whole.
void shake_hands(tls_engine& client, tls_engine& server) {
  error_code cec, sec;
  for (int round = 0; round < 10; ++round) {
    client.handshake(cec);
    shuttle(client, server, 1 << 20);
    server.handshake(sec);
    shuttle(server, client, 1 << 20);
  }
}

TEST_F(tls_stream_test, GatheredPiecesMakeFullRecords) {
  tls_engine client(client_ctx->native_handle(), false);
  tls_engine server(server_ctx->native_handle(), true);
  error_code cec, sec;
  shake_hands(client, server);
  ASSERT_TRUE(SSL_is_init_finished(client.native_handle()));
  // A WebSocket header, a frame header and a payload: one record, not three.
  const bytes data = test::random_bytes(100, 4);
  ASSERT_TRUE(client.encrypt_gather(data.data(), 2, cec));
  ASSERT_TRUE(client.encrypt_gather(data.data() + 2, 7, cec));
  ASSERT_TRUE(client.encrypt_gather(data.data() + 9, 91, cec));
  client.encrypt_gather_end(cec);
  ASSERT_FALSE(cec);
  const auto first = client.begin_send();
  EXPECT_EQ(record_sizes(first).size(), 1u);
  const auto in = server.input_space();
  std::memcpy(in.data(), first.data(), first.size());
  server.commit_input(first.size());
  client.end_send();
  bytes small(data.size());
  std::size_t small_n = 0;
  server.decrypt(small.data(), small.size(), small_n, sec);
  EXPECT_TRUE(small_n == data.size() && small == data);

  // 10 + 70000 + 5 bytes: four full records and one short one.
  const bytes big = test::random_bytes(70'015, 5);
  ASSERT_TRUE(client.encrypt_gather(big.data(), 10, cec));
  ASSERT_TRUE(client.encrypt_gather(big.data() + 10, 70'000, cec));
  ASSERT_TRUE(client.encrypt_gather(big.data() + 70'010, 5, cec));
  client.encrypt_gather_end(cec);
  const auto out = client.begin_send();
  const auto sizes = record_sizes(out);
  ASSERT_EQ(sizes.size(), 5u);
  for (std::size_t i = 0; i < 4; ++i)
    EXPECT_EQ(sizes[i], 16384u + 17u) << "record " << i; // plaintext + content type + GCM tag
  // And the peer reads back exactly what went in.
  const auto* p = static_cast<const std::uint8_t*>(out.data());
  const auto space = server.input_space();
  ASSERT_GE(space.size(), out.size());
  std::memcpy(space.data(), p, out.size());
  server.commit_input(out.size());
  client.end_send();
  bytes got(big.size());
  std::size_t n = 0;
  server.decrypt(got.data(), got.size(), n, sec);
  EXPECT_EQ(n, big.size());
  EXPECT_TRUE(got == big);
}

TEST_F(tls_stream_test, AFatalAlertFromThePeerFailsEveryLaterDecrypt) {
  tls_engine client(client_ctx->native_handle(), false);
  tls_engine server(server_ctx->native_handle(), true);
  client.set_server_name("localhost");
  shake_hands(client, server);
  ASSERT_TRUE(SSL_is_init_finished(client.native_handle()) && SSL_is_init_finished(server.native_handle()));
  // A record that does not authenticate: the server fails and alerts the client.
  const bytes junk = unauthenticated_record();
  const auto space = server.input_space();
  std::memcpy(space.data(), junk.data(), junk.size());
  server.commit_input(junk.size());
  std::uint8_t byte = 0;
  std::size_t n = 0;
  error_code sec;
  ASSERT_EQ(server.decrypt(&byte, 1, n, sec), tls_engine::result::failed);
  ASSERT_TRUE(server.has_output());
  shuttle(server, client, 1 << 20);
  error_code first, second;
  EXPECT_EQ(client.decrypt(&byte, 1, n, first), tls_engine::result::failed);
  EXPECT_NE(first.message().find("alert"), std::string::npos) << first.message();
  // OpenSSL's SSL_read reports close_notify now: a clean end of stream.
  EXPECT_EQ(client.decrypt(&byte, 1, n, second), tls_engine::result::failed);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(second, first) << second.message();
}

TEST_F(tls_stream_test, EightMegabytesEachWayAtOnce) {
  auto [client, server] = connected_pair();
  ASSERT_FALSE(HasFailure());

  const bytes up = test::random_bytes(8 << 20, 1);
  const bytes down = test::random_bytes(8 << 20, 2);
  bytes got_up, got_down;
  int finished = 0;
  auto send = [&](tls_stream& s, const bytes& data) -> asio::awaitable<void> {
    // Odd sizes, so writes and records never line up.
    for (std::size_t off = 0; off < data.size();) {
      const std::size_t n = std::min<std::size_t>(100'003, data.size() - off);
      auto [ec, w] = co_await asio::async_write(s, asio::buffer(data.data() + off, n), use_tuple);
      EXPECT_FALSE(ec) << ec.message();
      if (ec)
        break;
      off += w;
    }
    auto [ec] = co_await s.async_shutdown(use_tuple);
    EXPECT_FALSE(ec) << ec.message();
    ++finished;
  };
  auto receive = [&](tls_stream& s, bytes& into) -> asio::awaitable<void> {
    std::vector<std::uint8_t> buf(70'001);
    for (;;) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
      into.insert(into.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
      if (ec) {
        EXPECT_EQ(ec, asio::error::eof) << ec.message(); // close_notify, not truncation
        break;
      }
    }
    ++finished;
  };
  spawn(io, send(client, up));
  spawn(io, send(server, down));
  spawn(io, receive(server, got_up));
  spawn(io, receive(client, got_down));
  test::run_until(io, [&] { return finished == 4; }, std::chrono::seconds(60));
  ASSERT_EQ(finished, 4);
  EXPECT_TRUE(got_up == up) << "client to server: " << got_up.size() << " bytes, differ";
  EXPECT_TRUE(got_down == down) << "server to client: " << got_down.size() << " bytes, differ";
}

TEST_F(tls_stream_test, ALargeWriteIsTakenWholeAndBatched) {
  auto [client, server] = connected_pair();
  ASSERT_FALSE(HasFailure());

  // One write_some of 512 KiB in three pieces: all of it is taken (as 32+
  // records), not one record's worth as asio::ssl::stream would.
  const bytes data = test::random_bytes(512 * 1024, 3);
  const std::array<asio::const_buffer, 3> pieces{asio::buffer(data.data(), 1000),
                                                 asio::buffer(data.data() + 1000, 200'000),
                                                 asio::buffer(data.data() + 201'000, data.size() - 201'000)};
  std::optional<std::size_t> written;
  client.async_write_some(pieces, [&](error_code ec, std::size_t n) {
    EXPECT_FALSE(ec) << ec.message();
    written = n;
  });
  bytes got;
  std::vector<std::uint8_t> buf(1 << 20);
  std::function<void()> read_more = [&] {
    server.async_read_some(asio::buffer(buf), [&](error_code ec, std::size_t n) {
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
      if (!ec && got.size() < data.size())
        read_more();
    });
  };
  read_more();
  test::run_until(io, [&] { return written && got.size() >= data.size(); });
  ASSERT_TRUE(written);
  EXPECT_EQ(*written, data.size());
  EXPECT_TRUE(got == data);
}

TEST_F(tls_stream_test, BareTcpCloseIsTruncationNotEndOfStream) {
  auto [client, server] = connected_pair();
  ASSERT_FALSE(HasFailure());
  server.next_layer().close(); // no close_notify: an attacker could have cut the stream
  const auto result = read_once(client);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->first, asio::ssl::error::stream_truncated) << result->first.message();
}

TEST_F(tls_stream_test, GarbageAfterTheHandshakeFailsTheReadForGood) {
  auto [client, server] = connected_pair();
  ASSERT_FALSE(HasFailure());
  asio::write(server.next_layer(), asio::buffer(unauthenticated_record()));
  std::vector<error_code> results;
  for (int i = 0; i < 2; ++i) {
    const auto result = read_once(client);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->second, 0u);
    results.push_back(result->first);
  }
  EXPECT_EQ(results[0].category(), asio::error::get_ssl_category()) << results[0].message();
  EXPECT_NE(results[0].message().find("bad record mac"), std::string::npos) << results[0].message();
  EXPECT_EQ(results[1], results[0]) << "a failed TLS connection must stay failed";
}

TEST_F(tls_stream_test, WritesAfterAFailedReadFailAndComplete) {
  auto [client, server] = connected_pair();
  ASSERT_FALSE(HasFailure());
  asio::write(server.next_layer(), asio::buffer(unauthenticated_record()));
  const auto read = read_once(client);
  ASSERT_TRUE(read && read->first);
  const error_code failure = read->first;
  // Small writes are gathered, not encrypted at once; they fail all the
  // same (the first one also sends the alert), and they complete.
  const bytes data(100, 'x');
  for (int i = 0; i < 2; ++i) {
    const auto written = write_once(client, data);
    ASSERT_TRUE(written) << "write " << i << " did not complete";
    EXPECT_EQ(written->first, failure) << "write " << i << ": " << written->first.message();
    EXPECT_EQ(written->second, 0u) << "write " << i;
  }
}

TEST_F(tls_stream_test, AfterShutdownWritesFailAndReadsGoOn) {
  auto [client, server] = connected_pair();
  ASSERT_FALSE(HasFailure());
  std::optional<error_code> shut;
  client.async_shutdown([&](error_code ec) { shut = ec; });
  test::run_until(io, [&] { return shut.has_value(); });
  ASSERT_TRUE(shut);
  EXPECT_FALSE(*shut) << shut->message();
  const bytes data(100, 'x');
  const auto written = write_once(client, data);
  ASSERT_TRUE(written) << "the write did not complete";
  EXPECT_EQ(written->first, asio::error::shut_down) << written->first.message();
  EXPECT_EQ(written->second, 0u);
  // Half-close: the server still sends, the client still reads.
  std::optional<error_code> sent;
  asio::async_write(server, asio::buffer(data), [&](error_code ec, std::size_t) { sent = ec; });
  bytes got(data.size());
  std::optional<error_code> read;
  asio::async_read(client, asio::buffer(got), [&](error_code ec, std::size_t) { read = ec; });
  test::run_until(io, [&] { return sent && read; });
  ASSERT_TRUE(sent && read);
  EXPECT_FALSE(*read) << read->message();
  EXPECT_TRUE(got == data);
}

TEST_F(tls_stream_test, AnEmptyWriteCompletes) {
  auto [client, server] = connected_pair();
  ASSERT_FALSE(HasFailure());
  std::optional<std::pair<error_code, std::size_t>> written;
  asio::async_write(client, asio::buffer(&written, 0), [&](error_code ec, std::size_t n) { written.emplace(ec, n); });
  test::run_until(io, [&] { return written.has_value(); }, std::chrono::seconds(2));
  ASSERT_TRUE(written) << "the write did not complete";
  EXPECT_FALSE(written->first) << written->first.message();
  EXPECT_EQ(written->second, 0u);
}

TEST_F(tls_stream_test, RefusedCertificateEndsBothHandshakesWithAReason) {
  auto [client, server] = make_pair();
  int calls = 0;
  client.engine().set_verify_callback([&](bool, X509_STORE_CTX*) {
    ++calls;
    return false;
  });
  auto [cec, sec] = handshake(client, server);
  EXPECT_GE(calls, 1);
  ASSERT_TRUE(cec);
  EXPECT_NE(cec.message().find("certificate verify failed"), std::string::npos) << cec.message();
  // The client's alert reached the server, which says what it was told.
  ASSERT_TRUE(sec);
  EXPECT_NE(sec.message().find("alert"), std::string::npos) << sec.message();
}

TEST_F(tls_stream_test, NegotiatesAes128GcmFirstButAcceptsTheOthers) {
  {
    auto [client, server] = connected_pair();
    EXPECT_STREQ(SSL_CIPHER_get_name(SSL_get_current_cipher(client.native_handle())), "TLS_AES_128_GCM_SHA256");
    EXPECT_STREQ(SSL_CIPHER_get_name(SSL_get_current_cipher(server.native_handle())), "TLS_AES_128_GCM_SHA256");
  }
  // A client that offers only AES-256-GCM (OpenSSL's default first choice,
  // e.g. stunnel or curl with a suite list) still gets through.
  for (const char* suite : {"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}) {
    auto [client, server] = make_pair();
    ASSERT_EQ(SSL_set_ciphersuites(client.native_handle(), suite), 1);
    auto [cec, sec] = handshake(client, server);
    ASSERT_FALSE(cec) << cec.message();
    ASSERT_FALSE(sec) << sec.message();
    EXPECT_STREQ(SSL_CIPHER_get_name(SSL_get_current_cipher(server.native_handle())), suite);
  }
}

TEST_F(tls_stream_test, WrongHostNameFailsVerification) {
  auto [client, server] = make_pair("example.org");
  X509_VERIFY_PARAM_set1_host(SSL_get0_param(client.native_handle()), "example.org", 0);
  auto [cec, sec] = handshake(client, server);
  ASSERT_TRUE(cec);
  EXPECT_NE(cec.message().find("certificate verify failed"), std::string::npos) << cec.message();
}

TEST_F(tls_stream_test, GarbageInsteadOfServerHelloFailsTheHandshake) {
  auto [cs, ss] = sockets();
  tls_stream client(std::move(cs), *client_ctx, tls_stream::client);
  const std::string banner = "SSH-2.0-OpenSSH_9.2\r\n";
  asio::write(ss, asio::buffer(banner));
  std::optional<error_code> result;
  client.async_handshake([&](error_code ec) { result = ec; });
  test::run_until(io, [&] { return result.has_value(); });
  ASSERT_TRUE(result);
  EXPECT_TRUE(*result);
  EXPECT_EQ(result->category(), asio::error::get_ssl_category()) << result->message();
}

} // namespace
