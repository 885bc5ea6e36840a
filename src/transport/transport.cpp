#include "transport/transport.hpp"

#include "core/duration.hpp"
#include "core/text.hpp"
#include "stream/tcp_stream.hpp"
#include "transport/http_auth.hpp"
#include "transport/proxy_dial.hpp"
#include "transport/scheme_mismatch.hpp"
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

namespace warren::transport {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace ip = asio::ip;
using asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t k_max_ws_message = 1 << 20;
constexpr std::size_t k_max_preamble = 1024;
constexpr std::string_view k_preamble_magic = "WARREN/1 ";
/// The preamble's third answer (docs/PROTOCOL.md): refused without a check,
/// too many failed authentications from this source.
constexpr std::string_view k_preamble_limited = "TM\n";

using tls_socket = tls_stream;

std::chrono::milliseconds since(steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t);
}

std::string show(const tcp::endpoint& ep) {
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

class tls_byte_stream final : public stream::byte_stream {
 public:
  tls_byte_stream(std::shared_ptr<ssl::context> ctx, tls_socket s, std::string description)
      : ctx_(std::move(ctx)), s_(std::move(s)), description_(std::move(description)) {}

  asio::any_io_executor get_executor() override { return s_.get_executor(); }
  asio::awaitable<std::size_t> read_some(asio::mutable_buffer b, error_code& ec) override {
    auto [e, n] = co_await s_.async_read_some(b, use_tuple);
    ec = e == ssl::error::stream_truncated ? error_code(asio::error::eof) : e;
    co_return n;
  }
  asio::awaitable<void> write(std::span<const asio::const_buffer> b, error_code& ec) override {
    auto [e, n] = co_await asio::async_write(s_, b, use_tuple);
    ec = e;
  }
  asio::awaitable<void> shutdown(error_code& ec) override {
    auto [e] = co_await s_.async_shutdown(use_tuple);
    ec = e;
  }
  void close() override {
    error_code ignored;
    s_.lowest_layer().close(ignored);
  }
  std::string description() const override { return description_; }

 private:
  std::shared_ptr<ssl::context> ctx_; // must outlive s_
  tls_socket s_;
  std::string description_;
};

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

std::string tls_version(const tls_socket& s) {
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

int ssl_reason(const error_code& ec) {
  return ec.category() == asio::error::get_ssl_category() ? ERR_GET_REASON(static_cast<unsigned long>(ec.value())) : 0;
}

/// A TLS failure retrying cannot fix, as a sentence naming the fix: the
/// server's alert that it requires (or rejected) a client certificate —
/// in TLS 1.3 it comes with the first read after the handshake — or plain
/// bytes where the server's handshake should be (a plain listener).
/// A certificate alert counts only once the server's own certificate was
/// verified (`server_verified`): before that anyone on the path can forge
/// one (a plain alert record before ServerHello), a transient failure.
std::optional<std::string> permanent_tls_error(const error_code& ec, scheme used, bool server_verified = true) {
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
step_failure io_failure(const std::string& prefix, const error_code& ec, scheme used) {
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

// --- client --------------------------------------------------------------

/// What an upgrade answered `status` most likely means (a reverse proxy in
/// front of the server, usually); empty when there is nothing to add.
std::string upgrade_status_hint(unsigned status, std::string_view location) {
  if (status == 404)
    return " (no tunnel at this path: check the URL's path against the server's --listen path, e.g. "
           "wss://host/tunnel/ for --listen ws://127.0.0.1:8080/tunnel/, trailing slash included)";
  if (status == 426)
    return " (a reverse proxy in front of the server did not pass the WebSocket upgrade on: it must forward the "
           "Upgrade and Connection headers over HTTP/1.1; see 'Behind a reverse proxy' in the README)";
  if (status == 301 || status == 302 || status == 303 || status == 307 || status == 308) {
    std::string hint = " (redirected";
    if (!location.empty())
      hint += " to " + quote_untrusted(location.substr(0, 200));
    return hint + "; a WebSocket upgrade does not follow redirects: use the URL it points to — often the path "
                  "needs its trailing slash, e.g. /tunnel/ rather than /tunnel)";
  }
  return {};
}

template <class Next>
asio::awaitable<step_failure> ws_client_handshake(websocket::stream<Next>& ws, const url& target,
                                                  const std::string& token, const std::string& server_name) {
  tune(ws, true);
  ws.set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
    req.set(http::field::user_agent, "warren/0.1");
    if (!token.empty())
      req.set(http::field::authorization, "Bearer " + token);
  }));
  const bool default_port = (target.scheme == scheme::wss && target.endpoint.port == 443) ||
                            (target.scheme == scheme::ws && target.endpoint.port == 80);
  const std::string& name = server_name.empty() ? target.endpoint.host : server_name;
  const std::string host = default_port ? name : net::format_host_port(name, target.endpoint.port);
  websocket::response_type res;
  auto [ec] = co_await ws.async_handshake(res, host, target.path, use_tuple);
  if (!ec)
    co_return step_failure{};
  if (ec == websocket::error::upgrade_declined) {
    const auto status = res.result_int();
    std::string why =
        "the server declined the WebSocket upgrade: HTTP " + std::to_string(status) + " " + std::string(res.reason());
    auto kind = failure_kind::transient;
    auto refusal = auth_refusal::none;
    std::chrono::seconds retry_after{0};
    if (status == 401) {
      why += " (the token was refused; check --token-file)";
      kind = failure_kind::permanent;
      refusal = auth_refusal::token;
    } else if (status == 429) {
      why += " (too many failed attempts from this address; wait a minute)";
      refusal = auth_refusal::limited;
      retry_after = parse_retry_after(res[http::field::retry_after]);
    } else if (auto listener = listener_scheme(res[k_listener_header]); status == 400 && listener) {
      // Naming our own scheme is no mismatch (something on the path, or
      // a confused server): a transient 400, not an exit.
      if (*listener == target.scheme) {
        why += " (the server names its listener " + std::string(to_string(*listener)) +
               "://, as dialled; something between us may have changed the request)";
      } else {
        why = mismatch_hint(target.scheme, listener);
        kind = failure_kind::permanent;
      }
    } else {
      why += upgrade_status_hint(status, res[http::field::location]);
    }
    co_return step_failure{why, kind, refusal, retry_after};
  }
  co_return io_failure("WebSocket upgrade failed: ", ec, target.scheme);
}

/// tcp:// and tls:// authentication (docs/PROTOCOL.md): send the token line,
/// read exactly the 3-byte answer (what follows it is the server's HELLO).
/// Returns an empty string on success.
template <class Next>
asio::awaitable<step_failure> client_preamble(Next& next, const std::string& token, scheme used) {
  const std::string preamble = std::string(k_preamble_magic) + token + "\n";
  auto [we, wn] = co_await asio::async_write(next, asio::buffer(preamble), use_tuple);
  if (we)
    co_return io_failure("failed: ", we, used);
  std::array<char, 3> reply{};
  auto [re, rn] = co_await asio::async_read(next, asio::buffer(reply), use_tuple);
  const std::string_view answer(reply.data(), rn);
  // A short answer (then EOF) may still tell what the server speaks.
  if (re && (rn == 0 || classify_preamble_answer(answer) == preamble_answer::other))
    co_return io_failure("failed: ", re, used);
  switch (classify_preamble_answer(answer)) {
  case preamble_answer::ok:
    co_return step_failure{};
  case preamble_answer::limited:
    co_return step_failure{"the server refused: too many failed authentications from this address; wait a minute",
                           failure_kind::transient, auth_refusal::limited};
  case preamble_answer::refused:
    co_return step_failure{"the server refused the token (check --token-file)", failure_kind::permanent,
                           auth_refusal::token};
  case preamble_answer::http:
    co_return step_failure{mismatch_hint(used, std::nullopt, "http"), failure_kind::permanent};
  case preamble_answer::tls:
    co_return step_failure{mismatch_hint(used, std::nullopt, "tls"), failure_kind::permanent};
  case preamble_answer::other:
    break;
  }
  co_return step_failure{"the server's answer is not a warren server's (wrong port?)"};
}

bool loopback_host(const std::string& host) {
  if (auto ip = net::parse_ip(host))
    return ip->is_loopback();
  return net::localhost_addresses(host, net::ip_family::v4).has_value();
}

} // namespace

