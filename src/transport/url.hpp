// Tunnel URLs: tcp://host:port, tls://host:port, ws://host[:port][/path],
// wss://host[:port][/path]. Pure parsing; hosts follow net/address.hpp
// (IPv6 in brackets). Default ports: ws 80, wss and tls 443; tcp needs one.
#pragma once

#include "core/expected.hpp"
#include "net/address.hpp"

#include <string>
#include <string_view>

namespace warren::transport {

enum class scheme { tcp, tls, ws, wss };

struct url {
  transport::scheme scheme = scheme::tcp;
  net::host_port endpoint;
  std::string path = "/"; // ws and wss only
  bool uses_tls() const { return scheme == scheme::tls || scheme == scheme::wss; }
  bool uses_websocket() const { return scheme == scheme::ws || scheme == scheme::wss; }
};

/// `listening`: port 0 is allowed (the kernel picks one), and the host may
/// be `*` (every interface: 0.0.0.0 and ::). A host that is an IPv4
/// address in any spelling but a.b.c.d (127.1, 2130706433, 0x7f.1) is
/// refused (net::is_noncanonical_ipv4): NO_PROXY and the logs would not see
/// the address dialled.
expected<url> parse_url(std::string_view text, bool listening = false);
/// For messages and logs: the path's query is not shown (it may hold a secret).
std::string to_string(const url& u);
std::string_view to_string(scheme s);

} // namespace warren::transport
