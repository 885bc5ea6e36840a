// The client side of the transport layer: dial() — TCP (Happy Eyeballs,
// maybe through a proxy), TLS, the WebSocket upgrade or the preamble.
#include "transport/transport.hpp"

#include "transport/transport_detail.hpp"
#include "transport/http_auth.hpp"
#include "transport/proxy_dial.hpp"

namespace warren::transport {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace ip = asio::ip;
using asio::ip::tcp;
using namespace detail;

namespace {

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
  // A failed step after TCP: its sentence (or the timeout's, when the
  // watchdog cut it: a timeout is always worth a retry) and its kind.
  auto step_failed = [&](const step_failure& f, const std::string& step, std::string error) {
    out.error = guard.fired() ? timed_out(step) : std::move(error);
    out.failure = guard.fired() ? failure_kind::transient : f.kind;
    out.refusal = f.refusal;
    out.retry_after = f.retry_after;
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
        step_failed(failure, "authentication", "authentication with " + server + ": " + failure.error);
        co_return out;
      }
      guard.disarm();
      out.stream = stream::make_tcp_stream(std::move(socket), "tcp " + server);
    } else {
      websocket::stream<tcp::socket> ws(std::move(socket));
      const auto t = steady_clock::now();
      auto failure = co_await ws_client_handshake(ws, target, options.token, options.server_name);
      if (failure.failed()) {
        step_failed(failure, "WebSocket upgrade", failure.error);
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
      step_failed(failure, "authentication", "authentication with " + server + ": " + failure.error);
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
    step_failed(failure, "WebSocket upgrade", failure.error);
    co_return out;
  }
  guard.disarm();
  spdlog::debug("{}: WebSocket upgrade done in {} ms", where, since(t_ws).count());
  out.stream = std::make_unique<ws_byte_stream<tls_socket>>(ctx, std::move(ws), "wss " + server + " " + version);
  out.total_time = since(started);
  co_return out;
}

} // namespace warren::transport
