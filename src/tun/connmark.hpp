// Strict reverse-path filtering and --default-route: the replies to
// warren's own (marked) upstream connections arrive unmarked, so the
// kernel's reverse-path lookup of their source takes the `not fwmark` rule
// to the TUN table and drops them (src_valid_mark alone cannot help: the
// packet has no mark to use). As wg-quick does, an nftables table copies
// the mark into the connection's conntrack mark on the way out and back
// onto its packets on the way in (before the route lookup), so the lookup
// sees the mark and keeps to the main table. Through libnftables, one
// table per device (`warren_DEVICE`), removed on exit and by the leftover
// cleanup of a killed run.
#pragma once
#include "core/expected.hpp"

#include <cstdint>
#include <string>

namespace warren::tun {

/// "warren_wt0" (characters nft does not take in a name become '_').
std::string connmark_table(const std::string& device);

/// Adds (or replaces) the device's table for `mark`.
expected<bool> add_connmark(const std::string& device, std::uint32_t mark);

/// Deletes the device's table; true when there was one, false when not.
expected<bool> delete_connmark(const std::string& device);

} // namespace warren::tun
