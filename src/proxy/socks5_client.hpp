// The client side of a SOCKS5 handshake (RFC 1928, RFC 1929) over a
// connected TCP socket, shared by the tunnel client's proxy step
// (transport/proxy_dial.cpp) and `warren tun`'s SOCKS5 upstream
// (tun/socks5_upstream.*). The bytes come from the pure codec (socks5.hpp);
// this file only moves them, reading exactly as many bytes as each message
// needs, so nothing after the reply is taken from the socket.
//
//   client → greeting (no auth [, user/pass])
//   server → method choice
//  [client → user, password   server → status]     only if it chose user/pass
//   client → request (CONNECT or UDP ASSOCIATE)
//   server → reply (code, BND.ADDR:PORT)
//
// The outcome is a kind and its facts, never a sentence: each caller words
// its own errors (the tunnel client names --proxy-user; tun names the URL).
// No timeout here: the caller bounds the whole handshake.
#pragma once

#include "core/error.hpp"
#include "proxy/socks5.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <optional>
#include <string>

namespace warren::proxy::socks5 {

struct client_result {
  enum class outcome {
    ok,                   // REP succeeded; `bound` is BND.ADDR:BND.PORT
    io_error,             // a read or write failed (`ec`; eof: the server closed)
    not_socks5,           // the method choice does not parse (`detail`)
    malformed,            // a status or reply that does not parse (`detail`)
    bad_credentials,      // user or password cannot be sent (`detail`; never the password)
    auth_refused,         // RFC 1929 status: failure
    no_acceptable_method, // 0xFF although user/pass was offered
    wants_credentials,    // the server wants user/pass (or refused no-auth) and we have none
    unexpected_method,    // a method we did not offer
    refused,              // REP is not succeeded (`code`)
  };
  outcome what = outcome::ok;
  error_code ec;
  std::string detail;
  reply_code code = reply_code::succeeded;
  address bound;
  /// The request was written (an io_error after it: the server closed or
  /// failed instead of replying, as some servers do to UDP ASSOCIATE).
  bool request_sent = false;

  bool ok() const noexcept { return what == outcome::ok; }
};

/// Runs the handshake for `req` over `socket`, offering user/pass when
/// `credentials` is set.
boost::asio::awaitable<client_result> client_handshake(boost::asio::ip::tcp::socket& socket, const request& req,
                                                       const std::optional<credentials>& creds);

} // namespace warren::proxy::socks5
