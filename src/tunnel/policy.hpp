// Destination policy of the tunnel server: which targets clients may reach.
// Default deny. Rules (--allow, repeatable):
//
//   10.0.0.0/8            any port on a network      [fd00::]/8:443   IPv6 in brackets
//   127.0.0.1:22          one address, one port      db.internal:5432 a host name
//   10.1.2.3:8000-8999    a port range               *.internal:443   a name and its subdomains
//   *:80                  any address, port 80       *                everything (use with care)
//
// Address rules are checked against the addresses a name resolves to on the
// server, after resolution, so DNS cannot bring in a denied address
// (rebinding). A host-name rule trusts that name: all of its addresses pass.
// A name with no host rule, on a port no address rule covers, is denied
// without resolving it (allows_some_address).
//
// An address is judged as what it reaches (judge_destination): an
// IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it is, by
// every rule whatever the rule's family; the unspecified addresses and
// 0.0.0.0/8 as loopback (connecting to them reaches the local host); an IPv6
// address with an IPv4 address embedded (NAT64 64:ff9b::/96 and
// 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32, IPv4-compatible ::/96,
// ISATAP) passes only if the embedded IPv4 address passes too. An IPv6
// rule inside ::ffff:0:0/96 is turned into the IPv4 rule it means.
// Pure: parsing and matching only.
#pragma once

#include "core/error.hpp"
#include "core/expected.hpp"

#include <boost/asio/ip/address.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace warren::tunnel {

struct allow_rule {
  enum class kind { any, network, host, host_suffix };
  kind type = kind::any;
  boost::asio::ip::address network; // kind network
  unsigned prefix = 0;              // kind network
  std::string host;                 // kind host (exact) or host_suffix (".internal")
  std::uint16_t port_min = 1;
  std::uint16_t port_max = 65535;
  std::string text; // as written, for logs
};

expected<allow_rule> parse_allow_rule(std::string_view text);

/// The addresses a destination must pass as, in order (at most three).
struct judged_addresses {
  std::array<boost::asio::ip::address, 3> list{};
  std::size_t count = 0;
};

/// How the policy sees a resolved destination address (see above).
judged_addresses judge_destination(const boost::asio::ip::address& a);

class destination_policy {
 public:
  void add(allow_rule r) { rules_.push_back(std::move(r)); }
  bool empty() const { return rules_.empty(); }

  /// May `name` (a host name as the client sent it) be reached on `port`
  /// whatever it resolves to? (host and host_suffix rules)
  bool allows_name(std::string_view name, std::uint16_t port) const;
  /// May this resolved address be reached on `port`? (any and network rules)
  bool allows_address(const boost::asio::ip::address& a, std::uint16_t port) const;
  /// May some address be reached on `port`? When not, a name that
  /// allows_name() refuses is denied without resolving it: a client must not
  /// be able to make the server look up names it could never reach.
  bool allows_some_address(std::uint16_t port) const;
  const std::vector<allow_rule>& rules() const { return rules_; }

 private:
  bool allows_judged(const boost::asio::ip::address& a, std::uint16_t port) const;

  std::vector<allow_rule> rules_;
};

} // namespace warren::tunnel
