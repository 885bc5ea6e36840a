// The client's steps through a proxy (transport.hpp's dial runs them between
// the TCP connect to the proxy and TLS): HTTP CONNECT with optional Basic
// auth, or SOCKS5 with optional username/password (RFC 1929). The codecs
// are pure (proxy/http_connect.hpp, proxy/socks5.hpp); this file only moves
// their bytes. The caller's handshake watchdog bounds every read and write.
#pragma once

#include "net/address.hpp"
#include "net/happy_eyeballs.hpp"
#include "net/resolver.hpp"
#include "transport/proxy_config.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <string>

namespace warren::transport {

/// For socks5:// (local name resolution): the address to ask the proxy for,
/// the first of the family the policy prefers (IPv4 unless ipv6 only or
/// IPv4 has none). An IP literal comes back unchanged. Bounded by `timeout`.
/// Returns the address, or an error sentence in `error`.
boost::asio::awaitable<std::string> resolve_for_proxy(const std::string& host, net::resolver& resolver,
                                                      net::family_policy policy, std::chrono::milliseconds timeout,
                                                      std::string& error);

/// A failed proxy handshake: one sentence naming the proxy, and whether
/// retrying cannot fix it (the proxy refused our credentials, or its rules
/// refuse the destination or CONNECT itself). The kind comes from status
/// codes and SOCKS5 reply bytes, never from text a proxy sent.
struct proxy_failure {
  std::string error; // empty: the tunnel to the target is open
  bool permanent = false;
  bool failed() const { return !error.empty(); }
};

/// Over `socket`, connected to `proxy`, asks for a tunnel to `target`.
boost::asio::awaitable<proxy_failure> proxy_handshake(boost::asio::ip::tcp::socket& socket, const proxy_url& proxy,
                                                      const net::host_port& target, const std::string& log_where);

} // namespace warren::transport
