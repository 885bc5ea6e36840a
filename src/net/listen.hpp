// What a listen address means, and binding it.
//
// `localhost` (and any name resolving only to loopback) binds every loopback
// address it stands for — 127.0.0.1 and ::1 — one socket each: a dual-stack
// [::] socket does not receive 127.0.0.1 or ::1 traffic, and clients that try
// ::1 first (macOS, many browsers) would be refused (seeds/000). `*` binds
// 0.0.0.0 and :: as two sockets. IPv6 sockets always get IPV6_V6ONLY set
// explicitly, so behaviour does not depend on net.ipv6.bindv6only.
//
// Binding is strict: every planned address must bind, or the command fails
// (a port in use on ::1 alone would send the clients that try ::1 first to
// another program). For names and `*` only an address that cannot exist on
// this host is skipped with a warning: EADDRNOTAVAIL or EAFNOSUPPORT (IPv6
// disabled); a literal the user typed must bind whatever the error. Port 0
// picks one port shared by every address. Every listener (relay, client
// forwards, server) binds through here.
#pragma once

#include "core/expected.hpp"
#include "net/address.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <string>
#include <vector>

namespace warren::net {

struct listen_plan {
  std::vector<boost::asio::ip::address> addresses; // in bind order, no duplicates
  std::uint16_t port = 0;
  bool literal = false; // the user typed exactly one IP address: it must bind
  std::string display;  // the address as the user wrote it
};

/// Expands a listen address (kind host or wildcard) into the addresses to
/// bind. Resolves names with the system resolver (blocking: start-up only).
expected<listen_plan> plan_listen(const listen_address& address);

/// Whether two plans would bind a common address and port: the same address
/// written differently (`*` and 0.0.0.0, localhost and 127.0.0.1, [::1] and
/// [0:0::1]), or a wildcard and any address of its family. Port 0 overlaps
/// nothing (each picks its own port). Compared before binding, so the error
/// names both listeners instead of "port in use".
bool overlaps(const listen_plan& a, const listen_plan& b);

/// Whether the plan is a bare IPv6 wildcard ([::], [0::0]): IPv6 only, as
/// IPV6_V6ONLY is set; the caller says so at start (`*` binds both).
bool ipv6_only(const listen_plan& plan);

struct bind_options {
  int backlog = 1024;
  bool reuse_address = true;
};

/// Binds and listens on every address of the plan (see file comment).
expected<std::vector<boost::asio::ip::tcp::acceptor>> bind_tcp(boost::asio::any_io_executor ex, const listen_plan& plan,
                                                               bind_options options = {});

/// Binds a UDP socket on every address of the plan.
expected<std::vector<boost::asio::ip::udp::socket>> bind_udp(boost::asio::any_io_executor ex, const listen_plan& plan);

/// Listens on a Unix stream socket; a stale socket file nobody listens on is
/// replaced, a live one is an error.
expected<boost::asio::local::stream_protocol::acceptor> bind_unix(boost::asio::any_io_executor ex,
                                                                  const std::string& path, int backlog = 1024);

/// "127.0.0.1:8080, [::1]:8080"
std::string describe_endpoints(const std::vector<boost::asio::ip::tcp::endpoint>& endpoints);

} // namespace warren::net
