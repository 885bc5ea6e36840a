// The loop watchdog (src/daemon/watchdog.hpp): WATCHDOG=1 only when every
// event loop has run its ping, a stuck loop stops it and is logged once, a
// stuck loop collects one ping; driven by tick() on a manual clock with the
// loops polled by hand. Then the real thread with running loops (TSan runs
// this), and $WATCHDOG_USEC / $WATCHDOG_PID.
#include "daemon/watchdog.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace warren::daemon {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

/// Collects what spdlog's default logger writes, for the duration of a test.
class captured_log {
 public:
  captured_log() : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("test", std::make_shared<sink>(*this));
    logger->set_pattern("%v");
    spdlog::set_default_logger(logger);
  }
  ~captured_log() { spdlog::set_default_logger(previous_); }

  std::vector<std::string> lines() {
    std::lock_guard lock(mutex_);
    return lines_;
  }
  std::size_t count(const std::string& part) {
    std::size_t n = 0;
    for (const auto& l : lines())
      n += l.find(part) != std::string::npos;
    return n;
  }
  /// Waits (bounded) for a line holding `part`.
  bool wait_for(const std::string& part) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 10s, [&] {
      for (const auto& l : lines_)
        if (l.find(part) != std::string::npos)
          return true;
      return false;
    });
  }

 private:
  struct sink final : spdlog::sinks::base_sink<std::mutex> {
    explicit sink(captured_log& log) : log_(log) {}
    void sink_it_(const spdlog::details::log_msg& msg) override {
      std::lock_guard lock(log_.mutex_);
      log_.lines_.emplace_back(msg.payload.data(), msg.payload.size());
      log_.changed_.notify_all();
    }
    void flush_() override {}
    captured_log& log_;
  };
  std::shared_ptr<spdlog::logger> previous_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> lines_;
};

struct two_loops {
  asio::io_context a, b;
  std::vector<std::string> sent;
  loop_watchdog watchdog{{a.get_executor(), b.get_executor()}, [this](std::string_view m) { sent.emplace_back(m); }};
  std::size_t poll(asio::io_context& io) {
    io.restart();
    return io.poll();
  }
};

TEST(LoopWatchdog, SendsOnlyWhenEveryLoopHasRunItsPing) {
  captured_log log;
  manual_clock clock;
  two_loops t;
  EXPECT_FALSE(t.watchdog.tick(clock.now())) << "no loop has been asked yet";
  EXPECT_TRUE(t.sent.empty());
  EXPECT_EQ(t.poll(t.a), 1u);
  EXPECT_EQ(t.poll(t.b), 1u);
  clock.advance(5s);
  EXPECT_TRUE(t.watchdog.tick(clock.now()));
  EXPECT_EQ(t.sent, std::vector<std::string>{"WATCHDOG=1"});
  for (int round = 0; round < 5; ++round) {
    EXPECT_EQ(t.poll(t.a), 1u);
    EXPECT_EQ(t.poll(t.b), 1u);
    clock.advance(5s);
    EXPECT_TRUE(t.watchdog.tick(clock.now())) << round;
  }
  EXPECT_EQ(t.sent.size(), 6u);
  EXPECT_EQ(log.count("watchdog"), 0u) << "healthy loops are not logged";
}

TEST(LoopWatchdog, AStuckLoopStopsItIsLoggedOnceAndGetsOnePing) {
  captured_log log;
  manual_clock clock;
  two_loops t;
  t.watchdog.tick(clock.now());
  t.poll(t.a);
  t.poll(t.b);
  clock.advance(5s);
  ASSERT_TRUE(t.watchdog.tick(clock.now()));
  // Loop b stops running handlers; a keeps going.
  for (int round = 0; round < 10; ++round) {
    EXPECT_EQ(t.poll(t.a), 1u) << round;
    clock.advance(5s);
    EXPECT_FALSE(t.watchdog.tick(clock.now())) << round;
  }
  EXPECT_EQ(t.sent.size(), 1u) << "no WATCHDOG=1 while loop 1 is stuck";
  EXPECT_EQ(log.count("event loop 1 of 2 has not run a ping posted 5000 ms ago"), 1u)
      << "named once, with how long it has been";
  EXPECT_EQ(log.count("event loop 0"), 0u);
  // It comes back: one ping waited in its queue, not ten.
  EXPECT_EQ(t.poll(t.b), 1u);
  EXPECT_EQ(t.poll(t.b), 0u);
  EXPECT_EQ(t.poll(t.a), 1u) << "a's ping of the last round";
  clock.advance(5s);
  EXPECT_TRUE(t.watchdog.tick(clock.now()));
  EXPECT_EQ(log.count("event loop 1 of 2 answers again"), 1u);
  t.poll(t.a);
  t.poll(t.b);
  clock.advance(5s);
  EXPECT_TRUE(t.watchdog.tick(clock.now()));
  EXPECT_EQ(t.sent.size(), 3u);
}

