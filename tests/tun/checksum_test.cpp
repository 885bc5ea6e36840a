// Checksum primitives against hand-computed vectors (RFC 1071's example, a
// real IPv4 header) and RFC 1624 updates against sums recomputed from scratch.
#include "tun/checksum.hpp"
#include "tun/packet.hpp"

#include "test_packets.hpp"

#include <gtest/gtest.h>

#include <random>

using namespace warren::tun;
using namespace warren::tun::test;

TEST(TunChecksum, Rfc1071Example) {
  // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 (carries folded).
  const bytes data{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(fold(ones_sum(data)), 0xddf2);
  EXPECT_EQ(fold(ones_sum(data)), static_cast<std::uint16_t>(~ref_checksum(data)));
}

TEST(TunChecksum, OddLengthPadsWithZero) {
  const bytes data{0x12, 0x34, 0x56};
  EXPECT_EQ(fold(ones_sum(data)), 0x1234 + 0x5600);
  EXPECT_EQ(fold(ones_sum(bytes{0xff, 0xff, 0xff, 0xff})), 0xffff); // never folds a non-zero sum to 0
}

TEST(TunChecksum, Ipv4HeaderKnownVector) {
  // A captured header: 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
  const bytes header{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                     0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(ipv4_header_checksum(header), 0xb861);
  EXPECT_EQ(ref_ipv4_checksum(header), 0xb861);
}

TEST(TunChecksum, L4ChecksumMatchesFromScratch) {
  for (bool v6_family : {false, true}) {
    const auto src = v6_family ? v6(1) : v4(10, 0, 0, 1);
    const auto dst = v6_family ? v6(2) : v4(93, 184, 216, 34);
    bytes segment = udp_datagram(5353, 53, bytes(37, 0xa5));
    put16(segment, 6, 0xdead); // the field is skipped, whatever it holds
    bytes pseudo = ref_pseudo_header(src, dst, k_proto_udp, static_cast<std::uint32_t>(segment.size()));
    bytes all = pseudo;
    all.insert(all.end(), segment.begin(), segment.end());
    all[pseudo.size() + 6] = all[pseudo.size() + 7] = 0;
    EXPECT_EQ(l4_checksum(src, dst, k_proto_udp, segment, 6), ref_checksum(all)) << v6_family;
    EXPECT_EQ(partial_seed(src, dst, k_proto_udp, static_cast<std::uint32_t>(segment.size())),
              static_cast<std::uint16_t>(~ref_checksum(pseudo)));
  }
}

// RFC 1624 eqn 3 on random data: replacing words and updating the checksum
// gives the checksum computed from scratch over the new data.
TEST(TunChecksum, IncrementalUpdateMatchesRecompute) {
  std::mt19937 rng(1624);
  for (int round = 0; round < 2000; ++round) {
    bytes data(2 * (1 + rng() % 40));
    for (auto& b : data)
      b = static_cast<std::uint8_t>(rng());
    const std::uint16_t before = ref_checksum(data);
    bytes changed = data;
    const std::size_t at = 2 * (rng() % (data.size() / 2));
    const std::size_t words = std::min<std::size_t>(1 + rng() % 8, (data.size() - at) / 2);
    for (std::size_t i = at; i < at + 2 * words; ++i)
      changed[i] = (round % 7 == 0) ? 0xff : static_cast<std::uint8_t>(rng());
    const auto diff = replace_sum({data.data() + at, 2 * words}, {changed.data() + at, 2 * words});
    const std::uint16_t updated = update_full(before, diff);
    const std::uint16_t expected = ref_checksum(changed);
    // Ones-complement equality: 0x0000 and 0xFFFF are both zero.
    EXPECT_TRUE(updated == expected || (updated == 0 && expected == 0xffff) || (updated == 0xffff && expected == 0))
        << "round " << round;
    // The PARTIAL form: a seed holding the non-complemented sum moves to the new sum.
    const auto seed_before = static_cast<std::uint16_t>(~before);
    EXPECT_EQ(update_partial(seed_before, diff), static_cast<std::uint16_t>(~expected)) << "round " << round;
  }
}

TEST(TunChecksum, UpdateOfOneWord) {
  bytes data{0x45, 0x00, 0x00, 0x54, 0x12, 0x34};
  const std::uint16_t before = ref_checksum(data);
  const std::uint16_t after_checksum = update_full(before, replace_sum16(0x0054, 0x05dc));
  put16(data, 2, 0x05dc);
  EXPECT_EQ(after_checksum, ref_checksum(data));
}
