// Tests of the control server (src/daemon/control_server.*) over a real
// Unix socket: asynchronous methods answered from another thread keep
// request order; a method that never answers gets -32603 after the call
// timeout and the connection goes on; events.subscribe and publish(); a
// subscriber that reads nothing loses notifications (counted, reported as
// events.lost), not memory; calls during stop get -32007.
#include "daemon/control_server.hpp"

#include "daemon/control_frame.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

using namespace warren::daemon;
using nlohmann::json;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

/// A blocking client on a Unix socket, with a receive timeout.
class client {
 public:
  explicit client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("connect");
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~client() { ::close(fd_); }
  void send(const std::string& message) {
    std::string f;
    append_frame(f, message, 1u << 20);
    send_raw(f);
  }
  void send_raw(const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      const auto n = ::write(fd_, bytes.data() + off, bytes.size() - off);
      if (n <= 0)
        throw std::runtime_error("write");
      off += static_cast<std::size_t>(n);
    }
  }
  /// The next message, or "" on EOF or timeout.
  std::string next() {
    for (;;) {
      std::string_view in(pending_);
      const auto st = decoder_.decode(in);
      pending_.erase(0, pending_.size() - in.size());
      if (st == frame_status::frame)
        return std::string(decoder_.frame());
      char b[65536];
      const auto n = ::read(fd_, b, sizeof b);
      if (n <= 0)
        return {};
      pending_.append(b, static_cast<std::size_t>(n));
    }
  }
  json call(const std::string& message) {
    send(message);
    return json::parse(next());
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  frame_decoder decoder_{1u << 20};
  std::string pending_;
};

struct ControlServer : ::testing::Test {
  std::filesystem::path dir;
  asio::io_context io;
  std::unique_ptr<control_server> server;
  std::thread thread;
  std::thread worker_thread; // where "slow" answers come from
  asio::io_context worker;

  void SetUp() override {
    char tmpl[] = "/tmp/warren-ctl-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
  }
  void TearDown() override {
    if (thread.joinable()) {
      asio::post(io, [this] { server->stop([this] { io.stop(); }); });
      thread.join();
    }
    server.reset();
    if (worker_thread.joinable())
      worker_thread.join();
    std::filesystem::remove_all(dir);
  }
  std::string path() const { return (dir / "control.sock").string(); }

  void start(method_table table, control_options o = {}) {
    o.unix_path = path();
    server = std::make_unique<control_server>(io.get_executor(), std::move(table), std::move(o));
    ASSERT_TRUE(static_cast<bool>(server->start()));
    thread = std::thread([this] { io.run(); });
  }
  /// Runs `fn` on the server's executor and waits for it.
  template <typename F>
  auto on_server(F fn) {
    std::promise<decltype(fn())> p;
    asio::post(io, [&] { p.set_value(fn()); });
    return p.get_future().get();
  }
};

/// `slow` answers from another thread after `delay_ms` (params); `fast`
/// answers inline; `never` keeps its reply and never calls it.
method_table async_table(asio::io_context& worker, std::vector<method_reply>* kept) {
  method_table t;
  t.add_async(
      "slow",
      [&worker](const json& params, const connection_state&, method_reply reply) {
        const int ms = params.value("ms", 0);
        const int tag = params.value("tag", 0);
        asio::post(worker, [ms, tag, reply = std::move(reply)] {
          std::this_thread::sleep_for(std::chrono::milliseconds(ms));
          reply(json{{"tag", tag}});
        });
      },
      true);
  t.add(
      "fast", [](const json& params, const connection_state&) -> method_result { return json{{"tag", params.value("tag", 0)}}; },
      true);
  t.add_async(
      "never", [kept](const json&, const connection_state&, method_reply reply) { kept->push_back(std::move(reply)); },
      true);
  return t;
}

TEST_F(ControlServer, AsyncRepliesKeepRequestOrder) {
  std::vector<method_reply> kept;
  start(async_table(worker, &kept));
  auto guard = asio::make_work_guard(worker);
  worker_thread = std::thread([this] { worker.run(); });
  client c(path());
  // Pipelined: a slow async call, then a fast sync one: the slow answer comes first.
  c.send(R"({"jsonrpc":"2.0","method":"slow","params":{"ms":100,"tag":1},"id":1})");
  c.send(R"({"jsonrpc":"2.0","method":"fast","params":{"tag":2},"id":2})");
  EXPECT_EQ(json::parse(c.next())["result"]["tag"], 1);
  EXPECT_EQ(json::parse(c.next())["result"]["tag"], 2);
  // A batch mixing both answers in element order.
  const auto batch = c.call(R"([{"jsonrpc":"2.0","method":"slow","params":{"ms":50,"tag":3},"id":3},)"
                            R"({"jsonrpc":"2.0","method":"fast","params":{"tag":4},"id":4}])");
  ASSERT_TRUE(batch.is_array());
  EXPECT_EQ(batch[0]["result"]["tag"], 3);
  EXPECT_EQ(batch[1]["result"]["tag"], 4);
  guard.reset();
}

