// struct virtio_net_hdr, the prefix a TUN opened with IFF_VNET_HDR puts before
// each packet (linux/virtio_net.h), parsed, emitted and checked against the
// packet it describes; pure (fuzzed with the packet parser).
//
// Design choice: the header is trusted only as far as the rewrite needs. A
// NEEDS_CSUM packet must point csum_start/csum_offset exactly at the L4
// checksum field the parser found, because rewrite.hpp adjusts that field as a
// PARTIAL seed; a GSO packet must be TCP (TCPV4 on IPv4, TCPV6 on IPv6) or UDP
// (UDP_L4, "USO"), with a segment size, and NEEDS_CSUM (the kernel finishes
// each segment's checksum from the seed). UFO (VIRTIO_NET_HDR_GSO_UDP, IP
// fragmentation) and unknown flags are refused. The fields are little-endian:
// a TUN uses the host's order unless TUNSETVNETBE/LE says otherwise, and
// warren sets neither, so on x86 and arm64 that is little-endian.
#pragma once

#include "tun/checksum.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace warren::tun {

struct packet_view;

/// sizeof(struct virtio_net_hdr), the TUN's default TUNSETVNETHDRSZ.
inline constexpr std::size_t k_vnet_hdr_size = 10;

inline constexpr std::uint8_t k_vnet_needs_csum = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
inline constexpr std::uint8_t k_vnet_data_valid = 2; // VIRTIO_NET_HDR_F_DATA_VALID

inline constexpr std::uint8_t k_gso_none = 0;   // VIRTIO_NET_HDR_GSO_NONE
inline constexpr std::uint8_t k_gso_tcpv4 = 1;  // VIRTIO_NET_HDR_GSO_TCPV4
inline constexpr std::uint8_t k_gso_udp = 3;    // VIRTIO_NET_HDR_GSO_UDP (UFO: refused)
inline constexpr std::uint8_t k_gso_tcpv6 = 4;  // VIRTIO_NET_HDR_GSO_TCPV6
inline constexpr std::uint8_t k_gso_udp_l4 = 5; // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
inline constexpr std::uint8_t k_gso_ecn = 0x80; // VIRTIO_NET_HDR_GSO_ECN (TCP only)

struct vnet_header {
  std::uint8_t flags = 0;
  std::uint8_t gso_type = k_gso_none;
  std::uint16_t hdr_len = 0;     ///< a hint: the kernel writes its linear length, not always the headers'
  std::uint16_t gso_size = 0;    ///< payload bytes per segment
  std::uint16_t csum_start = 0;  ///< from the start of the IP header
  std::uint16_t csum_offset = 0; ///< of the checksum field, from csum_start

  std::uint8_t gso_kind() const noexcept { return static_cast<std::uint8_t>(gso_type & ~k_gso_ecn); }
  friend bool operator==(const vnet_header&, const vnet_header&) = default;
};

/// Why a vnet header does not fit its packet; one counter each.
enum class vnet_reject : std::uint8_t {
  bad_flags,    ///< flag bits other than NEEDS_CSUM and DATA_VALID
  bad_csum,     ///< NEEDS_CSUM not pointing at the L4 checksum field, or on ICMPv4
  bad_gso,      ///< unknown or UFO gso_type, ECN without TCP, zero gso_size, no NEEDS_CSUM
  gso_mismatch, ///< the gso_type's protocol or family is not the packet's
  bad_hdr_len,  ///< hdr_len beyond the packet
};
inline constexpr std::size_t k_vnet_reject_count = 5;
std::string_view to_string(vnet_reject reason) noexcept;

/// The first k_vnet_hdr_size bytes of `in` (longer headers, TUNSETVNETHDRSZ
/// 12, carry num_buffers after: the caller skips them); nullopt if shorter.
std::optional<vnet_header> parse_vnet_header(std::span<const std::uint8_t> in) noexcept;
/// Writes k_vnet_hdr_size bytes at the start of `out` (which must hold them).
void encode_vnet_header(std::span<std::uint8_t> out, const vnet_header& header) noexcept;
/// How the packet's L4 checksum field is to be read.
csum_form form_of(const vnet_header& header) noexcept;
/// Checks the header against its packet (parsed with form_of(header)).
std::optional<vnet_reject> validate(const vnet_header& header, const packet_view& packet) noexcept;

} // namespace warren::tun
