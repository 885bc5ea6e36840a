// Internal to the transport layer: what dial.cpp (the client's steps) and
// accept.cpp (the server's) share — the byte_stream adapters over TLS and
// WebSocket, the handshake watchdog, Beast's WebSocket tuning and the
// sentences for failed TLS steps. Not part of the layer's interface.
#pragma once

#include "transport/transport.hpp"

#include "core/duration.hpp"
#include "core/text.hpp"
#include "stream/tcp_stream.hpp"
#include "transport/scheme_mismatch.hpp"
#include "transport/tls_byte_stream.hpp"
#include "transport/tls_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

namespace warren::transport::detail {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace ip = asio::ip;
using asio::ip::tcp;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t k_max_ws_message = 1 << 20;
constexpr std::size_t k_max_preamble = 1024;
constexpr std::string_view k_preamble_magic = "WARREN/1 ";
/// The preamble's third answer (docs/PROTOCOL.md): refused without a check,
/// too many failed authentications from this source.
constexpr std::string_view k_preamble_limited = "TM\n";

using tls_socket = tls_stream;

inline std::chrono::milliseconds since(steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t);
}

inline std::string show(const tcp::endpoint& ep) {
  return net::format_host_port(ep.address().to_string(), ep.port());
}

/// Bounds a handshake: when the deadline passes first, the socket is shut
/// down (not closed: the descriptor stays owned by its socket object), so
/// the pending operation fails and the coroutine reports a timeout.
class watchdog {
 public:
  watchdog(const asio::any_io_executor& ex, std::chrono::milliseconds limit, int fd)
      : timer_(ex, limit), done_(std::make_shared<bool>(false)), fired_(std::make_shared<bool>(false)) {
    timer_.async_wait([done = done_, fired = fired_, fd](error_code ec) {
      if (ec || *done)
        return;
      *fired = true;
      ::shutdown(fd, SHUT_RDWR);
    });
  }
  ~watchdog() { disarm(); }
  void disarm() {
    *done_ = true;
    timer_.cancel();
  }
  bool fired() const { return *fired_; }

 private:
  asio::steady_timer timer_;
  std::shared_ptr<bool> done_;
  std::shared_ptr<bool> fired_;
};

// --- byte_stream adapters ------------------------------------------------

template <class Next>
class ws_byte_stream final : public stream::byte_stream {
 public:
  ws_byte_stream(std::shared_ptr<ssl::context> ctx, websocket::stream<Next> ws, std::string description)
      : ctx_(std::move(ctx)), ws_(std::move(ws)), description_(std::move(description)) {}

  asio::any_io_executor get_executor() override { return ws_.get_executor(); }
  asio::awaitable<std::size_t> read_some(asio::mutable_buffer b, error_code& ec) override {
    auto [e, n] = co_await ws_.async_read_some(b, use_tuple);
    ec = e == websocket::error::closed ? error_code(asio::error::eof) : e;
    co_return n;
  }
  asio::awaitable<void> write(std::span<const asio::const_buffer> b, error_code& ec) override {
    auto [e, n] = co_await ws_.async_write(b, use_tuple);
    ec = e;
  }
  asio::awaitable<void> shutdown(error_code& ec) override {
    auto [e] = co_await ws_.async_close(websocket::close_code::normal, use_tuple);
    ec = e;
  }
  void close() override {
    error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);
  }
  std::string description() const override { return description_; }

 private:
  std::shared_ptr<ssl::context> ctx_;
  websocket::stream<Next> ws_;
  std::string description_;
};

template <class Next>
void tune(websocket::stream<Next>& ws, bool client) {
  ws.binary(true);
  ws.auto_fragment(false);
  ws.read_message_max(k_max_ws_message);
  // A masked (client) write goes through this buffer: Beast's default 4 KiB
  // would split the session's 256 KiB batches into 64 pieces, TLS batches
  // and system calls; one batch per piece is what tls_stream is built for.
  ws.write_buffer_bytes(256 * 1024);
  // Liveness is the tunnel's own ping (docs/PROTOCOL.md); no Beast idle timer.
  websocket::stream_base::timeout t =
      websocket::stream_base::timeout::suggested(client ? beast::role_type::client : beast::role_type::server);
  t.idle_timeout = websocket::stream_base::none();
  t.keep_alive_pings = false;
  ws.set_option(t);
}

inline std::string tls_version(const tls_socket& s) {
  return SSL_get_version(const_cast<tls_socket&>(s).native_handle());
}

/// A failed handshake step: the sentence, and whether retrying can help.
struct step_failure {
  std::string error; // empty: the step succeeded
  failure_kind kind = failure_kind::transient;
  auth_refusal refusal = auth_refusal::none;
  std::chrono::seconds retry_after{0};
  bool failed() const { return !error.empty(); }
};

inline int ssl_reason(const error_code& ec) {
  return ec.category() == asio::error::get_ssl_category() ? ERR_GET_REASON(static_cast<unsigned long>(ec.value())) : 0;
}

/// A TLS failure retrying cannot fix, as a sentence naming the fix: the
/// server's alert that it requires (or rejected) a client certificate —
/// in TLS 1.3 it comes with the first read after the handshake — or plain
/// bytes where the server's handshake should be (a plain listener).
/// A certificate alert counts only once the server's own certificate was
/// verified (`server_verified`): before that anyone on the path can forge
/// one (a plain alert record before ServerHello), a transient failure.
inline std::optional<std::string> permanent_tls_error(const error_code& ec, scheme used, bool server_verified = true) {
  switch (ssl_reason(ec)) {
  case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    if (!server_verified)
      return std::nullopt;
    return "the server requires a client certificate (TLS alert \"certificate required\"); pass --cert and --key";
  case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
  case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
  case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
  case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    if (!server_verified)
      return std::nullopt;
    return "the server rejected the client certificate (" + net::describe(ec) + "); check --cert and --key";
  case SSL_R_WRONG_VERSION_NUMBER:
    return mismatch_hint(used, std::nullopt, "plain");
  default:
    return std::nullopt;
  }
}

/// A failed read or write of a step after (or without) TLS.
inline step_failure io_failure(const std::string& prefix, const error_code& ec, scheme used) {
  if (auto p = permanent_tls_error(ec, used))
    return {prefix + *p, failure_kind::permanent};
  // A server at --max-clients (or over its handshake slots) closes before
  // the handshake: say what that may mean, not only "end of file".
  if (ec == asio::error::eof || ec == http::error::end_of_stream || ec == asio::error::connection_reset)
    return {prefix + net::describe(ec) +
            " (the server closed the connection before the handshake finished; it may be at --max-clients)"};
  return {prefix + net::describe(ec)};
}

/// Best effort: the reply to a client of another scheme (scheme_mismatch.hpp).
template <class Next>
asio::awaitable<void> send_wrong_scheme(Next& next, scheme listener) {
  const auto reply = wrong_scheme_reply(listener);
  co_await asio::async_write(next, asio::buffer(reply), use_tuple);
}

} // namespace warren::transport::detail
