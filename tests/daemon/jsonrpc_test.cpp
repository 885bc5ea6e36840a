// Tests of the control API's JSON-RPC 2.0 messages (src/daemon/jsonrpc.*):
// every rule of a request object, id types, notifications, batches (mixed,
// empty, oversize), invalid JSON and UTF-8, nesting and size limits, errors
// that do not echo the input, and the encoders' exact text.
#include "daemon/jsonrpc.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace warren::daemon;
using nlohmann::json;

namespace {

message parse_ok(std::string_view text) {
  auto r = parse_message(text);
  const auto* m = std::get_if<message>(&r);
  EXPECT_NE(m, nullptr) << text;
  return m == nullptr ? message{} : *m;
}

rpc_error parse_fails(std::string_view text, const parse_limits& limits = {}) {
  auto r = parse_message(text, limits);
  const auto* e = std::get_if<rpc_error>(&r);
  EXPECT_NE(e, nullptr) << text;
  return e == nullptr ? rpc_error{} : *e;
}

request one_request(std::string_view text) {
  auto m = parse_ok(text);
  EXPECT_FALSE(m.batch);
  EXPECT_EQ(m.entries.size(), 1U);
  if (m.entries.empty() || !std::holds_alternative<request>(m.entries[0])) {
    ADD_FAILURE() << "not a valid request: " << text;
    return {};
  }
  return std::get<request>(m.entries[0]);
}

invalid_request one_invalid(std::string_view text) {
  auto m = parse_ok(text);
  EXPECT_EQ(m.entries.size(), 1U);
  if (m.entries.empty() || !std::holds_alternative<invalid_request>(m.entries[0])) {
    ADD_FAILURE() << "accepted: " << text;
    return {};
  }
  return std::get<invalid_request>(m.entries[0]);
}

} // namespace

TEST(JsonRpc, ParsesARequest) {
  auto r = one_request(R"({"jsonrpc":"2.0","method":"units.get","params":{"name":"a"},"id":7})");
  EXPECT_EQ(r.method, "units.get");
  ASSERT_TRUE(r.id);
  EXPECT_EQ(std::get<std::int64_t>(*r.id), 7);
  EXPECT_EQ(r.params, json({{"name", "a"}}));
  EXPECT_FALSE(r.notification());
}

TEST(JsonRpc, IdTypes) {
  EXPECT_EQ(std::get<std::string>(*one_request(R"({"jsonrpc":"2.0","method":"m","id":"abc"})").id), "abc");
  EXPECT_TRUE(std::holds_alternative<std::nullptr_t>(*one_request(R"({"jsonrpc":"2.0","method":"m","id":null})").id));
  EXPECT_EQ(std::get<std::int64_t>(*one_request(R"({"jsonrpc":"2.0","method":"m","id":-3})").id), -3);
  EXPECT_EQ(std::get<std::int64_t>(*one_request(R"({"jsonrpc":"2.0","method":"m","id":9223372036854775807})").id),
            INT64_MAX);
  // Fractions, objects, arrays, booleans, integers past int64, long strings: invalid, answered with id null.
  for (const char* bad : {R"({"jsonrpc":"2.0","method":"m","id":1.5})", R"({"jsonrpc":"2.0","method":"m","id":{}})",
                          R"({"jsonrpc":"2.0","method":"m","id":[1]})", R"({"jsonrpc":"2.0","method":"m","id":true})",
                          R"({"jsonrpc":"2.0","method":"m","id":9223372036854775808})"}) {
    auto e = one_invalid(bad);
    EXPECT_EQ(e.error.code, error_code::invalid_request) << bad;
    EXPECT_TRUE(std::holds_alternative<std::nullptr_t>(e.id)) << bad;
  }
  const std::string long_id = R"({"jsonrpc":"2.0","method":"m","id":")" + std::string(257, 'i') + "\"}";
  EXPECT_EQ(one_invalid(long_id).error.code, error_code::invalid_request);
  const std::string max_id = R"({"jsonrpc":"2.0","method":"m","id":")" + std::string(256, 'i') + "\"}";
  EXPECT_EQ(std::get<std::string>(*one_request(max_id).id).size(), 256U);
}

TEST(JsonRpc, NotificationHasNoIdAndNullIdIsARequest) {
  auto n = one_request(R"({"jsonrpc":"2.0","method":"events.ping"})");
  EXPECT_TRUE(n.notification());
  EXPECT_TRUE(n.params.is_null());
  auto r = one_request(R"({"jsonrpc":"2.0","method":"events.ping","id":null})");
  EXPECT_FALSE(r.notification());
}

