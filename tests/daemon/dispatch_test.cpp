// Tests of the control API's dispatch (src/daemon/dispatch.*): replies as
// framed bytes for requests, errors, notifications and batches; unknown
// methods, bad params, handler failures and oversize replies; the
// read-only rule; and the auth-first rule of TCP/TLS connections on a
// manual clock (deadline, wrong token, rate limit, not-auth first frames),
// against Unix peers that are authenticated from the start.
#include "daemon/dispatch.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

using namespace warren::daemon;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// A toy table: a read-only `units.list`, a write `units.add` that wants
// {"name": string}, `boom` that throws, `big` that answers with N bytes.
method_table toy_table(int* calls = nullptr) {
  method_table t;
  t.add(
      "units.list",
      [calls](const json&, const connection_state&) -> method_result {
        if (calls != nullptr)
          ++*calls;
        return json::array({"a", "b"});
      },
      true);
  t.add(
      "units.add",
      [calls](const json& params, const connection_state&) -> method_result {
        if (calls != nullptr)
          ++*calls;
        if (!params.is_object() || !params.contains("name") || !params["name"].is_string())
          return method_result::invalid_params("units.add takes {\"name\": string}");
        return json{{"added", params["name"]}};
      },
      false);
  t.add(
      "boom", [](const json&, const connection_state&) -> method_result { throw std::runtime_error("secret path"); },
      true);
  t.add(
      "big",
      [](const json& params, const connection_state&) -> method_result {
        return json(std::string(params.at(0).get<std::size_t>(), 'x'));
      },
      true);
  return t;
}

const warren::time_point t0 = warren::time_point{} + 1h;

// The JSON of a framed reply (checks the frame's length).
json reply_json(const dispatch_outcome& out) {
  EXPECT_GE(out.reply.size(), 5U);
  frame_decoder d(0xFFFFFFFFU);
  std::string_view in = out.reply;
  EXPECT_EQ(d.decode(in), frame_status::frame);
  EXPECT_TRUE(in.empty());
  return json::parse(d.frame());
}

dispatch_outcome admin_call(const method_table& t, std::string_view frame, const dispatch_options& o = {}) {
  auto state = connection_state::unix_peer(access_level::admin);
  return dispatch(t, state, frame, t0, nullptr, o);
}

int error_code_of(const json& reply) {
  return reply.at("error").at("code").get<int>();
}

token_check tokens(int* checks = nullptr) {
  return [checks](std::string_view token) {
    if (checks != nullptr)
      ++*checks;
    if (token == "admin-token")
      return auth_verdict::admin;
    if (token == "reader-token")
      return auth_verdict::read_only;
    if (token == "limited")
      return auth_verdict::rate_limited;
    return auth_verdict::wrong_token;
  };
}

const std::string k_auth_admin = R"({"jsonrpc":"2.0","method":"auth","params":{"token":"admin-token"},"id":1})";
const std::string k_auth_reader = R"({"jsonrpc":"2.0","method":"auth","params":{"token":"reader-token"},"id":1})";

} // namespace

TEST(Dispatch, RequestGetsFramedResult) {
  auto t = toy_table();
  auto out = admin_call(t, R"({"jsonrpc":"2.0","method":"units.list","id":"a"})");
  EXPECT_FALSE(out.close);
  EXPECT_EQ(out.reply, encode_frame(R"({"id":"a","jsonrpc":"2.0","result":["a","b"]})"));
}

TEST(Dispatch, UnknownMethod) {
  auto t = toy_table();
  auto r = reply_json(admin_call(t, R"({"jsonrpc":"2.0","method":"nope","id":3})"));
  EXPECT_EQ(error_code_of(r), -32601);
  EXPECT_EQ(r["id"], 3);
  EXPECT_EQ(r["error"]["message"], "method not found: 'nope'");
  // A long method name is quoted short.
  const std::string name(128, 'n');
  auto r2 = reply_json(admin_call(t, R"({"jsonrpc":"2.0","method":")" + name + R"(","id":3})"));
  EXPECT_LT(r2["error"]["message"].get<std::string>().size(), 110U);
}

