// The packet parser on crafted packets: each protocol's fields and offsets,
// IPv6 extension chains, every reject reason, and checksum verification only
// when asked and only for finished checksums.
#include "tun/packet.hpp"

#include "test_packets.hpp"

#include <gtest/gtest.h>

using namespace warren::tun;
using namespace warren::tun::test;

namespace {

const parse_options k_verify{.verify_checksums = true, .form = csum_form::full};

reject_reason reason_of(const bytes& p, const parse_options& o = k_verify) {
  const auto r = parse(p, o);
  EXPECT_FALSE(r) << "parsed";
  return r.reason();
}

bytes tcp4(const bytes& payload = {}) {
  return ipv4_packet(v4(10, 0, 0, 2), v4(1, 2, 3, 4), k_proto_tcp,
                     tcp_segment(40000, 443, 1000, 0, k_tcp_syn, payload, 4));
}

} // namespace

TEST(TunPacket, Ipv4Tcp) {
  const bytes p = tcp4(bytes(10, 'x'));
  const auto r = parse(p, k_verify);
  ASSERT_TRUE(r) << to_string(r.reason());
  EXPECT_EQ(r->version, 4);
  EXPECT_EQ(r->protocol, k_proto_tcp);
  EXPECT_EQ(r->ttl, 64);
  EXPECT_EQ(r->size, p.size());
  EXPECT_EQ(r->l4_offset, 20u);
  EXPECT_EQ(r->payload_offset, 20u + 24u);
  EXPECT_EQ(r->payload_size(), 10u);
  EXPECT_EQ(r->csum_offset, 36u);
  EXPECT_EQ(r->src, v4(10, 0, 0, 2));
  EXPECT_EQ(r->dst, v4(1, 2, 3, 4));
  EXPECT_EQ(r->src_port, 40000);
  EXPECT_EQ(r->dst_port, 443);
  EXPECT_EQ(r->seq, 1000u);
  EXPECT_EQ(r->tcp_flags, k_tcp_syn);
}

TEST(TunPacket, TrailingBytesAfterTheIpLengthAreIgnored) {
  bytes p = tcp4();
  const std::size_t size = p.size();
  p.resize(size + 13, 0xee);
  const auto r = parse(p, k_verify);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->size, size);
}

TEST(TunPacket, Ipv4UdpAndIcmp) {
  const bytes u = ipv4_packet(v4(10, 0, 0, 2), v4(8, 8, 8, 8), k_proto_udp, udp_datagram(5000, 53, bytes(29, 1)));
  auto r = parse(u, k_verify);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->payload_offset, 28u);
  EXPECT_EQ(r->payload_size(), 29u);
  EXPECT_EQ(r->dst_port, 53);
  EXPECT_EQ(r->csum_offset, 26u);

  const bytes e = ipv4_packet(v4(10, 0, 0, 2), v4(9, 9, 9, 9), k_proto_icmp,
                              icmp_message(k_icmp4_echo_request, 0, 0x77, 3, bytes(56, 2)));
  r = parse(e, k_verify);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->is_echo_request());
  EXPECT_EQ(r->icmp_id, 0x77);
  EXPECT_EQ(r->icmp_seq, 3);
  EXPECT_EQ(r->payload_size(), 56u);
  EXPECT_FALSE(r->has_ports());
}

TEST(TunPacket, Ipv4UdpWithoutChecksumIsAccepted) {
  bytes p = ipv4_packet(v4(10, 0, 0, 2), v4(8, 8, 8, 8), k_proto_udp, udp_datagram(5000, 53, bytes(5, 1)));
  put16(p, 26, 0);
  EXPECT_TRUE(parse(p, k_verify));
}

TEST(TunPacket, Ipv6WithExtensionHeaders) {
  const bytes l4 = tcp_segment(1, 2, 3, 4, k_tcp_ack, bytes(100, 9));
  const bytes p = ipv6_packet(v6(1), v6(2), k_proto_tcp, l4, {{0, 8}, {43, 16}, {60, 24}});
  const auto r = parse(p, k_verify);
  ASSERT_TRUE(r) << to_string(r.reason());
  EXPECT_EQ(r->version, 6);
  EXPECT_EQ(r->l4_offset, 40u + 8u + 16u + 24u);
  EXPECT_EQ(r->payload_size(), 100u);
  EXPECT_EQ(r->src, v6(1));
  EXPECT_EQ(r->dst, v6(2));

  const bytes e = ipv6_packet(v6(1), v6(2), k_proto_icmpv6, icmp_message(k_icmp6_echo_request, 0, 9, 10, bytes(8, 1)));
  const auto re = parse(e, k_verify);
  ASSERT_TRUE(re);
  EXPECT_TRUE(re->is_echo_request());
  EXPECT_EQ(re->icmp_seq, 10);
}

