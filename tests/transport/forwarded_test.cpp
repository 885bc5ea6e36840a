// Tests of the real client behind a reverse proxy (src/transport/forwarded.*):
// --trust-proxy's CIDR syntax, and X-Forwarded-For read right to left, only
// from a trusted peer, with unreadable headers left alone.
#include "transport/forwarded.hpp"

#include <gtest/gtest.h>

using namespace warren::transport;
namespace ip = boost::asio::ip;

namespace {

ip_network net(std::string_view text) {
  auto n = parse_ip_network(text);
  EXPECT_TRUE(n) << text << ": " << n.error();
  return n ? *n : ip_network{};
}

ip::address addr(const char* text) {
  return ip::make_address(text);
}

const std::vector<ip_network> k_nginx{net("127.0.0.1/32"), net("10.0.0.0/8")};

} // namespace

TEST(TrustProxy, Blocks) {
  EXPECT_TRUE(net("127.0.0.1").contains(addr("127.0.0.1")));
  EXPECT_FALSE(net("127.0.0.1").contains(addr("127.0.0.2")));
  EXPECT_TRUE(net("10.0.0.0/8").contains(addr("10.200.0.1")));
  EXPECT_EQ(net("10.0.0.0/8").base, addr("10.0.0.0"));
  EXPECT_TRUE(net("[fd00::]/8").contains(addr("fd12::1")));
  EXPECT_TRUE(net("::1/128").contains(addr("::1")));
  EXPECT_TRUE(net("0.0.0.0/0").contains(addr("203.0.113.1")));
  EXPECT_FALSE(net("0.0.0.0/0").contains(addr("::1"))) << "families do not mix";
  EXPECT_TRUE(net("127.0.0.0/8").contains(addr("::ffff:127.0.0.9"))) << "an IPv4-mapped peer is its IPv4 address";
  EXPECT_TRUE(net("172.16.0.0/12").contains(addr("172.31.255.255")));
  EXPECT_FALSE(net("172.16.0.0/12").contains(addr("172.32.0.0")));
}

TEST(TrustProxy, Errors) {
  EXPECT_NE(parse_ip_network("nginx.local").error().find("not an address or CIDR block"), std::string::npos);
  EXPECT_NE(parse_ip_network("10.0.0.0/33").error().find("longer than the address"), std::string::npos);
  EXPECT_NE(parse_ip_network("::/129").error().find("longer than the address"), std::string::npos);
  EXPECT_NE(parse_ip_network("10.0.0.0/").error().find("not a number"), std::string::npos);
  EXPECT_NE(parse_ip_network("10.0.0.0/x").error().find("not a number"), std::string::npos);
  EXPECT_FALSE(parse_ip_network(""));
  EXPECT_FALSE(parse_ip_network("*"));
}

TEST(TrustProxy, HostBitsAndLeadingZerosAreErrorsNotGuesses) {
  // 10.1.2.3/8 would trust all of 10/8: say so rather than drop the bits.
  auto e = parse_ip_network("10.1.2.3/8");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().find("would mean 10.0.0.0/8"), std::string::npos) << e.error();
  auto e6 = parse_ip_network("fd00::1/8");
  ASSERT_FALSE(e6);
  EXPECT_NE(e6.error().find("[fd00::]/8"), std::string::npos) << e6.error();
  // /008 is not read as /8.
  auto z = parse_ip_network("127.0.0.1/008");
  ASSERT_FALSE(z);
  EXPECT_NE(z.error().find("leading zero"), std::string::npos) << z.error();
  EXPECT_FALSE(parse_ip_network("127.0.0.0/08"));
  EXPECT_TRUE(parse_ip_network("0.0.0.0/0")) << "/0 parses; trust_proxy_warning refuses it";
  EXPECT_TRUE(parse_ip_network("127.0.0.1/32"));
}

TEST(TrustProxy, EveryPeerIsRefusedAWideBlockWarned) {
  for (const char* all : {"0.0.0.0/0", "::/0"}) {
    auto w = trust_proxy_warning(net(all));
    ASSERT_FALSE(w) << all;
    EXPECT_NE(w.error().find("would trust every peer to name the client"), std::string::npos) << w.error();
  }
  for (const char* wide : {"0.0.0.0/1", "64.0.0.0/2", "[2000::]/3", "[2001:db8::]/31"}) {
    auto w = trust_proxy_warning(net(wide));
    ASSERT_TRUE(w) << wide;
    EXPECT_NE(w->find("very wide block"), std::string::npos) << wide;
  }
  for (const char* fine : {"10.0.0.0/8", "127.0.0.1/32", "[2001:db8::]/32", "::1/128", "172.16.0.0/12"}) {
    auto w = trust_proxy_warning(net(fine));
    ASSERT_TRUE(w) << fine;
    EXPECT_EQ(*w, "") << fine;
  }
}

