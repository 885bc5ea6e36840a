// Tests of src/transport/scheme_mismatch.*: the listener's 400 reply names
// its scheme in a header the client reads back; preamble answers are told
// apart (OK, NO, TM, HTTP, a TLS record, garbage); HTTP request lines are
// recognised and TLS ClientHellos are not taken for them; hints name the
// scheme to use.
#include "transport/scheme_mismatch.hpp"

#include <gtest/gtest.h>

using namespace warren::transport;

namespace {

TEST(SchemeMismatch, ReplyNamesTheListener) {
  for (auto s : {scheme::tcp, scheme::tls, scheme::ws, scheme::wss}) {
    const auto reply = wrong_scheme_reply(s);
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 400 Bad Request\r\n")) << reply;
    const auto header = "\r\nWarren-Listener: " + std::string(to_string(s)) + "\r\n";
    EXPECT_NE(reply.find(header), std::string::npos) << reply;
    const auto body = reply.substr(reply.find("\r\n\r\n") + 4);
    EXPECT_NE(reply.find("Content-Length: " + std::to_string(body.size()) + "\r\n"), std::string::npos);
  }
}

TEST(SchemeMismatch, ListenerHeaderParses) {
  EXPECT_EQ(listener_scheme("wss"), scheme::wss);
  EXPECT_EQ(listener_scheme(" TCP\t"), scheme::tcp);
  EXPECT_EQ(listener_scheme("tls"), scheme::tls);
  EXPECT_EQ(listener_scheme("ws"), scheme::ws);
  EXPECT_EQ(listener_scheme(""), std::nullopt);
  EXPECT_EQ(listener_scheme("https"), std::nullopt);
  EXPECT_EQ(listener_scheme("w s"), std::nullopt);
}

TEST(SchemeMismatch, PreambleAnswers) {
  EXPECT_EQ(classify_preamble_answer("OK\n"), preamble_answer::ok);
  EXPECT_EQ(classify_preamble_answer("NO\n"), preamble_answer::refused);
  EXPECT_EQ(classify_preamble_answer("TM\n"), preamble_answer::limited);
  EXPECT_EQ(classify_preamble_answer("HTT"), preamble_answer::http);
  EXPECT_EQ(classify_preamble_answer(std::string_view("\x15\x03\x03", 3)), preamble_answer::tls);
  EXPECT_EQ(classify_preamble_answer(std::string_view("\x16\x03\x01", 3)), preamble_answer::tls);
  EXPECT_EQ(classify_preamble_answer(std::string_view("\x15\x00\x00", 3)), preamble_answer::other);
  EXPECT_EQ(classify_preamble_answer("OK"), preamble_answer::other);
  EXPECT_EQ(classify_preamble_answer("ok\n"), preamble_answer::other);
}

TEST(SchemeMismatch, HttpRequestLines) {
  EXPECT_TRUE(looks_like_http_request("GET / HTTP/1.1"));
  EXPECT_TRUE(looks_like_http_request("OPTIONS * HTTP/1.1\r"));
  EXPECT_FALSE(looks_like_http_request("WARREN/1 token"));
  EXPECT_FALSE(looks_like_http_request("GE / HTTP/1.1"));
  EXPECT_FALSE(looks_like_http_request("GET  /"));
  EXPECT_FALSE(looks_like_http_request("GET"));
  EXPECT_FALSE(looks_like_http_request(std::string_view("\x16\x03\x01\x02\x00", 5)));
  EXPECT_TRUE(looks_like_tls_record(std::string_view("\x16\x03\x01", 3)));
  EXPECT_FALSE(looks_like_tls_record("GET /"));
  EXPECT_FALSE(looks_like_tls_record(""));
}

TEST(SchemeMismatch, HintsNameTheSchemeToUse) {
  EXPECT_EQ(mismatch_hint(scheme::wss, scheme::tcp), "the server's listener is tcp://, not wss://; use tcp://");
  EXPECT_NE(mismatch_hint(scheme::wss, std::nullopt, "plain").find("use ws://"), std::string::npos);
  EXPECT_NE(mismatch_hint(scheme::tls, std::nullopt, "plain").find("use tcp://"), std::string::npos);
  EXPECT_NE(mismatch_hint(scheme::tcp, std::nullopt, "tls").find("use tls://"), std::string::npos);
  EXPECT_NE(mismatch_hint(scheme::ws, std::nullopt, "tls").find("use wss://"), std::string::npos);
  EXPECT_NE(mismatch_hint(scheme::tcp, std::nullopt, "http").find("ws://"), std::string::npos);
  EXPECT_NE(mismatch_hint(scheme::tls, std::nullopt, "http").find("wss://"), std::string::npos);
}

} // namespace
