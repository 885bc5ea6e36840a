// The builders: every field a peer's stack checks, and every checksum
// compared with a from-scratch computation (test_packets.hpp).
#include "tun/build.hpp"

#include "test_packets.hpp"

#include <gtest/gtest.h>

#include <algorithm>

using namespace warren::tun;
using namespace warren::tun::test;

namespace {

const parse_options k_verify{.verify_checksums = true, .form = csum_form::full};

packet_view parsed(const bytes& p) {
  const auto r = parse(p, k_verify);
  EXPECT_TRUE(r) << to_string(r.reason());
  return r.view();
}

// The built packet's checksums, from scratch.
void expect_checksums(const bytes& p) {
  const std::size_t l4 = l4_offset_of(p);
  if ((p[0] >> 4) == 4) {
    EXPECT_EQ(get16(p, 10), ref_ipv4_checksum(p));
  }
  std::uint16_t scratch = ref_l4_checksum(p, l4, csum_field_of(p));
  if (scratch == 0 && p[(p[0] >> 4) == 4 ? 9 : 6] == k_proto_udp)
    scratch = 0xffff;
  EXPECT_EQ(get16(p, csum_field_of(p)), scratch);
}

bytes built(std::size_t n, const bytes& out) {
  return bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
}

} // namespace

TEST(TunBuild, RstAnswersSyn) {
  for (bool v4_family : {true, false}) {
    const bytes syn_l4 = tcp_segment(40000, 443, 0xfffffffe, 0, k_tcp_syn, {}, 20);
    const bytes syn = v4_family ? ipv4_packet(v4(10, 0, 0, 2), v4(1, 2, 3, 4), k_proto_tcp, syn_l4)
                                : ipv6_packet(v6(2), v6(4), k_proto_tcp, syn_l4);
    bytes out(100);
    const std::size_t n = build_tcp_rst(out, parsed(syn));
    ASSERT_EQ(n, v4_family ? 40u : 60u);
    const bytes rst = built(n, out);
    const packet_view v = parsed(rst);
    EXPECT_EQ(v.src, parsed(syn).dst);
    EXPECT_EQ(v.dst, parsed(syn).src);
    EXPECT_EQ(v.src_port, 443);
    EXPECT_EQ(v.dst_port, 40000);
    EXPECT_EQ(v.seq, 0u);
    EXPECT_EQ(v.ack, 0xffffffffu); // seq + 1
    EXPECT_EQ(v.tcp_flags, k_tcp_rst | k_tcp_ack);
    EXPECT_EQ(v.ttl, 64);
    expect_checksums(rst);
    EXPECT_EQ(build_tcp_rst(std::span<std::uint8_t>(out.data(), n - 1), parsed(syn)), 0u); // too small
  }
}

TEST(TunBuild, RstCountsTheDataOfAFastOpenSyn) {
  const bytes syn =
      ipv4_packet(v4(10, 0, 0, 2), v4(1, 2, 3, 4), k_proto_tcp, tcp_segment(1, 2, 100, 0, k_tcp_syn, bytes(30, 1)));
  bytes out(100);
  const std::size_t n = build_tcp_rst(out, parsed(syn));
  ASSERT_NE(n, 0u);
  EXPECT_EQ(parsed(built(n, out)).ack, 131u);
}

TEST(TunBuild, RstOnlyForASyn) {
  bytes out(100);
  for (std::uint8_t flags :
       {std::uint8_t(k_tcp_syn | k_tcp_ack), k_tcp_ack, k_tcp_rst, std::uint8_t(k_tcp_syn | k_tcp_rst)}) {
    const bytes p = ipv4_packet(v4(10, 0, 0, 2), v4(1, 2, 3, 4), k_proto_tcp, tcp_segment(1, 2, 3, 4, flags));
    EXPECT_EQ(build_tcp_rst(out, parsed(p)), 0u) << int(flags);
  }
  const bytes u = ipv4_packet(v4(10, 0, 0, 2), v4(1, 2, 3, 4), k_proto_udp, udp_datagram(1, 2));
  EXPECT_EQ(build_tcp_rst(out, parsed(u)), 0u);
}

