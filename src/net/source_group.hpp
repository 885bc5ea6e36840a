// source_group: the unit a server counts a remote peer's abuse in. An IPv4
// address (also when it arrives IPv4-mapped on a dual-stack socket) is one
// source; an IPv6 address counts as its /64, the smallest prefix a site is
// normally given, so an attacker cannot step around a per-source bound by
// walking the addresses of its own subnet. Used by every per-source bound
// of the server (handshake slots, the authentication failure limit), so
// they agree on who a source is. Pure.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <algorithm>

namespace warren::net {

using source_key = boost::asio::ip::address_v6::bytes_type;

/// The key of `a`'s source: an IPv4 address as its mapped IPv6 form, an
/// IPv6 address with its interface identifier (the low 64 bits) zeroed.
inline source_key source_group(const boost::asio::ip::address& a) {
  namespace ip = boost::asio::ip;
  if (a.is_v4())
    return ip::make_address_v6(ip::v4_mapped, a.to_v4()).to_bytes();
  auto bytes = a.to_v6().to_bytes();
  if (a.to_v6().is_v4_mapped())
    return bytes;
  std::fill(bytes.begin() + 8, bytes.end(), 0); // the /64
  return bytes;
}

} // namespace warren::net
