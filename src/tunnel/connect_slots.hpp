// connect_slots: bounds the outbound connects one tunnel client has in
// flight (lookups and attempts, from its OPEN to OPEN_OK or RESET). A
// connect costs the server sockets, timers and, against a target that does
// not answer, up to the connect timeout; without a bound, a client whose
// streams all connect to a black hole could hold as many as its stream limit.
//
// Over the bound, a stream waits for a slot instead of being refused: slots
// are handed over in order as connects end (connected, refused, timed out or
// reset), so a client with many streams is only slowed, never locked out,
// and established streams hold no slot. A stream reset while it waits
// leaves the queue (cancel()) and costs nothing more.
// Pure bookkeeping, no I/O: a waiter is a callback that receives the slot,
// tested without sockets. Lifetime: tickets must not outlive their
// connect_slots. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <utility>

namespace warren::tunnel {

class connect_slots {
 public:
  /// A slot held; given back (to the first waiter, if any) when destroyed.
  class ticket {
   public:
    ticket() = default;
    ticket(ticket&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)) {}
    ticket& operator=(ticket&& o) noexcept {
      if (this != &o) {
        release();
        owner_ = std::exchange(o.owner_, nullptr);
      }
      return *this;
    }
    ~ticket() { release(); }
    bool held() const { return owner_ != nullptr; }
    void release() {
      if (auto* o = std::exchange(owner_, nullptr))
        o->give_back();
    }

   private:
    friend class connect_slots;
    explicit ticket(connect_slots* owner) : owner_(owner) {}
    connect_slots* owner_ = nullptr;
  };

  using granted_handler = std::function<void(ticket)>;

  explicit connect_slots(std::size_t limit) : limit_(limit == 0 ? 1 : limit) {}
  connect_slots(const connect_slots&) = delete;
  connect_slots& operator=(const connect_slots&) = delete;

  /// A slot now, if one is free and nobody waits for one.
  std::optional<ticket> try_take() {
    if (held_ >= limit_ || !waiting_.empty())
      return std::nullopt;
    ++held_;
    return ticket(this);
  }

  /// Queues `granted`, called with a slot when one is given back (in order
  /// of waiting). Returns the id for cancel().
  std::uint64_t wait(granted_handler granted) {
    waiting_.push_back({next_id_, std::move(granted)});
    return next_id_++;
  }

  /// The waiter leaves the queue; nothing if it has been granted already.
  void cancel(std::uint64_t id) {
    waiting_.remove_if([id](const waiter& w) { return w.id == id; });
  }

  std::size_t held() const { return held_; }
  std::size_t waiting() const { return waiting_.size(); }
  std::size_t limit() const { return limit_; }

 private:
  struct waiter {
    std::uint64_t id;
    granted_handler granted;
  };

  /// A ticket ended: its slot goes to the first waiter (handed over, so
  /// nobody can take it in between), or becomes free.
  void give_back() {
    if (waiting_.empty()) {
      --held_;
      return;
    }
    auto w = std::move(waiting_.front());
    waiting_.pop_front();
    w.granted(ticket(this));
  }

  std::size_t limit_;
  std::size_t held_ = 0;
  std::uint64_t next_id_ = 0;
  std::list<waiter> waiting_;
};

} // namespace warren::tunnel
