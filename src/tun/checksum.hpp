// Internet checksums for the TUN packet codec (RFC 1071 sums, RFC 1624
// incremental updates), pure functions over bytes.
//
// Design choice: two forms of the L4 checksum field are first-class, because
// a TUN with IFF_VNET_HDR hands over both. FULL is a finished checksum (the
// ones-complement of the folded sum, as on the wire); it is updated by RFC
// 1624 eqn 3, HC' = ~(~HC + ~m + m'). PARTIAL is what Linux leaves in the
// field of a packet marked VIRTIO_NET_HDR_F_NEEDS_CSUM: the folded pseudo-
// header sum, NOT complemented; whoever finishes it sums csum_start..end with
// that field as the seed and stores the complement. An address change adds
// ~m + m' to that seed (no complements around it, as the kernel's
// inet_proto_csum_replace4 does for CHECKSUM_PARTIAL), and a port change does
// not touch it: ports are summed when the checksum is finished, not in the
// pseudo-header. Updates cost O(changed words), never O(payload): a GSO
// segment is up to 64 KiB and is rewritten once per segment, so re-summing it
// would cost as much as copying it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace warren::tun {

struct ip_address;

/// How the L4 checksum field of a packet is to be read (from the vnet header's
/// flags; a TUN without IFF_VNET_HDR always gives `full`).
enum class csum_form : std::uint8_t {
  full,     ///< a finished checksum; parse verifies it when asked
  verified, ///< VIRTIO_NET_HDR_F_DATA_VALID: a finished checksum the kernel vouches for (never re-verified)
  partial,  ///< VIRTIO_NET_HDR_F_NEEDS_CSUM: the field holds the folded, non-complemented pseudo-header sum
};

/// A running ones-complement sum, wide enough that no carry is lost before fold().
using csum_acc = std::uint64_t;

/// Adds `data` as big-endian 16-bit words to `seed`; an odd last byte is
/// padded with a zero (so only the last chunk of a sum may be odd-sized).
csum_acc ones_sum(std::span<const std::uint8_t> data, csum_acc seed = 0) noexcept;
/// Folds the carries back in: the 16-bit ones-complement sum (not complemented).
/// A non-zero sum never folds to 0.
std::uint16_t fold(csum_acc sum) noexcept;

/// The header checksum of an IPv4 header (the checksum field, bytes 10-11, is
/// skipped, so it may hold anything).
std::uint16_t ipv4_header_checksum(std::span<const std::uint8_t> header) noexcept;

/// The TCP/UDP/ICMPv6 pseudo-header (RFC 793 / RFC 768 for IPv4, RFC 8200
/// §8.1 for IPv6) summed: addresses, protocol, L4 length.
csum_acc pseudo_header_sum(const ip_address& src, const ip_address& dst, std::uint8_t protocol,
                           std::uint32_t l4_length) noexcept;
/// What a PARTIAL field holds before the L4 bytes are summed: fold(pseudo_header_sum).
std::uint16_t partial_seed(const ip_address& src, const ip_address& dst, std::uint8_t protocol,
                           std::uint32_t l4_length) noexcept;

/// A finished checksum of `segment` (the L4 header and payload) with the
/// pseudo-header; the 2 bytes at `csum_offset` (relative to the segment) are
/// skipped. For UDP the caller maps a result of 0 to 0xFFFF (RFC 768).
std::uint16_t l4_checksum(const ip_address& src, const ip_address& dst, std::uint8_t protocol,
                          std::span<const std::uint8_t> segment, std::size_t csum_offset) noexcept;
/// A finished ICMPv4 checksum (no pseudo-header); the field at bytes 2-3 is skipped.
std::uint16_t icmp4_checksum(std::span<const std::uint8_t> message) noexcept;

/// Σ(~m + m') over the 16-bit words of `before` and `after` (equal, even
/// sizes): the difference a replacement makes to any sum that covers it.
csum_acc replace_sum(std::span<const std::uint8_t> before, std::span<const std::uint8_t> after) noexcept;
/// The same for one 16-bit word.
csum_acc replace_sum16(std::uint16_t before, std::uint16_t after) noexcept;

/// RFC 1624 eqn 3 on a FULL checksum: ~(~HC + diff).
std::uint16_t update_full(std::uint16_t checksum, csum_acc diff) noexcept;
/// The PARTIAL counterpart: the seed plus the difference, folded, not complemented.
std::uint16_t update_partial(std::uint16_t seed, csum_acc diff) noexcept;

/// Big-endian loads and stores used across the codec.
inline std::uint16_t load16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t load32(const std::uint8_t* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}
inline void store16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
inline void store32(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}

} // namespace warren::tun
