// The server side of the transport layer: accept_stream() — TLS, the
// WebSocket upgrade or the preamble, authentication and its limiter.
#include "transport/transport.hpp"

#include "transport/transport_detail.hpp"
#include "transport/http_auth.hpp"

namespace warren::transport {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace ip = asio::ip;
using asio::ip::tcp;
using namespace detail;

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
