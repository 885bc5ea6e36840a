// Address and port rewriting in place on a parsed TUN packet: the NAT step of
// the engine's TCP redirect and UDP NAT (pure; fuzzed by fuzz_tun_packet).
//
// Design choice: O(1) per packet, whatever its size. Every checksum is
// updated incrementally from the words that change (RFC 1624 eqn 3, or its
// PARTIAL counterpart, checksum.hpp), never by re-summing the payload: with
// TUN offloads a packet is a GSO segment of up to 64 KiB, and the engine
// rewrites every packet of every connection twice (out and back), so a
// re-sum would cost as much as a copy of the data. Which update applies is
// the packet's csum_form:
//   full/verified  IPv4 header checksum and the L4 checksum per RFC 1624;
//                  a UDP-over-IPv4 checksum of 0 ("none") stays 0, and a
//                  UDP result of 0 is sent as 0xFFFF (RFC 768)
//   partial        the L4 field is a pseudo-header seed: address changes are
//                  added to it uncomplemented, port changes leave it alone
// ICMPv4 has no pseudo-header, so only its IP header checksum changes.
// Families never change: an IPv4 packet gets IPv4 addresses.
#pragma once

#include "tun/checksum.hpp"
#include "tun/packet.hpp"

#include <cstdint>
#include <optional>
#include <span>

namespace warren::tun {

/// What to change; unset fields are kept.
struct rewrite_spec {
  std::optional<ip_address> src, dst;
  std::optional<std::uint16_t> src_port, dst_port;
};

/// Applies `spec` to `packet` (the buffer `view` was parsed from, parsed with
/// `form`) and updates `view` to match. Returns false, changing nothing, when
/// an address's family is not the packet's or ports are asked of ICMP.
bool rewrite(std::span<std::uint8_t> packet, packet_view& view, csum_form form, const rewrite_spec& spec) noexcept;

} // namespace warren::tun
