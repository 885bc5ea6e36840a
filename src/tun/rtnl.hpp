// A small synchronous rtnetlink client (libmnl) for what `warren tun` changes
// in the kernel: links (index by name, MTU, up, delete), addresses, routes and
// policy rules. Each change is one request answered by an ACK or an error;
// the error becomes a sentence naming the change and the kernel's reason
// (errno text, plus the extended-ACK message when the kernel sends one), and
// EPERM becomes the CAP_NET_ADMIN hint. No Asio: these calls happen at start
// and exit, never on the data path, so blocking on the kernel's answer is fine.
//
// Everything warren adds carries k_rt_protocol, so dumps filtered by it find
// warren's routes and rules (rules carry FRA_PROTOCOL since Linux 4.17).
//
// Lifetime: one rtnl per thread of use; not thread-safe. Move-only.
#pragma once

#include "core/expected.hpp"

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct mnl_socket;

namespace warren::tun {

/// The routing protocol id on warren's routes and rules ("proto 0x77" in
/// `ip route`/`ip rule`). 0x77 is unassigned in include/uapi/linux/rtnetlink.h
/// (RTPROT_*: 0-4 kernel, 8-18 and 42, 99, 186-192 daemons) and in
/// /etc/iproute2/rt_protos; docs/TUN.md records the choice.
inline constexpr std::uint8_t k_rt_protocol = 0x77;

/// The message for every EPERM from the kernel (TUNSETIFF or rtnetlink).
inline constexpr std::string_view k_need_cap_net_admin =
    "warren tun needs CAP_NET_ADMIN (run as root or grant the capability)";

/// An IPv4 or IPv6 address with a prefix length: 198.18.0.1/15 (an
/// interface address keeps its host bits), 10.0.0.0/8, ::/0.
struct ip_prefix {
  int family = 0; // AF_INET or AF_INET6
  std::array<std::uint8_t, 16> bytes{};
  unsigned length = 0;

  /// "a.b.c.d[/n]" or "v6[/n]" (a bare address is a host prefix). When
  /// host_bits is false an address with bits set past the prefix is an error
  /// (10.1.2.3/8 as a route would mean 10.0.0.0/8).
  static expected<ip_prefix> parse(std::string_view text, bool host_bits);
  static ip_prefix any(int family); // 0.0.0.0/0 or ::/0
  std::size_t address_size() const { return family == AF_INET6 ? 16 : 4; }
  bool is_default() const { return length == 0; }
  std::string str() const; // "10.0.0.0/8", "default" for /0
  friend bool operator==(const ip_prefix&, const ip_prefix&) = default;
};

std::string family_name(int family); // "IPv4", "IPv6"

struct link_info {
  unsigned index = 0;
  std::string name;
  std::string kind; // IFLA_INFO_KIND: "tun", "dummy", "veth"; empty for lo/physical
  unsigned mtu = 0;
  bool up = false; // IFF_UP
};

struct route {
  int family = 0;
  ip_prefix dst;            // length 0: the default route
  unsigned oif = 0;         // the device (routes via a device, no gateway)
  std::uint32_t table = 254; // RT_TABLE_MAIN
  std::uint8_t protocol = k_rt_protocol;
  std::string describe() const; // "default dev #7 table 30561 (IPv6)"
  friend bool operator==(const route&, const route&) = default;
};

/// A policy rule whose action is "lookup table".
struct rule {
  int family = 0;
  std::uint32_t priority = 0;
  std::uint32_t table = 254;
  std::optional<std::uint32_t> fwmark;  // with fwmask
  std::uint32_t fwmask = 0xffffffff;
  bool invert = false;                  // "not": FIB_RULE_INVERT
  std::optional<ip_prefix> dst;         // "to CIDR"
  std::optional<std::uint32_t> suppress_prefixlength;
  std::uint8_t protocol = k_rt_protocol;
  std::string describe() const; // as `ip rule` writes it
  friend bool operator==(const rule&, const rule&) = default;
};

struct address {
  unsigned index = 0;
  ip_prefix local;
};

/// The kernel's answer to one request, for callers that treat "already gone"
/// as success (undo) or "exists" as a conflict.
struct rtnl_error {
  int code = 0; // errno
  std::string message;
};

class rtnl {
 public:
  /// Opens and binds a NETLINK_ROUTE socket (extended ACKs on).
  static expected<rtnl> open();
  rtnl(rtnl&& other) noexcept;
  rtnl& operator=(rtnl&& other) noexcept;
  rtnl(const rtnl&) = delete;
  rtnl& operator=(const rtnl&) = delete;
  ~rtnl();

  expected<link_info> link(std::string_view name);
  expected<link_info> link(unsigned index);
  expected<bool> set_mtu(unsigned index, unsigned mtu);
  expected<bool> set_up(unsigned index);
  expected<bool> delete_link(unsigned index);

  /// IPv6 addresses get IFA_F_NODAD so they are usable at once.
  expected<bool> add_address(unsigned index, const ip_prefix& local);
  expected<bool> delete_address(unsigned index, const ip_prefix& local);
  expected<std::vector<address>> addresses(unsigned index);

  expected<bool> add_route(const route& r);
  expected<bool> delete_route(const route& r);
  /// Routes of every table of one family carrying `protocol`.
  expected<std::vector<route>> routes(int family, std::uint8_t protocol);

  expected<bool> add_rule(const rule& r);
  expected<bool> delete_rule(const rule& r);
  /// Rules of one family carrying `protocol`.
  expected<std::vector<rule>> rules(int family, std::uint8_t protocol);

  /// errno of the last failed request (0 after a success): ENOENT/ESRCH/
  /// ENODEV tell an undo that the entry is already gone.
  int last_errno() const { return last_errno_; }

 private:
  explicit rtnl(mnl_socket* s);
  // Sends the request in buf_ and reads the answer: every data message goes
  // to on_message (dumps), the ACK or error ends it. Returns the errno (0 = ok).
  template <class F>
  int transact(F&& on_message);
  expected<bool> change(std::string_view what);
  expected<link_info> get_link(unsigned index, std::string_view name);

  mnl_socket* sock_ = nullptr;
  unsigned portid_ = 0;
  unsigned seq_ = 0;
  int last_errno_ = 0;
  std::string ext_ack_;           // the kernel's extended-ACK message of the last error
  std::vector<char> buf_;         // request, then receive buffer
};

} // namespace warren::tun
