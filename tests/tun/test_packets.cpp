// Crafted packets and from-scratch checksums: see test_packets.hpp.
#include "test_packets.hpp"

#include <algorithm>

namespace warren::tun::test {
namespace {

std::uint32_t ref_sum(const bytes& data) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < data.size(); ++i)
    sum += (i % 2 == 0) ? std::uint32_t{data[i]} * 256 : data[i];
  while (sum > 0xffff)
    sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

void append(bytes& out, const bytes& more) {
  out.insert(out.end(), more.begin(), more.end());
}

ip_address address_at(const bytes& p, bool src) {
  if ((p[0] >> 4) == 4)
    return ip_address::from({p.data() + (src ? 12 : 16), 4});
  return ip_address::from({p.data() + (src ? 8 : 24), 16});
}

// The L4 protocol of a packet built here: the IPv4 protocol, or the last next-header.
std::uint8_t protocol_of(const bytes& p) {
  if ((p[0] >> 4) == 4)
    return p[9];
  std::uint8_t next = p[6];
  std::size_t off = 40;
  while (next == 0 || next == 43 || next == 60) {
    next = p[off];
    off += (std::size_t{p[off + 1]} + 1) * 8;
  }
  return next;
}

} // namespace

ip_address v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  const bytes raw{a, b, c, d};
  return ip_address::from(raw);
}

ip_address v6(std::uint16_t last, std::uint16_t first) {
  bytes raw(16, 0);
  raw[0] = static_cast<std::uint8_t>(first >> 8);
  raw[1] = static_cast<std::uint8_t>(first);
  raw[2] = 0x0d;
  raw[3] = 0xb8;
  raw[14] = static_cast<std::uint8_t>(last >> 8);
  raw[15] = static_cast<std::uint8_t>(last);
  return ip_address::from(raw);
}

std::uint16_t ref_checksum(const bytes& data) {
  return static_cast<std::uint16_t>(~ref_sum(data));
}

bytes ref_pseudo_header(const ip_address& src, const ip_address& dst, std::uint8_t protocol, std::uint32_t length) {
  bytes out(src.bytes.begin(), src.bytes.begin() + src.size);
  out.insert(out.end(), dst.bytes.begin(), dst.bytes.begin() + dst.size);
  if (src.size == 4) {
    append(out, {0, protocol, static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length)});
  } else {
    append(out, {static_cast<std::uint8_t>(length >> 24), static_cast<std::uint8_t>(length >> 16),
                 static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length), 0, 0, 0, protocol});
  }
  return out;
}

std::size_t l4_offset_of(const bytes& p) {
  if ((p[0] >> 4) == 4)
    return std::size_t{p[0] & 0x0fu} * 4;
  std::uint8_t next = p[6];
  std::size_t off = 40;
  while (next == 0 || next == 43 || next == 60) {
    next = p[off];
    off += (std::size_t{p[off + 1]} + 1) * 8;
  }
  return off;
}

std::size_t csum_field_of(const bytes& p) {
  const std::uint8_t proto = protocol_of(p);
  return l4_offset_of(p) + (proto == 6 ? 16 : proto == 17 ? 6 : 2);
}

std::uint16_t ref_l4_checksum(const bytes& packet, std::size_t l4_offset, std::size_t csum_offset) {
  bytes segment(packet.begin() + static_cast<std::ptrdiff_t>(l4_offset), packet.end());
  segment[csum_offset - l4_offset] = 0;
  segment[csum_offset - l4_offset + 1] = 0;
  const std::uint8_t proto = protocol_of(packet);
  if (proto == 1)
    return ref_checksum(segment);
  bytes all = ref_pseudo_header(address_at(packet, true), address_at(packet, false), proto,
                                static_cast<std::uint32_t>(segment.size()));
  append(all, segment);
  return ref_checksum(all);
}

std::uint16_t ref_ipv4_checksum(const bytes& packet) {
  bytes header(packet.begin(), packet.begin() + (packet[0] & 0x0f) * 4);
  header[10] = header[11] = 0;
  return ref_checksum(header);
}

std::uint16_t ref_finish_partial(const bytes& packet, std::size_t csum_start) {
  return ref_checksum(bytes(packet.begin() + static_cast<std::ptrdiff_t>(csum_start), packet.end()));
}