TEST(TunPacket, RejectsTruncated) {
  EXPECT_EQ(reason_of({}), reject_reason::truncated);
  EXPECT_EQ(reason_of(bytes(19, 0x45)), reject_reason::truncated);
  bytes p = tcp4();
  EXPECT_EQ(reason_of(bytes(p.begin(), p.end() - 1)), reject_reason::truncated); // total length > buffer
  // The IP length leaves too little for the TCP header.
  bytes short_tcp = ipv4_packet(v4(1, 1, 1, 1), v4(2, 2, 2, 2), k_proto_tcp, bytes(19, 0), false);
  EXPECT_EQ(reason_of(short_tcp), reject_reason::truncated);
  bytes short_udp = ipv4_packet(v4(1, 1, 1, 1), v4(2, 2, 2, 2), k_proto_udp, bytes(7, 0), false);
  EXPECT_EQ(reason_of(short_udp), reject_reason::truncated);
  bytes short_icmp = ipv6_packet(v6(1), v6(2), k_proto_icmpv6, bytes(7, 0), {}, false);
  EXPECT_EQ(reason_of(short_icmp), reject_reason::truncated);
  EXPECT_EQ(reason_of(bytes(39, 0x60)), reject_reason::truncated);
  bytes v6p = ipv6_packet(v6(1), v6(2), k_proto_udp, udp_datagram(1, 2, bytes(4, 0)));
  EXPECT_EQ(reason_of(bytes(v6p.begin(), v6p.end() - 1)), reject_reason::truncated);
  // An extension header running past the payload.
  bytes ext = ipv6_packet(v6(1), v6(2), 59, {}, {{60, 8}}, false);
  ext[41] = 3; // claims 32 bytes
  EXPECT_EQ(reason_of(ext), reject_reason::truncated);
}

TEST(TunPacket, RejectsBadVersionAndLengths) {
  bytes p = tcp4();
  p[0] = 0x55;
  EXPECT_EQ(reason_of(p), reject_reason::bad_version);
  p[0] = 0x44;
  EXPECT_EQ(reason_of(p), reject_reason::bad_header_length);
  p = tcp4();
  put16(p, 2, 19);
  EXPECT_EQ(reason_of(p), reject_reason::bad_total_length);
}

TEST(TunPacket, RejectsIpv4Options) {
  bytes p = tcp4();
  p[0] = 0x46; // 4 bytes of options (the parser stops before reading them)
  EXPECT_EQ(reason_of(p), reject_reason::ipv4_options);
}

TEST(TunPacket, RejectsFragments) {
  bytes p = tcp4();
  put16(p, 6, 0x2000); // MF
  EXPECT_EQ(reason_of(p, {}), reject_reason::fragment);
  put16(p, 6, 0x0010); // offset 128
  EXPECT_EQ(reason_of(p, {}), reject_reason::fragment);
  put16(p, 6, 0x4000); // DF alone is not a fragment
  EXPECT_TRUE(parse(p, {}));
  // An IPv6 fragment header, directly or after hop-by-hop (an atomic fragment too).
  EXPECT_EQ(reason_of(ipv6_packet(v6(1), v6(2), k_proto_udp, udp_datagram(1, 2), {{44, 8}}, false), {}),
            reject_reason::fragment);
  EXPECT_EQ(reason_of(ipv6_packet(v6(1), v6(2), k_proto_udp, udp_datagram(1, 2), {{0, 8}, {44, 8}}, false), {}),
            reject_reason::fragment);
}

TEST(TunPacket, RejectsUnsupportedIpv6Extensions) {
  const bytes udp = udp_datagram(1, 2);
  // A source route with segments left: the header's destination is not the final one.
  EXPECT_EQ(reason_of(ipv6_packet(v6(1), v6(2), k_proto_udp, udp, {{43, 24, 1}}, false), {}),
            reject_reason::ipv6_extension);
  EXPECT_EQ(reason_of(ipv6_packet(v6(1), v6(2), k_proto_udp, udp, {{51, 16}}, false), {}),
            reject_reason::ipv6_extension); // AH
  EXPECT_EQ(reason_of(ipv6_packet(v6(1), v6(2), k_proto_udp, udp, {{60, 8}, {0, 8}}, false), {}),
            reject_reason::ipv6_extension); // hop-by-hop not first
  EXPECT_EQ(
      reason_of(ipv6_packet(v6(1), v6(2), k_proto_udp, udp, {{60, 8}, {60, 8}, {60, 8}, {60, 8}, {60, 8}}, false), {}),
      reject_reason::ipv6_extension); // more than k_max_ipv6_extensions
  EXPECT_TRUE(parse(ipv6_packet(v6(1), v6(2), k_proto_udp, udp, {{60, 8}, {60, 8}, {60, 8}, {60, 8}}), k_verify));
}

