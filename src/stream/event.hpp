// async_event: a condition variable for one executor. Coroutines loop
// `while (!condition) co_await ev.wait();`; callbacks wait with
// async_wait(bind_executor(ex, fn)). notify() wakes every current waiter,
// posted to the waiter's executor, never inline: notify() is called deep
// inside whatever changed the condition.
//
// Not a steady_timer (the usual Asio idiom): an event nobody waits on is one
// empty vector, with no executor and no allocation, because every tunnel
// stream carries three and 10,000 idle streams must stay cheap (bench goal).
// A cancelled wait (the losing branch of `||`) completes at once; the
// cancellation is then the awaiting coroutine's to notice. Destroying the
// event wakes its waiters, as destroying a timer would. Waiters need an
// associated executor. Not thread-safe: use on one executor.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace warren::stream {

class async_event {
 public:
  async_event() = default;
  async_event(const async_event&) = delete;
  async_event& operator=(const async_event&) = delete;
  ~async_event() { notify(); }

  template <typename CompletionToken>
  auto async_wait(CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void()>(
        [this](auto handler) {
          static_assert(
              !std::is_same_v<boost::asio::associated_executor_t<decltype(handler)>, boost::asio::system_executor>,
              "async_event waiters need an associated executor (bind_executor)");
          const std::uint64_t id = next_id_++;
          // Like a pending timer wait, a waiter keeps its executor's context running.
          boost::asio::any_io_executor ex = boost::asio::prefer(boost::asio::get_associated_executor(handler),
                                                                boost::asio::execution::outstanding_work.tracked);
          // Wrapped first: any_completion_handler takes over the handler's
          // cancellation slot and offers a slot of its own.
          boost::asio::any_completion_handler<void()> wrapped(std::move(handler));
          if (auto slot = boost::asio::get_associated_cancellation_slot(wrapped); slot.is_connected())
            slot.assign([this, id](boost::asio::cancellation_type) { wake(id); });
          waiters_.push_back({id, std::move(ex), std::move(wrapped)});
        },
        token);
  }

  boost::asio::awaitable<void> wait() { co_await async_wait(boost::asio::use_awaitable); }

  void notify() {
    auto woken = std::move(waiters_);
    waiters_.clear();
    for (auto& w : woken)
      complete(w);
  }

 private:
  struct waiter {
    std::uint64_t id;
    boost::asio::any_io_executor ex; // only while waiting: an idle event stores none
    boost::asio::any_completion_handler<void()> handler;
  };

  void wake(std::uint64_t id) {
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
      if (it->id == id) {
        auto w = std::move(*it);
        waiters_.erase(it);
        complete(w);
        return;
      }
    }
  }

  static void complete(waiter& w) {
    // The wait is over: its cancellation handler (which points at this event) goes.
    if (auto slot = boost::asio::get_associated_cancellation_slot(w.handler); slot.is_connected())
      slot.clear();
    boost::asio::post(w.ex, [h = std::move(w.handler)]() mutable { std::move(h)(); });
  }

  std::vector<waiter> waiters_;
  std::uint64_t next_id_ = 0;
};

} // namespace warren::stream
