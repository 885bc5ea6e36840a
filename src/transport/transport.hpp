// dial(url) and accept(url): turn a tunnel URL into an authenticated
// byte_stream. Client steps, each logged at debug with its timing:
//   1. TCP connect with Happy Eyeballs (net/connector.hpp), to the server
//      or to the proxy; through a proxy, then HTTP CONNECT or SOCKS5 to the
//      server's host:port (proxy_dial.hpp);
//   2. TLS 1.3 handshake, SNI = the URL's host name (or server_name),
//      verification by CA store, CA file or pin (tls.hpp) — tls:// and
//      wss:// only; end to end through a proxy;
//   3. WebSocket upgrade with "Authorization: Bearer <token>" — ws:// and
//      wss://; for tcp:// and tls:// the token goes in a small preamble
//      (docs/PROTOCOL.md, "Authentication without HTTP").
// The server side mirrors them, answers a bad token with HTTP 401 (or a
// preamble refusal), logs the source address (never the token) and limits
// failures per source (auth.hpp). One handshake deadline covers everything
// after the TCP connect (the proxy's handshake too).
//
// Beast and asio::ssl appear only in transport/*.cpp (build time).
#pragma once

#include "core/expected.hpp"
#include "net/connector.hpp"
#include "stream/byte_stream.hpp"
#include "transport/auth.hpp"
#include "transport/forwarded.hpp"
#include "transport/proxy_config.hpp"
#include "transport/tls.hpp"
#include "transport/url.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace boost::asio::ssl {
class context;
}

namespace warren::transport {

struct dial_options {
  tls_client_options tls;
  std::string token;
  net::connect_options connect;
  bool insecure_token = false; // allow sending the token over ws:// or tcp:// to a non-loopback host
  std::chrono::milliseconds handshake_timeout{10'000};
  std::optional<proxy_url> proxy; // connect through it (proxy_config.hpp chooses)
  /// When set: the TLS SNI, the name the certificate must carry and the
  /// WebSocket Host header, instead of the URL's host (e.g. an address).
  std::string server_name;
};

/// Whether retrying a failed dial can help.
enum class failure_kind : std::uint8_t {
  transient, // the network, a server down or busy, timeouts: retried
  permanent, // only the user can fix it: a refused token, a token that
             // would go out in clear text, our own TLS files, certificate
             // or pin failures, a client certificate the server requires or
             // rejects, the wrong scheme for the listener, a proxy's refusal
             // of our credentials or destination (the error names the fix)
};

/// Whether the server answered and refused to authenticate us.
enum class auth_refusal : std::uint8_t {
  none,
  token,   // 401, or the preamble's "NO": our token
  limited, // 429, or "TM": too many failed tokens from our address
};

struct dial_result {
  stream::byte_stream_ptr stream; // null on failure
  std::string error;              // one sentence for the user on failure
  failure_kind failure = failure_kind::transient;
  auth_refusal refusal = auth_refusal::none;
  std::chrono::seconds retry_after{0}; // with refusal == limited: the server's Retry-After (0: not said)
  boost::asio::ip::tcp::endpoint peer;
  std::chrono::milliseconds connect_time{0};
  std::chrono::milliseconds total_time{0};
};

/// Dials a tunnel URL. Never throws; failures come back as a sentence.
boost::asio::awaitable<dial_result> dial(const url& target, const dial_options& options, net::resolver& resolver);

struct accept_options {
  std::shared_ptr<boost::asio::ssl::context> tls; // required for tls:// and wss://
  std::shared_ptr<const user_table> users;        // whose tokens are accepted
  /// When set, asked for the users as the token is checked (a reload during
  /// the handshake counts); `users` otherwise.
  std::function<std::shared_ptr<const user_table>()> current_users;
  std::chrono::milliseconds handshake_timeout{10'000};
  /// Reverse proxies (--trust-proxy): a WebSocket upgrade from one of them
  /// is taken to come from the client its X-Forwarded-For names
  /// (forwarded.hpp). Default none: the header is ignored.
  std::vector<ip_network> trusted_proxies;
};

struct accept_result {
  stream::byte_stream_ptr stream; // null when refused
  std::string error;
  std::string user; // whose token it presented
  /// Who the connection is from: the TCP peer, or behind a trusted proxy
  /// the client it names. The failure limiter counted this address.
  boost::asio::ip::address client_address;
  /// "203.0.113.7 via 127.0.0.1:40112" behind a proxy, else "ADDR:PORT".
  std::string client_label;
  /// Why a trusted proxy's X-Forwarded-For was not used (empty if it was,
  /// or none was sent); for a log line within a budget.
  std::string forwarded_error;
  /// Set when --trust-proxy is given and a peer outside it sent
  /// X-Forwarded-For (ignored); for a log line within a budget.
  std::string forwarded_ignored;
};

/// The server half for one accepted connection on a listener of `listen_url`'s scheme.
boost::asio::awaitable<accept_result> accept_stream(boost::asio::ip::tcp::socket socket, const url& listen_url,
                                                    const accept_options& options, auth_limiter& limiter);

/// The WebSocket path served; other paths get 404.
inline constexpr const char* k_default_ws_path = "/";

} // namespace warren::transport