TEST(TunPacket, RejectsBadL4Headers) {
  bytes p = tcp4();
  p[32] = 4 << 4; // data offset 16 bytes
  EXPECT_EQ(reason_of(p, {}), reject_reason::bad_l4_header);
  p[32] = 15 << 4; // 60 bytes, more than the segment
  EXPECT_EQ(reason_of(p, {}), reject_reason::bad_l4_header);
  bytes u = ipv4_packet(v4(1, 1, 1, 1), v4(2, 2, 2, 2), k_proto_udp, udp_datagram(1, 2, bytes(10, 0)));
  put16(u, 24, 17); // UDP length short of the IP payload
  EXPECT_EQ(reason_of(u, {}), reject_reason::bad_l4_header);
  put16(u, 24, 19);
  EXPECT_EQ(reason_of(u, {}), reject_reason::bad_l4_header);
}

TEST(TunPacket, RejectsUnknownProtocols) {
  EXPECT_EQ(reason_of(ipv4_packet(v4(1, 1, 1, 1), v4(2, 2, 2, 2), 47, bytes(20, 0))), reject_reason::unknown_protocol);
  EXPECT_EQ(reason_of(ipv4_packet(v4(1, 1, 1, 1), v4(2, 2, 2, 2), k_proto_icmpv6, bytes(8, 0), false)),
            reject_reason::unknown_protocol);
  EXPECT_EQ(reason_of(ipv6_packet(v6(1), v6(2), k_proto_icmp, bytes(8, 0), {}, false)),
            reject_reason::unknown_protocol);
  EXPECT_EQ(reason_of(ipv6_packet(v6(1), v6(2), 59, {}, {}, false)), reject_reason::unknown_protocol); // no next header
}

TEST(TunPacket, RejectsBadChecksumsOnlyWhenAsked) {
  bytes ip_bad = tcp4();
  ip_bad[10] ^= 1;
  EXPECT_EQ(reason_of(ip_bad), reject_reason::bad_checksum);
  EXPECT_TRUE(parse(ip_bad, {}));

  const std::vector<bytes> packets{
      tcp4(bytes(33, 7)),
      ipv4_packet(v4(1, 1, 1, 1), v4(2, 2, 2, 2), k_proto_udp, udp_datagram(1, 2, bytes(3, 3))),
      ipv4_packet(v4(1, 1, 1, 1), v4(2, 2, 2, 2), k_proto_icmp, icmp_message(8, 0, 1, 1, bytes(5, 5))),
      ipv6_packet(v6(1), v6(2), k_proto_tcp, tcp_segment(1, 2, 3, 4, k_tcp_ack, bytes(9, 9))),
      ipv6_packet(v6(1), v6(2), k_proto_udp, udp_datagram(1, 2, bytes(3, 3)), {{0, 8}}),
      ipv6_packet(v6(1), v6(2), k_proto_icmpv6, icmp_message(128, 0, 1, 1, bytes(5, 5))),
  };
  for (std::size_t i = 0; i < packets.size(); ++i) {
    bytes p = packets[i];
    ASSERT_TRUE(parse(p, k_verify)) << i;
    p.back() ^= 0x40; // the payload's last byte: only a full sum notices
    EXPECT_EQ(reason_of(p), reject_reason::bad_checksum) << i;
    EXPECT_TRUE(parse(p, {})) << i;
    EXPECT_TRUE(parse(p, {.verify_checksums = true, .form = csum_form::verified})) << i;
    EXPECT_TRUE(parse(p, {.verify_checksums = true, .form = csum_form::partial})) << i;
  }
}

TEST(TunPacket, Ipv6UdpZeroChecksumIsDropped) {
  bytes p = ipv6_packet(v6(1), v6(2), k_proto_udp, udp_datagram(1, 2, bytes(3, 3)));
  put16(p, 46, 0);
  EXPECT_EQ(reason_of(p, {}), reject_reason::bad_checksum);
  EXPECT_EQ(reason_of(p, {.verify_checksums = false, .form = csum_form::verified}), reject_reason::bad_checksum);
  EXPECT_TRUE(parse(p, {.verify_checksums = false, .form = csum_form::partial}));
}

TEST(TunPacket, ReasonNames) {
  for (std::size_t i = 0; i < k_reject_reason_count; ++i)
    EXPECT_NE(to_string(static_cast<reject_reason>(i)), "unknown") << i;
}
