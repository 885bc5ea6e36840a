// Who a connection really comes from when a reverse proxy (nginx, say)
// terminates it: the trusted proxies (`--trust-proxy CIDR`) and the
// X-Forwarded-For header they add. Pure functions over untrusted bytes
// (fuzzed by tests/fuzz/fuzz_http_auth.cpp).
//
// The header is read only when the TCP peer is a trusted proxy; then the
// client is the right-most address in it that is not a trusted proxy
// (each proxy appends the address it saw, so everything left of that is
// what the client itself claimed). A header that cannot be read (anything
// but addresses separated by commas) is not guessed at: the TCP peer stays
// the client, and the error says why. The `Forwarded` header (RFC 7239) is
// not read.
#pragma once

#include "core/expected.hpp"

#include <boost/asio/ip/address.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace warren::transport {

/// An address block: 127.0.0.1/32, 10.0.0.0/8, ::1/128, [fd00::]/8; a bare
/// address is a block of one.
struct ip_network {
  boost::asio::ip::address base; // host bits zeroed
  unsigned prefix = 0;
  bool contains(const boost::asio::ip::address& a) const;
};

/// Parses `--trust-proxy` syntax; the error is a sentence for the user.
/// Strict: a prefix with a leading zero (`/008`) or an address with bits set
/// after the prefix (`10.1.2.3/8`, which would mean 10.0.0.0/8) is an error.
expected<ip_network> parse_ip_network(std::string_view text);

/// What `--trust-proxy` should say about a block: an error for /0 (every
/// peer could name any client), a warning (non-empty) for one wider than
/// IPv4 /8 or IPv6 /32, else empty.
expected<std::string> trust_proxy_warning(const ip_network& n);

bool is_trusted(const std::vector<ip_network>& trusted, const boost::asio::ip::address& a);

struct forwarded_client {
  boost::asio::ip::address address; // the client to count, limit and log
  bool forwarded = false;           // taken from the header (not the TCP peer)
  std::string error;                // set when a trusted proxy sent a header that cannot be read
};

/// The client of a connection from `peer` carrying `x_forwarded_for` (every
/// X-Forwarded-For line of the request, joined with commas; empty if none).
forwarded_client real_client(std::string_view x_forwarded_for, const boost::asio::ip::address& peer,
                             const std::vector<ip_network>& trusted);

} // namespace warren::transport