TEST(Dispatch, BadParamsComeFromTheHandler) {
  auto t = toy_table();
  auto r = reply_json(admin_call(t, R"({"jsonrpc":"2.0","method":"units.add","params":[1],"id":1})"));
  EXPECT_EQ(error_code_of(r), -32602);
  auto ok = reply_json(admin_call(t, R"({"jsonrpc":"2.0","method":"units.add","params":{"name":"x"},"id":1})"));
  EXPECT_EQ(ok["result"]["added"], "x");
}

TEST(Dispatch, HandlerExceptionIsInternalErrorWithoutItsText) {
  auto t = toy_table();
  auto r = reply_json(admin_call(t, R"({"jsonrpc":"2.0","method":"boom","id":1})"));
  EXPECT_EQ(error_code_of(r), -32603);
  EXPECT_EQ(r["error"]["message"].get<std::string>().find("secret"), std::string::npos);
}

TEST(Dispatch, InvalidJsonAndInvalidRequestsKeepTheConnection) {
  auto t = toy_table();
  auto out = admin_call(t, "{not json");
  EXPECT_FALSE(out.close);
  EXPECT_EQ(error_code_of(reply_json(out)), -32700);
  EXPECT_TRUE(reply_json(out)["id"].is_null());
  auto bad_utf8 = admin_call(t, "{\"jsonrpc\":\"2.0\",\"method\":\"\xfe\",\"id\":1}");
  EXPECT_EQ(error_code_of(reply_json(bad_utf8)), -32700);
  auto wrong_version = admin_call(t, R"({"jsonrpc":"1.0","method":"units.list","id":2})");
  EXPECT_EQ(error_code_of(reply_json(wrong_version)), -32600);
  EXPECT_EQ(reply_json(wrong_version)["id"], 2);
  auto deep = admin_call(t, std::string(5000, '['));
  EXPECT_EQ(error_code_of(reply_json(deep)), -32600);
  EXPECT_FALSE(deep.close);
}

TEST(Dispatch, NotificationsRunButGetNoReply) {
  int calls = 0;
  auto t = toy_table(&calls);
  auto out = admin_call(t, R"({"jsonrpc":"2.0","method":"units.list"})");
  EXPECT_TRUE(out.reply.empty());
  EXPECT_FALSE(out.close);
  EXPECT_EQ(calls, 1);
  // Errors of notifications are not answered either.
  EXPECT_TRUE(admin_call(t, R"({"jsonrpc":"2.0","method":"nope"})").reply.empty());
  EXPECT_TRUE(admin_call(t, R"({"jsonrpc":"2.0","method":"units.add","params":[]})").reply.empty());
  // But an invalid request without an id is answered (id null), as the specification says.
  auto invalid = reply_json(admin_call(t, R"({"jsonrpc":"2.0","method":1})"));
  EXPECT_EQ(error_code_of(invalid), -32600);
  EXPECT_TRUE(invalid["id"].is_null());
}

TEST(Dispatch, BatchAnswersEachRequestInOrderAndSkipsNotifications) {
  int calls = 0;
  auto t = toy_table(&calls);
  auto r = reply_json(admin_call(t, R"([
    {"jsonrpc":"2.0","method":"units.list","id":1},
    {"jsonrpc":"2.0","method":"units.list"},
    7,
    {"jsonrpc":"2.0","method":"nope","id":"n"},
    {"jsonrpc":"2.0","method":"units.add","params":{"name":"u"},"id":2}])"));
  ASSERT_TRUE(r.is_array());
  ASSERT_EQ(r.size(), 4U);
  EXPECT_EQ(r[0]["id"], 1);
  EXPECT_EQ(error_code_of(r[1]), -32600);
  EXPECT_TRUE(r[1]["id"].is_null());
  EXPECT_EQ(error_code_of(r[2]), -32601);
  EXPECT_EQ(r[3]["result"]["added"], "u");
  EXPECT_EQ(calls, 3);
}

TEST(Dispatch, BatchOfNotificationsOnlyGetsNoReply) {
  auto t = toy_table();
  EXPECT_TRUE(
      admin_call(t, R"([{"jsonrpc":"2.0","method":"units.list"},{"jsonrpc":"2.0","method":"x"}])").reply.empty());
}