TEST(TunBuild, UnreachableQuotesAsMuchAsFits) {
  struct sizes {
    bool v4_family;
    std::size_t payload, expected_total;
  };
  // v4: 20 + 8 + quote ≤ 576; v6: 40 + 8 + quote ≤ 1280.
  for (const auto& c : {sizes{true, 1400, 576}, sizes{true, 10, 20 + 8 + 20 + 20 + 10}, sizes{false, 1400, 1280},
                        sizes{false, 10, 40 + 8 + 40 + 20 + 10}}) {
    const bytes l4 = tcp_segment(40000, 80, 555, 0, k_tcp_syn, bytes(c.payload, 0x33));
    const bytes orig = c.v4_family ? ipv4_packet(v4(10, 0, 0, 2), v4(1, 2, 3, 4), k_proto_tcp, l4)
                                   : ipv6_packet(v6(2), v6(4), k_proto_tcp, l4);
    const packet_view ov = parsed(orig);
    bytes out(2000);
    const std::uint8_t code = c.v4_family ? k_icmp4_host_unreachable : k_icmp6_address_unreachable;
    const std::size_t n = build_icmp_unreachable(out, orig, ov, code);
    ASSERT_EQ(n, c.expected_total) << c.v4_family << " " << c.payload;
    const bytes icmp = built(n, out);
    const packet_view v = parsed(icmp);
    EXPECT_EQ(v.protocol, c.v4_family ? k_proto_icmp : k_proto_icmpv6);
    EXPECT_EQ(v.icmp_type, c.v4_family ? 3 : 1);
    EXPECT_EQ(v.icmp_code, code);
    EXPECT_EQ(v.src, ov.dst);
    EXPECT_EQ(v.dst, ov.src);
    const std::size_t quote = n - v.payload_offset;
    EXPECT_EQ(quote, std::min(orig.size(), n - v.payload_offset));
    EXPECT_TRUE(std::equal(icmp.begin() + static_cast<std::ptrdiff_t>(v.payload_offset), icmp.end(), orig.begin()));
    expect_checksums(icmp);
    // A smaller buffer quotes less, but still the header and 8 bytes.
    bytes small(c.v4_family ? 56 : 96);
    EXPECT_EQ(build_icmp_unreachable(small, orig, ov, code), small.size());
    bytes tiny(c.v4_family ? 55 : 95);
    EXPECT_EQ(build_icmp_unreachable(tiny, orig, ov, code), 0u);
  }
}

TEST(TunBuild, NoUnreachableForAnIcmpError) {
  const bytes err = ipv4_packet(v4(1, 1, 1, 1), v4(2, 2, 2, 2), k_proto_icmp, icmp_message(3, 1, 0, 0, bytes(28, 0)));
  bytes out(600);
  EXPECT_EQ(build_icmp_unreachable(out, err, parsed(err), 1), 0u);
  const bytes err6 = ipv6_packet(v6(1), v6(2), k_proto_icmpv6, icmp_message(1, 4, 0, 0, bytes(48, 0)));
  EXPECT_EQ(build_icmp_unreachable(out, err6, parsed(err6), 1), 0u);
  const bytes ping = ipv4_packet(v4(1, 1, 1, 1), v4(2, 2, 2, 2), k_proto_icmp, icmp_message(8, 0, 1, 1));
  EXPECT_NE(build_icmp_unreachable(out, ping, parsed(ping), 1), 0u);
}

TEST(TunBuild, EchoReplyV4) {
  const bytes req = ipv4_packet(v4(10, 0, 0, 2), v4(8, 8, 4, 4), k_proto_icmp,
                                icmp_message(k_icmp4_echo_request, 0, 0x1234, 42, bytes(56, 0xab)));
  bytes out(200);
  const std::size_t n = build_echo_reply(out, req, parsed(req));
  ASSERT_EQ(n, req.size());
  const bytes rep = built(n, out);
  const packet_view v = parsed(rep);
  EXPECT_EQ(v.icmp_type, k_icmp4_echo_reply);
  EXPECT_EQ(v.icmp_id, 0x1234);
  EXPECT_EQ(v.icmp_seq, 42);
  EXPECT_EQ(v.src, v4(8, 8, 4, 4));
  EXPECT_EQ(v.dst, v4(10, 0, 0, 2));
  EXPECT_TRUE(std::equal(rep.begin() + 28, rep.end(), req.begin() + 28));
  expect_checksums(rep);
  EXPECT_EQ(build_echo_reply(out, rep, v), 0u); // a reply is not answered
}

