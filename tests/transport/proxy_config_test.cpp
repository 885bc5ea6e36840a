// Proxy URLs, curl's no_proxy rules and the choice between --proxy and the
// environment (transport/proxy_config.hpp), on a fake environment.
#include "transport/proxy_config.hpp"

#include <gtest/gtest.h>

#include <map>

using namespace warren::transport;

namespace {

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(ProxyUrl, SchemesPortsAndDefaults) {
  auto p = parse_proxy_url("http://proxy.example:3128");
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->kind, proxy_kind::http);
  EXPECT_EQ(p->endpoint.host, "proxy.example");
  EXPECT_EQ(p->endpoint.port, 3128);
  p = parse_proxy_url("proxy.example");
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->kind, proxy_kind::http);
  EXPECT_EQ(p->endpoint.port, 1080); // curl's default
  p = parse_proxy_url("SOCKS5H://[::1]:1080/");
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->kind, proxy_kind::socks5h);
  EXPECT_EQ(p->endpoint.host, "::1");
  EXPECT_EQ(to_string(*p), "socks5h://[::1]:1080");
  p = parse_proxy_url("socks5://127.0.0.1:9050");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->kind, proxy_kind::socks5);
}

TEST(ProxyUrl, CredentialsAreDecodedAndNeverShown) {
  auto p = parse_proxy_url("http://al%40ice:s3cr%2Ft@proxy:8080");
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->user, "al@ice");
  EXPECT_EQ(p->password, "s3cr/t");
  EXPECT_TRUE(p->password_in_url);
  EXPECT_EQ(to_string(*p), "http://proxy:8080");
  p = parse_proxy_url("http://bob@proxy:8080");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->user, "bob");
  EXPECT_FALSE(p->password_in_url);
  // A password holding '@' and '/' (the last '@' ends the user info).
  p = parse_proxy_url("http://u:p@ss/word@proxy:1");
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->password, "p@ss/word");
  for (const char* bad :
       {"http://u:hunter2@", "ftp://u:hunter2@proxy:1", "https://u:hunter2@proxy:1", "http://u:hunter2@proxy:99999",
        "http://u:hunter2@proxy:1/path", "http://u:hun%zzter2@p", "http://:hunter2@proxy:1"}) {
    auto r = parse_proxy_url(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_FALSE(contains(r.error(), "hunter2")) << r.error();
  }
  EXPECT_TRUE(contains(parse_proxy_url("https://proxy:1").error(), "not supported"));
  EXPECT_TRUE(contains(parse_proxy_url("socks4://proxy:1").error(), "socks5://"));
}

TEST(ProxyUrl, AnAuthorityThatDoesNotParseIsNotEchoed) {
  // The '@' forgotten: what follows the first ':' may be a password.
  for (const char* bad : {"http://alice:S3cretPW127.0.0.1:3128", "alice:S3cretPW-2:3128", "socks5://alice:S3cretPW"}) {
    auto r = parse_proxy_url(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_FALSE(contains(r.error(), "S3cretPW")) << r.error();
    EXPECT_TRUE(contains(r.error(), "expected")) << r.error();
  }
  EXPECT_EQ(parse_proxy_url("http://alice:S3cretPW127.0.0.1:3128").error(),
            "proxy URL 'http://alice:...': expected http://HOST:PORT, socks5://HOST:PORT or socks5h://HOST:PORT "
            "(the port 1-65535; a user name and password go before an '@')");
}

TEST(ProxyUrl, ASchemeWithoutItsSlashesSaysWhatIsExpected) {
  for (const char* bad : {"http:/127.0.0.1:3128", "http:127.0.0.1:3128", "socks5:/h:1"}) {
    auto r = parse_proxy_url(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error(), "proxy URL: expected http://HOST:PORT, socks5://HOST:PORT or socks5h://HOST:PORT") << bad;
  }
  // host:port without a scheme stays http://.
  auto p = parse_proxy_url("proxy.example:3128/");
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(to_string(*p), "http://proxy.example:3128");
  p = parse_proxy_url("bob:pw@proxy.example:3128");
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->user, "bob");
}

TEST(ProxyUrl, NumbersAndOddIpv4SpellingsAreNotHosts) {
  auto r = parse_proxy_url("3128");
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error(), "'3128' is not a host; did you mean http://localhost:3128?")) << r.error();
  r = parse_proxy_url("socks5://1080");
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error(), "did you mean socks5://localhost:1080?")) << r.error();
  for (const char* bad : {"127.1:3128", "0x7f000001:3128", "2130706433:3128", "http://0x7f.1:3128", "10.1.1:8080"}) {
    r = parse_proxy_url(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(contains(r.error(), "is not a host name or a dotted IPv4 address")) << r.error();
  }
  for (const char* good : {"127.0.0.1:3128", "proxy-1.example:3128", "[::1]:3128", "1a.example:3128"})
    EXPECT_TRUE(parse_proxy_url(good)) << good;
}