TEST(Dispatch, EmptyAndOversizeBatchGetOneError) {
  auto t = toy_table();
  auto empty = reply_json(admin_call(t, "[]"));
  EXPECT_FALSE(empty.is_array());
  EXPECT_EQ(error_code_of(empty), -32600);
  std::string batch = "[";
  for (int i = 0; i < 65; ++i)
    batch += std::string(i == 0 ? "" : ",") + R"({"jsonrpc":"2.0","method":"units.list","id":1})";
  int calls = 0;
  auto counted = toy_table(&calls);
  auto big = reply_json(admin_call(counted, batch + "]"));
  EXPECT_EQ(error_code_of(big), -32600);
  EXPECT_EQ(calls, 0); // nothing ran
}

TEST(Dispatch, ReplyOverTheLimitBecomesInternalError) {
  auto t = toy_table();
  dispatch_options o;
  o.max_response = 1000;
  auto fits = reply_json(admin_call(t, R"({"jsonrpc":"2.0","method":"big","params":[900],"id":1})", o));
  EXPECT_EQ(fits["result"].get<std::string>().size(), 900U);
  auto out = admin_call(t, R"({"jsonrpc":"2.0","method":"big","params":[1000],"id":1})", o);
  EXPECT_LE(out.reply.size(), 4U + 1000);
  EXPECT_EQ(error_code_of(reply_json(out)), -32603);
  EXPECT_EQ(reply_json(out)["id"], 1);
  // A batch whose replies each fit but not together.
  auto batch = admin_call(t, R"([{"jsonrpc":"2.0","method":"big","params":[600],"id":1},
                                 {"jsonrpc":"2.0","method":"big","params":[600],"id":2}])",
                          o);
  EXPECT_LE(batch.reply.size(), 4U + 1000);
  EXPECT_EQ(error_code_of(reply_json(batch)), -32603);
}

TEST(Dispatch, ReadOnlyCallerIsRefusedWriteMethods) {
  int calls = 0;
  auto t = toy_table(&calls);
  auto reader = connection_state::unix_peer(access_level::read_only);
  auto r = reply_json(
      dispatch(t, reader, R"({"jsonrpc":"2.0","method":"units.add","params":{"name":"x"},"id":1})", t0, nullptr));
  EXPECT_EQ(error_code_of(r), -32001);
  EXPECT_EQ(calls, 0);
  auto ok = reply_json(dispatch(t, reader, R"({"jsonrpc":"2.0","method":"units.list","id":2})", t0, nullptr));
  EXPECT_EQ(ok["result"].size(), 2U);
  EXPECT_EQ(calls, 1);
  // Unknown methods are still -32601 for a read-only caller.
  auto unknown = reply_json(dispatch(t, reader, R"({"jsonrpc":"2.0","method":"zz","id":3})", t0, nullptr));
  EXPECT_EQ(error_code_of(unknown), -32601);
}

TEST(Dispatch, UnixPeerIsAuthenticatedFromTheStart) {
  auto admin = connection_state::unix_peer(access_level::admin);
  EXPECT_TRUE(admin.authenticated());
  EXPECT_FALSE(admin.awaiting_auth());
  EXPECT_FALSE(admin.auth_deadline());
  auto t = toy_table();
  int checks = 0;
  // `auth` on an authenticated connection reports the access; no token is checked.
  auto r = reply_json(dispatch(t, admin, k_auth_reader, t0, tokens(&checks)));
  EXPECT_EQ(r["result"]["access"], "admin");
  EXPECT_EQ(checks, 0);
  EXPECT_FALSE(admin.read_only());
  // A peer judged `none` gets nothing.
  auto stranger = connection_state::unix_peer(access_level::none);
  auto out = dispatch(t, stranger, R"({"jsonrpc":"2.0","method":"units.list","id":1})", t0, nullptr);
  EXPECT_TRUE(out.close);
  EXPECT_EQ(error_code_of(reply_json(out)), -32000);
}

