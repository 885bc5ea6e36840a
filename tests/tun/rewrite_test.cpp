// In-place rewriting: after every address and port change, in both checksum
// forms, the checksums are compared with ones computed from scratch over the
// rewritten bytes (test_packets.hpp). For the PARTIAL form the packet is then
// "finished" as the kernel would (sum from csum_start with the field as the
// seed) and compared with a from-scratch full checksum.
#include "tun/rewrite.hpp"

#include "test_packets.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include <random>

using namespace warren::tun;
using namespace warren::tun::test;

namespace {

struct change {
  const char* name;
  bool src, dst, sport, dport;
};
const change k_changes[] = {
    {"src address", true, false, false, false}, {"dst address", false, true, false, false},
    {"src port", false, false, true, false},    {"dst port", false, false, false, true},
    {"everything", true, true, true, true},     {"nothing", false, false, false, false},
};

rewrite_spec spec_for(const change& c, bool v4_family) {
  rewrite_spec s;
  if (c.src)
    s.src = v4_family ? v4(198, 18, 0, 7) : v6(0x77, 0xfd00);
  if (c.dst)
    s.dst = v4_family ? v4(127, 0, 0, 1) : v6(0xabcd, 0xfe80);
  if (c.sport)
    s.src_port = 61000;
  if (c.dport)
    s.dst_port = 8080;
  return s;
}

bytes packet_for(bool v4_family, std::uint8_t protocol, std::size_t payload_size, std::uint8_t fill) {
  const bytes payload(payload_size, fill);
  bytes l4 = protocol == k_proto_tcp   ? tcp_segment(40001, 443, 7, 9, k_tcp_ack | k_tcp_psh, payload, 12)
             : protocol == k_proto_udp ? udp_datagram(40001, 53, payload)
                                       : icmp_message(v4_family ? 8 : 128, 0, 5, 6, payload);
  return v4_family ? ipv4_packet(v4(10, 0, 0, 2), v4(93, 184, 216, 34), protocol, l4)
                   : ipv6_packet(v6(2), v6(0x34), protocol, l4);
}

// Rewrites `p` (parsed in `form`) with `spec` and checks every checksum
// against a from-scratch computation.
void rewrite_and_check(bytes p, csum_form form, const rewrite_spec& spec, const std::string& what) {
  SCOPED_TRACE(what);
  auto r = parse(p, {.verify_checksums = form == csum_form::full, .form = form});
  ASSERT_TRUE(r) << to_string(r.reason());
  packet_view view = r.view();
  ASSERT_TRUE(rewrite(p, view, form, spec));

  const auto again = parse(p, {.verify_checksums = false, .form = form});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->src, view.src);
  EXPECT_EQ(again->dst, view.dst);
  EXPECT_EQ(again->src_port, view.src_port);
  EXPECT_EQ(again->dst_port, view.dst_port);
  if (spec.src) {
    EXPECT_EQ(view.src, *spec.src);
  }
  if (spec.dst_port) {
    EXPECT_EQ(view.dst_port, *spec.dst_port);
  }
  if (view.is_v4()) {
    EXPECT_EQ(get16(p, 10), ref_ipv4_checksum(p));
  }

  const std::uint16_t field = get16(p, view.csum_offset);
  std::uint16_t scratch = ref_l4_checksum(p, view.l4_offset, view.csum_offset);
  if (view.protocol == k_proto_udp && scratch == 0)
    scratch = 0xffff;
  if (form == csum_form::partial) {
    EXPECT_EQ(field, ref_partial_seed(p, view.l4_offset));
    EXPECT_EQ(ref_finish_partial(p, view.l4_offset), scratch);
  } else {
    EXPECT_EQ(field, scratch);
    EXPECT_TRUE(parse(p, {.verify_checksums = true, .form = csum_form::full}));
  }
}

} // namespace

TEST(TunRewrite, EveryChangeInBothFormsMatchesFromScratch) {
  for (bool v4_family : {true, false})
    for (std::uint8_t protocol : {k_proto_tcp, k_proto_udp})
      for (csum_form form : {csum_form::full, csum_form::verified, csum_form::partial})
        for (const auto& c : k_changes) {
          bytes p = packet_for(v4_family, protocol, 1000 + (v4_family ? 1 : 0), 0x5a);
          if (form == csum_form::partial)
            make_partial(p);
          rewrite_and_check(p, form, spec_for(c, v4_family),
                            std::string(v4_family ? "v4 " : "v6 ") + (protocol == k_proto_tcp ? "tcp " : "udp ") +
                                (form == csum_form::partial ? "partial " : "full ") + c.name);
        }
}

TEST(TunRewrite, PartialPortChangeLeavesTheSeedAlone) {
  bytes p = packet_for(true, k_proto_tcp, 100, 1);
  make_partial(p);
  const std::uint16_t seed = get16(p, csum_field_of(p));
  auto r = parse(p, {.form = csum_form::partial});
  ASSERT_TRUE(r);
  packet_view view = r.view();
  ASSERT_TRUE(rewrite(p, view, csum_form::partial, {.src_port = 1, .dst_port = 2}));
  EXPECT_EQ(get16(p, csum_field_of(p)), seed);
  EXPECT_EQ(ref_finish_partial(p, view.l4_offset), ref_l4_checksum(p, view.l4_offset, view.csum_offset));
}

