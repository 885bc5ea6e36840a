// Address syntax of the command line and configs, as pure functions over text
// (fuzzed by tests/fuzz/fuzz_address.cpp). Nothing here resolves or binds.
//
//   target   host:port | [v6]:port                 e.g. app.internal:80, [::1]:53
//   listen   host:port | [v6]:port | *:port | /path | unix:path
//
// A colon-bearing host without brackets is rejected with a hint rather than
// guessed at: "::1:80" could mean two different things.
#pragma once

#include "core/expected.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace warren::net {

struct host_port {
  std::string host; // a name, an IPv4 literal or an IPv6 literal (no brackets)
  std::uint16_t port = 0;
  friend bool operator==(const host_port&, const host_port&) = default;
};

enum class listen_kind { host, wildcard, unix_path };

struct listen_address {
  listen_kind kind = listen_kind::host;
  host_port endpoint; // kind host or wildcard ("*" as host)
  std::string path;   // kind unix_path
};

/// A port number 1-65535 (0 too when allow_zero: "pick one").
expected<std::uint16_t> parse_port(std::string_view text, bool allow_zero);

/// host:port or [v6]:port.
expected<host_port> parse_host_port(std::string_view text, bool allow_port_zero = false);

/// A listen address; port 0 is allowed (the kernel picks, shared by every bound address).
expected<listen_address> parse_listen_address(std::string_view text);

bool is_ipv4_literal(std::string_view host);
bool is_ipv6_literal(std::string_view host);
inline bool is_ip_literal(std::string_view host) {
  return is_ipv4_literal(host) || is_ipv6_literal(host);
}

/// A host an IPv4 parser would take for an address that is not written as
/// a dotted quad: its last label is a number ("3128", "127.1", "2130706433",
/// "0x7f000001", "0x7f.1", "127.0.0.1."). curl and browsers read these as
/// addresses, a resolver may or may not; warren refuses them as URL hosts,
/// so that NO_PROXY and the user see the address that is dialled.
bool is_noncanonical_ipv4(std::string_view host);

/// Valid DNS-style host name (letters, digits, '-', '_', '.'; labels <= 63, total <= 253).
bool is_valid_hostname(std::string_view host);

/// "host:port", with brackets around IPv6 literals.
std::string format_host_port(std::string_view host, std::uint16_t port);

} // namespace warren::net