TEST(Dispatch, TcpFirstFrameMustBeAuth) {
  auto t = toy_table();
  for (const std::string& first :
       {std::string(R"({"jsonrpc":"2.0","method":"units.list","id":9})"),
        std::string(R"({"jsonrpc":"2.0","method":"auth","params":{"token":"admin-token"}})"), // a notification
        std::string("[") + k_auth_admin + "]",                                                // a batch
        std::string(R"({"jsonrpc":"1.0","method":"auth","params":{"token":"admin-token"},"id":1})")}) {
    int checks = 0;
    auto s = connection_state::network(transport_kind::tcp, t0, 5s);
    auto out = dispatch(t, s, first, t0, tokens(&checks));
    EXPECT_TRUE(out.close) << first;
    EXPECT_EQ(error_code_of(reply_json(out)), -32000) << first;
    EXPECT_EQ(checks, 0) << first;
    EXPECT_FALSE(s.authenticated());
    EXPECT_FALSE(s.awaiting_auth());
    // Refused for good: the next frame, even a good auth, is refused too.
    auto again = dispatch(t, s, k_auth_admin, t0, tokens(&checks));
    EXPECT_TRUE(again.close);
    EXPECT_EQ(checks, 0);
  }
  auto s = connection_state::network(transport_kind::tls, t0, 5s);
  auto first = reply_json(dispatch(t, s, R"({"jsonrpc":"2.0","method":"units.list","id":9})", t0, tokens()));
  EXPECT_EQ(first["id"], 9);
  auto garbage = connection_state::network(transport_kind::tcp, t0, 5s);
  auto out = dispatch(t, garbage, "{nope", t0, tokens());
  EXPECT_TRUE(out.close);
  EXPECT_EQ(error_code_of(reply_json(out)), -32700);
}

TEST(Dispatch, TcpAuthWithAdminTokenThenCalls) {
  auto t = toy_table();
  auto s = connection_state::network(transport_kind::tcp, t0, 5s);
  EXPECT_TRUE(s.awaiting_auth());
  EXPECT_EQ(s.auth_deadline(), t0 + 5s);
  auto out = dispatch(t, s, k_auth_admin, t0 + 4s, tokens());
  EXPECT_FALSE(out.close);
  EXPECT_EQ(out.reply, encode_frame(R"({"id":1,"jsonrpc":"2.0","result":{"access":"admin"}})"));
  EXPECT_TRUE(s.authenticated());
  EXPECT_FALSE(s.auth_deadline());
  EXPECT_FALSE(s.auth_expired(t0 + 1h));
  auto r = reply_json(
      dispatch(t, s, R"({"jsonrpc":"2.0","method":"units.add","params":{"name":"y"},"id":2})", t0 + 1h, tokens()));
  EXPECT_EQ(r["result"]["added"], "y");
}

TEST(Dispatch, TcpReadOnlyTokenRefusedWriteMethods) {
  auto t = toy_table();
  auto s = connection_state::network(transport_kind::tls, t0, 5s);
  auto r = reply_json(dispatch(t, s, k_auth_reader, t0, tokens()));
  EXPECT_EQ(r["result"]["access"], "read-only");
  EXPECT_TRUE(s.read_only());
  auto w = reply_json(
      dispatch(t, s, R"({"jsonrpc":"2.0","method":"units.add","params":{"name":"y"},"id":2})", t0, tokens()));
  EXPECT_EQ(error_code_of(w), -32001);
}

TEST(Dispatch, TcpWrongTokenClosesAndIsCounted) {
  auto t = toy_table();
  int checks = 0;
  auto s = connection_state::network(transport_kind::tcp, t0, 5s);
  auto out =
      dispatch(t, s, R"({"jsonrpc":"2.0","method":"auth","params":{"token":"guess"},"id":1})", t0, tokens(&checks));
  EXPECT_TRUE(out.close);
  EXPECT_TRUE(out.auth_failed);
  EXPECT_EQ(checks, 1);
  auto r = reply_json(out);
  EXPECT_EQ(error_code_of(r), -32000);
  EXPECT_EQ(r["error"]["message"], "wrong token");
  EXPECT_EQ(out.reply.find("guess"), std::string::npos); // the token is not echoed
  EXPECT_FALSE(s.authenticated());
}

TEST(Dispatch, TcpRateLimitedSourceIsClosedWithoutCounting) {
  auto t = toy_table();
  auto s = connection_state::network(transport_kind::tcp, t0, 5s);
  auto out = dispatch(t, s, R"({"jsonrpc":"2.0","method":"auth","params":{"token":"limited"},"id":1})", t0, tokens());
  EXPECT_TRUE(out.close);
  EXPECT_FALSE(out.auth_failed);
  EXPECT_EQ(error_code_of(reply_json(out)), -32006);
}