TEST_F(ControlServer, UnansweredCallTimesOutAndTheConnectionGoesOn) {
  std::vector<method_reply> kept;
  control_options o;
  o.call_timeout = 200ms;
  start(async_table(worker, &kept), o);
  client c(path());
  const auto r = c.call(R"({"jsonrpc":"2.0","method":"never","id":7})");
  EXPECT_EQ(r["error"]["code"], -32603);
  EXPECT_NE(r["error"]["message"].get<std::string>().find("did not answer"), std::string::npos);
  EXPECT_EQ(c.call(R"({"jsonrpc":"2.0","method":"fast","params":{"tag":9},"id":8})")["result"]["tag"], 9);
  // A late answer to the timed-out call is dropped, not sent.
  on_server([&] {
    for (auto& k : kept)
      k(json{{"late", true}});
    return 0;
  });
  EXPECT_EQ(c.call(R"({"jsonrpc":"2.0","method":"fast","params":{"tag":10},"id":9})")["id"], 9);
}

TEST_F(ControlServer, SubscribersGetNotificationsOthersDoNot) {
  std::vector<method_reply> kept;
  start(async_table(worker, &kept));
  client sub(path()), other(path());
  EXPECT_EQ(sub.call(R"({"jsonrpc":"2.0","method":"events.subscribe","id":1})")["result"], json::object());
  EXPECT_EQ(other.call(R"({"jsonrpc":"2.0","method":"fast","id":1})")["id"], 1);
  EXPECT_EQ(on_server([&] { return server->subscribers(); }), 1u);
  on_server([&] {
    server->publish("events.unit", json{{"unit", "web"}, {"state", "running"}});
    return 0;
  });
  const auto n = json::parse(sub.next());
  EXPECT_EQ(n["method"], "events.unit");
  EXPECT_EQ(n["params"]["unit"], "web");
  EXPECT_FALSE(n.contains("id"));
  // The other connection got nothing: its next message is the reply to its next call.
  EXPECT_EQ(other.call(R"({"jsonrpc":"2.0","method":"fast","id":2})")["id"], 2);
  // A subscriber still calls methods; replies and notifications interleave in order.
  EXPECT_EQ(sub.call(R"({"jsonrpc":"2.0","method":"fast","id":3})")["id"], 3);
}

TEST_F(ControlServer, SubscriberThatNeverReadsLosesEventsNotMemory) {
  std::vector<method_reply> kept;
  start(async_table(worker, &kept));
  client sub(path());
  EXPECT_EQ(sub.call(R"({"jsonrpc":"2.0","method":"events.subscribe","id":1})")["result"], json::object());
  int rcvbuf = 4096;
  ::setsockopt(sub.fd(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  const std::string padding(2000, 'x');
  constexpr int k_published = 20000; // ~40 MB if it were all kept
  on_server([&] {
    for (int i = 0; i < k_published; ++i)
      server->publish("events.test", json{{"i", i}, {"pad", padding}});
    return 0;
  });
  const auto lost = on_server([&] { return server->events_lost(); });
  EXPECT_GT(lost, 10000u);
  // Now read everything: notifications in order, one events.lost among them with the count.
  std::uint64_t got = 0, reported = 0;
  int last = -1;
  bool ordered = true;
  while (got + reported < static_cast<std::uint64_t>(k_published)) {
    const auto text = sub.next();
    ASSERT_FALSE(text.empty()) << "got " << got << ", reported lost " << reported;
    const auto m = json::parse(text);
    if (m["method"] == "events.lost") {
      reported += m["params"]["count"].get<std::uint64_t>();
      continue;
    }
    const int i = m["params"]["i"];
    ordered = ordered && i > last;
    last = i;
    ++got;
  }
  EXPECT_TRUE(ordered);
  EXPECT_EQ(reported, lost);
  EXPECT_LE(got, 1024u + 64u); // bounded by the queue, not by what was published
}

TEST_F(ControlServer, CallsWhileStoppingGetShuttingDown) {
  // `hold` keeps its reply and says it started; the test answers it later.
  std::promise<method_reply> held;
  method_table t;
  t.add_async(
      "hold", [&held](const json&, const connection_state&, method_reply reply) { held.set_value(std::move(reply)); },
      true);
  t.add(
      "fast", [](const json&, const connection_state&) -> method_result { return json::object(); }, true);
  start(std::move(t));
  client c(path());
  // A batch: a held call (in progress when the stop comes), then a fast one.
  c.send(R"([{"jsonrpc":"2.0","method":"hold","id":1},{"jsonrpc":"2.0","method":"fast","id":2}])");
  auto reply = held.get_future().get();
  std::promise<void> stopped;
  asio::post(io, [&] { server->stop([&] { stopped.set_value(); }); });
  on_server([] { return 0; }); // the stop has run
  reply(json{{"tag", 1}});     // from this thread, as a unit's loop would
  const auto batch = json::parse(c.next());
  ASSERT_TRUE(batch.is_array());
  EXPECT_EQ(batch[0]["result"]["tag"], 1);
  EXPECT_EQ(batch[1]["error"]["code"], -32007);
  EXPECT_EQ(c.next(), ""); // then closed
  stopped.get_future().wait();
  asio::post(io, [this] { io.stop(); });
  thread.join();
}

} // namespace
