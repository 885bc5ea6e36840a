// Crafted packets for the tun codec's tests, and checksums computed from
// scratch: every sum here is written out independently of src/tun/checksum.*
// (a byte-wise RFC 1071 loop over an explicitly built pseudo-header), so a
// bug in the code under test cannot hide in the reference.
#pragma once

#include "tun/packet.hpp"

#include <cstdint>
#include <vector>

namespace warren::tun::test {

using bytes = std::vector<std::uint8_t>;

ip_address v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d);
/// 2001:db8::<last> (tests need only a few distinct addresses).
ip_address v6(std::uint16_t last, std::uint16_t first = 0x2001);

/// RFC 1071 from scratch: ~(ones-complement sum of 16-bit big-endian words).
std::uint16_t ref_checksum(const bytes& data);
/// The pseudo-header as bytes (RFC 768/793 for IPv4, RFC 8200 §8.1 for IPv6).
bytes ref_pseudo_header(const ip_address& src, const ip_address& dst, std::uint8_t protocol, std::uint32_t length);
/// The finished L4 checksum of the packet's segment at l4_offset (its checksum
/// field at csum_offset, absolute, counted as zero); ICMPv4 without pseudo-header.
/// Reads the version, addresses and length from the packet itself.
std::uint16_t ref_l4_checksum(const bytes& packet, std::size_t l4_offset, std::size_t csum_offset);
/// The IPv4 header checksum from scratch (field counted as zero).
std::uint16_t ref_ipv4_checksum(const bytes& packet);
/// What the kernel does to a NEEDS_CSUM packet: sum csum_start..end with the
/// field as it is (the seed), fold, complement.
std::uint16_t ref_finish_partial(const bytes& packet, std::size_t csum_start);
/// The PARTIAL seed for the packet as it is: fold(pseudo-header sum), not complemented.
std::uint16_t ref_partial_seed(const bytes& packet, std::size_t l4_offset);

std::uint16_t get16(const bytes& b, std::size_t at);
void put16(bytes& b, std::size_t at, std::uint16_t v);

bytes tcp_segment(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq, std::uint32_t ack, std::uint8_t flags,
                  const bytes& payload = {}, std::size_t option_bytes = 0);
bytes udp_datagram(std::uint16_t sport, std::uint16_t dport, const bytes& payload = {});
bytes icmp_message(std::uint8_t type, std::uint8_t code, std::uint16_t id, std::uint16_t seq, const bytes& data = {});

/// An IPv4 packet around `l4`, header checksum and (unless told not to) the
/// L4 checksum finished from scratch. TTL 64, DF.
bytes ipv4_packet(const ip_address& src, const ip_address& dst, std::uint8_t protocol, const bytes& l4,
                  bool finish_l4 = true);
/// An IPv6 packet around `l4` with optional extension headers (each given as
/// {type, total length in bytes (multiple of 8)}); the L4 checksum finished.
struct ext_header {
  std::uint8_t type;
  std::size_t length;
  std::uint8_t segments_left = 0; // routing headers
};
bytes ipv6_packet(const ip_address& src, const ip_address& dst, std::uint8_t protocol, const bytes& l4,
                  const std::vector<ext_header>& extensions = {}, bool finish_l4 = true);

/// Offsets of the L4 header and its checksum field in a packet built above
/// (no parser involved).
std::size_t l4_offset_of(const bytes& packet);
std::size_t csum_field_of(const bytes& packet);
/// Recomputes (from scratch) the L4 checksum in place. UDP 0 → 0xFFFF.
void refinish_l4(bytes& packet);
/// Replaces the L4 checksum by the PARTIAL seed (what NEEDS_CSUM packets carry).
void make_partial(bytes& packet);

} // namespace warren::tun::test
