// Tests of the client's ssh-style forward specs (src/tunnel/forward.*):
// -L [udp/|tcp/][bind:]port:host:port and -D [bind:]port, with the default
// bind (localhost), wildcard and IPv6 binds and targets in brackets, and the
// error messages for malformed specs (which quote the spec as written).
#include "tunnel/forward.hpp"

#include <gtest/gtest.h>

using namespace warren;
using namespace warren::tunnel;

namespace {

forward_spec local(std::string_view text) {
  auto f = parse_local_forward(text);
  EXPECT_TRUE(f) << text << ": " << f.error();
  return f ? *f : forward_spec{};
}

forward_spec dynamic(std::string_view text) {
  auto f = parse_dynamic_forward(text);
  EXPECT_TRUE(f) << text << ": " << f.error();
  return f ? *f : forward_spec{};
}

std::string local_error(std::string_view text) {
  auto f = parse_local_forward(text);
  EXPECT_FALSE(f) << text << " parsed";
  return f ? std::string() : f.error();
}

std::string dynamic_error(std::string_view text) {
  auto f = parse_dynamic_forward(text);
  EXPECT_FALSE(f) << text << " parsed";
  return f ? std::string() : f.error();
}

TEST(LocalForward, PortHostPort) {
  auto f = local("8080:app.internal:80");
  EXPECT_EQ(f.type, forward_spec::kind::tcp);
  EXPECT_EQ(f.listen.kind, net::listen_kind::host);
  EXPECT_EQ(f.listen.endpoint, (net::host_port{"localhost", 8080}));
  EXPECT_EQ(f.target, (net::host_port{"app.internal", 80}));
  EXPECT_EQ(f.text, "8080:app.internal:80");
}

TEST(LocalForward, ExplicitTcpAndUdp) {
  auto t = local("tcp/8080:app.internal:80");
  EXPECT_EQ(t.type, forward_spec::kind::tcp);
  EXPECT_EQ(t.target, (net::host_port{"app.internal", 80}));

  auto u = local("udp/5353:10.0.0.53:53");
  EXPECT_EQ(u.type, forward_spec::kind::udp);
  EXPECT_EQ(u.listen.endpoint, (net::host_port{"localhost", 5353}));
  EXPECT_EQ(u.target, (net::host_port{"10.0.0.53", 53}));
  EXPECT_EQ(u.text, "udp/5353:10.0.0.53:53");
}

TEST(LocalForward, BindAddress) {
  auto f = local("0.0.0.0:8080:app.internal:80");
  EXPECT_EQ(f.listen.kind, net::listen_kind::host);
  EXPECT_EQ(f.listen.endpoint, (net::host_port{"0.0.0.0", 8080}));

  auto w = local("*:8080:app.internal:80");
  EXPECT_EQ(w.listen.kind, net::listen_kind::wildcard);
  EXPECT_EQ(w.listen.endpoint.port, 8080);

  auto u = local("udp/127.0.0.1:5353:dns.internal:53");
  EXPECT_EQ(u.type, forward_spec::kind::udp);
  EXPECT_EQ(u.listen.endpoint, (net::host_port{"127.0.0.1", 5353}));
}

TEST(LocalForward, Ipv6InBrackets) {
  auto f = local("[::1]:8080:[fd00::5]:80");
  EXPECT_EQ(f.listen.endpoint, (net::host_port{"::1", 8080}));
  EXPECT_EQ(f.target, (net::host_port{"fd00::5", 80}));

  auto t = local("8080:[2001:db8::1]:443");
  EXPECT_EQ(t.listen.endpoint, (net::host_port{"localhost", 8080}));
  EXPECT_EQ(t.target, (net::host_port{"2001:db8::1", 443}));
}

TEST(LocalForward, PortZeroLetsTheKernelPick) {
  auto f = local("0:app.internal:80");
  EXPECT_EQ(f.listen.endpoint.port, 0);
}

TEST(LocalForward, Errors) {
  EXPECT_NE(local_error("8080:app.internal").find("expected [udp/][bind:]port:host:port"), std::string::npos);
  EXPECT_NE(local_error("8080").find("expected"), std::string::npos);
  EXPECT_NE(local_error("a:b:8080:app:80").find("expected"), std::string::npos);
  EXPECT_NE(local_error("").find("expected"), std::string::npos);
  EXPECT_NE(local_error("8080:app.internal:0").find("target"), std::string::npos) << "target port 0";
  EXPECT_NE(local_error("8080:app.internal:70000").find("target"), std::string::npos);
  EXPECT_NE(local_error("8080:bad host:80").find("target"), std::string::npos);
  EXPECT_FALSE(parse_local_forward("http:app.internal:80")) << "listen port not a number";
  EXPECT_FALSE(parse_local_forward("99999:app.internal:80"));
  EXPECT_FALSE(parse_local_forward("8080:fd00::5:80")) << "an IPv6 target without brackets";
  EXPECT_FALSE(parse_local_forward("[::1:8080:app:80")) << "unbalanced bracket";
  EXPECT_FALSE(parse_local_forward("sctp/8080:app:80"));
  EXPECT_FALSE(parse_local_forward("udp/"));
  // Messages quote the spec as written.
  EXPECT_NE(local_error("8080:app.internal").find("-L '8080:app.internal'"), std::string::npos);
}

TEST(DynamicForward, Port) {
  auto f = dynamic("1080");
  EXPECT_EQ(f.type, forward_spec::kind::socks);
  EXPECT_EQ(f.listen.kind, net::listen_kind::host);
  EXPECT_EQ(f.listen.endpoint, (net::host_port{"localhost", 1080}));
  EXPECT_EQ(f.text, "1080");
}

TEST(DynamicForward, BindForms) {
  EXPECT_EQ(dynamic("127.0.0.1:1080").listen.endpoint, (net::host_port{"127.0.0.1", 1080}));
  EXPECT_EQ(dynamic("[::1]:1080").listen.endpoint, (net::host_port{"::1", 1080}));
  auto w = dynamic("*:1080");
  EXPECT_EQ(w.listen.kind, net::listen_kind::wildcard);
  EXPECT_EQ(w.listen.endpoint.port, 1080);
}

TEST(DynamicForward, Errors) {
  EXPECT_NE(dynamic_error("a:b:1080").find("expected [bind:]port"), std::string::npos);
  EXPECT_NE(dynamic_error("socks").find("-D 'socks'"), std::string::npos);
  EXPECT_FALSE(parse_dynamic_forward(""));
  EXPECT_FALSE(parse_dynamic_forward("65536"));
  EXPECT_FALSE(parse_dynamic_forward("::1:1080")) << "an IPv6 bind without brackets";
  EXPECT_FALSE(parse_dynamic_forward("127.0.0.1:"));
}

} // namespace
