// The routing session against the kernel, each test in a network namespace
// of its own: what is applied (read back by netlink and by `ip`, and proven
// by `ip route get`), that undo leaves nothing, that a killed run's leftovers
// are removed by the next start, that a live instance's rules are never
// touched, and that a failed step undoes the steps before it.
#include "tun/device.hpp"
#include "tun/ownership.hpp"
#include "tun/routing.hpp"

#include "netns.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

namespace warren::tun {
namespace {

using test::in_netns;
using test::sh;

ip_prefix pfx(const char* text, bool host_bits = false) {
  return ip_prefix::parse(text, host_bits).value();
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

void set_rp_filter(const char* value) {
  for (const char* dev : {"all", "default", "lo"})
    write_sysctl("/proc/sys", std::string("net/ipv4/conf/") + dev + "/rp_filter", value);
}

// A stand-in for the machine's real uplink inside the namespace: a veth
// pair whose both ends stay in it (no route out), with main-table routes, so `ip route get`
// shows which table a destination would use.
void add_uplink() {
  ASSERT_EQ(sh("ip link add up0 type veth peer name up0p && ip link set up0p up && ip link set up0 up && "
               "ip addr add 203.0.113.2/24 dev up0 && "
               "ip -6 addr add 2001:db8:1::2/64 dev up0 nodad && ip route add default via 203.0.113.1 && "
               "ip -6 route add default via 2001:db8:1::1 && echo ok"),
            "ok\n");
}

std::size_t count_rules(rtnl& nl) {
  return nl.rules(AF_INET, k_rt_protocol)->size() + nl.rules(AF_INET6, k_rt_protocol)->size();
}

std::size_t count_routes(rtnl& nl) {
  return nl.routes(AF_INET, k_rt_protocol)->size() + nl.routes(AF_INET6, k_rt_protocol)->size();
}

routing_options full_options(const std::string& dev) {
  routing_options o;
  o.device = dev;
  o.mtu = 1400;
  o.addresses = {pfx("198.18.0.1/15", true), pfx("fd00:77::1/64", true)};
  o.routes = {pfx("10.77.0.0/16")};
  o.default_route = true;
  o.excludes = {pfx("192.0.2.0/24"), pfx("2001:db8:99::/48")};
  return o;
}

TEST(TunRouting, AppliesThePlanAndUndoLeavesNothing) {
  WARREN_NEED_ROOT();
  in_netns([] {
    add_uplink();
    set_rp_filter("1");
    const test::temp_dir locks;
    auto dev = device::open({.name = "wt0"});
    ASSERT_TRUE(dev) << dev.error();
    auto s = routing_session::start(full_options("wt0"), {.lock_dir = locks});
    ASSERT_TRUE(s) << s.error();
    auto nl = rtnl::open().value();

    auto link = nl.link("wt0").value();
    EXPECT_EQ(link.mtu, 1400u);
    EXPECT_TRUE(link.up);
    auto addrs = nl.addresses(link.index).value();
    std::vector<std::string> shown;
    for (const auto& a : addrs)
      shown.push_back(a.local.str());
    EXPECT_NE(std::find(shown.begin(), shown.end(), "198.18.0.1/15"), shown.end());
    EXPECT_NE(std::find(shown.begin(), shown.end(), "fd00:77::1/64"), shown.end());
    const auto ip_addr = sh("ip -o addr show dev wt0");
    EXPECT_NE(ip_addr.find("inet 198.18.0.1/15"), std::string::npos) << ip_addr;
    EXPECT_NE(ip_addr.find("inet6 fd00:77::1/64"), std::string::npos) << ip_addr;
    const auto v6_line = sh("ip -o addr show dev wt0 | grep fd00:77::1");
    EXPECT_NE(v6_line.find("nodad"), std::string::npos) << v6_line;
    EXPECT_EQ(v6_line.find("tentative"), std::string::npos) << "IPv6 without DAD is usable at once: " << v6_line;
    EXPECT_NE(sh("ip -j link show wt0").find("\"mtu\":1400"), std::string::npos);

    // Routes and rules, all with warren's protocol.
    auto v4 = nl.routes(AF_INET, k_rt_protocol).value();
    auto v6 = nl.routes(AF_INET6, k_rt_protocol).value();
    EXPECT_EQ(v4.size(), 2u); // --route, table default
    EXPECT_EQ(v6.size(), 1u); // table default
    EXPECT_EQ(nl.rules(AF_INET, k_rt_protocol)->size(), 3u);
    EXPECT_EQ(nl.rules(AF_INET6, k_rt_protocol)->size(), 3u);
    const auto ip_rules = sh("ip rule show");
    EXPECT_NE(ip_rules.find("30561:\tnot from all fwmark 0x7761 lookup 30561 proto 119"), std::string::npos)
        << ip_rules;
    EXPECT_NE(ip_rules.find("30560:\tfrom all lookup main suppress_prefixlength 0 proto 119"), std::string::npos)
        << ip_rules;
    EXPECT_NE(ip_rules.find("30559:\tfrom all to 192.0.2.0/24 lookup main proto 119"), std::string::npos)
        << ip_rules;
    EXPECT_NE(sh("ip -6 rule show").find("from all to 2001:db8:99::/48 lookup main proto 119"), std::string::npos);
    EXPECT_NE(sh("ip route show table 30561").find("default dev wt0 proto 119"), std::string::npos);

    // What the kernel now does with packets.
    EXPECT_NE(sh("ip route get 1.1.1.1").find("dev wt0 table 30561"), std::string::npos);
    EXPECT_NE(sh("ip route get 1.1.1.1 mark 0x7761").find("dev up0"), std::string::npos);
    EXPECT_NE(sh("ip route get 192.0.2.7").find("dev up0"), std::string::npos);       // --exclude
    EXPECT_NE(sh("ip route get 203.0.113.9").find("dev up0"), std::string::npos);     // the LAN stays
    EXPECT_NE(sh("ip route get 10.77.1.1 mark 0x7761").find("dev wt0"), std::string::npos); // --route
    EXPECT_NE(sh("ip -6 route get 2606:4700::1").find("dev wt0 table 30561"), std::string::npos);
    EXPECT_NE(sh("ip -6 route get 2606:4700::1 mark 0x7761").find("dev up0"), std::string::npos);
    EXPECT_NE(sh("ip -6 route get 2001:db8:99::1").find("dev up0"), std::string::npos);

    // Strict rp_filter: src_valid_mark on while running, recorded in the lock.
    EXPECT_EQ(read_sysctl("/proc/sys", k_src_valid_mark), "1");
    const auto lock_file = locks + "/tun-wt0.lock";
    ASSERT_TRUE(exists(lock_file));
    EXPECT_NE(sh("cat " + lock_file).find("old_src_valid_mark 0"), std::string::npos);

    EXPECT_TRUE(s.value().stop().empty());
    EXPECT_EQ(count_rules(nl), 0u);
    EXPECT_EQ(count_routes(nl), 0u);
    const auto left = nl.addresses(link.index).value();
    for (const auto& a : left) // the kernel's own fe80:: stays
      EXPECT_TRUE(a.local.str().starts_with("fe80:")) << a.local.str();
    EXPECT_EQ(read_sysctl("/proc/sys", k_src_valid_mark), "0");
    EXPECT_FALSE(exists(lock_file));
    EXPECT_EQ(sh("ip rule show | grep -c 'proto 119'"), "0\n");
  });
}

TEST(TunRouting, SrcValidMarkUntouchedWithoutStrictRpFilter) {
  WARREN_NEED_ROOT();
  in_netns([] {
    set_rp_filter("2"); // loose: marked replies pass already
    auto dev = device::open({.name = "wt0"});
    ASSERT_TRUE(dev);
    routing_options o;
    o.device = "wt0";
    o.default_route = true;
    EXPECT_FALSE(rp_filter_strict());
    const test::temp_dir scratch;
    auto s = routing_session::start(o, {.lock_dir = scratch});
    ASSERT_TRUE(s) << s.error();
    EXPECT_EQ(read_sysctl("/proc/sys", k_src_valid_mark), "0");
    set_rp_filter("0");
    ASSERT_TRUE(write_sysctl("/proc/sys", "net/ipv4/conf/wt0/rp_filter", "1"));
    EXPECT_TRUE(rp_filter_strict()); // one device's own strict setting counts
  });
}

// Starts a session on `dev` in a child process that is then SIGKILLed: its
// TUN vanishes with it, its rules and the sysctl stay, and so does its lock
// file, unlocked.
void killed_run(const routing_options& o, const std::string& locks) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto dev = device::open({.name = o.device});
    auto s = routing_session::start(o, {.lock_dir = locks});
    if (!dev || !s)
      ::_exit(1);
    ::raise(SIGKILL);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run to kill failed to start";
}

TEST(TunRouting, NextStartRemovesAKilledRunsLeftovers) {
  WARREN_NEED_ROOT();
  in_netns([] {
    set_rp_filter("1");
    const test::temp_dir locks;
    auto nl = rtnl::open().value();
    killed_run(full_options("wt0"), locks);
    EXPECT_FALSE(nl.link("wt0")); // the TUN went with its process
    EXPECT_EQ(count_rules(nl), 6u);
    EXPECT_EQ(read_sysctl("/proc/sys", k_src_valid_mark), "1");
    EXPECT_TRUE(exists(locks + "/tun-wt0.lock"));

    // The next start on another device finds and removes them.
    auto dev = device::open({.name = "wt1"});
    ASSERT_TRUE(dev);
    routing_options o;
    o.device = "wt1";
    o.routes = {pfx("10.1.0.0/16")};
    auto s = routing_session::start(o, {.lock_dir = locks});
    ASSERT_TRUE(s) << s.error();
    const auto& removed = s->leftovers().removed;
    EXPECT_EQ(std::count_if(removed.begin(), removed.end(), [](const auto& r) { return r.starts_with("rule "); }), 6)
        << "its rules; its routes went with the device";
    EXPECT_NE(std::find(removed.begin(), removed.end(), "src_valid_mark=1 (restored to 0)"), removed.end());
    EXPECT_TRUE(s->leftovers().errors.empty());
    EXPECT_EQ(count_rules(nl), 0u);
    EXPECT_EQ(read_sysctl("/proc/sys", k_src_valid_mark), "0");
    EXPECT_FALSE(exists(locks + "/tun-wt0.lock"));
    EXPECT_TRUE(s.value().stop().empty());

    // A killed run on the same device: the new instance's own lock file held
    // the old record.
    killed_run(full_options("wt2"), locks);
    auto dev2 = device::open({.name = "wt2"});
    ASSERT_TRUE(dev2) << dev2.error();
    auto again = routing_session::start(full_options("wt2"), {.lock_dir = locks});
    ASSERT_TRUE(again) << again.error();
    EXPECT_EQ(again->leftovers().removed.size(), 7u); // 6 rules, the sysctl
    EXPECT_EQ(count_rules(nl), 6u); // its own, once
    EXPECT_TRUE(again.value().stop().empty());
    EXPECT_EQ(count_rules(nl), 0u);
  });
}

TEST(TunRouting, ALiveInstancesRulesAreNeverRemoved) {
  WARREN_NEED_ROOT();
  in_netns([] {
    const test::temp_dir locks;
    auto nl = rtnl::open().value();
    auto da = device::open({.name = "wta"});
    auto db = device::open({.name = "wtb"});
    ASSERT_TRUE(da && db);
    routing_options a;
    a.device = "wta";
    a.default_route = true;
    a.table = 100;
    a.priority = 1000;
    auto sa = routing_session::start(a, {.lock_dir = locks});
    ASSERT_TRUE(sa) << sa.error();

    // A killed third instance beside it.
    routing_options k = a;
    k.device = "wtk";
    k.table = 300;
    k.priority = 3000;
    killed_run(k, locks);
    EXPECT_EQ(count_rules(nl), 8u); // two rules per family each (no excludes)

    routing_options b = a;
    b.device = "wtb";
    b.table = 200;
    b.priority = 2000;
    auto sb = routing_session::start(b, {.lock_dir = locks});
    ASSERT_TRUE(sb) << sb.error();
    EXPECT_EQ(sb->leftovers().removed.size(), 4u); // the killed one's only
    ASSERT_EQ(sb->leftovers().live.size(), 1u);
    EXPECT_EQ(sb->leftovers().live[0].device, "wta");
    EXPECT_EQ(count_rules(nl), 8u); // a's and b's
    const auto v4_rules = nl.rules(AF_INET, k_rt_protocol).value();
    for (const auto& r : v4_rules)
      EXPECT_TRUE((r.priority >= 999 && r.priority <= 1000) || (r.priority >= 1999 && r.priority <= 2000))
          << r.describe();

    // A clash with the live instance is refused, as is its device.
    routing_options c = a;
    c.device = "wtc";
    c.priority = 5000; // same table 100
    auto sc = routing_session::start(c, {.lock_dir = locks});
    ASSERT_FALSE(sc);
    EXPECT_NE(sc.error().find("in use by warren tun on wta (pid "), std::string::npos) << sc.error();
    auto twice = routing_session::start(a, {.lock_dir = locks});
    ASSERT_FALSE(twice);
    EXPECT_NE(twice.error().find("another warren tun is running on wta"), std::string::npos) << twice.error();

    EXPECT_TRUE(sb.value().stop().empty());
    EXPECT_EQ(count_rules(nl), 4u); // a's remain
    EXPECT_TRUE(sa.value().stop().empty());
    EXPECT_EQ(count_rules(nl), 0u);
  });
}

TEST(TunRouting, RulesNoLockFileNamesAreReportedNotRemoved) {
  WARREN_NEED_ROOT();
  in_netns([] {
    auto nl = rtnl::open().value();
    rule stray;
    stray.family = AF_INET;
    stray.priority = 7000;
    stray.table = 700;
    ASSERT_TRUE(nl.add_rule(stray));
    auto dev = device::open({.name = "wt0"});
    routing_options o;
    o.device = "wt0";
    const test::temp_dir scratch;
    auto s = routing_session::start(o, {.lock_dir = scratch});
    ASSERT_TRUE(s) << s.error();
    ASSERT_EQ(s->leftovers().unowned.size(), 1u);
    EXPECT_EQ(s->leftovers().unowned[0], "rule 7000: from all lookup 700 (IPv4)");
    EXPECT_EQ(count_rules(nl), 1u);
  });
}

TEST(TunRouting, AFailedStepUndoesTheStepsBefore) {
  WARREN_NEED_ROOT();
  in_netns([] {
    auto nl = rtnl::open().value();
    // The IPv6 fwmark rule already exists: the last rule step fails.
    rule taken;
    taken.family = AF_INET6;
    taken.priority = k_default_priority;
    taken.table = k_default_table;
    taken.fwmark = k_default_fwmark;
    taken.invert = true;
    ASSERT_TRUE(nl.add_rule(taken)); // warren's protocol but no lock file: left alone
    auto dev = device::open({.name = "wt0"});
    ASSERT_TRUE(dev);
    const test::temp_dir locks;
    auto s = routing_session::start(full_options("wt0"), {.lock_dir = locks});
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error(), "cannot add rule 30561: not from all fwmark 0x7761 lookup 30561 (IPv6): File exists");
    EXPECT_EQ(count_rules(nl), 1u);
    EXPECT_EQ(nl.rules(AF_INET6, k_rt_protocol).value()[0], taken);
    EXPECT_EQ(count_routes(nl), 0u);
    const auto left = nl.addresses(nl.link("wt0")->index).value();
    for (const auto& a : left)
      EXPECT_TRUE(a.local.str().starts_with("fe80:")) << a.local.str();
    EXPECT_FALSE(exists(locks + "/tun-wt0.lock"));
  });
}

TEST(TunRouting, RtnlDeletesALinkAndNamesMissingOnes) {
  WARREN_NEED_ROOT();
  in_netns([] {
    auto nl = rtnl::open().value();
    ASSERT_EQ(sh("ip link add wtx type veth peer name wty && echo ok"), "ok\n");
    auto l = nl.link("wtx");
    ASSERT_TRUE(l) << l.error();
    EXPECT_EQ(l->kind, "veth");
    EXPECT_TRUE(nl.delete_link(l->index));
    EXPECT_EQ(nl.link("wtx").error(), "no network device 'wtx'");
  });
}

} // namespace
} // namespace warren::tun
