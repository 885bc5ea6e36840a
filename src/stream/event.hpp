// async_event: a coroutine condition variable for one executor. Waiters loop
// `while (!condition) co_await ev.wait();`, and notify() wakes every current
// waiter. Built on a steady_timer that never expires (cancel = wake), the
// usual Asio idiom. Not thread-safe: use on one executor.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace warren::stream {

class async_event {
 public:
  explicit async_event(const boost::asio::any_io_executor& ex)
      : timer_(ex, boost::asio::steady_timer::time_point::max()) {}

  boost::asio::awaitable<void> wait() {
    [[maybe_unused]] auto [ec] = co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  }
  void notify() { timer_.cancel(); }

 private:
  boost::asio::steady_timer timer_;
};

} // namespace warren::stream
