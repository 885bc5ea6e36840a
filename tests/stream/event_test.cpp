// Tests of stream::async_event (src/stream/event.hpp): notify() wakes every
// current waiter, coroutine or callback, posted and never inline; a later
// waiter waits for the next notify(); a cancelled wait (the losing branch of
// `||`) completes at once; destroying the event wakes its waiters, and
// destroying the io_context frees them.
#include "stream/event.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>

using namespace std::chrono_literals;
using namespace warren;
namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

TEST(async_event, NotifyWakesEveryWaiterPostedNotInline) {
  asio::io_context io;
  stream::async_event ev;
  int coroutines = 0;
  int callbacks = 0;
  for (int i = 0; i < 2; ++i)
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await ev.wait();
          ++coroutines;
        },
        asio::detached);
  ev.async_wait(asio::bind_executor(io.get_executor(), [&] { ++callbacks; }));
  io.poll();
  EXPECT_EQ(coroutines, 0);
  EXPECT_EQ(callbacks, 0);

  ev.notify();
  EXPECT_EQ(coroutines, 0) << "notify() resumed a waiter inline";
  EXPECT_EQ(callbacks, 0) << "notify() ran a callback inline";
  io.poll();
  EXPECT_EQ(coroutines, 2);
  EXPECT_EQ(callbacks, 1);

  // A waiter that arrives after notify() waits for the next one.
  ev.async_wait(asio::bind_executor(io.get_executor(), [&] { ++callbacks; }));
  io.restart();
  io.poll();
  EXPECT_EQ(callbacks, 1);
  ev.notify();
  io.poll();
  EXPECT_EQ(callbacks, 2);
}

TEST(async_event, CancelledWaitCompletes) {
  asio::io_context io;
  stream::async_event ev;
  std::optional<std::size_t> winner;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer t(io, 20ms);
        auto r = co_await (ev.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
        winner = r.index();
      },
      asio::detached);
  io.run_for(5s);
  ASSERT_TRUE(winner.has_value()) << "the event's branch of || did not end when the timer won";
  EXPECT_EQ(*winner, 1u);

  // The cancelled waiter is gone: a notify() now wakes nothing.
  int callbacks = 0;
  ev.notify();
  ev.async_wait(asio::bind_executor(io.get_executor(), [&] { ++callbacks; }));
  io.restart();
  io.poll();
  EXPECT_EQ(callbacks, 0);
  ev.notify();
  io.poll();
  EXPECT_EQ(callbacks, 1);
}

TEST(async_event, CancellingOneOfSeveralWaitersLeavesTheOthersWaiting) {
  // The cancelled waiter is not the last one, so removing it moves the
  // waiters behind it. Boost 1.81's any_completion_handler move-assignment
  // wraps the handler in itself without end (chriskohlhoff/asio#1220): this
  // was a stack overflow, the crash of `warren client` when --wait-tunnel
  // ran out while the supervisor also waited for the tunnel.
  asio::io_context io;
  stream::async_event ev;
  std::optional<std::size_t> winner;
  int plain = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer t(io, 20ms);
        auto r = co_await (ev.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
        winner = r.index();
      },
      asio::detached);
  io.poll(); // the coroutine's wait is the first in the list
  for (int i = 0; i < 3; ++i)
    ev.async_wait(asio::bind_executor(io.get_executor(), [&] { ++plain; }));
  io.run_for(200ms);
  ASSERT_TRUE(winner.has_value()) << "the event's branch of || did not end when the timer won";
  EXPECT_EQ(*winner, 1u);
  EXPECT_EQ(plain, 0) << "cancelling one waiter woke the others";

  io.restart();
  ev.notify();
  io.poll();
  EXPECT_EQ(plain, 3);
}

TEST(async_event, DestroyingTheEventWakesItsWaiters) {
  asio::io_context io;
  auto ev = std::make_unique<stream::async_event>();
  bool woken = false;
  asio::co_spawn(
      io,
      [&, e = ev.get()]() -> asio::awaitable<void> {
        co_await e->wait();
        woken = true;
      },
      asio::detached);
  io.poll();
  ev.reset();
  io.poll();
  EXPECT_TRUE(woken);
}

TEST(async_event, DestroyingTheContextFreesAWaiterThatOwnsTheEvent) {
  // A coroutine waiting on an event it owns, when the io_context goes (as
  // after io.stop()): the context frees it, as it frees pending operations.
  auto io = std::make_unique<asio::io_context>();
  auto alive = std::make_shared<int>(0);
  bool woken = false;
  asio::co_spawn(
      *io,
      [&woken, alive]() -> asio::awaitable<void> {
        stream::async_event own;
        co_await own.wait();
        woken = true;
      },
      asio::detached);
  io->poll();
  EXPECT_EQ(alive.use_count(), 2);
  io.reset();
  EXPECT_EQ(alive.use_count(), 1) << "the waiting coroutine outlived its io_context";
  EXPECT_FALSE(woken);
}

} // namespace