asio::awaitable<dial_result> dial(const url& target, const dial_options& options, net::resolver& resolver) {
  dial_result out;
  const auto started = steady_clock::now();
  const std::string where = to_string(target);
  const auto& proxy = options.proxy;
  // Through a proxy, a clear-text token is also seen by the proxy: only a
  // proxy and a server both on loopback keep it on this machine.
  const bool local_path = loopback_host(target.endpoint.host) && (!proxy || loopback_host(proxy->endpoint.host));
  if (!target.uses_tls() && !options.token.empty() && !options.insecure_token && !local_path) {
    out.error = "refusing to send the token in clear text over " + std::string(to_string(target.scheme)) + ":// to " +
                target.endpoint.host + (proxy ? " through the proxy " + to_string(*proxy) : std::string()) +
                "; use wss:// or tls://, or pass --insecure-token";
    out.failure = failure_kind::permanent;
    co_return out;
  }
  auto ex = co_await asio::this_coro::executor;

  // socks5:// asks the proxy for an address resolved here (socks5h:// and
  // http:// send the name).
  net::host_port ask = target.endpoint;
  if (proxy && proxy->kind == proxy_kind::socks5) {
    std::string error;
    const auto t = steady_clock::now();
    ask.host = co_await resolve_for_proxy(target.endpoint.host, resolver, options.connect.he.policy,
                                          options.connect.he.timeout, error);
    if (!error.empty()) {
      out.error = error;
      co_return out;
    }
    spdlog::debug("{}: resolved to {} for the SOCKS5 proxy in {} ms", where, ask.host, since(t).count());
  }

  // 1. TCP with Happy Eyeballs, to the server or to the proxy.
  auto connect = options.connect;
  if (proxy)
    connect.log_label = "proxy connect";
  auto c = co_await net::async_connect(ex, resolver, proxy ? proxy->endpoint : target.endpoint, connect,
                                       asio::use_awaitable);
  if (c.ec) {
    out.error = proxy ? "cannot reach the proxy " + to_string(*proxy) + ": " + c.detail : c.detail;
    co_return out;
  }
  out.peer = c.peer;
  out.connect_time = c.elapsed;
  const std::string family = c.peer.address().is_v6() ? "IPv6" : "IPv4";
  spdlog::debug("{}: TCP connected to {}{} ({}) in {} ms", where, proxy ? "the proxy " : "", show(c.peer), family,
                c.elapsed.count());
  tcp::socket socket = std::move(*c.socket);
  watchdog guard(ex, options.handshake_timeout, socket.native_handle());
  // Through a proxy, messages name the server (the peer is the proxy).
  const std::string server =
      proxy ? net::format_host_port(target.endpoint.host, target.endpoint.port) + " (via " + to_string(*proxy) + ")"
            : show(out.peer);
  auto timed_out = [&](const std::string& step) {
    return step + " with " + server + " timed out after " +
           format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(options.handshake_timeout));
  };
  if (proxy) {
    const auto t = steady_clock::now();
    auto failure = co_await proxy_handshake(socket, *proxy, ask, where);
    if (failure.failed()) {
      out.error =
          guard.fired()
              ? "the proxy handshake with " + to_string(*proxy) + " timed out after " +
                    format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(options.handshake_timeout))
              : failure.error;
      if (!guard.fired() && failure.permanent)
        out.failure = failure_kind::permanent;
      co_return out;
    }
    spdlog::debug("{}: proxy {} connected us to {} in {} ms", where, to_string(*proxy),
                  net::format_host_port(ask.host, ask.port), since(t).count());
  }

  if (!target.uses_tls()) {
    if (target.scheme == scheme::tcp) {
      auto failure = co_await client_preamble(socket, options.token, target.scheme);
      if (failure.failed()) {
        out.error =
            guard.fired() ? timed_out("authentication") : "authentication with " + server + ": " + failure.error;
        out.failure = guard.fired() ? failure_kind::transient : failure.kind;
        out.refusal = failure.refusal;
        out.retry_after = failure.retry_after;
        co_return out;
      }
      guard.disarm();
      out.stream = stream::make_tcp_stream(std::move(socket), "tcp " + server);
    } else {
      websocket::stream<tcp::socket> ws(std::move(socket));
      const auto t = steady_clock::now();
      auto failure = co_await ws_client_handshake(ws, target, options.token, options.server_name);
      if (failure.failed()) {
        out.error = guard.fired() ? timed_out("WebSocket upgrade") : failure.error;
        out.failure = guard.fired() ? failure_kind::transient : failure.kind;
        out.refusal = failure.refusal;
        out.retry_after = failure.retry_after;
        co_return out;
      }
      guard.disarm();
      spdlog::debug("{}: WebSocket upgrade done in {} ms", where, since(t).count());
      out.stream = std::make_unique<ws_byte_stream<tcp::socket>>(nullptr, std::move(ws), "ws " + server);
    }
    out.total_time = since(started);
    co_return out;
  }

  // 2. TLS.
  auto made = make_client_context(options.tls);
  if (!made) {
    out.error = made.error(); // our own certificate, key or CA file
    out.failure = failure_kind::permanent;
    co_return out;
  }
  auto ctx = made->context;
  auto report = made->report;
  tls_socket tls(std::move(socket), *ctx, tls_stream::client);
  // The name sent as SNI and checked in the certificate: --server-name when
  // given (connecting by address to a server whose certificate has a name).
  const std::string& host = options.server_name.empty() ? target.endpoint.host : options.server_name;
  if (!net::is_ip_literal(host))
    tls.engine().set_server_name(host);
  if (made->pin) {
    tls.engine().set_verify_callback([pin = *made->pin, report](bool, X509_STORE_CTX* store) {
      if (X509_STORE_CTX_get_error_depth(store) > 0)
        return true; // only the leaf is pinned
      X509* cert = X509_STORE_CTX_get_current_cert(store);
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned int n = 0;
      if (!cert || X509_digest(cert, EVP_sha256(), md, &n) != 1) {
        report->failure = "cannot hash the server certificate";
        return false;
      }
      report->presented_fingerprint = format_fingerprint(md, n);
      if (n == pin.size() && std::equal(pin.begin(), pin.end(), md))
        return true;
      report->failure = "certificate pin mismatch: the server presented " + report->presented_fingerprint +
                        ", expected " + format_fingerprint(pin.data(), pin.size());
      return false;
    });
  } else {
    tls.engine().set_verify_callback([inner = ssl::host_name_verification(host),
                                      report](bool preverified, X509_STORE_CTX* store) mutable {
      ssl::verify_context vc(store);
      const bool ok = inner(preverified, vc);
      if (!ok && report->failure.empty()) {
        const int err = X509_STORE_CTX_get_error(store);
        report->failure = err != X509_V_OK
                              ? std::string("certificate verification failed: ") + X509_verify_cert_error_string(err)
                              : "certificate verification failed: the certificate is not for this "
                                "host name";
        if (err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT || err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN)
          report->failure += " (for a self-signed server, pass --pin with its fingerprint, or --ca)";
      }
      return ok;
    });
  }
  const auto t_tls = steady_clock::now();
  auto [hec] = co_await tls.async_handshake(use_tuple);
  if (hec) {
    // A certificate or pin the client refused, or plain bytes where TLS
    // should be: retrying cannot fix them.
    const bool server_verified = SSL_get0_peer_certificate(tls.native_handle()) != nullptr;
    auto permanent =
        report->failure.empty() ? permanent_tls_error(hec, target.scheme, server_verified) : report->failure;
    out.error = guard.fired() ? timed_out("TLS handshake")
                              : "TLS handshake with " + server +
                                    " failed: " + (permanent ? *permanent : net::describe(hec));
    if (!guard.fired() && permanent)
      out.failure = failure_kind::permanent;
    co_return out;
  }
  const std::string version = tls_version(tls);
  spdlog::debug("{}: {} handshake done in {} ms ({})", where, version, since(t_tls).count(),
                SSL_get_cipher_name(tls.native_handle()));

  if (target.scheme == scheme::tls) {
    auto failure = co_await client_preamble(tls, options.token, target.scheme);
    if (failure.failed()) {
      out.error =
          guard.fired() ? timed_out("authentication") : "authentication with " + server + ": " + failure.error;
      out.failure = guard.fired() ? failure_kind::transient : failure.kind;
      out.refusal = failure.refusal;
      out.retry_after = failure.retry_after;
      co_return out;
    }
    guard.disarm();
    out.stream = std::make_unique<tls_byte_stream>(ctx, std::move(tls), "tls " + server + " " + version);
    out.total_time = since(started);
    co_return out;
  }

  // 3. WebSocket over TLS.
  websocket::stream<tls_socket> ws(std::move(tls));
  const auto t_ws = steady_clock::now();
  auto failure = co_await ws_client_handshake(ws, target, options.token, options.server_name);
  if (failure.failed()) {
    out.error = guard.fired() ? timed_out("WebSocket upgrade") : failure.error;
    out.failure = guard.fired() ? failure_kind::transient : failure.kind;
    out.refusal = failure.refusal;
    out.retry_after = failure.retry_after;
    co_return out;
  }
  guard.disarm();
  spdlog::debug("{}: WebSocket upgrade done in {} ms", where, since(t_ws).count());
  out.stream = std::make_unique<ws_byte_stream<tls_socket>>(ctx, std::move(ws), "wss " + server + " " + version);
  out.total_time = since(started);
  co_return out;
}

