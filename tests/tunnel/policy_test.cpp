// Tests of the server's destination policy (src/tunnel/policy.*): parsing of
// every --allow form (IPv4 and IPv6 networks, single addresses, ports and
// port ranges, host names, *.suffix, *) with its error messages, and
// matching of names and resolved addresses, including IPv4-mapped IPv6
// addresses against IPv4 rules. An empty policy denies everything.
#include "tunnel/policy.hpp"

#include <gtest/gtest.h>

using namespace warren;
using namespace warren::tunnel;
namespace ip = boost::asio::ip;

namespace {

allow_rule rule(std::string_view text) {
  auto r = parse_allow_rule(text);
  EXPECT_TRUE(r) << text << ": " << r.error();
  return r ? *r : allow_rule{};
}

destination_policy policy(std::initializer_list<std::string_view> rules) {
  destination_policy p;
  for (auto t : rules)
    p.add(rule(t));
  return p;
}

ip::address a(const char* text) {
  return ip::make_address(text);
}

std::string error_of(std::string_view text) {
  auto r = parse_allow_rule(text);
  EXPECT_FALSE(r) << text << " parsed";
  return r ? std::string() : r.error();
}

// ---- parsing ----------------------------------------------------------------

TEST(PolicyParse, Ipv4Network) {
  auto r = rule("10.0.0.0/8");
  EXPECT_EQ(r.type, allow_rule::kind::network);
  EXPECT_EQ(r.network, a("10.0.0.0"));
  EXPECT_EQ(r.prefix, 8u);
  EXPECT_EQ(r.port_min, 1);
  EXPECT_EQ(r.port_max, 65535);
  EXPECT_EQ(r.text, "10.0.0.0/8");
}

TEST(PolicyParse, SingleAddressAndPort) {
  auto r = rule("127.0.0.1:22");
  EXPECT_EQ(r.type, allow_rule::kind::network);
  EXPECT_EQ(r.network, a("127.0.0.1"));
  EXPECT_EQ(r.prefix, 32u);
  EXPECT_EQ(r.port_min, 22);
  EXPECT_EQ(r.port_max, 22);
}

TEST(PolicyParse, PortRange) {
  auto r = rule("10.1.2.3:8000-8999");
  EXPECT_EQ(r.port_min, 8000);
  EXPECT_EQ(r.port_max, 8999);
  auto one = rule("10.1.2.3:80-80");
  EXPECT_EQ(one.port_min, 80);
  EXPECT_EQ(one.port_max, 80);
}

TEST(PolicyParse, NetworkWithPort) {
  auto r = rule("192.168.0.0/16:443");
  EXPECT_EQ(r.prefix, 16u);
  EXPECT_EQ(r.port_min, 443);
  EXPECT_EQ(r.port_max, 443);
}

TEST(PolicyParse, Ipv6InBrackets) {
  auto net = rule("[fd00::]/8:443");
  EXPECT_EQ(net.type, allow_rule::kind::network);
  EXPECT_EQ(net.network, a("fd00::"));
  EXPECT_EQ(net.prefix, 8u);
  EXPECT_EQ(net.port_min, 443);
  EXPECT_EQ(net.port_max, 443);

  auto host = rule("[::1]");
  EXPECT_EQ(host.network, a("::1"));
  EXPECT_EQ(host.prefix, 128u);
  EXPECT_EQ(host.port_min, 1);
  EXPECT_EQ(host.port_max, 65535);

  auto with_port = rule("[2001:db8::5]:22");
  EXPECT_EQ(with_port.prefix, 128u);
  EXPECT_EQ(with_port.port_min, 22);

  auto whole = rule("[2001:db8::]/32");
  EXPECT_EQ(whole.prefix, 32u);
  EXPECT_EQ(whole.port_max, 65535);
}

TEST(PolicyParse, HostNames) {
  auto r = rule("db.internal:5432");
  EXPECT_EQ(r.type, allow_rule::kind::host);
  EXPECT_EQ(r.host, "db.internal");
  EXPECT_EQ(r.port_min, 5432);
  EXPECT_EQ(rule("DB.Internal.").host, "db.internal") << "lower case, trailing dot dropped";

  auto s = rule("*.internal:443");
  EXPECT_EQ(s.type, allow_rule::kind::host_suffix);
  EXPECT_EQ(s.host, ".internal");
}

TEST(PolicyParse, Wildcards) {
  auto all = rule("*");
  EXPECT_EQ(all.type, allow_rule::kind::any);
  EXPECT_EQ(all.port_min, 1);
  EXPECT_EQ(all.port_max, 65535);
  auto web = rule("*:80");
  EXPECT_EQ(web.type, allow_rule::kind::any);
  EXPECT_EQ(web.port_min, 80);
  EXPECT_EQ(web.port_max, 80);
  auto any_port = rule("10.0.0.1:*");
  EXPECT_EQ(any_port.port_min, 1);
  EXPECT_EQ(any_port.port_max, 65535);
}

TEST(PolicyParse, Errors) {
  EXPECT_NE(error_of("10.0.0.0/33").find("prefix"), std::string::npos);
  EXPECT_NE(error_of("10.0.0.0/").find("prefix"), std::string::npos);
  EXPECT_NE(error_of("10.0.0.0/8x").find("prefix"), std::string::npos);
  EXPECT_NE(error_of("10.0.0.0/99999999999").find("prefix"), std::string::npos);
  EXPECT_NE(error_of("[fd00::]/129").find("prefix"), std::string::npos);
  EXPECT_NE(error_of("[fd00::]/").find("prefix"), std::string::npos);
  EXPECT_NE(error_of("[fd00::/8").find("']'"), std::string::npos);
  EXPECT_NE(error_of("[10.0.0.1]").find("not an IPv6 address"), std::string::npos);
  EXPECT_NE(error_of("[fd00::]x").find("':'"), std::string::npos);
  EXPECT_NE(error_of("fd00::1").find("brackets"), std::string::npos);
  EXPECT_NE(error_of("::1:22").find("brackets"), std::string::npos);
  EXPECT_NE(error_of("db.internal/8").find("IPv4 network"), std::string::npos);
  EXPECT_NE(error_of("10.1.2.3:9000-8000").find("reversed"), std::string::npos);
  EXPECT_FALSE(parse_allow_rule("10.1.2.3:0"));
  EXPECT_FALSE(parse_allow_rule("10.1.2.3:65536"));
  EXPECT_FALSE(parse_allow_rule("10.1.2.3:http"));
  EXPECT_FALSE(parse_allow_rule("10.1.2.3:80-"));
  EXPECT_FALSE(parse_allow_rule("bad host!"));
  EXPECT_FALSE(parse_allow_rule("*."));
  EXPECT_FALSE(parse_allow_rule(""));
  // Every message quotes the rule as written.
  EXPECT_NE(error_of("10.0.0.0/33").find("--allow '10.0.0.0/33'"), std::string::npos);
}

// ---- matching ---------------------------------------------------------------

TEST(PolicyMatch, EmptyPolicyDeniesEverything) {
  destination_policy p;
  EXPECT_TRUE(p.empty());
  EXPECT_FALSE(p.allows_address(a("127.0.0.1"), 80));
  EXPECT_FALSE(p.allows_address(a("::1"), 80));
  EXPECT_FALSE(p.allows_name("localhost", 80));
}

TEST(PolicyMatch, Ipv4Cidr) {
  auto p = policy({"10.0.0.0/8"});
  EXPECT_TRUE(p.allows_address(a("10.0.0.0"), 1));
  EXPECT_TRUE(p.allows_address(a("10.255.255.255"), 65535));
  EXPECT_FALSE(p.allows_address(a("11.0.0.0"), 80));
  EXPECT_FALSE(p.allows_address(a("9.255.255.255"), 80));
  EXPECT_FALSE(p.allows_address(a("::a00:1"), 80)) << "an IPv6 address that is not v4-mapped";

  auto odd = policy({"192.168.4.0/22"});
  EXPECT_TRUE(odd.allows_address(a("192.168.7.255"), 80));
  EXPECT_FALSE(odd.allows_address(a("192.168.8.0"), 80));
  EXPECT_FALSE(odd.allows_address(a("192.168.3.255"), 80));

  auto all = policy({"0.0.0.0/0"});
  EXPECT_TRUE(all.allows_address(a("203.0.113.9"), 80));
  EXPECT_FALSE(all.allows_address(a("2001:db8::1"), 80));
}

TEST(PolicyMatch, SingleAddressAndPorts) {
  auto p = policy({"127.0.0.1:22", "10.1.2.3:8000-8999"});
  EXPECT_TRUE(p.allows_address(a("127.0.0.1"), 22));
  EXPECT_FALSE(p.allows_address(a("127.0.0.1"), 23));
  EXPECT_FALSE(p.allows_address(a("127.0.0.2"), 22));
  EXPECT_FALSE(p.allows_address(a("10.1.2.3"), 7999));
  EXPECT_TRUE(p.allows_address(a("10.1.2.3"), 8000));
  EXPECT_TRUE(p.allows_address(a("10.1.2.3"), 8999));
  EXPECT_FALSE(p.allows_address(a("10.1.2.3"), 9000));
}

TEST(PolicyMatch, Ipv6Cidr) {
  auto p = policy({"[fd00::]/8:443", "[::1]:22"});
  EXPECT_TRUE(p.allows_address(a("fd12:3456::1"), 443));
  EXPECT_TRUE(p.allows_address(a("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 443));
  EXPECT_FALSE(p.allows_address(a("fe00::1"), 443));
  EXPECT_FALSE(p.allows_address(a("fc00::1"), 443));
  EXPECT_FALSE(p.allows_address(a("fd12::1"), 80));
  EXPECT_TRUE(p.allows_address(a("::1"), 22));
  EXPECT_FALSE(p.allows_address(a("::2"), 22));
  EXPECT_FALSE(p.allows_address(a("127.0.0.1"), 22)) << "an IPv4 address against IPv6 rules";

  auto odd = policy({"[2001:db8:8000::]/33"});
  EXPECT_TRUE(odd.allows_address(a("2001:db8:ffff::1"), 80));
  EXPECT_FALSE(odd.allows_address(a("2001:db8:7fff::1"), 80));
}

TEST(PolicyMatch, V4MappedV6MatchesIpv4Rules) {
  auto p = policy({"10.0.0.0/8", "127.0.0.1:22"});
  EXPECT_TRUE(p.allows_address(a("::ffff:10.1.2.3"), 80));
  EXPECT_FALSE(p.allows_address(a("::ffff:11.1.2.3"), 80));
  EXPECT_TRUE(p.allows_address(a("::ffff:127.0.0.1"), 22));
  EXPECT_FALSE(p.allows_address(a("::ffff:127.0.0.1"), 23));
}

TEST(PolicyMatch, V4MappedIsJudgedAsIpv4WhateverTheRulesFamily) {
  // Issue 10: with --allow '[::]/0', OPEN to ::ffff:127.0.0.1 reached
  // 127.0.0.1 while OPEN to 127.0.0.1 was denied.
  for (const char* rule : {"[::]/0", "[::]/1", "[::]/80"}) {
    auto p = policy({rule});
    EXPECT_FALSE(p.allows_address(a("::ffff:127.0.0.1"), 80)) << rule;
    EXPECT_FALSE(p.allows_address(a("::ffff:0.0.0.0"), 80)) << rule;
    EXPECT_FALSE(p.allows_address(a("::ffff:10.1.2.3"), 80)) << rule;
    EXPECT_FALSE(p.allows_address(a("127.0.0.1"), 80)) << rule;
  }
  auto v6 = policy({"[::]/0"});
  EXPECT_TRUE(v6.allows_address(a("2001:db8::1"), 80)) << "real IPv6 destinations still pass";
  // A mapped rule is the IPv4 rule it means: [::ffff:0:0]/96 is all of IPv4.
  auto all_v4 = policy({"[::ffff:0:0]/96"});
  EXPECT_TRUE(all_v4.allows_address(a("127.0.0.1"), 80));
  EXPECT_TRUE(all_v4.allows_address(a("::ffff:127.0.0.1"), 80));
  EXPECT_FALSE(all_v4.allows_address(a("::1"), 80));
  auto mapped_rule = policy({"[::ffff:10.0.0.0]/104:443"});
  EXPECT_TRUE(mapped_rule.allows_address(a("10.9.9.9"), 443));
  EXPECT_TRUE(mapped_rule.allows_address(a("::ffff:10.9.9.9"), 443));
  EXPECT_FALSE(mapped_rule.allows_address(a("11.0.0.1"), 443));
  EXPECT_FALSE(mapped_rule.allows_address(a("10.9.9.9"), 80));
}

TEST(PolicyMatch, UnspecifiedAddressesAreJudgedAsLoopback) {
  auto lan = policy({"0.0.0.0/8", "[::]/128", "10.0.0.0/8"});
  EXPECT_FALSE(lan.allows_address(a("0.0.0.0"), 80)) << "connect(0.0.0.0) reaches the local host";
  EXPECT_FALSE(lan.allows_address(a("0.1.2.3"), 80));
  EXPECT_FALSE(lan.allows_address(a("::"), 80));
  EXPECT_FALSE(lan.allows_address(a("::ffff:0.0.0.0"), 80));
  auto loop = policy({"127.0.0.1:22", "[::1]:22"});
  EXPECT_TRUE(loop.allows_address(a("0.0.0.0"), 22));
  EXPECT_TRUE(loop.allows_address(a("::"), 22));
  EXPECT_FALSE(loop.allows_address(a("0.0.0.0"), 23));
}

TEST(PolicyMatch, EmbeddedIpv4MustPassToo) {
  // Rules that cover the IPv6 forms but not the IPv4 address inside them.
  auto p = policy({"[64:ff9b::]/96", "[2002::]/16", "[2001::]/32", "[::]/96", "[2001:db8::]/32", "192.0.2.0/24"});
  EXPECT_FALSE(p.allows_address(a("64:ff9b::7f00:1"), 80)) << "NAT64 of 127.0.0.1";
  EXPECT_TRUE(p.allows_address(a("64:ff9b::c000:201"), 80)) << "NAT64 of 192.0.2.1";
  EXPECT_FALSE(p.allows_address(a("64:ff9b:1::7f00:1"), 80)) << "local-use NAT64 prefix";
  EXPECT_FALSE(p.allows_address(a("2002:7f00:1::1"), 80)) << "6to4 of 127.0.0.1";
  EXPECT_TRUE(p.allows_address(a("2002:c000:201::1"), 80)) << "6to4 of 192.0.2.1";
  EXPECT_FALSE(p.allows_address(a("::7f00:1"), 80)) << "IPv4-compatible 127.0.0.1";
  // Teredo: server 192.0.2.1, client 127.0.0.1 stored inverted (80ff:fffe).
  EXPECT_FALSE(p.allows_address(a("2001:0:c000:201::80ff:fffe"), 80));
  EXPECT_TRUE(p.allows_address(a("2001:0:c000:201::3fff:fdfe"), 80)) << "Teredo client 192.0.2.1";
  EXPECT_FALSE(p.allows_address(a("2001:db8::5efe:7f00:1"), 80)) << "ISATAP of 127.0.0.1";
  EXPECT_TRUE(p.allows_address(a("2001:db8::1"), 80)) << "an ordinary address of the same rule";
}

TEST(PolicyMatch, JudgeDestinationListsWhatIsChecked) {
  auto j = judge_destination(a("::ffff:10.1.2.3"));
  ASSERT_EQ(j.count, 1u);
  EXPECT_EQ(j.list[0], a("10.1.2.3"));
  j = judge_destination(a("2001:0:c000:201::3fff:fdfe"));
  ASSERT_EQ(j.count, 3u);
  EXPECT_EQ(j.list[1], a("192.0.2.1"));
  EXPECT_EQ(j.list[2], a("192.0.2.1"));
  j = judge_destination(a("::"));
  ASSERT_EQ(j.count, 1u);
  EXPECT_EQ(j.list[0], a("::1"));
}

TEST(PolicyMatch, HostNameRules) {
  auto p = policy({"db.internal:5432"});
  EXPECT_TRUE(p.allows_name("db.internal", 5432));
  EXPECT_TRUE(p.allows_name("DB.INTERNAL", 5432)) << "names compare case-insensitively";
  EXPECT_TRUE(p.allows_name("db.internal.", 5432)) << "a trailing dot is the same name";
  EXPECT_FALSE(p.allows_name("db.internal", 5433));
  EXPECT_FALSE(p.allows_name("x.db.internal", 5432)) << "an exact rule does not cover subdomains";
  EXPECT_FALSE(p.allows_name("db.internal.evil", 5432));
  // Host rules are about names; they let no address through by themselves.
  EXPECT_FALSE(p.allows_address(a("10.0.0.5"), 5432));
}

TEST(PolicyMatch, SuffixRules) {
  auto p = policy({"*.internal:443"});
  EXPECT_TRUE(p.allows_name("a.internal", 443));
  EXPECT_TRUE(p.allows_name("a.b.INTERNAL", 443));
  EXPECT_TRUE(p.allows_name("internal", 443)) << "the domain itself";
  EXPECT_FALSE(p.allows_name("evilinternal", 443)) << "suffix match must be on a label boundary";
  EXPECT_FALSE(p.allows_name("a.internal.evil", 443));
  EXPECT_FALSE(p.allows_name("a.internal", 80));
}

TEST(PolicyMatch, AnyRules) {
  auto web = policy({"*:80"});
  EXPECT_TRUE(web.allows_address(a("203.0.113.1"), 80));
  EXPECT_TRUE(web.allows_address(a("2001:db8::1"), 80));
  EXPECT_FALSE(web.allows_address(a("203.0.113.1"), 443));
  auto all = policy({"*"});
  EXPECT_TRUE(all.allows_address(a("203.0.113.1"), 1));
  EXPECT_TRUE(all.allows_address(a("::1"), 65535));
  // "*" is an address rule: a name still goes through resolution and the
  // address check instead of being trusted as a name.
  EXPECT_FALSE(all.allows_name("example.com", 80));
}

TEST(PolicyMatch, FirstMatchingRuleOfMany) {
  auto p = policy({"10.0.0.0/8:22", "*.internal:443", "[fd00::]/8", "192.0.2.7"});
  EXPECT_TRUE(p.allows_address(a("10.9.9.9"), 22));
  EXPECT_FALSE(p.allows_address(a("10.9.9.9"), 443));
  EXPECT_TRUE(p.allows_address(a("fd00::1"), 443));
  EXPECT_TRUE(p.allows_address(a("192.0.2.7"), 12345));
  EXPECT_TRUE(p.allows_name("x.internal", 443));
  EXPECT_FALSE(p.allows_name("x.internal", 22));
  EXPECT_EQ(p.rules().size(), 4u);
}

} // namespace

// Whether any address may be reached on a port: without such a rule, a name
// the name rules refuse is denied without a lookup.
TEST(PolicyMatch, SomeAddressOnAPort) {
  EXPECT_FALSE(policy({}).allows_some_address(80));
  EXPECT_FALSE(policy({"db.internal:5432", "*.internal"}).allows_some_address(5432)) << "names only";
  EXPECT_TRUE(policy({"10.0.0.0/8:443"}).allows_some_address(443));
  EXPECT_FALSE(policy({"10.0.0.0/8:443"}).allows_some_address(80));
  EXPECT_TRUE(policy({"[fd00::]/8:8000-8999"}).allows_some_address(8500));
  EXPECT_TRUE(policy({"*:80"}).allows_some_address(80));
  EXPECT_FALSE(policy({"*:80"}).allows_some_address(81));
  EXPECT_TRUE(policy({"*"}).allows_some_address(1));
}
