// The routing plan as data (no kernel): which steps, in which order, with
// which rules and priorities; option errors; prefixes; the lock record.
#include "tun/ownership.hpp"
#include "tun/routing.hpp"

#include <gtest/gtest.h>

#include <sys/socket.h>

namespace warren::tun {
namespace {

ip_prefix pfx(const char* text, bool host_bits = false) {
  auto p = ip_prefix::parse(text, host_bits);
  EXPECT_TRUE(p) << p.error();
  return p ? *p : ip_prefix{};
}

std::vector<std::string> describe(const plan& p) {
  std::vector<std::string> out;
  for (const auto& s : p.steps)
    out.push_back(s.describe(p.device));
  return out;
}

TEST(TunPlan, DeviceSetupAndRoutes) {
  routing_options o;
  o.device = "wt0";
  o.mtu = 1500;
  o.addresses = {pfx("198.18.0.1/15", true), pfx("fd00:77::1/64", true)};
  o.routes = {pfx("10.0.0.0/8"), pfx("2001:db8::/32")};
  auto p = make_plan(o);
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(describe(*p), (std::vector<std::string>{
                              "set MTU 1500 on wt0",
                              "add address 198.18.0.1/15 to wt0",
                              "add address fd00:77::1/64 to wt0",
                              "bring wt0 up",
                              "add route 10.0.0.0/8 dev wt0 table main (IPv4)",
                              "add route 2001:db8::/32 dev wt0 table main (IPv6)",
                          }));
  EXPECT_EQ(p->steps[4].rt.protocol, k_rt_protocol);
}

TEST(TunPlan, DefaultRouteIsPolicyRoutingForBothFamilies) {
  routing_options o;
  o.device = "wt0";
  o.set_up = false;
  o.default_route = true;
  o.excludes = {pfx("192.0.2.0/24"), pfx("2001:db8::/32"), pfx("203.0.113.0/24")};
  auto p = make_plan(o);
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(describe(*p), (std::vector<std::string>{
                              "add route default dev wt0 table 30561 (IPv4)",
                              "add route default dev wt0 table 30561 (IPv6)",
                              "add rule 30559: from all to 192.0.2.0/24 lookup main (IPv4)",
                              "add rule 30559: from all to 203.0.113.0/24 lookup main (IPv4)",
                              "add rule 30560: from all lookup main suppress_prefixlength 0 (IPv4)",
                              "add rule 30561: not from all fwmark 0x7761 lookup 30561 (IPv4)",
                              "add rule 30559: from all to 2001:db8::/32 lookup main (IPv6)",
                              "add rule 30560: from all lookup main suppress_prefixlength 0 (IPv6)",
                              "add rule 30561: not from all fwmark 0x7761 lookup 30561 (IPv6)",
                              "set net.ipv4.conf.all.src_valid_mark=1 if rp_filter is strict",
                          }));
  for (const auto& s : p->steps) {
    if (s.kind == step_kind::add_rule) {
      EXPECT_EQ(s.ru.protocol, k_rt_protocol);
    }
  }
}

TEST(TunPlan, ConfigurableTableMarkAndPriority) {
  routing_options o;
  o.device = "wt1";
  o.set_up = false;
  o.default_route = true;
  o.table = 100;
  o.fwmark = 0x10;
  o.fwmask = 0xff;
  o.priority = 1000;
  auto p = make_plan(o);
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->steps[3].describe("wt1"), "add rule 1000: not from all fwmark 0x10/0xff lookup 100 (IPv4)");
  EXPECT_EQ(p->steps[2].ru.priority, 999u);
}

TEST(TunPlan, RefusesBadOptions) {
  routing_options o;
  o.device = "wt0";
  o.excludes = {pfx("192.0.2.0/24")};
  EXPECT_EQ(make_plan(o).error(), "--exclude only means something with --default-route");
  o.excludes.clear();
  o.default_route = true;
  o.priority = 2;
  EXPECT_NE(make_plan(o).error().find("out of range (3-32765"), std::string::npos);
  o.priority = 32766;
  EXPECT_FALSE(make_plan(o));
  o.priority = 1000;
  o.table = 254;
  EXPECT_NE(make_plan(o).error().find("is reserved"), std::string::npos);
  o.table = 100;
  o.fwmark = 0;
  EXPECT_FALSE(make_plan(o));
  o.fwmark = 0x100;
  o.fwmask = 0xff;
  EXPECT_EQ(make_plan(o).error(), "the mark must be non-zero and inside its mask");
  o.fwmask = 0xffff;
  EXPECT_TRUE(make_plan(o));
  o.mtu = 100;
  EXPECT_NE(make_plan(o).error().find("--mtu 100"), std::string::npos);
  o.mtu = 1000;
  o.addresses = {pfx("fd00::1/64", true)};
  EXPECT_NE(make_plan(o).error().find("needs --mtu 1280"), std::string::npos);
  EXPECT_FALSE(make_plan(routing_options{}));
}

TEST(TunPlan, Prefixes) {
  EXPECT_EQ(pfx("10.0.0.0/8").str(), "10.0.0.0/8");
  EXPECT_EQ(pfx("10.1.2.3").str(), "10.1.2.3/32");
  EXPECT_EQ(pfx("::/0").str(), "default");
  EXPECT_EQ(pfx("fd00:77::1/64", true).str(), "fd00:77::1/64");
  EXPECT_EQ(ip_prefix::parse("10.1.2.3/8", false).error(), "10.1.2.3/8 has bits set past its /8 prefix");
  EXPECT_FALSE(ip_prefix::parse("10.0.0.0/08", false));
  EXPECT_FALSE(ip_prefix::parse("10.0.0.0/33", false));
  EXPECT_FALSE(ip_prefix::parse("10.0.0.0/", false));
  EXPECT_FALSE(ip_prefix::parse("::/129", false));
  EXPECT_FALSE(ip_prefix::parse("example.com/8", false));
  EXPECT_EQ(pfx("2001:db8::/32").family, AF_INET6);
}

TEST(TunPlan, LockRecordRoundTrip) {
  instance_record r;
  r.pid = 4242;
  r.device = "wt0";
  r.table = 100;
  r.priority = 1000;
  r.default_route = true;
  r.created_device = true;
  r.old_src_valid_mark = "0";
  auto back = instance_record::parse(r.format());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->format(), r.format());
  EXPECT_TRUE(back->owns_priority(998));
  EXPECT_TRUE(back->owns_priority(1000));
  EXPECT_FALSE(back->owns_priority(997));
  EXPECT_FALSE(back->owns_priority(1001));
  r.default_route = false; // no rules at all
  EXPECT_FALSE(r.owns_priority(1000));
  EXPECT_FALSE(instance_record::parse("garbage"));
  EXPECT_FALSE(instance_record::parse("pid x\ndevice wt0\n"));
  EXPECT_FALSE(instance_record::parse("pid 1\n"));
  EXPECT_FALSE(instance_record::parse(""));
}

} // namespace
} // namespace warren::tun