TEST(LoopWatchdog, ALoopThatRunsThePingLateStillCounts) {
  manual_clock clock;
  two_loops t;
  t.watchdog.tick(clock.now());
  t.poll(t.a);
  clock.advance(5s);
  EXPECT_FALSE(t.watchdog.tick(clock.now())); // b late; a pinged again
  t.poll(t.b);
  clock.advance(5s);
  EXPECT_FALSE(t.watchdog.tick(clock.now())) << "a has not run its second ping";
  t.poll(t.a);
  t.poll(t.b);
  clock.advance(5s);
  EXPECT_TRUE(t.watchdog.tick(clock.now()));
}

TEST(LoopWatchdog, PingsLeftInADestroyedLoopAreHarmless) {
  std::vector<std::string> sent;
  auto io = std::make_unique<asio::io_context>();
  loop_watchdog watchdog({io->get_executor()}, [&](std::string_view m) { sent.emplace_back(m); });
  watchdog.tick(manual_clock().now());
  io.reset(); // the ping is destroyed unrun
  EXPECT_TRUE(sent.empty());
}

TEST(WatchdogThread, RunningLoopsKeepItGoingAndABlockedOneStopsIt) {
  captured_log log;
  asio::io_context a, b;
  auto work_a = asio::make_work_guard(a);
  auto work_b = asio::make_work_guard(b);
  std::thread ta([&] { a.run(); });
  std::thread tb([&] { b.run(); });

  std::mutex mutex;
  std::condition_variable changed;
  std::size_t sent = 0;
  const auto wait_sent_within = [&](std::size_t n, std::chrono::milliseconds bound) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, bound, [&] { return sent >= n; });
  };
  const auto wait_sent = [&](std::size_t n) { return wait_sent_within(n, 10s); };
  {
    watchdog_thread watchdog({a.get_executor(), b.get_executor()}, 20ms, [&](std::string_view m) {
      EXPECT_EQ(m, "WATCHDOG=1");
      std::lock_guard lock(mutex);
      ++sent;
      changed.notify_all();
    });
    EXPECT_TRUE(wait_sent(3));

    // Block loop b until told; once its lateness is logged, nothing is sent.
    std::promise<void> release;
    auto released = release.get_future().share();
    asio::post(b, [released] { released.wait(); });
    ASSERT_TRUE(log.wait_for("event loop 1 of 2 has not run a ping"));
    std::size_t at_report = 0;
    {
      std::lock_guard lock(mutex);
      at_report = sent;
    }
    // Ten rounds' time: nothing may be sent (a negative check; it cannot
    // fail on a slow machine, only miss a bug there).
    EXPECT_FALSE(wait_sent_within(at_report + 1, 200ms)) << "no WATCHDOG=1 while loop 1 is blocked";
    release.set_value();
    EXPECT_TRUE(wait_sent(at_report + 2)) << "it resumes once loop 1 runs again";
    EXPECT_TRUE(log.wait_for("event loop 1 of 2 answers again"));
    watchdog.stop();
  }
  work_a.reset();
  work_b.reset();
  ta.join();
  tb.join();
  EXPECT_EQ(log.count("event loop 0 of 2"), 0u);
}

TEST(WatchdogTimeout, FromTheEnvironment) {
  const pid_t self = 4242;
  auto none = watchdog_timeout(nullptr, nullptr, self);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  auto mine = watchdog_timeout("30000000", "4242", self);
  ASSERT_TRUE(mine);
  ASSERT_TRUE(*mine);
  EXPECT_EQ(**mine, std::chrono::seconds(30));
  auto any_pid = watchdog_timeout("500", nullptr, self);
  ASSERT_TRUE(any_pid && *any_pid);
  EXPECT_EQ(**any_pid, std::chrono::microseconds(500));
  auto other = watchdog_timeout("30000000", "1", self);
  ASSERT_TRUE(other);
  EXPECT_FALSE(*other) << "WATCHDOG_PID names another process";
  for (const char* bad : {"", "0", "-5", "12s", "1e6", "99999999999999999999999", " 5"})
    EXPECT_FALSE(watchdog_timeout(bad, nullptr, self)) << bad;
  EXPECT_FALSE(watchdog_timeout("1000", "x", self));
  EXPECT_FALSE(watchdog_timeout("1000", "0", self));
}

} // namespace
} // namespace warren::daemon
