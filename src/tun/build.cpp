// Packets the engine writes: see build.hpp. Each builder writes the IP
// header with write_ip_header(), then its L4 part, then the L4 checksum over
// what it wrote.
#include "tun/build.hpp"

#include <algorithm>
#include <cstring>

namespace warren::tun {
namespace {

std::size_t ip_header_size(bool v4) noexcept {
  return v4 ? k_ipv4_header_size : k_ipv6_header_size;
}

// An IP header for `l4_size` bytes of `protocol`. IPv4: DF, ID 0, checksum
// finished; IPv6: traffic class and flow label 0.
void write_ip_header(std::uint8_t* p, const ip_address& src, const ip_address& dst, std::uint8_t protocol,
                     std::size_t l4_size) noexcept {
  if (src.is_v4()) {
    std::memset(p, 0, k_ipv4_header_size);
    p[0] = 0x45;
    store16(p + 2, static_cast<std::uint16_t>(k_ipv4_header_size + l4_size));
    store16(p + 6, 0x4000); // DF
    p[8] = k_default_ttl;
    p[9] = protocol;
    std::copy_n(src.bytes.data(), 4, p + 12);
    std::copy_n(dst.bytes.data(), 4, p + 16);
    store16(p + 10, ipv4_header_checksum({p, k_ipv4_header_size}));
    return;
  }
  std::memset(p, 0, k_ipv6_header_size);
  p[0] = 0x60;
  store16(p + 4, static_cast<std::uint16_t>(l4_size));
  p[6] = protocol;
  p[7] = k_default_ttl;
  std::copy_n(src.bytes.data(), 16, p + 8);
  std::copy_n(dst.bytes.data(), 16, p + 24);
}

// The finished ICMP or ICMPv6 checksum of the message at `l4`.
void finish_icmp(std::uint8_t* l4, std::size_t size, const ip_address& src, const ip_address& dst) noexcept {
  store16(l4 + 2, 0);
  const std::span<const std::uint8_t> message(l4, size);
  store16(l4 + 2, src.is_v4() ? icmp4_checksum(message) : l4_checksum(src, dst, k_proto_icmpv6, message, 2));
}

bool is_icmp_error(const packet_view& v) noexcept {
  if (v.protocol == k_proto_icmp)
    return v.icmp_type != k_icmp4_echo_reply && v.icmp_type != k_icmp4_echo_request && v.icmp_type != 13 &&
           v.icmp_type != 14; // echo and timestamp are queries
  if (v.protocol == k_proto_icmpv6)
    return v.icmp_type < 128; // RFC 4443 §2.1: types 0-127 are errors
  return false;
}

} // namespace

std::size_t build_tcp_rst(std::span<std::uint8_t> out, const packet_view& syn) noexcept {
  if (syn.protocol != k_proto_tcp || (syn.tcp_flags & (k_tcp_syn | k_tcp_rst | k_tcp_ack)) != k_tcp_syn)
    return 0;
  const std::size_t ip_size = ip_header_size(syn.is_v4());
  const std::size_t total = ip_size + k_tcp_header_size;
  if (out.size() < total)
    return 0;
  std::uint8_t* p = out.data();
  write_ip_header(p, syn.dst, syn.src, k_proto_tcp, k_tcp_header_size);
  std::uint8_t* t = p + ip_size;
  std::memset(t, 0, k_tcp_header_size);
  store16(t, syn.dst_port);
  store16(t + 2, syn.src_port);
  // SYN and FIN each take a sequence number; so does every byte of data.
  const auto consumed = static_cast<std::uint32_t>(1 + ((syn.tcp_flags & k_tcp_fin) ? 1 : 0) + syn.payload_size());
  store32(t + 8, syn.seq + consumed);
  t[12] = 5 << 4;
  t[13] = k_tcp_rst | k_tcp_ack;
  store16(t + 16, l4_checksum(syn.dst, syn.src, k_proto_tcp, {t, k_tcp_header_size}, 16));
  return total;
}

std::size_t build_icmp_unreachable(std::span<std::uint8_t> out, std::span<const std::uint8_t> original,
                                   const packet_view& view, std::uint8_t code) noexcept {
  if (is_icmp_error(view) || original.size() < view.size)
    return 0;
  const bool v4 = view.is_v4();
  const std::size_t ip_size = ip_header_size(v4);
  const std::size_t limit = std::min(out.size(), v4 ? k_icmp4_error_max : k_icmp6_error_max);
  const std::size_t head = ip_size + k_icmp_header_size;
  // At least the original's IP header and the first 8 bytes after it (RFC
  // 792's "64 bits": the ports), or the sender cannot match it to a socket.
  if (limit < head + ip_size + 8)
    return 0;
  const std::size_t quote = std::min(view.size, limit - head);
  const std::size_t l4_size = k_icmp_header_size + quote;
  std::uint8_t* p = out.data();
  write_ip_header(p, view.dst, view.src, v4 ? k_proto_icmp : k_proto_icmpv6, l4_size);
  std::uint8_t* m = p + ip_size;
  std::memset(m, 0, k_icmp_header_size); // type, code, checksum, unused (ICMPv4 next-hop MTU 0)
  m[0] = v4 ? k_icmp4_unreachable : k_icmp6_unreachable;
  m[1] = code;
  std::memcpy(m + k_icmp_header_size, original.data(), quote);
  finish_icmp(m, l4_size, view.dst, view.src);
  return ip_size + l4_size;
}

std::size_t build_echo_reply(std::span<std::uint8_t> out, std::span<const std::uint8_t> request,
                             const packet_view& view) noexcept {
  if (!view.is_echo_request() || request.size() < view.size)
    return 0;
  const std::size_t ip_size = ip_header_size(view.is_v4());
  const std::size_t l4_size = view.l4_size();
  if (out.size() < ip_size + l4_size)
    return 0;
  std::uint8_t* p = out.data();
  write_ip_header(p, view.dst, view.src, view.protocol, l4_size);
  std::uint8_t* m = p + ip_size;
  std::memcpy(m, request.data() + view.l4_offset, l4_size);
  m[0] = view.is_v4() ? k_icmp4_echo_reply : k_icmp6_echo_reply;
  m[1] = 0;
  finish_icmp(m, l4_size, view.dst, view.src);
  return ip_size + l4_size;
}

std::size_t udp_header_size(const ip_address& family) noexcept {
  return ip_header_size(family.is_v4()) + k_udp_header_size;
}

std::size_t build_udp(std::span<std::uint8_t> out, const ip_address& src, std::uint16_t src_port, const ip_address& dst,
                      std::uint16_t dst_port, std::span<const std::uint8_t> payload) noexcept {
  if (src.size != dst.size)
    return 0;
  const std::size_t head = udp_header_size(src);
  const std::size_t l4_size = k_udp_header_size + payload.size();
  const std::size_t total = head + payload.size();
  if ((src.is_v4() ? total : l4_size) > 0xffff || out.size() < total)
    return 0;
  std::uint8_t* p = out.data();
  if (payload.data() != p + head && !payload.empty())
    std::memmove(p + head, payload.data(), payload.size());
  write_ip_header(p, src, dst, k_proto_udp, l4_size);
  std::uint8_t* u = p + ip_header_size(src.is_v4());
  store16(u, src_port);
  store16(u + 2, dst_port);
  store16(u + 4, static_cast<std::uint16_t>(l4_size));
  store16(u + 6, 0);
  std::uint16_t c = l4_checksum(src, dst, k_proto_udp, {u, l4_size}, 6);
  store16(u + 6, c == 0 ? 0xffff : c);
  return total;
}

} // namespace warren::tun
