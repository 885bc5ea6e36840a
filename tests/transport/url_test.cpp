// Tests of tunnel URL parsing (src/transport/url.*): the four schemes with
// their default ports (tcp has none), paths (ws and wss only), IPv6 hosts in
// brackets, formatting back to text, and the errors a user can make
// (unknown scheme, missing port, credentials in the URL, bad characters).
#include "transport/url.hpp"

#include <gtest/gtest.h>

using namespace warren;
using namespace warren::transport;

namespace {

url parsed(std::string_view text) {
  auto u = parse_url(text);
  EXPECT_TRUE(u) << text << ": " << u.error();
  return u ? *u : url{};
}

std::string error_of(std::string_view text) {
  auto u = parse_url(text);
  EXPECT_FALSE(u) << text << " parsed";
  return u ? std::string() : u.error();
}

TEST(Url, Schemes) {
  auto tcp = parsed("tcp://gw.example:7000");
  EXPECT_EQ(tcp.scheme, scheme::tcp);
  EXPECT_EQ(tcp.endpoint, (net::host_port{"gw.example", 7000}));
  EXPECT_FALSE(tcp.uses_tls());
  EXPECT_FALSE(tcp.uses_websocket());

  auto tls = parsed("tls://gw.example:8443");
  EXPECT_EQ(tls.scheme, scheme::tls);
  EXPECT_TRUE(tls.uses_tls());
  EXPECT_FALSE(tls.uses_websocket());

  auto ws = parsed("ws://gw.example:8080");
  EXPECT_EQ(ws.scheme, scheme::ws);
  EXPECT_FALSE(ws.uses_tls());
  EXPECT_TRUE(ws.uses_websocket());
  EXPECT_EQ(ws.path, "/");

  auto wss = parsed("wss://gw.example:443");
  EXPECT_EQ(wss.scheme, scheme::wss);
  EXPECT_TRUE(wss.uses_tls());
  EXPECT_TRUE(wss.uses_websocket());
}

TEST(Url, DefaultPorts) {
  EXPECT_EQ(parsed("ws://gw.example").endpoint.port, 80);
  EXPECT_EQ(parsed("wss://gw.example").endpoint.port, 443);
  EXPECT_EQ(parsed("tls://gw.example").endpoint.port, 443);
  EXPECT_EQ(parsed("wss://gw.example/tunnel").endpoint.port, 443);
  EXPECT_EQ(parsed("wss://[2001:db8::1]").endpoint.port, 443);
  EXPECT_NE(error_of("tcp://gw.example").find("needs a port"), std::string::npos);
}

TEST(Url, Paths) {
  EXPECT_EQ(parsed("wss://gw.example/tunnel").path, "/tunnel");
  EXPECT_EQ(parsed("ws://gw.example:8080/a/b?x=1").path, "/a/b?x=1");
  EXPECT_EQ(parsed("wss://gw.example/").path, "/");
  EXPECT_NE(error_of("tls://gw.example:443/tunnel").find("only meaningful for ws:// and wss://"), std::string::npos);
  EXPECT_NE(error_of("tcp://gw.example:7000/x").find("path"), std::string::npos);
  EXPECT_NE(error_of("wss://gw.example/a b").find("space or control"), std::string::npos);
  EXPECT_NE(error_of("wss://gw.example/a\tb").find("space or control"), std::string::npos);
  EXPECT_NE(error_of("wss://gw.example/\x7f").find("space or control"), std::string::npos);
}

TEST(Url, Hosts) {
  EXPECT_EQ(parsed("wss://[2001:db8::1]:8443/t").endpoint, (net::host_port{"2001:db8::1", 8443}));
  EXPECT_EQ(parsed("tcp://[::1]:7000").endpoint, (net::host_port{"::1", 7000}));
  EXPECT_EQ(parsed("tls://192.0.2.1").endpoint, (net::host_port{"192.0.2.1", 443}));
  EXPECT_FALSE(parse_url("wss://2001:db8::1/")) << "an IPv6 host without brackets";
  EXPECT_FALSE(parse_url("wss://:443"));
  EXPECT_FALSE(parse_url("wss:///path"));
  EXPECT_FALSE(parse_url("tcp://gw.example:0"));
  EXPECT_FALSE(parse_url("tcp://gw.example:65536"));
  EXPECT_FALSE(parse_url("tcp://gw.example:port"));
  EXPECT_FALSE(parse_url("wss://bad host"));
}

TEST(Url, ListenUrlsMayUseTheWildcard) {
  auto all = parse_url("wss://*:8443/tunnel/", true);
  ASSERT_TRUE(all) << all.error();
  EXPECT_EQ(all->endpoint, (net::host_port{"*", 8443}));
  EXPECT_EQ(all->path, "/tunnel/");
  auto default_port = parse_url("wss://*", true);
  ASSERT_TRUE(default_port) << default_port.error();
  EXPECT_EQ(default_port->endpoint, (net::host_port{"*", 443}));
  EXPECT_TRUE(parse_url("tcp://*:0", true));
  EXPECT_FALSE(parse_url("tcp://*", true)) << "tcp:// needs a port";
  EXPECT_FALSE(parse_url("wss://*:99999", true));
  EXPECT_FALSE(parse_url("wss://*:443")) << "a client cannot dial `*`";
  EXPECT_FALSE(parse_url("wss://*x:443", true));
}

TEST(Url, Errors) {
  EXPECT_NE(error_of("gw.example:443").find("not a tunnel URL"), std::string::npos);
  EXPECT_NE(error_of("https://gw.example").find("unknown URL scheme 'https'"), std::string::npos);
  EXPECT_NE(error_of("").find("not a tunnel URL"), std::string::npos);
  EXPECT_NE(error_of("wss://user:secret@gw.example").find("credentials"), std::string::npos);
  EXPECT_EQ(error_of("wss://user:secret@gw.example").find("secret"), std::string::npos) << "never echo a password";
  EXPECT_NE(error_of("tcp://token@gw.example:7000").find("--token-file"), std::string::npos);
  // Long input is cut in messages.
  const std::string long_url = "wss://" + std::string(5000, 'a') + " ";
  EXPECT_LT(error_of(long_url).size(), 400u);
}

TEST(Url, IpAddressesAreDottedQuadsOnly) {
  // What curl reads as 127.0.0.1 would bypass NO_PROXY=127.0.0.1 and show
  // another address in the logs than the one dialled.
  for (const char* odd :
       {"wss://127.1:18443", "wss://2130706433:18443", "wss://0x7f.1:18443", "tcp://0x7f000001:7000", "ws://10.1:80"}) {
    const auto e = error_of(odd);
    EXPECT_NE(e.find("is not a host name or a dotted IPv4 address"), std::string::npos) << e;
  }
  EXPECT_EQ(parsed("wss://127.0.0.1:18443").endpoint.host, "127.0.0.1");
  EXPECT_EQ(parsed("wss://v2.example.com").endpoint.host, "v2.example.com");
  EXPECT_EQ(parsed("wss://[::1]:443").endpoint.host, "::1");
}

TEST(Url, ToStringRoundTrips) {
  for (const char* text : {"tcp://gw.example:7000", "tls://gw.example:443", "ws://gw.example:80",
                           "wss://gw.example:443/tunnel", "wss://[2001:db8::1]:8443", "ws://127.0.0.1:8080/x"}) {
    auto u = parsed(text);
    EXPECT_EQ(to_string(u), text);
    auto again = parsed(to_string(u));
    EXPECT_EQ(again.scheme, u.scheme);
    EXPECT_EQ(again.endpoint, u.endpoint);
    EXPECT_EQ(again.path, u.path);
  }
  EXPECT_EQ(to_string(parsed("wss://gw.example")), "wss://gw.example:443");
  EXPECT_EQ(to_string(scheme::tls), "tls");
}

TEST(Url, ToStringLeavesOutTheQuery) {
  // The client logs its server URL in every retry warning; a query (a
  // credential for a proxy in front) was written there in full.
  auto u = parsed("wss://gw.example/tun?token=s3cret");
  EXPECT_EQ(u.path, "/tun?token=s3cret") << "the request target keeps it";
  EXPECT_EQ(to_string(u).find("s3cret"), std::string::npos) << to_string(u);
  EXPECT_EQ(to_string(u), "wss://gw.example:443/tun?(query not shown)");
  EXPECT_EQ(to_string(parsed("ws://127.0.0.1:80/?k=s3cret")), "ws://127.0.0.1:80/?(query not shown)");
}

} // namespace