std::uint16_t ref_partial_seed(const bytes& packet, std::size_t l4_offset) {
  const auto length = static_cast<std::uint32_t>(packet.size() - l4_offset);
  return static_cast<std::uint16_t>(
      ref_sum(ref_pseudo_header(address_at(packet, true), address_at(packet, false), protocol_of(packet), length)));
}

std::uint16_t get16(const bytes& b, std::size_t at) {
  return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]);
}

void put16(bytes& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}

bytes tcp_segment(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq, std::uint32_t ack, std::uint8_t flags,
                  const bytes& payload, std::size_t option_bytes) {
  bytes t(20 + option_bytes, 0);
  put16(t, 0, sport);
  put16(t, 2, dport);
  put16(t, 4, static_cast<std::uint16_t>(seq >> 16));
  put16(t, 6, static_cast<std::uint16_t>(seq));
  put16(t, 8, static_cast<std::uint16_t>(ack >> 16));
  put16(t, 10, static_cast<std::uint16_t>(ack));
  t[12] = static_cast<std::uint8_t>(((20 + option_bytes) / 4) << 4);
  t[13] = flags;
  put16(t, 14, 65535);
  for (std::size_t i = 20; i < t.size(); ++i)
    t[i] = 1; // NOP options
  append(t, payload);
  return t;
}

bytes udp_datagram(std::uint16_t sport, std::uint16_t dport, const bytes& payload) {
  bytes u(8, 0);
  put16(u, 0, sport);
  put16(u, 2, dport);
  put16(u, 4, static_cast<std::uint16_t>(8 + payload.size()));
  append(u, payload);
  return u;
}

bytes icmp_message(std::uint8_t type, std::uint8_t code, std::uint16_t id, std::uint16_t seq, const bytes& data) {
  bytes m{type, code, 0, 0, 0, 0, 0, 0};
  put16(m, 4, id);
  put16(m, 6, seq);
  append(m, data);
  return m;
}

void refinish_l4(bytes& p) {
  const std::size_t field = csum_field_of(p);
  std::uint16_t c = ref_l4_checksum(p, l4_offset_of(p), field);
  if (protocol_of(p) == 17 && c == 0)
    c = 0xffff;
  put16(p, field, c);
}

void make_partial(bytes& p) {
  put16(p, csum_field_of(p), ref_partial_seed(p, l4_offset_of(p)));
}

bytes ipv4_packet(const ip_address& src, const ip_address& dst, std::uint8_t protocol, const bytes& l4,
                  bool finish_l4) {
  bytes p(20, 0);
  p[0] = 0x45;
  put16(p, 2, static_cast<std::uint16_t>(20 + l4.size()));
  put16(p, 4, 0x1234);
  put16(p, 6, 0x4000);
  p[8] = 64;
  p[9] = protocol;
  std::copy_n(src.bytes.begin(), 4, p.begin() + 12);
  std::copy_n(dst.bytes.begin(), 4, p.begin() + 16);
  put16(p, 10, ref_ipv4_checksum(p));
  append(p, l4);
  if (finish_l4 && (protocol == 6 || protocol == 17 || protocol == 1))
    refinish_l4(p);
  return p;
}

bytes ipv6_packet(const ip_address& src, const ip_address& dst, std::uint8_t protocol, const bytes& l4,
                  const std::vector<ext_header>& extensions, bool finish_l4) {
  bytes p(40, 0);
  p[0] = 0x60;
  p[6] = extensions.empty() ? protocol : extensions.front().type;
  p[7] = 64;
  std::copy_n(src.bytes.begin(), 16, p.begin() + 8);
  std::copy_n(dst.bytes.begin(), 16, p.begin() + 24);
  for (std::size_t i = 0; i < extensions.size(); ++i) {
    bytes e(extensions[i].length, 0);
    e[0] = i + 1 < extensions.size() ? extensions[i + 1].type : protocol;
    e[1] = static_cast<std::uint8_t>(extensions[i].length / 8 - 1);
    if (extensions[i].type == 43)
      e[3] = extensions[i].segments_left;
    else
      e[2] = 1; // PadN; its length (e[3]) does not matter to the parser
    append(p, e);
  }
  append(p, l4);
  put16(p, 4, static_cast<std::uint16_t>(p.size() - 40));
  if (finish_l4 && (protocol == 6 || protocol == 17 || protocol == 58))
    refinish_l4(p);
  return p;
}

} // namespace warren::tun::test