// --- server --------------------------------------------------------------

namespace {

/// Reads the HTTP upgrade request and checks path and token; on refusal
/// answers with an HTTP error and returns the reason.
constexpr std::string_view k_limited_reason = "too many failed authentications from this address";
/// The 401's body for a token of a user a reload removed (the client tells it from a wrong token).
constexpr std::string_view k_revoked_reason = "token revoked";

/// Reads the HTTP upgrade request and checks path and token; on refusal
/// answers with an HTTP error and returns the reason.
/// Takes the client behind a trusted proxy from the request's
/// X-Forwarded-For lines (forwarded.hpp) into `out`.
template <class Request>
void take_forwarded_client(const Request& req, const accept_options& options, accept_result& out) {
  std::string joined;
  for (auto [it, end] = req.equal_range("X-Forwarded-For"); it != end; ++it)
    joined += (joined.empty() ? "" : ",") + std::string(it->value());
  if (!is_trusted(options.trusted_proxies, out.client_address)) {
    // Behind a proxy that reaches warren from an address not trusted (nginx
    // resolving `localhost` to ::1, say), every client would share its
    // address: say so, rather than ignore the header in silence.
    if (!options.trusted_proxies.empty() && !joined.empty())
      out.forwarded_ignored = "X-Forwarded-For from " + out.client_label +
                              " ignored: that peer is not in a --trust-proxy block, so it counts as the client (if "
                              "it is your reverse proxy, trust its address too; a proxy upstream of 'localhost' "
                              "may connect from ::1 as well as 127.0.0.1)";
    return;
  }
  const auto found = real_client(joined, out.client_address, options.trusted_proxies);
  if (!found.error.empty())
    out.forwarded_error = "proxy " + out.client_label + ": " + found.error + "; counting the proxy as the client";
  if (!found.forwarded)
    return;
  out.client_label = found.address.to_string() + " via " + out.client_label;
  out.client_address = found.address;
}

template <class Next>
asio::awaitable<std::string> ws_server_handshake(Next& next, std::optional<websocket::stream<Next>>& ws,
                                                 const url& listen_url, const accept_options& options,
                                                 auth_limiter& limiter, accept_result& client) {
  beast::flat_buffer buffer(8192);
  http::request_parser<http::empty_body> parser;
  parser.header_limit(8192);
  auto [rec, rn] = co_await http::async_read(next, buffer, parser, use_tuple);
  if (rec) {
    // Bytes that are no HTTP request (a tcp:// or tls:// client's
    // preamble, say) get a 400 naming this listener's scheme.
    // (A TLS ClientHello fails at its first byte: a bad method.)
    if (rec.category() == http::make_error_code(http::error::bad_method).category() && buffer.size() > 0) {
      co_await send_wrong_scheme(next, listen_url.scheme);
      const auto first = static_cast<const char*>(buffer.data().data());
      if (looks_like_tls_record(std::string_view(first, 1)))
        co_return "a TLS handshake on a " + std::string(to_string(listen_url.scheme)) +
            ":// listener (the client uses wss://)";
    }
    co_return "no valid HTTP upgrade request (" + net::describe(rec) + ")";
  }
  auto req = parser.release();
  take_forwarded_client(req, options, client);
  const ip::address& source = client.client_address;
  auto refuse = [&](http::status status, std::string body,
                    std::chrono::seconds retry_after = std::chrono::seconds(0)) -> asio::awaitable<void> {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::server, "warren");
    if (retry_after.count() > 0)
      res.set(http::field::retry_after, std::to_string(retry_after.count()));
    res.set(http::field::content_type, "text/plain");
    res.set(http::field::connection, "close");
    res.body() = std::move(body) + "\n";
    res.prepare_payload();
    co_await http::async_write(next, res, use_tuple);
  };
  if (!websocket::is_upgrade(req)) {
    co_await refuse(http::status::upgrade_required, "this is a warren tunnel endpoint: connect with warren client");
    co_return "a plain HTTP request for " + shown_target(req.target()) + ", not a WebSocket upgrade";
  }
  if (req.target() != listen_url.path) {
    co_await refuse(http::status::not_found, "no tunnel at this path");
    co_return "WebSocket upgrade for unknown path " + shown_target(req.target());
  }
  // Asked here, as the token is about to be checked, not only at accept:
  // connections opened together would otherwise all get their guess.
  if (!limiter.allowed(source, steady_clock::now())) {
    const auto wait = limiter.retry_after(source, steady_clock::now());
    co_await refuse(http::status::too_many_requests,
                    std::string(k_limited_reason) + "; try again in " + std::to_string(wait.count()) + " s",
                    wait);
    co_return std::string(k_limited_reason);
  }
  const auto token = bearer_token(req[http::field::authorization]);
  const auto users = options.current_users ? options.current_users() : options.users;
  auto matched = token && users ? users->match(*token) : std::nullopt;
  if (const auto revoked = !matched && token && users ? users->match_revoked(*token) : std::nullopt) {
    co_await refuse(http::status::unauthorized, std::string(k_revoked_reason));
    co_return "the token of user " + *revoked + ", revoked by a reload (not counted as a guess)";
  }
  if (!matched) {
    limiter.record_failure(source, steady_clock::now());
    co_await refuse(http::status::unauthorized, "invalid or missing token");
    co_return req[http::field::authorization].empty() ? "no token in the upgrade request" : "wrong token";
  }
  client.user = std::move(*matched);
  ws.emplace(std::move(next));
  tune(*ws, false);
  ws->set_option(
      websocket::stream_base::decorator([](websocket::response_type& res) { res.set(http::field::server, "warren"); }));
  auto [aec] = co_await ws->async_accept(req, use_tuple);
  if (aec)
    co_return "WebSocket accept failed: " + net::describe(aec);
  co_return std::string();
}

