// The TUN packet parser: see packet.hpp. One pass: the IP header, the IPv6
// extension chain (bounded), the L4 header; each check refuses with the
// reason the engine counts, and nothing after the L4 header is read unless a
// checksum is to be verified.
#include "tun/packet.hpp"

#include <algorithm>

namespace warren::tun {
namespace {

constexpr std::uint8_t k_ext_hop_by_hop = 0;
constexpr std::uint8_t k_ext_routing = 43;
constexpr std::uint8_t k_ext_fragment = 44;
constexpr std::uint8_t k_ext_dest_options = 60;

// IPv6 extension headers: walks HBH (first only), routing and destination
// options; sets view.protocol and view.l4_offset, or says why not.
bool walk_ipv6_extensions(std::span<const std::uint8_t> p, packet_view& v, reject_reason& why) noexcept {
  std::uint8_t next = p[6];
  std::size_t off = k_ipv6_header_size;
  for (int n = 0;; ++n) {
    if (next == k_ext_fragment) {
      why = reject_reason::fragment;
      return false;
    }
    const bool walkable = (next == k_ext_hop_by_hop && n == 0) || next == k_ext_routing || next == k_ext_dest_options;
    if (!walkable)
      break;
    if (n == k_max_ipv6_extensions) {
      why = reject_reason::ipv6_extension;
      return false;
    }
    if (v.size - off < 8) {
      why = reject_reason::truncated;
      return false;
    }
    const std::size_t len = (std::size_t{p[off + 1]} + 1) * 8;
    if (v.size - off < len) {
      why = reject_reason::truncated;
      return false;
    }
    // A routing header with segments left names an intermediate hop as the
    // destination; the final one (which the L4 checksum covers) is inside it.
    if (next == k_ext_routing && p[off + 3] != 0) {
      why = reject_reason::ipv6_extension;
      return false;
    }
    next = p[off];
    off += len;
  }
  // Hop-by-hop anywhere but first, other extension headers (AH, mobility, HIP, shim6, experimental) are not
  // forwarded; anything else is an upper-layer protocol, known or not.
  switch (next) {
  case k_ext_hop_by_hop:
  case 51:
  case 135:
  case 139:
  case 140:
  case 253:
  case 254:
    why = reject_reason::ipv6_extension;
    return false;
  default:
    break;
  }
  v.protocol = next;
  v.l4_offset = off;
  return true;
}

bool parse_ip(std::span<const std::uint8_t> p, packet_view& v, const parse_options& o, reject_reason& why) noexcept {
  if (p.empty()) {
    why = reject_reason::truncated;
    return false;
  }
  v.version = p[0] >> 4;
  if (v.version == 4) {
    if (p.size() < k_ipv4_header_size) {
      why = reject_reason::truncated;
      return false;
    }
    const std::size_t ihl = std::size_t{p[0] & 0x0fu} * 4;
    if (ihl < k_ipv4_header_size) {
      why = reject_reason::bad_header_length;
      return false;
    }
    const std::size_t total = load16(&p[2]);
    if (total < ihl) {
      why = reject_reason::bad_total_length;
      return false;
    }
    if (total > p.size()) {
      why = reject_reason::truncated;
      return false;
    }
    if (ihl > k_ipv4_header_size) {
      why = reject_reason::ipv4_options;
      return false;
    }
    if ((load16(&p[6]) & 0x3fff) != 0) { // MF, or a fragment offset
      why = reject_reason::fragment;
      return false;
    }
    if (o.verify_checksums && fold(ones_sum(p.first(ihl))) != 0xffff) { // RFC 1071: the sum with the field is -0
      why = reject_reason::bad_checksum;
      return false;
    }
    v.size = total;
    v.ttl = p[8];
    v.protocol = p[9];
    v.src = ip_address::from(p.subspan(12, 4));
    v.dst = ip_address::from(p.subspan(16, 4));
    v.l4_offset = ihl;
    return true;
  }
  if (v.version == 6) {
    if (p.size() < k_ipv6_header_size) {
      why = reject_reason::truncated;
      return false;
    }
    v.size = k_ipv6_header_size + load16(&p[4]);
    if (v.size > p.size()) {
      why = reject_reason::truncated;
      return false;
    }
    v.ttl = p[7];
    v.src = ip_address::from(p.subspan(8, 16));
    v.dst = ip_address::from(p.subspan(24, 16));
    return walk_ipv6_extensions(p, v, why);
  }
  why = reject_reason::bad_version;
  return false;
}

bool parse_l4(std::span<const std::uint8_t> p, packet_view& v, reject_reason& why) noexcept {
  const std::size_t avail = v.size - v.l4_offset;
  const std::uint8_t* h = p.data() + v.l4_offset;
  switch (v.protocol) {
  case k_proto_tcp: {
    if (avail < k_tcp_header_size) {
      why = reject_reason::truncated;
      return false;
    }
    const std::size_t doff = static_cast<std::size_t>(h[12] >> 4) * 4;
    if (doff < k_tcp_header_size || doff > avail) {
      why = reject_reason::bad_l4_header;
      return false;
    }
    v.src_port = load16(h);
    v.dst_port = load16(h + 2);
    v.seq = load32(h + 4);
    v.ack = load32(h + 8);
    v.tcp_flags = h[13];
    v.payload_offset = v.l4_offset + doff;
    v.csum_offset = v.l4_offset + 16;
    return true;
  }
  case k_proto_udp: {
    if (avail < k_udp_header_size) {
      why = reject_reason::truncated;
      return false;
    }
    if (load16(h + 4) != avail) {
      why = reject_reason::bad_l4_header;
      return false;
    }
    v.src_port = load16(h);
    v.dst_port = load16(h + 2);
    v.payload_offset = v.l4_offset + k_udp_header_size;
    v.csum_offset = v.l4_offset + 6;
    return true;
  }
  case k_proto_icmp:
  case k_proto_icmpv6: {
    if ((v.protocol == k_proto_icmp) != v.is_v4()) {
      why = reject_reason::unknown_protocol;
      return false;
    }
    if (avail < k_icmp_header_size) {
      why = reject_reason::truncated;
      return false;
    }
    v.icmp_type = h[0];
    v.icmp_code = h[1];
    if (v.is_echo_request() || v.icmp_type == (v.is_v4() ? k_icmp4_echo_reply : k_icmp6_echo_reply)) {
      v.icmp_id = load16(h + 4);
      v.icmp_seq = load16(h + 6);
    }
    v.payload_offset = v.l4_offset + k_icmp_header_size;
    v.csum_offset = v.l4_offset + 2;
    return true;
  }
  default:
    why = reject_reason::unknown_protocol;
    return false;
  }
}

// The L4 checksum over the whole segment (O(payload): only when asked).
bool l4_checksum_ok(std::span<const std::uint8_t> p, const packet_view& v) noexcept {
  const auto segment = p.subspan(v.l4_offset, v.l4_size());
  csum_acc sum = ones_sum(segment);
  if (v.protocol != k_proto_icmp)
    sum += pseudo_header_sum(v.src, v.dst, v.protocol, static_cast<std::uint32_t>(segment.size()));
  return fold(sum) == 0xffff;
}

} // namespace

ip_address ip_address::v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) noexcept {
  ip_address r;
  r.bytes[0] = a;
  r.bytes[1] = b;
  r.bytes[2] = c;
  r.bytes[3] = d;
  return r;
}

