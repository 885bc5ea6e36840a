// udp_flows: the UDP NAT table of `warren tun` (docs/TUN.md, "NAT"). A
// datagram A:a -> D:d read from the TUN belongs to a flow, which the engine
// carries over one upstream association; replies come back as packets from
// D:d to A:a.
//
// Two keyings, chosen by the engine per upstream:
//   per destination (A:a, D:d)  a warren tunnel: one tunnel UDP flow names one
//                               target (OPEN kind 2, docs/PROTOCOL.md);
//   full cone (A:a)             SOCKS5: one UDP ASSOCIATE per application
//                               socket carries every destination (each
//                               datagram names its own), so an application
//                               sees one mapping whatever it talks to (RFC
//                               4787 endpoint-independent mapping) and costs
//                               the SOCKS server one control connection.
//
// Bounds: `max_flows`, least recently used evicted first (returned, so the
// engine closes its association); idle expiry after `idle` (60 s), or
// `dns_idle` (10 s) for a flow that has only talked to port 53 — a lookup is
// one round trip, and a resolver that sprays source ports would otherwise
// hold thousands of flows for a minute; `ready_timeout` (10 s) for a flow
// whose association never came up. Until its association is ready a flow
// queues datagrams, bounded per flow in packets and bytes and in bytes over
// all flows; past a bound the newest datagram is dropped and counted (the
// ones queued first are the ones the application is waiting on).
//
// Activity in either direction (touch()) restarts the idle clock. Pure, on
// an injected `now`; O(1) lookups (seeded hash, nat_key.hpp) and intrusive
// LRU lists (slab.hpp): expire() costs what expires. Returned pointers stay
// valid until the next non-const call. Not thread-safe.
#pragma once

#include "core/clock.hpp"
#include "tun/nat_key.hpp"
#include "tun/slab.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace warren::tun {

using namespace std::chrono_literals;

struct udp_flow_options {
  bool full_cone = false; // key by the application's endpoint alone
  std::size_t max_flows = 16384;
  duration idle = 60s;
  duration dns_idle = 10s;
  std::uint16_t dns_port = 53;
  duration ready_timeout = 10s;
  std::size_t queue_packets = 64;          // per flow
  std::size_t queue_bytes = 64 * 1024;     // per flow (payload bytes)
  std::size_t total_queue_bytes = 4 << 20; // all flows together
  std::uint64_t hash_seed = 0;             // 0: random
};

struct udp_datagram {
  endpoint dst;
  std::vector<std::uint8_t> payload;
};

struct udp_flow {
  std::uint64_t id = 0; // never 0 for a flow; stale ids find nothing
  flow_key key;         // full cone: key.dst is empty (the zero IPv4 endpoint)
  endpoint first_dst;   // the destination of the datagram that made the flow
  bool ready = false;   // its upstream association is up
  bool dns = false;     // every destination so far was dns_port: dns_idle applies
  time_point created{};
  time_point last_active{};
  std::vector<udp_datagram> queue; // waiting for the association, oldest first
  std::size_t queued_bytes = 0;
  std::uint64_t dropped = 0; // datagrams this flow could not queue
};

enum class udp_expiry_reason : std::uint8_t { idle, ready_timeout };
const char* to_string(udp_expiry_reason r);

struct udp_expired {
  udp_flow flow;
  udp_expiry_reason reason;
};

struct udp_open_result {
  const udp_flow* flow = nullptr;
  bool created = false;            // start its association
  std::optional<udp_flow> evicted; // the least recently used flow, evicted to make room: close its association
};

struct udp_flow_counters {
  std::size_t open = 0;
  std::size_t queued_packets = 0;
  std::size_t queued_bytes = 0;
  std::uint64_t total = 0;
  std::uint64_t evicted = 0;
  std::uint64_t expired = 0;
  std::uint64_t queue_drops = 0;
};

class udp_flows {
 public:
  explicit udp_flows(udp_flow_options options);

  /// The flow of a datagram from the application (made if new), touched.
  udp_open_result open(const flow_key& datagram, time_point now);

  /// The flow a datagram A:a -> D:d belongs to, without touching it.
  const udp_flow* find(const flow_key& datagram) const;
  const udp_flow* find(std::uint64_t id) const;

  /// Activity (a datagram either way): restarts the idle clock.
  bool touch(std::uint64_t id, time_point now);

  /// Queues a datagram for a flow whose association is not ready. False (and
  /// counted) if a bound would be passed: the newest is the one dropped.
  bool enqueue(std::uint64_t id, const endpoint& dst, std::span<const std::uint8_t> payload);

  /// The association is up: marks the flow ready and hands over its queue
  /// (oldest first) to send.
  std::vector<udp_datagram> ready(std::uint64_t id, time_point now);

  /// Removes a flow now (its association failed or closed).
  std::optional<udp_flow> erase(std::uint64_t id);

  /// Flows idle too long or never ready in time.
  std::vector<udp_expired> expire(time_point now);
  std::optional<time_point> next_expiry() const;

  udp_flow_counters counters() const;
  const udp_flow_options& options() const { return options_; }

  /// "" if every internal invariant holds, else what broke. O(table).
  std::string audit() const;

 private:
  struct node {
    udp_flow f;
    list_links lru;            // in l_dns or l_normal, by last activity
    list_links waiting;        // in l_waiting until ready, by creation
    std::uint64_t touched = 0; // when last touched, in touches: orders the two LRU lists' fronts, ties too
  };
  struct lru_links {
    list_links& operator()(node& n) const { return n.lru; }
  };
  struct waiting_links {
    list_links& operator()(node& n) const { return n.waiting; }
  };
  enum list_id : std::uint8_t { l_dns, l_normal, l_waiting, l_count };

  flow_key key_of(const flow_key& datagram) const;
  void touch_slot(std::uint32_t i, time_point now);
  std::uint32_t lru_victim() const; // the least recently active flow
  udp_flow remove(std::uint32_t i);
  time_point idle_deadline(std::uint32_t i) const;

  udp_flow_options options_;
  seeded_hash hash_;
  slab<node> slab_;
  std::unordered_map<flow_key, std::uint32_t, seeded_hash> by_key_;
  list_head lists_[l_count];
  std::size_t queued_packets_ = 0;
  std::size_t queued_bytes_ = 0;
  std::uint64_t touches_ = 0;
  time_point latest_{};
  udp_flow_counters counters_;
};

} // namespace warren::tun