TEST(ProxyCredentials, ControlCharactersColonsAndSocksLengths) {
  auto p = parse_proxy_url("http://al%0aice:pw@proxy:1");
  ASSERT_TRUE(p) << p.error();
  auto bad = check_credentials(*p);
  ASSERT_TRUE(bad);
  EXPECT_TRUE(contains(*bad, "user name holds a control character")) << *bad;
  p = parse_proxy_url("http://alice:p%0dw@proxy:1");
  ASSERT_TRUE(p);
  bad = check_credentials(*p);
  ASSERT_TRUE(bad);
  EXPECT_TRUE(contains(*bad, "password holds a control character")) << *bad;
  p = parse_proxy_url("http://al%3Aice:pw@proxy:1");
  ASSERT_TRUE(p);
  bad = check_credentials(*p);
  ASSERT_TRUE(bad);
  EXPECT_TRUE(contains(*bad, "RFC 7617")) << *bad;
  // SOCKS5 (RFC 1929) carries a ':' but at most 255 bytes.
  p = parse_proxy_url("socks5://al%3Aice:pw@proxy:1");
  ASSERT_TRUE(p);
  EXPECT_FALSE(check_credentials(*p));
  proxy_url q = *p;
  q.password = std::string(256, 'x');
  bad = check_credentials(q);
  ASSERT_TRUE(bad);
  EXPECT_TRUE(contains(*bad, "255 bytes")) << *bad;
  EXPECT_FALSE(contains(*bad, "xxxx")) << *bad;
  q.password = std::string(255, 'x');
  EXPECT_FALSE(check_credentials(q));
  q.user = "bob";
  q.password = std::string(256, 'x');
  q.kind = proxy_kind::http;
  EXPECT_FALSE(check_credentials(q)); // HTTP Basic has no such limit
}

TEST(NoProxy, CurlRules) {
  EXPECT_TRUE(no_proxy_matches("*", "anything.example", 443));
  EXPECT_TRUE(no_proxy_matches("example.com", "example.com", 443));
  EXPECT_TRUE(no_proxy_matches("example.com", "gw.example.com", 443));
  EXPECT_TRUE(no_proxy_matches(".example.com", "example.com", 443));
  EXPECT_TRUE(no_proxy_matches(".example.com", "a.b.example.com", 443));
  EXPECT_FALSE(no_proxy_matches("example.com", "notexample.com", 443));
  EXPECT_FALSE(no_proxy_matches("example.com", "example.com.evil", 443));
  EXPECT_TRUE(no_proxy_matches(" localhost , Example.COM. ", "gw.example.com", 443));
  EXPECT_TRUE(no_proxy_matches("localhost,127.0.0.1", "127.0.0.1", 443));
  EXPECT_FALSE(no_proxy_matches("127.0.0.1", "127.0.0.2", 443));
  EXPECT_TRUE(no_proxy_matches("10.0.0.0/8", "10.1.2.3", 443));
  EXPECT_FALSE(no_proxy_matches("10.0.0.0/8", "11.1.2.3", 443));
  EXPECT_TRUE(no_proxy_matches("fd00::/8", "fd12::1", 443));
  EXPECT_TRUE(no_proxy_matches("::1", "::1", 443));
  EXPECT_TRUE(no_proxy_matches("[::1]", "::1", 443));
  EXPECT_TRUE(no_proxy_matches("127.0.0.0/8", "::ffff:127.0.0.1", 443));
  EXPECT_FALSE(no_proxy_matches("10.0.0.0/8", "ten.example", 443)); // names are not resolved
  EXPECT_FALSE(no_proxy_matches("127.0.0.0/33", "127.0.0.1", 443));
  // With a port, only that port.
  EXPECT_TRUE(no_proxy_matches("example.com:443", "example.com", 443));
  EXPECT_FALSE(no_proxy_matches("example.com:443", "example.com", 8443));
  EXPECT_TRUE(no_proxy_matches("[::1]:443", "::1", 443));
  EXPECT_FALSE(no_proxy_matches("[::1]:443", "::1", 80));
  EXPECT_FALSE(no_proxy_matches("", "example.com", 443));
  EXPECT_FALSE(no_proxy_matches(",,", "example.com", 443));
  EXPECT_FALSE(no_proxy_matches("*.example.com", "gw.example.com", 443)); // curl has no wildcards but '*' alone
}

