// struct virtio_net_hdr: byte-exact little-endian layout, the checksum form
// its flags give, and each way a header can disagree with its packet.
#include "tun/packet.hpp"
#include "tun/vnet_hdr.hpp"

#include "test_packets.hpp"

#include <gtest/gtest.h>

using namespace warren::tun;
using namespace warren::tun::test;

namespace {

packet_view parsed(const bytes& p) {
  const auto r = parse(p, {.form = csum_form::partial});
  EXPECT_TRUE(r) << to_string(r.reason());
  return r.view();
}

const bytes k_tcp4 =
    ipv4_packet(v4(10, 0, 0, 2), v4(1, 2, 3, 4), k_proto_tcp, tcp_segment(1, 2, 3, 4, k_tcp_ack, bytes(3000, 1)));
const bytes k_tcp6 = ipv6_packet(v6(2), v6(4), k_proto_tcp, tcp_segment(1, 2, 3, 4, k_tcp_ack, bytes(3000, 1)));
const bytes k_udp4 = ipv4_packet(v4(10, 0, 0, 2), v4(1, 2, 3, 4), k_proto_udp, udp_datagram(1, 2, bytes(3000, 1)));
const bytes k_icmp4 = ipv4_packet(v4(10, 0, 0, 2), v4(1, 2, 3, 4), k_proto_icmp, icmp_message(8, 0, 1, 1));

vnet_header tso(std::uint8_t gso_type, const packet_view& p) {
  return {.flags = k_vnet_needs_csum,
          .gso_type = gso_type,
          .hdr_len = static_cast<std::uint16_t>(p.payload_offset),
          .gso_size = 1448,
          .csum_start = static_cast<std::uint16_t>(p.l4_offset),
          .csum_offset = static_cast<std::uint16_t>(p.csum_offset - p.l4_offset)};
}

} // namespace

TEST(TunVnet, LittleEndianLayout) {
  const bytes raw{0x01, 0x04, 0x42, 0x00, 0xa8, 0x05, 0x28, 0x00, 0x10, 0x00, 0xee, 0xee};
  const auto h = parse_vnet_header(raw);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->flags, k_vnet_needs_csum);
  EXPECT_EQ(h->gso_type, k_gso_tcpv6);
  EXPECT_EQ(h->hdr_len, 0x42);
  EXPECT_EQ(h->gso_size, 1448);
  EXPECT_EQ(h->csum_start, 40);
  EXPECT_EQ(h->csum_offset, 16);
  bytes out(k_vnet_hdr_size);
  encode_vnet_header(out, *h);
  EXPECT_EQ(out, bytes(raw.begin(), raw.begin() + 10));
  EXPECT_FALSE(parse_vnet_header(bytes(9)));
}

TEST(TunVnet, FormFromFlags) {
  EXPECT_EQ(form_of({}), csum_form::full);
  EXPECT_EQ(form_of({.flags = k_vnet_data_valid}), csum_form::verified);
  EXPECT_EQ(form_of({.flags = k_vnet_needs_csum}), csum_form::partial);
  EXPECT_EQ(form_of({.flags = k_vnet_needs_csum | k_vnet_data_valid}), csum_form::partial);
}

TEST(TunVnet, AcceptsWhatTheKernelSends) {
  const auto t4 = parsed(k_tcp4);
  const auto t6 = parsed(k_tcp6);
  const auto u4 = parsed(k_udp4);
  EXPECT_FALSE(validate({}, t4));
  EXPECT_FALSE(validate({.flags = k_vnet_data_valid}, t4));
  EXPECT_FALSE(validate(tso(k_gso_tcpv4, t4), t4));
  EXPECT_FALSE(validate(tso(k_gso_tcpv4 | k_gso_ecn, t4), t4));
  EXPECT_FALSE(validate(tso(k_gso_tcpv6, t6), t6));
  EXPECT_FALSE(validate(tso(k_gso_udp_l4, u4), u4));
  auto plain = tso(k_gso_none, t6);
  plain.gso_size = 0;
  EXPECT_FALSE(validate(plain, t6));
  plain.hdr_len = static_cast<std::uint16_t>(t6.size); // the kernel's linear length may be all of it
  EXPECT_FALSE(validate(plain, t6));
}

TEST(TunVnet, RejectsEachMismatch) {
  const auto t4 = parsed(k_tcp4);
  const auto t6 = parsed(k_tcp6);
  const auto u4 = parsed(k_udp4);
  const auto i4 = parsed(k_icmp4);

  EXPECT_EQ(validate({.flags = 4}, t4), vnet_reject::bad_flags);
  auto h = tso(k_gso_tcpv4, t4);
  h.csum_start += 1;
  EXPECT_EQ(validate(h, t4), vnet_reject::bad_csum);
  h = tso(k_gso_tcpv4, t4);
  h.csum_offset = 6;
  EXPECT_EQ(validate(h, t4), vnet_reject::bad_csum);
  h = tso(k_gso_none, i4);
  h.gso_size = 0;
  EXPECT_EQ(validate(h, i4), vnet_reject::bad_csum); // no partial ICMPv4
  h = tso(k_gso_tcpv4, t4);
  h.hdr_len = static_cast<std::uint16_t>(t4.size + 1);
  EXPECT_EQ(validate(h, t4), vnet_reject::bad_hdr_len);

  EXPECT_EQ(validate(tso(k_gso_udp, u4), u4), vnet_reject::bad_gso); // UFO
  EXPECT_EQ(validate(tso(9, t4), t4), vnet_reject::bad_gso);
  EXPECT_EQ(validate(tso(k_gso_ecn, t4), t4), vnet_reject::bad_gso);
  EXPECT_EQ(validate(tso(k_gso_udp_l4 | k_gso_ecn, u4), u4), vnet_reject::bad_gso);
  h = tso(k_gso_tcpv4, t4);
  h.gso_size = 0;
  EXPECT_EQ(validate(h, t4), vnet_reject::bad_gso);
  h = tso(k_gso_tcpv4, t4);
  h.flags = 0;
  EXPECT_EQ(validate(h, t4), vnet_reject::bad_gso);

  EXPECT_EQ(validate(tso(k_gso_tcpv6, t4), t4), vnet_reject::gso_mismatch);
  EXPECT_EQ(validate(tso(k_gso_tcpv4, t6), t6), vnet_reject::gso_mismatch);
  EXPECT_EQ(validate(tso(k_gso_tcpv4, u4), u4), vnet_reject::gso_mismatch);
  EXPECT_EQ(validate(tso(k_gso_udp_l4, t4), t4), vnet_reject::gso_mismatch);

  for (std::size_t i = 0; i < k_vnet_reject_count; ++i)
    EXPECT_NE(to_string(static_cast<vnet_reject>(i)), "unknown");
}