TEST(JsonRpc, ParamsObjectArrayOrAbsent) {
  EXPECT_TRUE(one_request(R"({"jsonrpc":"2.0","method":"m","params":[1,2],"id":1})").params.is_array());
  auto e = one_invalid(R"({"jsonrpc":"2.0","method":"m","params":"x","id":4})");
  EXPECT_EQ(e.error.code, error_code::invalid_request);
  EXPECT_EQ(std::get<std::int64_t>(e.id), 4); // a valid id is kept for the error reply
  EXPECT_NE(e.error.message.find("params"), std::string::npos);
  EXPECT_EQ(one_invalid(R"({"jsonrpc":"2.0","method":"m","params":null,"id":4})").error.code,
            error_code::invalid_request);
}

TEST(JsonRpc, WrongVersionOrMethod) {
  for (const char* bad : {R"({"method":"m","id":1})", R"({"jsonrpc":"1.0","method":"m","id":1})",
                          R"({"jsonrpc":2.0,"method":"m","id":1})", R"({"jsonrpc":"2.0","id":1})",
                          R"({"jsonrpc":"2.0","method":5,"id":1})", R"({"jsonrpc":"2.0","method":"","id":1})",
                          R"({"jsonrpc":"2.0","result":1,"id":1})"}) {
    auto e = one_invalid(bad);
    EXPECT_EQ(e.error.code, error_code::invalid_request) << bad;
    EXPECT_EQ(std::get<std::int64_t>(e.id), 1) << bad;
  }
  const std::string long_method = R"({"jsonrpc":"2.0","method":")" + std::string(129, 'm') + R"(","id":1})";
  EXPECT_EQ(one_invalid(long_method).error.code, error_code::invalid_request);
}

TEST(JsonRpc, NotAnObject) {
  for (const char* bad : {"1", "\"x\"", "null", "true"}) {
    auto e = parse_fails(bad);
    EXPECT_EQ(e.code, error_code::invalid_request) << bad;
  }
}

TEST(JsonRpc, InvalidJsonIsAParseErrorWithAnOffsetOnly) {
  const std::string secretish = R"({"jsonrpc":"2.0","method":"auth","params":{"token":"hunter2-s3cret})";
  for (const std::string& bad : {std::string("{"), std::string("{\"a\":}"), std::string("[1,]"), std::string("{} {}"),
                                 secretish, std::string("// c\n{}"), std::string("{\"a\":1e99999}")}) {
    auto e = parse_fails(bad);
    EXPECT_EQ(e.code, error_code::parse_error) << bad;
    EXPECT_EQ(e.message.find("hunter2"), std::string::npos) << e.message;
    EXPECT_LT(e.message.size(), 64U) << e.message;
  }
  EXPECT_EQ(parse_fails("{\"a\":}").message, "invalid JSON at byte 5");
}

TEST(JsonRpc, InvalidUtf8IsAParseError) {
  const std::string cases[] = {
      std::string("{\"jsonrpc\":\"2.0\",\"method\":\"\xff\",\"id\":1}"),
      std::string("{\"jsonrpc\":\"2.0\",\"method\":\"\xc0\xaf\",\"id\":1}"),         // overlong '/'
      std::string("{\"jsonrpc\":\"2.0\",\"method\":\"\xed\xa0\x80\",\"id\":1}"),     // a surrogate
      std::string("{\"jsonrpc\":\"2.0\",\"method\":\"\xf4\x90\x80\x80\",\"id\":1}"), // past U+10FFFF
      std::string("{\"jsonrpc\":\"2.0\",\"method\":\"\xe2\x82\",\"id\":1}"),         // cut sequence
  };
  for (const auto& bad : cases) {
    auto e = parse_fails(bad);
    EXPECT_EQ(e.code, error_code::parse_error);
    EXPECT_EQ(e.message, "invalid UTF-8 at byte 27") << e.message;
  }
  // Valid multi-byte text passes: é, €, 𝄞.
  EXPECT_EQ(one_request("{\"jsonrpc\":\"2.0\",\"method\":\"\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e\",\"id\":1}").method,
            "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e");
}