struct fake_env {
  std::map<std::string, std::string> vars;
  env_lookup lookup() const {
    return [this](const char* name) -> std::optional<std::string> {
      auto it = vars.find(name);
      if (it == vars.end())
        return std::nullopt;
      return it->second;
    };
  }
};

url server(const char* text) {
  return *parse_url(text);
}

TEST(ChooseProxy, FlagBeatsTheEnvironment) {
  fake_env env{{{"HTTPS_PROXY", "http://env:1"}, {"NO_PROXY", "*"}}};
  auto c = choose_proxy(server("wss://gw.example"), "socks5h://flag:2", env.lookup());
  ASSERT_TRUE(c) << c.error();
  ASSERT_TRUE(c->proxy);
  EXPECT_EQ(c->proxy->endpoint.host, "flag");
  EXPECT_EQ(c->source, "--proxy");
  c = choose_proxy(server("wss://gw.example"), "none", env.lookup());
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->proxy);
  EXPECT_EQ(c->source, "--proxy none");
  auto bad = choose_proxy(server("wss://gw.example"), "gopher://x", env.lookup());
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().starts_with("--proxy: "));
}

TEST(ChooseProxy, VariablesBySchemeAsCurl) {
  fake_env env{{{"https_proxy", "http://lower:1"},
                {"HTTPS_PROXY", "http://upper:2"},
                {"HTTP_PROXY", "http://cgi:3"},
                {"ALL_PROXY", "socks5h://all:4"}}};
  auto c = choose_proxy(server("wss://gw.example"), "", env.lookup());
  ASSERT_TRUE(c && c->proxy);
  EXPECT_EQ(c->proxy->endpoint.host, "lower");
  EXPECT_EQ(c->source, "https_proxy");
  env.vars.erase("https_proxy");
  c = choose_proxy(server("tls://gw.example"), "", env.lookup());
  ASSERT_TRUE(c && c->proxy);
  EXPECT_EQ(c->source, "HTTPS_PROXY");
  // ws:// and tcp:// read http_proxy, never HTTP_PROXY: ALL_PROXY it is.
  c = choose_proxy(server("ws://gw.example"), "", env.lookup());
  ASSERT_TRUE(c && c->proxy);
  EXPECT_EQ(c->source, "ALL_PROXY");
  EXPECT_EQ(c->proxy->kind, proxy_kind::socks5h);
  env.vars["http_proxy"] = "http://clear:5";
  c = choose_proxy(server("tcp://gw.example:7000"), "", env.lookup());
  ASSERT_TRUE(c && c->proxy);
  EXPECT_EQ(c->source, "http_proxy");
  // An empty variable counts as unset.
  fake_env empty{{{"HTTPS_PROXY", ""}, {"all_proxy", "http://all:6"}}};
  c = choose_proxy(server("wss://gw.example"), "", empty.lookup());
  ASSERT_TRUE(c && c->proxy);
  EXPECT_EQ(c->source, "all_proxy");
  fake_env none;
  c = choose_proxy(server("wss://gw.example"), "", none.lookup());
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->proxy);
  EXPECT_EQ(c->source, "");
}

TEST(ChooseProxy, NoProxyBypassesTheEnvironment) {
  fake_env env{{{"HTTPS_PROXY", "http://env:1"}, {"NO_PROXY", "example.com"}}};
  auto c = choose_proxy(server("wss://gw.example.com"), "", env.lookup());
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->proxy);
  EXPECT_EQ(c->source, "NO_PROXY");
  c = choose_proxy(server("wss://gw.example.org"), "", env.lookup());
  ASSERT_TRUE(c && c->proxy);
  // no_proxy is read before NO_PROXY, which is then ignored.
  env.vars["no_proxy"] = "other.example";
  c = choose_proxy(server("wss://gw.example.com"), "", env.lookup());
  ASSERT_TRUE(c && c->proxy);
  // A bad URL in a variable names the variable, and not its password.
  fake_env bad{{{"HTTPS_PROXY", "ftp://u:hunter2@x:1"}}};
  auto b = choose_proxy(server("wss://gw.example"), "", bad.lookup());
  ASSERT_FALSE(b);
  EXPECT_TRUE(b.error().starts_with("HTTPS_PROXY: ")) << b.error();
  EXPECT_FALSE(contains(b.error(), "hunter2"));
}

} // namespace