ip_address ip_address::from(std::span<const std::uint8_t> raw) noexcept {
  ip_address r;
  if (raw.size() == 4 || raw.size() == 16) {
    std::copy(raw.begin(), raw.end(), r.bytes.begin());
    r.size = static_cast<std::uint8_t>(raw.size());
  }
  return r;
}

std::string_view to_string(reject_reason reason) noexcept {
  switch (reason) {
  case reject_reason::truncated:
    return "truncated";
  case reject_reason::bad_version:
    return "bad_version";
  case reject_reason::bad_header_length:
    return "bad_header_length";
  case reject_reason::bad_total_length:
    return "bad_total_length";
  case reject_reason::ipv4_options:
    return "ipv4_options";
  case reject_reason::fragment:
    return "fragment";
  case reject_reason::ipv6_extension:
    return "ipv6_extension";
  case reject_reason::bad_l4_header:
    return "bad_l4_header";
  case reject_reason::bad_checksum:
    return "bad_checksum";
  case reject_reason::unknown_protocol:
    return "unknown_protocol";
  }
  return "unknown";
}

bool packet_view::is_echo_request() const noexcept {
  return (protocol == k_proto_icmp && icmp_type == k_icmp4_echo_request) ||
         (protocol == k_proto_icmpv6 && icmp_type == k_icmp6_echo_request);
}

parse_result parse(std::span<const std::uint8_t> packet, const parse_options& options) noexcept {
  packet_view v;
  reject_reason why = reject_reason::truncated;
  if (!parse_ip(packet, v, options, why) || !parse_l4(packet, v, why))
    return why;
  // RFC 8200 §8.1: a zero UDP checksum is not "none" over IPv6; such
  // packets are discarded. In PARTIAL form the field holds a seed, not a checksum.
  if (v.protocol == k_proto_udp && !v.is_v4() && options.form != csum_form::partial &&
      load16(&packet[v.csum_offset]) == 0)
    return reject_reason::bad_checksum;
  if (options.verify_checksums && options.form == csum_form::full) {
    const bool udp4_none = v.protocol == k_proto_udp && v.is_v4() && load16(&packet[v.csum_offset]) == 0;
    if (!udp4_none && !l4_checksum_ok(packet, v))
      return reject_reason::bad_checksum;
  }
  return v;
}

} // namespace warren::tun