TEST(Dispatch, TcpAuthBadParams) {
  auto t = toy_table();
  for (const char* bad : {R"({"jsonrpc":"2.0","method":"auth","id":1})",
                          R"({"jsonrpc":"2.0","method":"auth","params":["admin-token"],"id":1})",
                          R"({"jsonrpc":"2.0","method":"auth","params":{"token":5},"id":1})",
                          R"({"jsonrpc":"2.0","method":"auth","params":{"token":""},"id":1})"}) {
    int checks = 0;
    auto s = connection_state::network(transport_kind::tcp, t0, 5s);
    auto out = dispatch(t, s, bad, t0, tokens(&checks));
    EXPECT_TRUE(out.close) << bad;
    EXPECT_EQ(error_code_of(reply_json(out)), -32602) << bad;
    EXPECT_EQ(checks, 0);
  }
  const std::string long_token =
      R"({"jsonrpc":"2.0","method":"auth","params":{"token":")" + std::string(4097, 't') + R"("},"id":1})";
  auto s = connection_state::network(transport_kind::tcp, t0, 5s);
  EXPECT_EQ(error_code_of(reply_json(dispatch(t, s, long_token, t0, tokens()))), -32602);
}

TEST(Dispatch, TcpAuthAfterTheDeadlineIsRefused) {
  auto t = toy_table();
  int checks = 0;
  auto s = connection_state::network(transport_kind::tcp, t0, 5s);
  EXPECT_FALSE(s.auth_expired(t0 + 5s - 1ms));
  EXPECT_TRUE(s.auth_expired(t0 + 5s));
  auto out = dispatch(t, s, k_auth_admin, t0 + 5s, tokens(&checks));
  EXPECT_TRUE(out.close);
  EXPECT_EQ(error_code_of(reply_json(out)), -32000);
  EXPECT_EQ(checks, 0);
  EXPECT_FALSE(s.authenticated());
}

TEST(Dispatch, MethodTableRefusesDuplicatesAndAuth) {
  method_table t;
  auto h = [](const json&, const connection_state&) -> method_result { return json(1); };
  EXPECT_TRUE(t.add("a", h, true));
  EXPECT_FALSE(t.add("a", h, false));
  EXPECT_FALSE(t.add("auth", h, true));
  EXPECT_FALSE(t.add("", h, true));
  EXPECT_FALSE(t.add("b", nullptr, true));
  EXPECT_EQ(t.size(), 1U);
  ASSERT_NE(t.find("a"), nullptr);
  EXPECT_TRUE(t.find("a")->read_only_ok);
  EXPECT_EQ(t.find("b"), nullptr);
}

TEST(Dispatch, FrameErrorReplies) {
  const std::string big = frame_error_reply(frame_status::too_large, 2000000, 1U << 20);
  frame_decoder d;
  std::string_view in = big;
  ASSERT_EQ(d.decode(in), frame_status::frame);
  auto r = json::parse(d.frame());
  EXPECT_EQ(error_code_of(r), -32005);
  EXPECT_EQ(r["error"]["data"]["limit"], 1U << 20);
  EXPECT_EQ(r["error"]["message"], "frame of 2000000 bytes is over the limit of 1048576 bytes");
  const std::string zero = frame_error_reply(frame_status::zero_length, 0, 1U << 20);
  frame_decoder d2;
  std::string_view in2 = zero;
  ASSERT_EQ(d2.decode(in2), frame_status::frame);
  EXPECT_EQ(error_code_of(json::parse(d2.frame())), -32600);
}

