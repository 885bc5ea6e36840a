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
//
// Waiters are owned by the event, not by the io_context as a timer's are,
// and a waiting coroutine often owns the event itself (a local, or a member
// of an object it keeps alive). So that destroying the io_context (after
// io.stop(), with coroutines still waiting) frees them as it frees pending
// operations instead of leaking such cycles, events with waiters register
// with a per-context service that drops their waiters at shutdown.
#pragma once

#include "core/stored_handler.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/execution/context_as.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdint>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

namespace warren::stream {

class async_event;

namespace detail {

/// The events of one execution context that have waiters (see above).
class event_registry final : public boost::asio::execution_context::service {
 public:
  static inline boost::asio::execution_context::id id;

  explicit event_registry(boost::asio::execution_context& context) : service(context) {}

  void add(async_event* e) { waiting_.insert(e); }
  void remove(async_event* e) { waiting_.erase(e); }

 private:
  void shutdown() override;

  std::unordered_set<async_event*> waiting_;
};

} // namespace detail

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
          // Wrapped first: the type-erased handler takes over the handler's
          // cancellation slot and offers a slot of its own.
          core::stored_handler<void()> wrapped(std::move(handler));
          if (auto slot = boost::asio::get_associated_cancellation_slot(wrapped); slot.is_connected())
            slot.assign([this, id](boost::asio::cancellation_type) { wake(id); });
          if (!registry_) {
            registry_ = &boost::asio::use_service<detail::event_registry>(
                boost::asio::query(ex, boost::asio::execution::context_as<boost::asio::execution_context&>));
            registry_->add(this);
          }
          waiters_.push_back({id, std::move(ex), std::move(wrapped)});
        },
        token);
  }

  boost::asio::awaitable<void> wait() { co_await async_wait(boost::asio::use_awaitable); }

  /// Like notify(), but hands the woken handlers to `out` instead of
  /// posting them: the caller runs each one itself, on a stack where
  /// running it is safe (no trip through the io_context's queue, and so no
  /// reactor poll in between). True if there was a waiter.
  bool notify_into(std::vector<core::stored_handler<void()>>& out) {
    if (waiters_.empty())
      return false;
    auto woken = std::move(waiters_);
    waiters_.clear();
    unregister();
    for (auto& w : woken) {
      detach(w);
      out.push_back(std::move(w.handler));
    }
    return true;
  }

  /// Wakes every current waiter; true if there was one.
  bool notify() {
    if (waiters_.empty())
      return false;
    auto woken = std::move(waiters_);
    waiters_.clear();
    unregister();
    for (auto& w : woken)
      complete(w);
    return true;
  }

 private:
  friend class detail::event_registry;

  struct waiter {
    std::uint64_t id;
    boost::asio::any_io_executor ex; // only while waiting: an idle event stores none
    core::stored_handler<void()> handler;
  };

  void wake(std::uint64_t id) {
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
      if (it->id == id) {
        auto w = std::move(*it);
        waiters_.erase(it);
        if (waiters_.empty())
          unregister();
        complete(w);
        return;
      }
    }
  }

  void unregister() {
    if (registry_)
      registry_->remove(this);
    registry_ = nullptr;
  }

  /// The wait is over: its cancellation handler (which points at this event) goes.
  static void detach(waiter& w) {
    if (auto slot = boost::asio::get_associated_cancellation_slot(w.handler); slot.is_connected())
      slot.clear();
  }

  static void complete(waiter& w) {
    detach(w);
    boost::asio::post(w.ex, [h = std::move(w.handler)]() mutable { std::move(h)(); });
  }

  /// The context is shutting down: waiters are destroyed, never run, like
  /// the context's pending operations. Destroying them may destroy this event.
  void drop_waiters() {
    registry_ = nullptr;
    auto dropped = std::move(waiters_);
    waiters_.clear();
    for (auto& w : dropped)
      detach(w);
  }

  std::vector<waiter> waiters_;
  std::uint64_t next_id_ = 0;
  detail::event_registry* registry_ = nullptr; // while there are waiters
};

inline void detail::event_registry::shutdown() {
  while (!waiting_.empty()) {
    auto* e = *waiting_.begin();
    waiting_.erase(waiting_.begin());
    e->drop_waiters(); // may destroy other events, which then leave waiting_
  }
}

} // namespace warren::stream
