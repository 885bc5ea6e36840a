#include "net/address.hpp"

#include <gtest/gtest.h>

using namespace warren::net;

TEST(Address, HostPort) {
  auto a = parse_host_port("app.internal:80");
  ASSERT_TRUE(a) << a.error();
  EXPECT_EQ(a->host, "app.internal");
  EXPECT_EQ(a->port, 80);
  auto b = parse_host_port("[::1]:53");
  ASSERT_TRUE(b) << b.error();
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 53);
  auto c = parse_host_port("10.1.2.3:65535");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->port, 65535);
}

TEST(Address, HostPortErrorsSayWhatIsWrong) {
  auto expect_error = [](const char* text, const char* fragment) {
    auto r = parse_host_port(text);
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().find(fragment), std::string::npos) << text << " -> " << r.error();
  };
  expect_error("host", "has no port");
  expect_error("host:", "missing port");
  expect_error("host:99999", "out of range");
  expect_error("host:0", "port 0");
  expect_error("host:8x", "not a number");
  expect_error("::1:80", "brackets");
  expect_error("[::1:80", "without ']'");
  expect_error("[1.2.3.4]:80", "not an IPv6 address");
  expect_error("[::1]80", "has no port");
  expect_error(":80", "has no host");
  expect_error("bad host!:80", "not a valid host name");
  expect_error("", "empty");
}

TEST(Address, HostileInputIsNotEchoedRaw) {
  std::string evil(1, '\x1b');
  evil.append("[31m").append(500, 'a').append(":1");
  auto r = parse_host_port(evil);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().find('\x1b'), std::string::npos);
  EXPECT_LT(r.error().size(), 300u);
}

TEST(Address, ListenForms) {
  auto a = parse_listen_address("localhost:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->kind, listen_kind::host);
  EXPECT_EQ(a->endpoint.host, "localhost");
  auto w = parse_listen_address("*:0");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->kind, listen_kind::wildcard);
  EXPECT_EQ(w->endpoint.port, 0);
  auto u = parse_listen_address("/run/warren.sock");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->kind, listen_kind::unix_path);
  EXPECT_EQ(u->path, "/run/warren.sock");
  auto u2 = parse_listen_address("unix:rel.sock");
  ASSERT_TRUE(u2);
  EXPECT_EQ(u2->path, "rel.sock");
  auto v6 = parse_listen_address("[::1]:0");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->endpoint.host, "::1");
}

TEST(Address, ListenErrors) {
  EXPECT_NE(parse_listen_address(":8080").error().find("localhost:8080"), std::string::npos);
  EXPECT_NE(parse_listen_address("::1:80").error().find("brackets"), std::string::npos);
  EXPECT_NE(parse_listen_address("*:70000").error().find("out of range"), std::string::npos);
  EXPECT_NE(parse_listen_address("unix:").error().find("empty"), std::string::npos);
  EXPECT_NE(parse_listen_address("/" + std::string(200, 'x')).error().find("too long"), std::string::npos);
}

TEST(Address, Literals) {
  EXPECT_TRUE(is_ipv4_literal("127.0.0.1"));
  EXPECT_FALSE(is_ipv4_literal("127.0.0.256"));
  EXPECT_TRUE(is_ipv6_literal("::1"));
  EXPECT_TRUE(is_ipv6_literal("fe80::1:2"));
  EXPECT_FALSE(is_ipv6_literal("::g"));
  EXPECT_EQ(format_host_port("::1", 80), "[::1]:80");
  EXPECT_EQ(format_host_port("a.b", 1), "a.b:1");
}

TEST(Address, NonCanonicalIpv4) {
  for (const char* odd :
       {"3128", "127.1", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "127.0.0.1.", "1.2.3", "host.0x"})
    EXPECT_TRUE(is_noncanonical_ipv4(odd)) << odd;
  for (const char* fine : {"127.0.0.1", "::1", "example.com", "a1", "1a.example", "v6.host", "0x7g", "host.0xg",
                           "::ffff:127.0.0.1", "64:ff9b::1.2.3.4"})
    EXPECT_FALSE(is_noncanonical_ipv4(fine)) << fine;
}
