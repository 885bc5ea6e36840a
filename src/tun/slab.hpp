// Storage for the NAT tables: a slab of nodes addressed by 32-bit slot
// indices, 64-bit ids that name a slot and its generation (so an id the
// engine kept for a session that has gone never finds the session that took
// its slot), and intrusive doubly-linked lists threaded through the nodes by
// index. The tables keep their timeout orders in such lists: every list holds
// nodes of one timeout, appended as their clock starts, so its front is always
// the next to expire and touching, moving and removing a node are O(1) — no
// scan of the table per timer tick, no heap.
// Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace warren::tun {

inline constexpr std::uint32_t k_nil = std::numeric_limits<std::uint32_t>::max();

/// A node's place in one intrusive list.
struct list_links {
  std::uint32_t prev = k_nil;
  std::uint32_t next = k_nil;
  std::uint8_t list = 0xff; // which list the node is in; 0xff: none
};

struct list_head {
  std::uint32_t first = k_nil;
  std::uint32_t last = k_nil;
  std::size_t size = 0;
};

/// `links(node)` gives the node's list_links for this family of lists (a
/// node may sit in several families: one links member each).
template <class Nodes, class Links>
void list_push_back(Nodes& nodes, Links links, list_head& head, std::uint8_t list_id, std::uint32_t i) {
  auto& l = links(nodes[i]);
  l.prev = head.last;
  l.next = k_nil;
  l.list = list_id;
  if (head.last != k_nil)
    links(nodes[head.last]).next = i;
  else
    head.first = i;
  head.last = i;
  ++head.size;
}

template <class Nodes, class Links>
void list_unlink(Nodes& nodes, Links links, list_head& head, std::uint32_t i) {
  auto& l = links(nodes[i]);
  if (l.prev != k_nil)
    links(nodes[l.prev]).next = l.next;
  else
    head.first = l.next;
  if (l.next != k_nil)
    links(nodes[l.next]).prev = l.prev;
  else
    head.last = l.prev;
  l = list_links{};
  --head.size;
}

/// Nodes of type T in a vector, reused through a free list. T is
/// default-constructible; a freed slot is reset to T{} (its memory released).
template <class T>
class slab {
 public:
  /// The id of slot `i` as it is now. Generations start at 1: id 0 names nothing.
  std::uint64_t id_of(std::uint32_t i) const { return std::uint64_t{gen_[i]} << 32 | i; }

  /// The slot an id names, or k_nil if that slot was freed since.
  std::uint32_t slot_of(std::uint64_t id) const {
    const auto i = static_cast<std::uint32_t>(id);
    if (i >= nodes_.size() || !live_[i] || gen_[i] != static_cast<std::uint32_t>(id >> 32))
      return k_nil;
    return i;
  }

  std::uint32_t allocate() {
    std::uint32_t i;
    if (!free_.empty()) {
      i = free_.back();
      free_.pop_back();
    } else {
      i = static_cast<std::uint32_t>(nodes_.size());
      nodes_.emplace_back();
      gen_.push_back(0);
      live_.push_back(false);
    }
    ++gen_[i];
    if (gen_[i] == 0)
      gen_[i] = 1;
    live_[i] = true;
    ++live_count_;
    return i;
  }

  void free(std::uint32_t i) {
    nodes_[i] = T{};
    live_[i] = false;
    --live_count_;
    free_.push_back(i);
  }

  T& operator[](std::uint32_t i) { return nodes_[i]; }
  const T& operator[](std::uint32_t i) const { return nodes_[i]; }
  bool live(std::uint32_t i) const { return i < nodes_.size() && live_[i]; }
  std::size_t size() const { return live_count_; }
  /// Slots ever made (live or free): the bound on indices.
  std::size_t slots() const { return nodes_.size(); }

 private:
  std::vector<T> nodes_;
  std::vector<std::uint32_t> gen_;
  std::vector<bool> live_;
  std::vector<std::uint32_t> free_;
  std::size_t live_count_ = 0;
};

} // namespace warren::tun
