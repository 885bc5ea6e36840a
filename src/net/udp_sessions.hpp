// The UDP NAT table's bookkeeping, free of sockets so its expiry rules are
// tested on a manual clock: sessions keyed by (receiving socket, client
// address), last activity per session, idle expiry, and least-recently-used
// eviction when the table is full (memory stays bounded however many
// clients spray datagrams).
#pragma once

#include "core/clock.hpp"

#include <boost/asio/ip/udp.hpp>

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <vector>

namespace warren::net {

struct udp_session_key {
  std::size_t listener = 0; // index of the socket that received the client's datagram
  boost::asio::ip::udp::endpoint client;
  friend bool operator<(const udp_session_key& a, const udp_session_key& b) {
    if (a.listener != b.listener)
      return a.listener < b.listener;
    return a.client < b.client;
  }
};

/// Not thread-safe. Value is whatever the owner keeps per session.
template <class Value>
class udp_session_table {
 public:
  explicit udp_session_table(std::size_t max_sessions) : max_(max_sessions) {}

  Value* find(const udp_session_key& key, time_point now) {
    auto it = map_.find(key);
    if (it == map_.end())
      return nullptr;
    it->second.last_active = now;
    return &it->second.value;
  }

  /// Inserts a session; when the table is full the least recently active
  /// session is evicted first and returned.
  std::optional<Value> insert(const udp_session_key& key, Value value, time_point now) {
    std::optional<Value> evicted;
    if (map_.size() >= max_ && !map_.empty()) {
      auto lru = map_.begin();
      for (auto it = map_.begin(); it != map_.end(); ++it)
        if (it->second.last_active < lru->second.last_active)
          lru = it;
      evicted = std::move(lru->second.value);
      map_.erase(lru);
    }
    map_.insert_or_assign(key, entry{std::move(value), now});
    return evicted;
  }

  void touch(const udp_session_key& key, time_point now) {
    if (auto it = map_.find(key); it != map_.end())
      it->second.last_active = now;
  }

  /// Removes and returns every session idle for at least `idle`.
  std::vector<Value> expire(time_point now, duration idle) {
    std::vector<Value> out;
    for (auto it = map_.begin(); it != map_.end();) {
      if (now - it->second.last_active >= idle) {
        out.push_back(std::move(it->second.value));
        it = map_.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  std::optional<Value> erase(const udp_session_key& key) {
    auto it = map_.find(key);
    if (it == map_.end())
      return std::nullopt;
    auto v = std::move(it->second.value);
    map_.erase(it);
    return v;
  }

  std::size_t size() const { return map_.size(); }
  std::size_t capacity() const { return max_; }

 private:
  struct entry {
    Value value;
    time_point last_active;
  };
  std::size_t max_;
  std::map<udp_session_key, entry> map_;
};

} // namespace warren::net