TEST(TunRewrite, Icmp) {
  for (bool v4_family : {true, false}) {
    bytes p = packet_for(v4_family, v4_family ? k_proto_icmp : k_proto_icmpv6, 56, 3);
    const std::uint16_t before = get16(p, csum_field_of(p));
    const change addresses{"addresses", true, true, false, false};
    rewrite_and_check(p, csum_form::full, spec_for(addresses, v4_family), v4_family ? "icmp" : "icmpv6");
    auto r = parse(p);
    packet_view view = r.view();
    ASSERT_TRUE(rewrite(p, view, csum_form::full, {.dst = v4_family ? v4(1, 1, 1, 1) : v6(9)}));
    if (v4_family) {
      EXPECT_EQ(get16(p, csum_field_of(p)), before); // ICMPv4 has no pseudo-header
    } else {
      EXPECT_NE(get16(p, csum_field_of(p)), before);
    }
    // Ports are refused, and nothing changes.
    const bytes kept = p;
    EXPECT_FALSE(rewrite(p, view, csum_form::full, {.src = view.dst, .src_port = 1}));
    EXPECT_EQ(p, kept);
  }
}

TEST(TunRewrite, FamilyMismatchChangesNothing) {
  bytes p = packet_for(true, k_proto_tcp, 10, 1);
  auto r = parse(p);
  packet_view view = r.view();
  const bytes kept = p;
  EXPECT_FALSE(rewrite(p, view, csum_form::full, {.src = v6(1), .dst_port = 9}));
  EXPECT_FALSE(rewrite(p, view, csum_form::full, {.dst = v6(1)}));
  EXPECT_EQ(p, kept);
  EXPECT_EQ(view.dst_port, 443);
}

TEST(TunRewrite, Udp4WithoutChecksumStaysWithout) {
  bytes p = packet_for(true, k_proto_udp, 20, 1);
  put16(p, csum_field_of(p), 0);
  auto r = parse(p, {.verify_checksums = true});
  ASSERT_TRUE(r);
  packet_view view = r.view();
  ASSERT_TRUE(rewrite(p, view, csum_form::full, spec_for(k_changes[4], true)));
  EXPECT_EQ(get16(p, csum_field_of(p)), 0);
  EXPECT_EQ(get16(p, 10), ref_ipv4_checksum(p));
}

// A UDP checksum that comes out 0 is sent as 0xFFFF (RFC 768), in both families.
TEST(TunRewrite, UdpChecksumZeroBecomesAllOnes) {
  for (bool v4_family : {true, false}) {
    const auto spec = spec_for(k_changes[4], v4_family);
    // The rewritten packet with a zero payload word; then choose the word
    // so that the rewritten packet's sum is all ones (checksum 0).
    bytes target = packet_for(v4_family, k_proto_udp, 2, 0);
    auto r = parse(target);
    packet_view tv = r.view();
    ASSERT_TRUE(rewrite(target, tv, csum_form::full, spec));
    const std::uint16_t sum_without_word =
        static_cast<std::uint16_t>(~ref_l4_checksum(target, tv.l4_offset, tv.csum_offset));
    const auto word = static_cast<std::uint16_t>(0xffff - sum_without_word);

    bytes p = packet_for(v4_family, k_proto_udp, 2, 0);
    put16(p, p.size() - 2, word);
    refinish_l4(p);
    auto pr = parse(p, {.verify_checksums = true});
    ASSERT_TRUE(pr);
    packet_view view = pr.view();
    ASSERT_TRUE(rewrite(p, view, csum_form::full, spec));
    EXPECT_EQ(ref_l4_checksum(p, view.l4_offset, view.csum_offset), 0) << v4_family;
    EXPECT_EQ(get16(p, view.csum_offset), 0xffff) << v4_family;
    EXPECT_TRUE(parse(p, {.verify_checksums = true}));
  }
}

// Random packets, random changes, every form: always the from-scratch answer.
TEST(TunRewrite, RandomizedAgainstFromScratch) {
  std::mt19937 rng(6);
  for (int round = 0; round < 600; ++round) {
    const bool v4_family = rng() % 2;
    const std::uint8_t protocol = rng() % 2 ? k_proto_tcp : k_proto_udp;
    bytes p = packet_for(v4_family, protocol, rng() % 1500, static_cast<std::uint8_t>(rng()));
    for (std::size_t i = l4_offset_of(p) + (protocol == k_proto_tcp ? 32 : 8); i < p.size(); ++i)
      p[i] = static_cast<std::uint8_t>(rng());
    refinish_l4(p);
    const auto form = static_cast<csum_form>(rng() % 3);
    if (form == csum_form::partial)
      make_partial(p);
    rewrite_spec s;
    auto address = [&] {
      ip_address a;
      a.size = v4_family ? 4 : 16;
      for (std::size_t i = 0; i < a.size; ++i)
        a.bytes[i] = static_cast<std::uint8_t>(rng());
      return a;
    };
    if (rng() % 2)
      s.src = address();
    if (rng() % 2)
      s.dst = address();
    if (rng() % 2)
      s.src_port = static_cast<std::uint16_t>(rng());
    if (rng() % 2)
      s.dst_port = static_cast<std::uint16_t>(rng());
    rewrite_and_check(p, form, s, "round " + std::to_string(round));
  }
}
