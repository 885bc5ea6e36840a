// HTTP CONNECT codec: the request's exact bytes (Basic credentials base64'd,
// IPv6 in brackets), the reply parser at every truncation point, its bounds,
// error bodies read whole, and each refusal's sentence.
#include "proxy/http_connect.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace warren::proxy::http_connect;

namespace {

std::vector<std::uint8_t> b(std::string_view s) {
  return std::vector<std::uint8_t>(s.begin(), s.end());
}

parse_result parse(std::string_view s) {
  return parse_reply(b(s));
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(HttpConnectRequest, NameAndPortWithoutCredentials) {
  EXPECT_EQ(encode_request({"gw.example", 443}, std::nullopt),
            "CONNECT gw.example:443 HTTP/1.1\r\nHost: gw.example:443\r\nUser-Agent: warren/0.1\r\n\r\n");
}

TEST(HttpConnectRequest, Ipv6InBracketsAndBasicCredentials) {
  const auto r = encode_request({"2001:db8::1", 8443}, credentials{"Aladdin", "open sesame"});
  EXPECT_TRUE(r.starts_with("CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n"));
  // RFC 7617's example.
  EXPECT_TRUE(contains(r, "\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"));
  EXPECT_TRUE(r.ends_with("\r\n\r\n"));
}

TEST(HttpConnectRequest, Base64Padding) {
  EXPECT_EQ(basic_authorization({"a", ""}), "Basic YTo=");
  EXPECT_EQ(basic_authorization({"ab", "c"}), "Basic YWI6Yw==");
  EXPECT_EQ(basic_authorization({"ab", "cd"}), "Basic YWI6Y2Q=");
}

TEST(HttpConnectReply, Established) {
  const std::string text = "HTTP/1.1 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n";
  for (std::size_t n = 0; n < text.size(); ++n)
    EXPECT_EQ(parse(text.substr(0, n)).status, parse_status::need_more) << n;
  auto r = parse(text);
  ASSERT_EQ(r.status, parse_status::done);
  EXPECT_EQ(r.value.status, 200);
  EXPECT_EQ(r.value.reason, "Connection established");
  EXPECT_TRUE(r.value.success());
  EXPECT_EQ(r.value.consumed, text.size());
}

TEST(HttpConnectReply, SuccessEndsAtItsHeadWhateverItsLengthHeaders) {
  // RFC 9110 9.3.6: what follows a 2xx head is the tunnel, Content-Length or not.
  const std::string head = "HTTP/1.0 200 OK\r\nContent-Length: 50\r\n\r\n";
  auto r = parse(head + "tunnel bytes");
  ASSERT_EQ(r.status, parse_status::done);
  EXPECT_EQ(r.value.consumed, head.size());
}

TEST(HttpConnectReply, BareLineFeedsAndNoReason) {
  auto r = parse("HTTP/1.1 200\n\n");
  ASSERT_EQ(r.status, parse_status::done);
  EXPECT_EQ(r.value.status, 200);
  EXPECT_EQ(r.value.reason, "");
  EXPECT_EQ(r.value.consumed, 14u);
}

TEST(HttpConnectReply, ErrorBodyIsReadWhole) {
  const std::string head = "HTTP/1.1 403 Access violation\r\nContent-Type: text/html\r\nContent-Length: 10\r\n\r\n";
  EXPECT_EQ(parse(head).status, parse_status::need_more);
  EXPECT_EQ(parse(head + "01234").status, parse_status::need_more);
  auto r = parse(head + "0123456789");
  ASSERT_EQ(r.status, parse_status::done);
  EXPECT_EQ(r.value.status, 403);
  EXPECT_EQ(r.value.consumed, head.size() + 10);
}

TEST(HttpConnectReply, LargeOrChunkedErrorBodyIsLeftUnread) {
  const std::string big = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 999999999\r\n\r\n";
  auto r = parse(big);
  ASSERT_EQ(r.status, parse_status::done);
  EXPECT_EQ(r.value.consumed, big.size());
  const std::string chunked = "HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
  r = parse(chunked);
  ASSERT_EQ(r.status, parse_status::done);
  EXPECT_EQ(r.value.consumed, chunked.size());
}

TEST(HttpConnectReply, ProxyAuthenticateIsKept) {
  auto r = parse("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"tinyproxy\"\r\n"
                 "Content-Length: 0\r\n\r\n");
  ASSERT_EQ(r.status, parse_status::done);
  EXPECT_EQ(r.value.status, 407);
  EXPECT_EQ(r.value.proxy_authenticate, "Basic realm=\"tinyproxy\"");
}

TEST(HttpConnectReply, NotHttpFailsAtTheFirstByte) {
  auto r = parse("\x05");
  ASSERT_EQ(r.status, parse_status::failed);
  EXPECT_TRUE(contains(r.error, "not HTTP")) << r.error;
  EXPECT_TRUE(contains(r.error, "socks5://")) << r.error;
  EXPECT_EQ(parse("HTT").status, parse_status::need_more);
  EXPECT_EQ(parse("SSH-2.0-OpenSSH").status, parse_status::failed);
}

TEST(HttpConnectReply, MalformedStatusAndHeaders) {
  for (const char* text :
       {"HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/1.1 099 x\r\n\r\n", "HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", "HTTP/1.1 403 No\r\nContent-Length: 12x\r\n\r\n",
        "HTTP/1.1 403 No\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"}) {
    auto r = parse(text);
    EXPECT_EQ(r.status, parse_status::failed) << text;
    EXPECT_FALSE(r.error.empty());
  }
}

TEST(HttpConnectReply, HeadIsBounded) {
  std::string text = "HTTP/1.1 200 OK\r\n";
  while (text.size() < k_max_head)
    text += "X-Filler: " + std::string(100, 'a') + "\r\n";
  auto r = parse(text);
  ASSERT_EQ(r.status, parse_status::failed);
  EXPECT_TRUE(contains(r.error, "16 KiB")) << r.error;
}

TEST(HttpConnectReply, InterimRepliesAreSkipped) {
  const std::string interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n";
  const std::string final_head = "HTTP/1.1 200 Connection established\r\n\r\n";
  auto r = parse(interim + final_head + "TUNNEL");
  ASSERT_EQ(r.status, parse_status::done) << r.error;
  EXPECT_EQ(r.value.status, 200);
  EXPECT_EQ(r.value.consumed, interim.size() + final_head.size());
  // Waits for the final reply after an interim one, at every truncation.
  for (std::size_t n = 0; n < interim.size() + final_head.size(); ++n)
    EXPECT_EQ(parse((interim + final_head).substr(0, n)).status, parse_status::need_more) << n;
  // 101 is final: not a success, and nothing more is read.
  r = parse("HTTP/1.1 101 Switching Protocols\r\n\r\n");
  ASSERT_EQ(r.status, parse_status::done);
  EXPECT_EQ(r.value.status, 101);
  EXPECT_FALSE(r.value.success());
}

TEST(HttpConnectReply, InterimRepliesShareTheHeadBound) {
  std::string text;
  while (text.size() < k_max_head)
    text += "HTTP/1.1 100 Continue\r\nX-Filler: " + std::string(100, 'a') + "\r\n\r\n";
  auto r = parse(text + "HTTP/1.1 200 OK\r\n\r\n");
  ASSERT_EQ(r.status, parse_status::failed);
  EXPECT_TRUE(contains(r.error, "16 KiB")) << r.error;
}

TEST(HttpConnectReply, FoldedHeaderLinesAreJoined) {
  // RFC 9112 §5.2: obs-fold is replaced by a space.
  auto r = parse("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n realm=\"x\"\r\n"
                 "\tcharset=\"UTF-8\"\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(r.status, parse_status::done) << r.error;
  EXPECT_EQ(r.value.status, 407);
  EXPECT_EQ(r.value.proxy_authenticate, "Basic realm=\"x\" charset=\"UTF-8\"");
  // A fold with no field before it is still malformed.
  EXPECT_EQ(parse("HTTP/1.1 200 OK\r\n folded\r\n\r\n").status, parse_status::failed);
}

TEST(HttpConnectReply, ReasonIsSanitised) {
  auto r = parse("HTTP/1.1 403 \x1b[31mred\x7f\r\n\r\n");
  ASSERT_EQ(r.status, parse_status::done);
  EXPECT_EQ(r.value.reason, "?[31mred?");
}

reply make(int status, std::string reason, std::string auth = {}) {
  reply r;
  r.status = status;
  r.reason = std::move(reason);
  r.proxy_authenticate = std::move(auth);
  return r;
}

TEST(HttpConnectDescribe, EachRefusalSaysWhatHappened) {
  const warren::net::host_port t{"gw.example", 443};
  const std::string p = "http://proxy:3128";
  auto s = describe_failure(make(407, "Proxy Authentication Required", "Basic realm=x"), p, t, false);
  EXPECT_TRUE(contains(s, "the proxy http://proxy:3128 wants credentials (407 Proxy Authentication Required)")) << s;
  EXPECT_TRUE(contains(s, "--proxy-user")) << s;
  s = describe_failure(make(407, "Proxy Authentication Required", "Basic realm=x"), p, t, true);
  EXPECT_TRUE(contains(s, "refused the user name or password")) << s;
  s = describe_failure(make(407, "Proxy Authentication Required", "Negotiate"), p, t, false);
  EXPECT_TRUE(contains(s, "Negotiate")) << s;
  EXPECT_TRUE(contains(s, "Basic only")) << s;
  s = describe_failure(make(401, "Unauthorized", "Basic realm=\"Tinyproxy\""), p, t, true);
  EXPECT_TRUE(contains(s, "refused the user name or password (401 Unauthorized)")) << s;
  s = describe_failure(make(403, "Access violation"), p, t, false);
  EXPECT_TRUE(contains(s, "refused to connect to gw.example:443 (403 Access violation)")) << s;
  s = describe_failure(make(502, "Bad Gateway"), p, t, false);
  EXPECT_TRUE(contains(s, "could not reach gw.example:443 (502 Bad Gateway)")) << s;
  s = describe_failure(make(504, "Gateway Timeout"), p, t, false);
  EXPECT_TRUE(contains(s, "could not reach")) << s;
  s = describe_failure(make(405, "Method Not Allowed"), p, t, false);
  EXPECT_TRUE(contains(s, "does not allow CONNECT")) << s;
  s = describe_failure(make(418, "I'm a teapot"), p, t, false);
  EXPECT_TRUE(contains(s, "with HTTP 418 I'm a teapot")) << s;
}

} // namespace

TEST(HttpConnectDescribe, PermanenceComesFromTheStatusNeverTheReason) {
  for (int status : {400, 401, 403, 405, 407, 501})
    EXPECT_TRUE(permanent_refusal(make(status, "whatever"))) << status;
  // A hostile or odd reason phrase cannot make a temporary failure permanent.
  for (const char* reason :
       {"its rules do not allow", "does not allow CONNECT", "--proxy-password-file", "upstream token bucket empty"})
    for (int status : {500, 502, 503, 504, 101, 302})
      EXPECT_FALSE(permanent_refusal(make(status, reason))) << status << " " << reason;
}
