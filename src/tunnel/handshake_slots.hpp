// handshake_slots: bounds the connections the server holds before they have
// authenticated, in all and per source, as sshd's MaxStartups does. Until its
// token checks out a connection costs the server a descriptor and TLS and
// HTTP state for up to the handshake timeout (10 s), and anyone who can reach
// the port can open one; without a bound, a few thousand connections that
// never finish (slow-loris) would use up descriptors and memory.
//
// One source holds at most `per_source` slots; a connection over that is
// closed at once. When all `total` slots are taken, a newcomer takes the slot
// of another connection, which is evicted (its `evict` callback runs): the
// oldest of the source holding the most, if that source holds more than the
// newcomer's plus one; otherwise the oldest of all. A handshake takes
// milliseconds, so the oldest are the likeliest stuck, and an attacker who
// holds every slot, from however many sources, sees them taken by each
// newcomer; to keep a real client out it would have to open connections
// faster than that client finishes its handshake.
// A source is an IPv4 address or an IPv6 /64 (what one host is usually
// given); an IPv4-mapped IPv6 address counts as its IPv4 address.
// Pure bookkeeping, tested without sockets. Not thread-safe.
#pragma once

#include "net/source_group.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/address_v6.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>

namespace warren::tunnel {

class handshake_slots {
 public:
  using source_key = net::source_key; // an IPv4 address or an IPv6 /64 (net/source_group.hpp)

 private:
  struct state {
    std::size_t held = 0;
    std::uint64_t next_id = 0;
    std::uint64_t evictions = 0;
    // Per source, its slots oldest first: id -> what evicts the connection.
    std::map<source_key, std::map<std::uint64_t, std::function<void()>>> by_source;
    void give_back(const source_key& key, std::uint64_t id);
  };

 public:
  /// A slot held; given back when the ticket is destroyed or released (or
  /// taken when its connection is evicted). May outlive the slots.
  class ticket {
   public:
    ticket(ticket&& other) noexcept = default;
    ticket& operator=(ticket&& other) noexcept;
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;
    ~ticket() { release(); }
    void release();
    /// Whether the slot is still this ticket's (false once released, or
    /// taken for another connection).
    bool held() const;

   private:
    friend class handshake_slots;
    ticket(std::weak_ptr<state> s, const source_key& key, std::uint64_t id)
        : state_(std::move(s)), key_(key), id_(id) {}
    std::weak_ptr<state> state_;
    source_key key_{};
    std::uint64_t id_ = 0;
  };

  /// Both bounds are at least 1.
  handshake_slots(std::size_t total, std::size_t per_source)
      : total_(std::max<std::size_t>(total, 1)), per_source_(std::max<std::size_t>(per_source, 1)) {}
  handshake_slots(const handshake_slots&) = delete;
  handshake_slots& operator=(const handshake_slots&) = delete;

  /// A slot for a connection from `source`, or nothing if its source holds
  /// `per_source` already. With all taken, another connection is evicted.
  /// `evict` closes the connection if its slot is taken for another; it is
  /// called from a later admit(), never after the ticket is given back.
  /// `per_source`, if not 0, replaces the bound for this source (a trusted
  /// reverse proxy, which speaks for many clients).
  std::optional<ticket> admit(const boost::asio::ip::address& source, std::function<void()> evict = {},
                              std::size_t per_source = 0);

  std::size_t held() const { return s_->held; }
  std::size_t held_by(const boost::asio::ip::address& source) const;
  std::size_t total() const { return total_; }
  std::size_t per_source() const { return per_source_; }
  /// Sources with a slot held (a source at zero is forgotten).
  std::size_t sources() const { return s_->by_source.size(); }
  /// Connections evicted so far.
  std::uint64_t evictions() const { return s_->evictions; }

 private:
  std::size_t total_;
  std::size_t per_source_;
  std::shared_ptr<state> s_ = std::make_shared<state>();
};

} // namespace warren::tunnel