TEST(XForwardedFor, IgnoredFromAnUntrustedPeer) {
  // A client talking to warren directly cannot claim another address.
  auto c = real_client("198.51.100.7", addr("203.0.113.5"), k_nginx);
  EXPECT_EQ(c.address, addr("203.0.113.5"));
  EXPECT_FALSE(c.forwarded);
  EXPECT_TRUE(c.error.empty());
  EXPECT_EQ(real_client("198.51.100.7", addr("127.0.0.1"), {}).address, addr("127.0.0.1")) << "default: none trusted";
  EXPECT_TRUE(real_client("garbage", addr("203.0.113.5"), k_nginx).error.empty()) << "not even read";
}

TEST(XForwardedFor, RightMostUntrustedAddress) {
  auto c = real_client("198.51.100.7", addr("127.0.0.1"), k_nginx);
  EXPECT_EQ(c.address, addr("198.51.100.7"));
  EXPECT_TRUE(c.forwarded);
  // What the client claimed (left) is not believed; the address nginx saw is.
  EXPECT_EQ(real_client("6.6.6.6, 198.51.100.7", addr("127.0.0.1"), k_nginx).address, addr("198.51.100.7"));
  // Trusted hops on the right (a chain of our own proxies) are skipped.
  EXPECT_EQ(real_client("6.6.6.6,198.51.100.7, 10.0.0.2 ,10.9.9.9", addr("127.0.0.1"), k_nginx).address,
            addr("198.51.100.7"));
  EXPECT_EQ(real_client("2001:db8::5", addr("127.0.0.1"), k_nginx).address, addr("2001:db8::5"));
  EXPECT_EQ(real_client("[2001:db8::5]:4711", addr("127.0.0.1"), k_nginx).address, addr("2001:db8::5"));
  EXPECT_EQ(real_client("[2001:db8::5]", addr("127.0.0.1"), k_nginx).address, addr("2001:db8::5"));
  EXPECT_EQ(real_client("198.51.100.7:4711", addr("127.0.0.1"), k_nginx).address, addr("198.51.100.7"));
  EXPECT_EQ(real_client("::ffff:198.51.100.7", addr("127.0.0.1"), k_nginx).address, addr("198.51.100.7"));
  EXPECT_EQ(real_client("\t198.51.100.7 ", addr("127.0.0.1"), k_nginx).address, addr("198.51.100.7"));
}

TEST(XForwardedFor, WhatIsLeftOfTheClientIsNotRead) {
  // The client may put anything there: only the hops our proxies added count.
  for (const char* h : {",198.51.100.7", "garbage, 198.51.100.7", "unknown,,198.51.100.7"}) {
    auto c = real_client(h, addr("127.0.0.1"), k_nginx);
    EXPECT_EQ(c.address, addr("198.51.100.7")) << h;
    EXPECT_TRUE(c.error.empty()) << h;
  }
}

TEST(XForwardedFor, EveryHopTrustedGivesTheLeftMost) {
  auto c = real_client("10.0.0.7, 10.0.0.2", addr("127.0.0.1"), k_nginx);
  EXPECT_EQ(c.address, addr("10.0.0.7"));
  EXPECT_TRUE(c.forwarded);
}

TEST(XForwardedFor, MissingOrEmptyIsThePeer) {
  for (const char* h : {"", "  ", "\t"}) {
    auto c = real_client(h, addr("127.0.0.1"), k_nginx);
    EXPECT_EQ(c.address, addr("127.0.0.1"));
    EXPECT_FALSE(c.forwarded);
    EXPECT_TRUE(c.error.empty());
  }
}

TEST(XForwardedFor, UnreadableIsThePeerWithAReason) {
  for (const char* h :
       {"unknown", "198.51.100.7,", "198.51.100.7, ", "198.51.100.7 203.0.113.1", "[::1", "[::1]x", "[::1]:99999",
        "1.2.3.4:", "1.2.3.4:x", "example.com", "_hidden", "198.51.100.7;evil", "1.2.3.4, \x01"}) {
    auto c = real_client(h, addr("127.0.0.1"), k_nginx);
    EXPECT_EQ(c.address, addr("127.0.0.1")) << h;
    EXPECT_FALSE(c.forwarded) << h;
    EXPECT_NE(c.error.find("X-Forwarded-For"), std::string::npos) << h;
  }
  // The reason is bounded and quoted.
  const std::string huge(5000, 'x');
  auto c = real_client(huge, addr("127.0.0.1"), k_nginx);
  EXPECT_LT(c.error.size(), 200u);
  // So is the chain.
  std::string chain;
  for (int i = 0; i < 100; ++i)
    chain += (chain.empty() ? "" : ",") + std::string("10.0.0.1");
  EXPECT_NE(real_client(chain, addr("127.0.0.1"), k_nginx).error.find("more than"), std::string::npos);
}
