// stored_handler: the only way warren keeps a type-erased completion handler.
//
// Boost 1.81 (Debian 12) ships an `any_completion_handler` whose move
// assignment is `any_completion_handler(other).swap(*this)` with `other` an
// lvalue: that picks the converting constructor, which wraps the handler in
// a new any_completion_handler, whose construction does the same, without
// end (chriskohlhoff/asio#1220, fixed in later Asio). Copy-construction from
// an lvalue recurses the same way instead of failing to compile. Any move
// assignment is enough to hit it: `vector::erase` of an element that is not
// the last, `std::swap`, `= std::move(h)`. `warren client` overflowed its
// stack this way (issue 10) when a waiter in the middle of an async_event's
// list was cancelled.
//
// stored_handler holds one and gives it sound value semantics: the move
// constructor (correct in 1.81) does all the moving, assignment goes through
// swap, copies do not compile. It is not a completion token and carries
// no associated executor: run it, or post it to an explicit executor.
// tests/lint/source_rules.py fails the build's
// tests if `any_completion_handler` appears anywhere else in the tree, so the
// pattern cannot come back. Not thread-safe (a handler belongs to one
// executor's work); lifetime is that of a value.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/cancellation_signal.hpp>

#include <cstddef>
#include <type_traits>
#include <utility>

namespace warren::core {

template <typename... Signatures>
class stored_handler {
  using any_handler = boost::asio::any_completion_handler<Signatures...>;

 public:
  /// Found by get_associated_cancellation_slot (Asio's associator protocol).
  using cancellation_slot_type = boost::asio::cancellation_slot;

  stored_handler() = default;

  /// Takes any completion handler by value (an rvalue: handlers are moved,
  /// never copied). A stored_handler or an any_completion_handler lvalue is
  /// rejected at compile time instead of recursing at run time.
  template <typename Handler>
    requires(!std::is_same_v<std::decay_t<Handler>, stored_handler> &&
             !std::is_same_v<std::decay_t<Handler>, any_handler> && !std::is_lvalue_reference_v<Handler>)
  stored_handler(Handler&& handler) // NOLINT(google-explicit-constructor): a handler converts like a function does
      : handler_(std::forward<Handler>(handler)) {}

  stored_handler(const stored_handler&) = delete;
  stored_handler& operator=(const stored_handler&) = delete;
  stored_handler(stored_handler&& other) noexcept : handler_(std::move(other.handler_)) {}

  stored_handler& operator=(stored_handler&& other) noexcept {
    any_handler taken(std::move(other.handler_)); // the move constructor, sound in 1.81
    handler_.swap(taken);
    return *this; // our previous handler (now in `taken`) is destroyed here
  }

  stored_handler& operator=(std::nullptr_t) noexcept {
    any_handler none;
    handler_.swap(none);
    return *this;
  }

  ~stored_handler() = default;

  explicit operator bool() const noexcept { return static_cast<bool>(handler_); }

  /// The handler's own cancellation slot (any_completion_handler takes over
  /// the wrapped handler's slot and offers one of its own).
  /// An empty one has none (any_completion_handler would dereference null).
  boost::asio::cancellation_slot get_cancellation_slot() const noexcept {
    return handler_ ? handler_.get_cancellation_slot() : boost::asio::cancellation_slot();
  }

  /// Runs the handler once; it is empty afterwards.
  template <typename... Args>
  auto operator()(Args&&... args) && {
    return std::move(handler_)(std::forward<Args>(args)...);
  }

 private:
  any_handler handler_;
};

} // namespace warren::core
