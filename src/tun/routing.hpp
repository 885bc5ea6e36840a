// What `warren tun` changes in the kernel's routing, as data first: a pure
// function turns the options into a plan (a list of netlink steps, unit-tested
// without a kernel), then apply() carries it out step by step and undo()
// reverses exactly the steps that were done, last first.
//
// --default-route is policy routing, not routes around the upstream (those go
// stale at every network change): table T holds default routes (IPv4 and
// IPv6) through the TUN, and for each family
//   priority p-2  to CIDR lookup main              (one per --exclude)
//   priority p-1  from all lookup main suppress_prefixlength 0
//   priority p    not from all fwmark M lookup T
// so everything except warren's own marked upstream sockets reaches the TUN,
// while the main table's more specific routes (the LAN, the excludes) still
// win. Strict reverse-path filtering would drop the replies to marked
// sockets, so net.ipv4.conf.all.src_valid_mark is set to 1 while it runs
// (only when some rp_filter is strict; the old value is restored by undo).
//
// Every route and rule carries k_rt_protocol; the rules' priorities
// [p-2, p] and table T are the instance's identity (ownership.hpp).
#pragma once

#include "core/expected.hpp"
#include "tun/rtnl.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace warren::tun {

inline constexpr std::uint32_t k_default_table = 0x7761;    // 30561, "wa"
inline constexpr std::uint32_t k_default_fwmark = 0x7761;   // the upstream sockets' SO_MARK
inline constexpr std::uint32_t k_default_priority = 0x7761; // 30561: after local (0), before main (32766)

struct routing_options {
  std::string device;
  unsigned mtu = 0;                  // 0: leave the device's MTU
  std::vector<ip_prefix> addresses;  // interface addresses (host bits kept)
  bool set_up = true;
  std::vector<ip_prefix> routes;     // --route: main table, through the TUN
  bool default_route = false;
  std::vector<ip_prefix> excludes;   // --exclude: stay on the main table
  std::uint32_t table = k_default_table;
  std::uint32_t fwmark = k_default_fwmark;
  std::uint32_t fwmask = 0xffffffff;
  std::uint32_t priority = k_default_priority;
};

enum class step_kind { set_mtu, add_address, set_up, add_route, add_rule, src_valid_mark };

struct step {
  step_kind kind = step_kind::set_up;
  unsigned mtu = 0;   // set_mtu
  ip_prefix address;  // add_address
  route rt;           // add_route (its oif is filled in by apply)
  rule ru;            // add_rule
  /// "add route 10.0.0.0/8 dev wt0 table main" — the device by name.
  std::string describe(const std::string& device) const;
  friend bool operator==(const step&, const step&) = default;
};

struct plan {
  std::string device;
  std::vector<step> steps;
  bool default_route = false; // with strict rp_filter: the connmark table too (connmark.hpp)
  std::uint32_t fwmark = k_default_fwmark;
};

/// The steps for `o`, in the order they are applied: MTU, addresses, up,
/// --routes, then (--default-route) table T's default routes, the exclude,
/// suppress and fwmark rules, src_valid_mark. Pure; refuses a priority
/// below 3 or above 32765, reserved tables (0, 253-255) and a mask that
/// hides the mark.
expected<plan> make_plan(const routing_options& o);

/// What apply() did, for undo().
struct applied {
  std::string device;
  unsigned ifindex = 0;
  std::vector<step> done;
  std::optional<std::string> old_src_valid_mark; // set when apply wrote 1
  bool connmark = false;                         // the nftables table of connmark.hpp was added
};

/// True when some interface's effective IPv4 rp_filter (the larger of "all"
/// and its own, "default" for those to come) is 1, strict.
bool rp_filter_strict(const std::string& proc_sys = "/proc/sys");

/// Applies `p`; on a failed step undoes what was done and returns the
/// step's error. `before_sysctl` runs with the old src_valid_mark value
/// before it is overwritten, so a record of it survives a kill.
expected<applied> apply(rtnl& nl, const plan& p, const std::string& proc_sys = "/proc/sys",
                        const std::function<void(const std::string&)>& before_sysctl = {});

/// Reverses `a` (last step first): deletes its routes, rules and addresses
/// (entries already gone are fine), restores src_valid_mark. MTU and "up"
/// are left: the device goes away with its descriptor. Returns the errors,
/// empty when everything was removed; `a.done` is emptied.
std::vector<std::string> undo(rtnl& nl, applied& a, const std::string& proc_sys = "/proc/sys");

/// Reads/writes one /proc/sys file ("net/ipv4/conf/all/src_valid_mark").
std::optional<std::string> read_sysctl(const std::string& proc_sys, const std::string& key);
expected<bool> write_sysctl(const std::string& proc_sys, const std::string& key, const std::string& value);

inline constexpr const char* k_src_valid_mark = "net/ipv4/conf/all/src_valid_mark";

} // namespace warren::tun
