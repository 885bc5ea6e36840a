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

/// Over `socket`, connected to `proxy`, asks for a tunnel to `target`.
/// Returns an empty string on success, else one sentence naming the proxy.
boost::asio::awaitable<std::string> proxy_handshake(boost::asio::ip::tcp::socket& socket, const proxy_url& proxy,
                                                    const net::host_port& target, const std::string& log_where);

/// Whether a proxy_handshake() failure is a refusal retrying cannot fix (the
/// credentials, the proxy's rules, no CONNECT at all): by the words the
/// proxy codecs put in those sentences (proxy/http_connect.hpp).
bool permanent_proxy_refusal(const std::string& failure);

} // namespace warren::transport