/// read_until's condition for the preamble: a line, or the first byte alone
/// when it starts a TLS record.
struct line_or_tls_record {
  using iterator = asio::buffers_iterator<asio::streambuf::const_buffers_type>;
  using result_type = std::pair<iterator, bool>;
  result_type operator()(iterator begin, iterator end) const {
    if (begin != end && looks_like_tls_record(std::string_view(&*begin, 1)))
      return {begin + 1, true};
    const auto newline = std::find(begin, end, '\n');
    return newline == end ? result_type{end, false} : result_type{newline + 1, true};
  }
};

template <class Next>
asio::awaitable<std::string> preamble_server(Next& next, const accept_options& options, auth_limiter& limiter,
                                             const ip::address& source, std::string& user, scheme listener) {
  asio::streambuf buf(k_max_preamble);
  // Up to the newline; or just the first byte when it starts a TLS record
  // (a ClientHello need hold no newline), which is told in HTTP: the
  // client's TLS reads that as plain bytes (scheme_mismatch.hpp).
  auto [ec, n] = co_await asio::async_read_until(next, buf, line_or_tls_record{}, use_tuple);
  if (ec)
    co_return "no authentication preamble (" + net::describe(ec) + ")";
  std::string line(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + n - 1);
  if (n == 1 && buf.size() >= 1 && looks_like_tls_record(std::string_view(&*asio::buffers_begin(buf.data()), 1))) {
    co_await send_wrong_scheme(next, listener);
    co_return "a TLS handshake on a " + std::string(to_string(listener)) + ":// listener (the client uses tls://)";
  }
  if (looks_like_http_request(line)) {
    co_await send_wrong_scheme(next, listener);
    co_return "an HTTP request on a " + std::string(to_string(listener)) + ":// listener (the client uses " +
        (listener == scheme::tls ? "wss://" : "ws://") + ")";
  }
  if (buf.size() != n)
    co_return "data before authentication completed";
  if (!limiter.allowed(source, steady_clock::now())) {
    co_await asio::async_write(next, asio::buffer(k_preamble_limited), use_tuple);
    co_return std::string(k_limited_reason);
  }
  const auto users = options.current_users ? options.current_users() : options.users;
  const auto presented = std::string_view(line).substr(std::min(line.size(), k_preamble_magic.size()));
  auto matched = line.starts_with(k_preamble_magic) && users ? users->match(presented) : std::nullopt;
  const auto revoked =
      !matched && line.starts_with(k_preamble_magic) && users ? users->match_revoked(presented) : std::nullopt;
  if (revoked) {
    co_await asio::async_write(next, asio::buffer("NO\n", 3), use_tuple);
    co_return "the token of user " + *revoked + ", revoked by a reload (not counted as a guess)";
  }
  const bool ok = matched.has_value();
  // Counted before the answer is written, as the HTTP path counts before
  // its 401: the write suspends, and connections that sent their guesses
  // together would each find the limit not yet reached meanwhile.
  if (!ok)
    limiter.record_failure(source, steady_clock::now());
  const std::string reply = ok ? "OK\n" : "NO\n";
  co_await asio::async_write(next, asio::buffer(reply), use_tuple);
  if (!ok)
    co_return line.starts_with(k_preamble_magic) ? "wrong token" : "not a warren client (bad preamble)";
  user = std::move(*matched);
  co_return std::string();
}

} // namespace

