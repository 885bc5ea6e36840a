// Tests of `warren ctl`'s reply parser (src/daemon/ctl_reply.*): results and
// errors to our id, errors with id null, and each kind of protocol mismatch
// (not JSON, not UTF-8, too deep, not JSON-RPC, another id, both or neither
// of result and error, a malformed error), with messages that stay short
// and printable.
#include "daemon/ctl_reply.hpp"

#include "daemon/control_frame.hpp"
#include "daemon/jsonrpc.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace warren::daemon;

namespace {

std::string mismatch(std::string_view text, std::int64_t id = 2) {
  auto r = parse_reply(text, id);
  EXPECT_FALSE(r) << text;
  return r ? std::string() : r.error();
}

} // namespace

TEST(CtlReply, ResultToOurId) {
  auto r = parse_reply(R"({"id":2,"jsonrpc":"2.0","result":{"pid":7}})", 2);
  ASSERT_TRUE(r) << r.error();
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->result, nlohmann::json({{"pid", 7}}));
}

TEST(CtlReply, ErrorToOurIdOrNull) {
  for (const char* text : {R"({"error":{"code":-32001,"message":"read-only caller"},"id":2,"jsonrpc":"2.0"})",
                           R"({"error":{"code":-32001,"message":"read-only caller"},"id":null,"jsonrpc":"2.0"})"}) {
    auto r = parse_reply(text, 2);
    ASSERT_TRUE(r) << r.error();
    EXPECT_FALSE(r->ok);
    EXPECT_EQ(r->code, -32001);
    EXPECT_EQ(r->message, "read-only caller");
  }
}

TEST(CtlReply, ErrorMessageIsMadePrintable) {
  auto r = parse_reply(R"({"error":{"code":1,"message":"a\u001b[31mb\n"},"id":2,"jsonrpc":"2.0"})", 2);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->message, "a?[31mb?");
  auto long_message =
      parse_reply(R"({"error":{"code":1,"message":")" + std::string(5000, 'x') + R"("},"id":2,"jsonrpc":"2.0"})", 2);
  ASSERT_TRUE(long_message);
  EXPECT_EQ(long_message->message.size(), 200U);
}

TEST(CtlReply, Mismatches) {
  EXPECT_NE(mismatch("HTTP/1.1 400 Bad Request").find("not JSON"), std::string::npos);
  EXPECT_NE(mismatch("\"\xff\"").find("UTF-8"), std::string::npos);
  EXPECT_NE(mismatch(std::string(100, '[') + std::string(100, ']')).find("deeper"), std::string::npos);
  EXPECT_NE(mismatch("[]").find("response object"), std::string::npos);
  EXPECT_NE(mismatch(R"({"id":2,"result":1})").find("JSON-RPC 2.0"), std::string::npos);
  EXPECT_NE(mismatch(R"({"jsonrpc":"2.0","result":1})").find("no id"), std::string::npos);
  EXPECT_NE(mismatch(R"({"id":3,"jsonrpc":"2.0","result":1})").find("another request"), std::string::npos);
  EXPECT_NE(mismatch(R"({"id":null,"jsonrpc":"2.0","result":1})").find("another request"), std::string::npos);
  EXPECT_NE(mismatch(R"({"id":2,"jsonrpc":"2.0"})").find("neither or both"), std::string::npos);
  EXPECT_NE(mismatch(R"({"error":{},"id":2,"jsonrpc":"2.0","result":1})").find("neither or both"), std::string::npos);
  EXPECT_NE(mismatch(R"({"error":"no","id":2,"jsonrpc":"2.0"})").find("not an object"), std::string::npos);
  EXPECT_NE(mismatch(R"({"error":{"code":"x","message":"m"},"id":2,"jsonrpc":"2.0"})").find("integer code"),
            std::string::npos);
  EXPECT_NE(mismatch(R"({"error":{"code":99999999999,"message":"m"},"id":2,"jsonrpc":"2.0"})").find("range"),
            std::string::npos);
}

TEST(CtlReply, MismatchQuotesLittle) {
  const auto why = mismatch("<html>" + std::string(10000, 'x'));
  EXPECT_LT(why.size(), 200U);
  EXPECT_EQ(why.rfind("protocol mismatch: ", 0), 0U);
}

TEST(CtlReply, NestingScanSkipsStrings) {
  parse_limits two;
  two.max_depth = 2;
  EXPECT_FALSE(prescan(R"({"a":"[[[[[[[[[[[[["})", two));
  EXPECT_TRUE(prescan("[[[", two));
  two.max_depth = 1;
  EXPECT_FALSE(prescan(R"(["\"[[[["])", two));
}

TEST(CtlReply, RequestRoundTrips) {
  const auto bytes = encode_ctl_request(5, "daemon.status");
  frame_decoder d;
  std::string_view in(bytes);
  ASSERT_EQ(d.decode(in), frame_status::frame);
  EXPECT_EQ(d.frame(), R"({"id":5,"jsonrpc":"2.0","method":"daemon.status"})");
}