// docs/CONTROL.md's example session, byte for byte (the daemon's side).
TEST(Dispatch, ExampleSessionInControlMd) {
  auto t = toy_table();
  auto s = connection_state::network(transport_kind::tcp, t0, 5s);
  const auto check = [](std::string_view token) {
    return token == "s3cret" ? auth_verdict::admin : auth_verdict::wrong_token;
  };
  const std::string c1 = R"({"jsonrpc":"2.0","method":"auth","params":{"token":"s3cret"},"id":1})";
  const std::string c2 = R"({"jsonrpc":"2.0","method":"daemon.stats","id":2})";
  EXPECT_EQ(encode_frame(c1).substr(0, 4), std::string("\x00\x00\x00\x44", 4));
  EXPECT_EQ(encode_frame(c2).substr(0, 4), std::string("\x00\x00\x00\x30", 4));
  EXPECT_EQ(dispatch(t, s, c1, t0, check).reply,
            std::string("\x00\x00\x00\x34", 4) + R"({"id":1,"jsonrpc":"2.0","result":{"access":"admin"}})");
  EXPECT_EQ(dispatch(t, s, c2, t0, check).reply,
            std::string("\x00\x00\x00\x5d", 4) +
                R"({"error":{"code":-32601,"message":"method not found: 'daemon.stats'"},"id":2,"jsonrpc":"2.0"})");
  EXPECT_EQ(encode_frame(R"({"jsonrpc":"2.0","method":"daemon.status","id":3})").substr(0, 4),
            std::string("\x00\x00\x00\x31", 4));
}

// The steps a daemon with waiting handlers runs: only allowed calls are
// planned, replies known already are in the plan, results completed out of
// order are assembled in request order, and the bytes equal dispatch()'s.
TEST(Dispatch, PlannedCallsCompletedElsewhereAssembleLikeDispatch) {
  int calls = 0;
  auto t = toy_table(&calls);
  const std::string frame = R"([
    {"jsonrpc":"2.0","method":"units.add","params":{"name":"a"},"id":1},
    {"jsonrpc":"2.0","method":"nope","id":2},
    {"jsonrpc":"2.0","method":"units.list"},
    {"jsonrpc":"2.0","method":"units.add","params":{"name":"b"},"id":3}])";
  auto reader = connection_state::unix_peer(access_level::read_only);
  auto ro_plan = plan_dispatch(t, reader, frame, t0, nullptr);
  ASSERT_FALSE(ro_plan.outcome);
  ASSERT_EQ(ro_plan.calls.size(), 4U);
  EXPECT_EQ(ro_plan.calls[0].method, nullptr); // refused: not planned as a call
  EXPECT_EQ(error_code_of(*ro_plan.calls[0].reply), -32001);
  EXPECT_NE(ro_plan.calls[2].method, nullptr); // a read-only notification is called
  EXPECT_FALSE(ro_plan.calls[2].reply);

  auto admin = connection_state::unix_peer(access_level::admin);
  auto plan = plan_dispatch(t, admin, frame, t0, nullptr);
  ASSERT_EQ(plan.calls.size(), 4U);
  EXPECT_EQ(calls, 0); // planning runs nothing
  EXPECT_EQ(error_code_of(*plan.calls[1].reply), -32601);
  complete_call(plan.calls[3], method_result(json{{"added", "b"}}));
  run_call(plan.calls[2], admin);
  complete_call(plan.calls[0], method_result::invalid_params("no"));
  complete_call(plan.calls[2], method_result(json(5))); // a notification: no reply recorded
  EXPECT_FALSE(plan.calls[2].reply);
  auto out = assemble(plan);
  auto r = reply_json(out);
  ASSERT_EQ(r.size(), 3U);
  EXPECT_EQ(r[0]["id"], 1);
  EXPECT_EQ(error_code_of(r[0]), -32602);
  EXPECT_EQ(r[1]["id"], 2);
  EXPECT_EQ(r[2]["result"]["added"], "b");

  auto admin2 = connection_state::unix_peer(access_level::admin);
  auto again = plan_dispatch(t, admin2, frame, t0, nullptr);
  for (auto& c : again.calls)
    run_call(c, admin2);
  EXPECT_EQ(assemble(again).reply, dispatch(t, admin2, frame, t0, nullptr).reply);
}

TEST(Dispatch, AuthFramesAreAnsweredInThePlan) {
  auto t = toy_table();
  auto s = connection_state::network(transport_kind::tcp, t0, 5s);
  auto plan = plan_dispatch(t, s, k_auth_admin, t0, tokens());
  ASSERT_TRUE(plan.outcome);
  EXPECT_TRUE(plan.calls.empty());
  EXPECT_EQ(reply_json(*plan.outcome)["result"]["access"], "admin");
  EXPECT_EQ(assemble(plan).reply, plan.outcome->reply);
}
