// The TUN packet parser: IPv4 and IPv6 packets as a TUN (IFF_TUN|IFF_NO_PI)
// hands them over, with TCP, UDP, ICMP or ICMPv6 inside, read into a view of
// offsets and values; pure, no Asio (fuzzed by tests/fuzz/fuzz_tun_packet.cpp).
//
// Design choice: the view never owns or copies the packet. It records where
// the L3 header, the L4 header and the payload start in the caller's buffer,
// and the few fields the engine decides on (addresses, ports, TCP flags and
// numbers, ICMP type/code/id/seq), so rewrite.hpp can patch the buffer in
// place and the engine writes the same buffer back. Everything the engine
// cannot forward faithfully by rewriting addresses is refused with a reason
// the engine counts (docs/TUN.md, "Packets"): IPv4 options and IPv6
// extension headers other than hop-by-hop, routing (segments left 0) and
// destination options, because they would have to be re-validated and can
// carry the real destination (a source route); fragments (IPv4 MF or offset,
// any IPv6 fragment header), because only the first carries the L4 header
// and the kernel's own stack behind the TUN reassembles before it sends,
// so they come only from hostile or unusual senders. Checksums are verified
// only when asked and only where the field holds a finished checksum (not
// NEEDS_CSUM, not DATA_VALID): verification is the one O(payload) step.
#pragma once

#include "tun/checksum.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace warren::tun {

inline constexpr std::uint8_t k_proto_icmp = 1;
inline constexpr std::uint8_t k_proto_tcp = 6;
inline constexpr std::uint8_t k_proto_udp = 17;
inline constexpr std::uint8_t k_proto_icmpv6 = 58;

inline constexpr std::size_t k_ipv4_header_size = 20;
inline constexpr std::size_t k_ipv6_header_size = 40;
inline constexpr std::size_t k_tcp_header_size = 20;
inline constexpr std::size_t k_udp_header_size = 8;
inline constexpr std::size_t k_icmp_header_size = 8; // type, code, checksum, and 4 bytes (echo: id, seq)
/// IPv6 extension headers walked before giving up (hop-by-hop, routing, destination options).
inline constexpr int k_max_ipv6_extensions = 4;

inline constexpr std::uint8_t k_tcp_fin = 0x01;
inline constexpr std::uint8_t k_tcp_syn = 0x02;
inline constexpr std::uint8_t k_tcp_rst = 0x04;
inline constexpr std::uint8_t k_tcp_psh = 0x08;
inline constexpr std::uint8_t k_tcp_ack = 0x10;

inline constexpr std::uint8_t k_icmp4_echo_reply = 0;
inline constexpr std::uint8_t k_icmp4_unreachable = 3;
inline constexpr std::uint8_t k_icmp4_echo_request = 8;
inline constexpr std::uint8_t k_icmp6_unreachable = 1;
inline constexpr std::uint8_t k_icmp6_echo_request = 128;
inline constexpr std::uint8_t k_icmp6_echo_reply = 129;

/// An IPv4 (size 4) or IPv6 (size 16) address in network order. Bytes past
/// `size` are zero, so == compares addresses.
struct ip_address {
  std::array<std::uint8_t, 16> bytes{};
  std::uint8_t size = 4;

  static ip_address v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) noexcept;
  /// From 4 or 16 bytes in network order; any other size gives 0.0.0.0.
  static ip_address from(std::span<const std::uint8_t> raw) noexcept;
  bool is_v4() const noexcept { return size == 4; }
  std::span<const std::uint8_t> view() const noexcept { return {bytes.data(), size}; }
  friend bool operator==(const ip_address&, const ip_address&) = default;
};

/// Why parse() refused a packet; one counter each (k_reject_reason_count).
enum class reject_reason : std::uint8_t {
  truncated,         ///< the buffer ends before a header or before the IP length says
  bad_version,       ///< the version nibble is neither 4 nor 6
  bad_header_length, ///< IPv4 IHL below 5
  bad_total_length,  ///< IPv4 total length below the header
  ipv4_options,      ///< IHL above 5: dropped, options are not forwarded
  fragment,          ///< IPv4 MF or offset, or an IPv6 fragment header: dropped, not reassembled
  ipv6_extension,    ///< an IPv6 extension header other than HBH/routing(segments left 0)/dest-opts, or too many
  bad_l4_header,     ///< TCP data offset out of range, UDP length not the IP payload's
  bad_checksum,      ///< IPv4 header or L4 checksum wrong (when asked), or IPv6 UDP with checksum 0
  unknown_protocol,  ///< not TCP, UDP, ICMP (IPv4) or ICMPv6 (IPv6)
};
inline constexpr std::size_t k_reject_reason_count = 10;
/// "truncated", "fragment", ... (a metrics label).
std::string_view to_string(reject_reason reason) noexcept;

/// A parsed packet: offsets into the caller's buffer (which the view does
/// not keep) and copies of the fields the engine decides on. Offsets are from
/// the start of the IP header; bytes from `size` on are not part of it.
struct packet_view {
  std::uint8_t version = 4;       ///< 4 or 6
  std::uint8_t protocol = 0;      ///< the L4 protocol (after IPv6 extension headers)
  std::uint8_t ttl = 0;           ///< IPv4 TTL or IPv6 hop limit
  std::size_t size = 0;           ///< the IP packet's length (IPv4 total length, or 40 + IPv6 payload length)
  std::size_t l4_offset = 0;      ///< the L4 header
  std::size_t payload_offset = 0; ///< the L4 payload (after TCP options, the UDP header, ICMP's 8 bytes)
  std::size_t csum_offset = 0;    ///< the L4 checksum field
  ip_address src, dst;
  std::uint16_t src_port = 0, dst_port = 0;  ///< TCP and UDP
  std::uint32_t seq = 0, ack = 0;            ///< TCP
  std::uint8_t tcp_flags = 0;                ///< TCP: FIN, SYN, RST, PSH, ACK, URG, ECE, CWR
  std::uint8_t icmp_type = 0, icmp_code = 0; ///< ICMP and ICMPv6
  std::uint16_t icmp_id = 0, icmp_seq = 0;   ///< echo request/reply only

  bool is_v4() const noexcept { return version == 4; }
  bool has_ports() const noexcept { return protocol == k_proto_tcp || protocol == k_proto_udp; }
  std::size_t l4_size() const noexcept { return size - l4_offset; }
  std::size_t payload_size() const noexcept { return size - payload_offset; }
  bool is_echo_request() const noexcept;
};

struct parse_options {
  bool verify_checksums = false;    ///< IPv4 header and (in form `full`) the L4 checksum
  csum_form form = csum_form::full; ///< from the vnet header's flags
};

/// parse()'s answer: a view, or the reason the packet is dropped.
class parse_result {
 public:
  parse_result(const packet_view& view) noexcept : view_(view), ok_(true) {} // NOLINT(google-explicit-constructor)
  parse_result(reject_reason reason) noexcept : reason_(reason) {}           // NOLINT(google-explicit-constructor)
  explicit operator bool() const noexcept { return ok_; }
  const packet_view& view() const noexcept { return view_; }
  const packet_view* operator->() const noexcept { return &view_; }
  reject_reason reason() const noexcept { return reason_; }

 private:
  packet_view view_{};
  reject_reason reason_ = reject_reason::truncated;
  bool ok_ = false;
};

/// Parses the IP packet at the start of `packet` (no vnet header, no packet
/// information prefix). Bytes past the IP length are ignored.
parse_result parse(std::span<const std::uint8_t> packet, const parse_options& options = {}) noexcept;

} // namespace warren::tun
