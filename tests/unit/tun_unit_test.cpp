// tun_unit's pure parts: the flags checked into options, the NAT pool, and
// the tables sized to the open-file limit.
#include "unit/tun_unit.hpp"

#include <gtest/gtest.h>

namespace warren::unit {
namespace {

tun_args socks(std::string upstream = "socks5://10.0.0.2:1080") {
  tun_args a;
  a.upstream = std::move(upstream);
  return a;
}

std::string error_of(const tun_args& a) {
  auto o = tun_options_from(a);
  return o ? std::string() : o.error();
}

TEST(TunOptions, DefaultsMakeAPlanWithBothFamilies) {
  auto o = tun_options_from(socks());
  ASSERT_TRUE(o) << o.error();
  EXPECT_TRUE(o->socks5);
  EXPECT_FALSE(o->tunnel);
  EXPECT_EQ(o->routing.device, "wt0");
  EXPECT_EQ(o->routing.addresses.size(), 2u);
  EXPECT_EQ(o->socks5->mark, std::optional<std::uint32_t>(tun::k_default_fwmark));
}

TEST(TunOptions, EachMistakeNamesItsFlag) {
  auto a = socks("http://proxy:3128");
  EXPECT_NE(error_of(a).find("--upstream"), std::string::npos);
  a = socks();
  a.address = "10.0.0.1/31";
  EXPECT_NE(error_of(a).find("too small"), std::string::npos) << error_of(a);
  a = socks();
  a.mtu = 100;
  EXPECT_NE(error_of(a).find("--mtu"), std::string::npos);
  a = socks();
  a.routes = {"garbage"};
  EXPECT_NE(error_of(a).find("--route garbage"), std::string::npos);
  a = socks();
  a.excludes = {"10.0.0.0/8"};
  EXPECT_NE(error_of(a).find("--default-route"), std::string::npos);
  a = socks();
  a.name = "a-name-longer-than-15";
  EXPECT_NE(error_of(a).find("--name"), std::string::npos);
  a = socks();
  a.connect_timeout = "0s";
  EXPECT_NE(error_of(a).find("--connect-timeout"), std::string::npos);
  a = socks();
  a.token_file = "t";
  EXPECT_NE(error_of(a).find("not socks5://"), std::string::npos);
  a = socks("wss://gw.example:443/");
  EXPECT_NE(error_of(a).find("--token-file"), std::string::npos);
  a.token_file = "t";
  EXPECT_EQ(error_of(a), "");
}

TEST(TunOptions, NatPoolFollowsTheAddressInsideItsPrefix) {
  auto p = tun::ip_prefix::parse("198.18.0.1/15", true);
  ASSERT_TRUE(p);
  auto pool = nat_pool(*p);
  ASSERT_TRUE(pool) << pool.error();
  ASSERT_EQ(pool->size(), 8u);
  EXPECT_EQ(pool->front().to_string(), "198.18.0.2");
  EXPECT_EQ(pool->back().to_string(), "198.18.0.9");
  // .7/28 would need .8 … .15, and .15 is the broadcast address.
  auto late = tun::ip_prefix::parse("10.0.0.7/28", true);
  ASSERT_TRUE(late);
  EXPECT_FALSE(nat_pool(*late));
  auto early = tun::ip_prefix::parse("10.0.0.1/28", true);
  ASSERT_TRUE(early);
  EXPECT_TRUE(nat_pool(*early));
  auto v6 = tun::ip_prefix::parse("fd00:77::1/64", true);
  ASSERT_TRUE(v6);
  auto pool6 = nat_pool(*v6);
  ASSERT_TRUE(pool6);
  EXPECT_EQ(pool6->front().to_string(), "fd00:77::2");
}

TEST(TunTables, TheDefaultsFitUnderAHighLimit) {
  const auto t = fit_tun_tables(1'048'576, 65536, 4096, 16384);
  EXPECT_EQ(t.max_tcp_sessions, 65536u);
  EXPECT_EQ(t.max_pending, 4096u);
  EXPECT_EQ(t.max_udp_flows, 16384u);
}

TEST(TunTables, AUsualSoftLimitShrinksEveryTableWithinIt) {
  const auto t = fit_tun_tables(1024, 65536, 4096, 16384);
  EXPECT_LT(t.max_tcp_sessions, 130u);
  EXPECT_EQ(t.max_pending, t.max_tcp_sessions);
  EXPECT_LE(6 * t.max_tcp_sessions + 2 * t.max_udp_flows, 1024u);
  EXPECT_GT(t.max_udp_flows, 0u);
}

TEST(TunTables, AnUnknownLimitLeavesThemAsAsked) {
  const auto t = fit_tun_tables(0, 65536, 4096, 16384);
  EXPECT_EQ(t.max_tcp_sessions, 65536u);
  EXPECT_EQ(t.max_pending, 4096u);
  EXPECT_EQ(t.max_udp_flows, 16384u);
}

} // namespace
} // namespace warren::unit