TEST(JsonRpc, DeepNestingIsRefusedBeforeParsing) {
  const std::string deep(100000, '[');
  auto e = parse_fails(deep);
  EXPECT_EQ(e.code, error_code::invalid_request);
  EXPECT_EQ(e.message, "JSON nested deeper than 32 levels");
  // Within the limit it parses (depth 32 counting the request object).
  std::string ok = R"({"jsonrpc":"2.0","method":"m","id":1,"params":)";
  ok += std::string(31, '[') + std::string(31, ']') + "}";
  EXPECT_TRUE(one_request(ok).params.is_array());
  std::string over = R"({"jsonrpc":"2.0","method":"m","id":1,"params":)";
  over += std::string(32, '[') + std::string(32, ']') + "}";
  EXPECT_EQ(parse_fails(over).code, error_code::invalid_request);
  // Brackets inside strings do not count.
  std::string in_string = R"({"jsonrpc":"2.0","method":"m","id":1,"params":[")" + std::string(100, '[') + R"(\"{{{"]})";
  EXPECT_TRUE(one_request(in_string).params.is_array());
}

TEST(JsonRpc, TooManyValuesAreRefused) {
  parse_limits limits;
  limits.max_values = 100;
  std::string many = R"({"jsonrpc":"2.0","method":"m","id":1,"params":[)";
  for (int i = 0; i < 200; ++i)
    many += i == 0 ? "0" : ",0";
  many += "]}";
  EXPECT_EQ(parse_fails(many, limits).code, error_code::invalid_request);
  EXPECT_EQ(one_request(many).params.size(), 200U); // the default allows it
}

TEST(JsonRpc, BatchMixedValidAndInvalid) {
  auto m = parse_ok(R"([{"jsonrpc":"2.0","method":"a","id":1}, 5, {"jsonrpc":"2.0","method":"b"},
                        {"jsonrpc":"1.0","method":"c","id":"x"}])");
  EXPECT_TRUE(m.batch);
  ASSERT_EQ(m.entries.size(), 4U);
  EXPECT_EQ(std::get<request>(m.entries[0]).method, "a");
  EXPECT_TRUE(std::holds_alternative<std::nullptr_t>(std::get<invalid_request>(m.entries[1]).id));
  EXPECT_TRUE(std::get<request>(m.entries[2]).notification());
  EXPECT_EQ(std::get<std::string>(std::get<invalid_request>(m.entries[3]).id), "x");
}

TEST(JsonRpc, EmptyAndOversizeBatch) {
  EXPECT_EQ(parse_fails("[]").code, error_code::invalid_request);
  EXPECT_EQ(parse_fails("[]").message, "empty batch");
  std::string batch = "[";
  for (int i = 0; i < 65; ++i)
    batch += std::string(i == 0 ? "" : ",") + R"({"jsonrpc":"2.0","method":"m","id":)" + std::to_string(i) + "}";
  EXPECT_EQ(parse_fails(batch + "]").code, error_code::invalid_request);
  const auto cut = batch.rfind(",{");
  EXPECT_EQ(parse_ok(batch.substr(0, cut) + "]").entries.size(), 64U);
}

TEST(JsonRpc, EncodersWriteExactText) {
  EXPECT_EQ(encode_result(std::int64_t{1}, json{{"units", 2}}), R"({"id":1,"jsonrpc":"2.0","result":{"units":2}})");
  EXPECT_EQ(encode_error(nullptr, rpc_error{error_code::parse_error, "invalid JSON at byte 3", std::nullopt}),
            R"({"error":{"code":-32700,"message":"invalid JSON at byte 3"},"id":null,"jsonrpc":"2.0"})");
  EXPECT_EQ(encode_error(std::string("q"), rpc_error{error_code::frame_too_large, "big", json{{"limit", 8}}}),
            R"({"error":{"code":-32005,"data":{"limit":8},"message":"big"},"id":"q","jsonrpc":"2.0"})");
  EXPECT_EQ(encode_notification("events.unit", json{{"unit", "a"}}),
            R"({"jsonrpc":"2.0","method":"events.unit","params":{"unit":"a"}})");
  EXPECT_EQ(encode_notification("events.lost"), R"({"jsonrpc":"2.0","method":"events.lost"})");
}

TEST(JsonRpc, EncodersReplaceInvalidUtf8InsteadOfThrowing) {
  const std::string text = encode_result(std::int64_t{1}, json("bad\xff"));
  EXPECT_TRUE(valid_utf8(text));
  EXPECT_NE(text.find("bad\xef\xbf\xbd"), std::string::npos);
}

TEST(JsonRpc, RequestRoundTrip) {
  request r;
  r.id = std::string("id-1");
  r.method = "units.add";
  r.params = json{{"client", {{"name", "x"}}}};
  auto back = one_request(encode_request(r));
  EXPECT_EQ(back.method, r.method);
  EXPECT_EQ(back.id, r.id);
  EXPECT_EQ(back.params, r.params);
  r.id.reset();
  EXPECT_TRUE(one_request(encode_request(r)).notification());
}