asio::awaitable<accept_result> accept_stream(tcp::socket socket, const url& listen_url, const accept_options& options,
                                             auth_limiter& limiter) {
  accept_result out;
  error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  out.client_address = ec ? ip::address() : peer.address();
  out.client_label = ec ? "?" : show(peer);
  const ip::address source = out.client_address; // the TCP peer: preambles carry no X-Forwarded-For
  socket.set_option(tcp::no_delay(true), ec);
  // A source over its failure limit still gets its TLS handshake and is
  // answered in its own protocol (HTTP 429, or the preamble's TM), which a
  // client can report, instead of a bare close that reads as a broken
  // network; the handshake slots bound what that costs us.
  auto ex = co_await asio::this_coro::executor;
  watchdog guard(ex, options.handshake_timeout, socket.native_handle());
  auto fail = [&](std::string why) {
    out.error =
        "tunnel from " + out.client_label + " refused: " +
        (guard.fired()
             ? "handshake not finished within " +
                   format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(options.handshake_timeout))
             : why);
  };

  if (!listen_url.uses_tls()) {
    if (listen_url.scheme == scheme::tcp) {
      auto why = co_await preamble_server(socket, options, limiter, source, out.user, listen_url.scheme);
      if (!why.empty()) {
        fail(why);
        co_return out;
      }
      guard.disarm();
      out.stream = stream::make_tcp_stream(std::move(socket), "tcp " + out.client_label);
      co_return out;
    }
    std::optional<websocket::stream<tcp::socket>> ws;
    auto why = co_await ws_server_handshake(socket, ws, listen_url, options, limiter, out);
    if (!why.empty()) {
      fail(why);
      co_return out;
    }
    guard.disarm();
    out.stream = std::make_unique<ws_byte_stream<tcp::socket>>(nullptr, std::move(*ws), "ws " + out.client_label);
    co_return out;
  }

  // A tcp:// client's preamble ("WARREN/1 <token>") where a ClientHello
  // should be: answered with a plain TLS alert record, which that client
  // reads as "this listener speaks TLS" (scheme_mismatch.hpp).
  std::array<char, 1> first{};
  auto [pec, pn] =
      co_await socket.async_receive(asio::buffer(first), tcp::socket::message_peek, use_tuple);
  if (!pec && pn == 1 && first[0] == k_preamble_magic.front()) {
    co_await asio::async_write(socket, asio::buffer(k_tls_alert_record), use_tuple);
    fail("a tcp:// client's preamble on a " + std::string(to_string(listen_url.scheme)) +
         ":// listener (the client uses tcp://)");
    co_return out;
  }
  tls_socket tls(std::move(socket), *options.tls, tls_stream::server);
  auto [hec] = co_await tls.async_handshake(use_tuple);
  if (hec) {
    if (ssl_reason(hec) == SSL_R_HTTP_REQUEST) {
      // A ws:// client: answered in its language, below the failed TLS.
      co_await send_wrong_scheme(tls.next_layer(), listen_url.scheme);
      fail("a plain HTTP request on a " + std::string(to_string(listen_url.scheme)) +
           ":// listener (the client uses ws://)");
      co_return out;
    }
    fail("TLS handshake failed: " + net::describe(hec));
    co_return out;
  }
  const std::string version = tls_version(tls);
  if (listen_url.scheme == scheme::tls) {
    auto why = co_await preamble_server(tls, options, limiter, source, out.user, listen_url.scheme);
    if (!why.empty()) {
      fail(why);
      co_return out;
    }
    guard.disarm();
    out.stream =
        std::make_unique<tls_byte_stream>(options.tls, std::move(tls), "tls " + out.client_label + " " + version);
    co_return out;
  }
  std::optional<websocket::stream<tls_socket>> ws;
  auto why = co_await ws_server_handshake(tls, ws, listen_url, options, limiter, out);
  if (!why.empty()) {
    fail(why);
    co_return out;
  }
  guard.disarm();
  out.stream = std::make_unique<ws_byte_stream<tls_socket>>(options.tls, std::move(*ws),
                                                            "wss " + out.client_label + " " + version);
  co_return out;
}

} // namespace warren::transport