// The ICMPv6 checksum covers the pseudo-header: the same message from other
// addresses has another checksum, and both match the from-scratch one.
TEST(TunBuild, EchoReplyV6ChecksumIncludesPseudoHeader) {
  const bytes req = ipv6_packet(v6(2), v6(0x8888), k_proto_icmpv6,
                                icmp_message(k_icmp6_echo_request, 0, 7, 1, bytes(16, 0x61)), {{0, 8}});
  bytes out(200);
  const std::size_t n = build_echo_reply(out, req, parsed(req));
  ASSERT_EQ(n, req.size() - 8); // the hop-by-hop header is not echoed
  const bytes rep = built(n, out);
  const packet_view v = parsed(rep);
  EXPECT_EQ(v.icmp_type, k_icmp6_echo_reply);
  EXPECT_EQ(v.icmp_id, 7);
  EXPECT_EQ(v.src, v6(0x8888));
  EXPECT_EQ(v.dst, v6(2));
  expect_checksums(rep);
  // A hand check: message sum + pseudo-header sum, complemented.
  bytes all = ref_pseudo_header(v6(0x8888), v6(2), k_proto_icmpv6, static_cast<std::uint32_t>(n - 40));
  bytes message(rep.begin() + 40, rep.end());
  message[2] = message[3] = 0;
  all.insert(all.end(), message.begin(), message.end());
  EXPECT_EQ(get16(rep, 42), ref_checksum(all));
  EXPECT_NE(get16(rep, 42), ref_checksum(message)); // not the ICMPv4 rule
}

TEST(TunBuild, Udp) {
  for (bool v4_family : {true, false}) {
    const auto src = v4_family ? v4(8, 8, 8, 8) : v6(0x53);
    const auto dst = v4_family ? v4(10, 0, 0, 2) : v6(2);
    const bytes payload(77, 0x42);
    bytes out(200);
    const std::size_t n = build_udp(out, src, 53, dst, 33333, payload);
    ASSERT_EQ(n, udp_header_size(src) + payload.size());
    const bytes pkt = built(n, out);
    const packet_view v = parsed(pkt);
    EXPECT_EQ(v.src, src);
    EXPECT_EQ(v.dst_port, 33333);
    EXPECT_EQ(v.ttl, 64);
    EXPECT_TRUE(std::equal(pkt.begin() + static_cast<std::ptrdiff_t>(v.payload_offset), pkt.end(), payload.begin()));
    EXPECT_NE(get16(pkt, v.csum_offset), 0);
    expect_checksums(pkt);

    // The payload already in place is kept.
    bytes in_place(200, 0);
    std::copy(payload.begin(), payload.end(), in_place.begin() + static_cast<std::ptrdiff_t>(udp_header_size(src)));
    ASSERT_EQ(build_udp(in_place, src, 53, dst, 33333,
                        std::span<const std::uint8_t>(in_place.data() + udp_header_size(src), payload.size())),
              n);
    EXPECT_EQ(built(n, in_place), pkt);
  }
  bytes out(200);
  EXPECT_EQ(build_udp(out, v4(1, 1, 1, 1), 1, v6(1), 2, {}), 0u);
  EXPECT_EQ(build_udp(out, v4(1, 1, 1, 1), 1, v4(2, 2, 2, 2), 2, bytes(200)), 0u);
  bytes big(70000);
  EXPECT_EQ(build_udp(big, v4(1, 1, 1, 1), 1, v4(2, 2, 2, 2), 2, bytes(65535 - 28 + 1)), 0u);
  EXPECT_EQ(build_udp(big, v4(1, 1, 1, 1), 1, v4(2, 2, 2, 2), 2, bytes(65535 - 28)), 65535u);
  EXPECT_EQ(build_udp(big, v6(1), 1, v6(2), 2, bytes(65535 - 8)), 65535u + 40u);
}
