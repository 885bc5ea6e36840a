// Packets the TUN engine writes on its own: a TCP RST answering a SYN, ICMP
// destination unreachable quoting a packet, an ICMP echo reply, and a UDP
// packet carrying a reply (pure; fuzzed by fuzz_tun_packet).
//
// Design choice: every builder writes one whole IP packet into a buffer the
// caller owns and returns its length (0 when the buffer is too small or the
// input does not qualify), with finished checksums, IPv4 DF set, ID 0, TTL or
// hop limit 64 and no vnet offload (an all-zero vnet header describes it).
// The answer's source is always the original packet's destination, so the
// application sees it come from the peer it addressed. `out` must not overlap
// the original packet, except as build_udp() allows for its payload.
#pragma once

#include "tun/packet.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

namespace warren::tun {

inline constexpr std::uint8_t k_default_ttl = 64;
/// The most an ICMP error may be, quote included (RFC 1812 §4.3.2.3, RFC 4443 §2.4).
inline constexpr std::size_t k_icmp4_error_max = 576;
inline constexpr std::size_t k_icmp6_error_max = 1280;

/// Codes of destination unreachable.
inline constexpr std::uint8_t k_icmp4_net_unreachable = 0;
inline constexpr std::uint8_t k_icmp4_host_unreachable = 1;
inline constexpr std::uint8_t k_icmp4_port_unreachable = 3;
inline constexpr std::uint8_t k_icmp4_admin_prohibited = 13;
inline constexpr std::uint8_t k_icmp6_no_route = 0;
inline constexpr std::uint8_t k_icmp6_admin_prohibited = 1;
inline constexpr std::uint8_t k_icmp6_address_unreachable = 3;
inline constexpr std::uint8_t k_icmp6_port_unreachable = 4;

/// The RST a refused connect answers a SYN with (RFC 9293 §3.10.7.1, as
/// Linux's tcp_v4_send_reset): seq 0, RST|ACK, ack = the SYN's seq + 1 (+
/// its payload, a TFO SYN's data), ports and addresses swapped. 0 unless
/// `syn` is a TCP segment with SYN set and without RST or ACK.
std::size_t build_tcp_rst(std::span<std::uint8_t> out, const packet_view& syn) noexcept;

/// Destination unreachable (ICMPv4 type 3, ICMPv6 type 1) with `code`, from
/// the original's destination to its source, quoting `original` (its IP
/// header onwards) as far as fits in 576 (IPv4) or 1280 (IPv6) bytes.
/// Never answers an ICMP error (RFC 1122 §3.2.2, RFC 4443 §2.4(e)): 0 then.
std::size_t build_icmp_unreachable(std::span<std::uint8_t> out, std::span<const std::uint8_t> original,
                                   const packet_view& view, std::uint8_t code) noexcept;

/// The echo reply (ICMPv4 type 0, ICMPv6 type 129) to an echo request: same
/// id, sequence and data, addresses swapped, checksum recomputed (ICMPv6's
/// with the pseudo-header). 0 unless `view` is an echo request.
std::size_t build_echo_reply(std::span<std::uint8_t> out, std::span<const std::uint8_t> request,
                             const packet_view& view) noexcept;

/// The bytes of IP + UDP header build_udp() writes before the payload.
std::size_t udp_header_size(const ip_address& family) noexcept;
/// A UDP packet from src:src_port to dst:dst_port. The payload may already be
/// in place at out[udp_header_size(src)] (then it is not copied). 0 when the
/// families differ or the packet would exceed 65,535 bytes (IPv4) or payload
/// length (IPv6). The checksum is computed for both families (0 → 0xFFFF).
std::size_t build_udp(std::span<std::uint8_t> out, const ip_address& src, std::uint16_t src_port, const ip_address& dst,
                      std::uint16_t dst_port, std::span<const std::uint8_t> payload) noexcept;

} // namespace warren::tun
