// tcp_nat: the TCP redirect table of `warren tun` (docs/TUN.md, "NAT").
// An application's SYN A:a -> D:d read from the TUN gets a session and a NAT
// endpoint N:n (N from a pool of addresses in the TUN prefix, n from a port
// range); the engine rewrites the application's packets to N:n -> L:l (L:l:
// warren's listener on the TUN address) and the kernel's replies L:l -> N:n
// back to D:d -> A:a. The listener's accept sees peer N:n and finds the
// session, and so D:d, with find_nat().
//
// Pure bookkeeping on an injected `now` (no clock read, no sockets): tested on
// a manual clock and fuzzed (tests/fuzz/fuzz_tun_nat.cpp).
//
// Life of a session:
//   pending      the SYN is held until the upstream connect succeeded
//                (established()); a retransmitted SYN maps to the same
//                session, so there is one upstream connect per connection.
//                At most `max_pending` at once: a newer SYN evicts the oldest
//                (returned, so the engine answers it and cancels its connect).
//                `pending_timeout` (10 s) after the first SYN it expires.
//   established  idle for `established_idle` (2 h 4 min, RFC 5382 REQ-5) it expires.
//   half_closed  a FIN passed one way; idle for `half_closed_idle` (4 min,
//                RFC 5382's transitory timeout: a half-closed stream that
//                still carries data the other way is normal) it expires.
//   closed       FINs passed both ways, or a RST either way: the session still
//                translates for `closed_linger` (5 s: the last ACK, a
//                retransmitted FIN) and then leaves the table.
// A session that leaves the table (closed, expired, evicted, erased) gives
// its NAT port back only after it RESTS for `rest` (60 s, Linux's fixed
// TIME_WAIT): the listener's socket of the old connection may still be in
// TIME_WAIT on L:l <-> N:n, and a new SYN from N:n would meet it.
//
// Bounds: `max_sessions` in the table (every state, default 65,536 — more
// than the 55,536 ports of one address, so the engine gives a pool of
// addresses; ports are taken round-robin across it), `max_pending`. With the
// table full a SYN reclaims the oldest lingering closed session, else evicts
// the oldest pending one, else is refused (counted). Ports: each address of
// the pool hands out never-used ports in order and then those back from
// resting, O(1) per allocation with no per-port memory until used.
//
// Lookups are O(1) (two unordered_maps with a seeded hash, nat_key.hpp); timeouts
// are kept in one intrusive list per state (slab.hpp), so expire() costs what
// expires. Returned pointers stay valid until the next non-const call.
// Not thread-safe: the engine owns it on its executor.
#pragma once

#include "core/clock.hpp"
#include "tun/nat_key.hpp"
#include "tun/slab.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace warren::tun {

using namespace std::chrono_literals;

enum class tcp_state : std::uint8_t { pending, established, half_closed, closed };
const char* to_string(tcp_state s);

/// Which way a packet passed: from the application (toward D:d, rewritten to
/// the listener), or from the listener (back toward the application).
enum class tcp_dir : std::uint8_t { from_app, from_listener };

struct tcp_nat_options {
  std::vector<ip_addr> v4_pool; // NAT addresses for IPv4 flows (IPv6 entries ignored; duplicates once)
  std::vector<ip_addr> v6_pool; // NAT addresses for IPv6 flows
  std::uint16_t first_port = 10000;
  std::uint16_t last_port = 65535;
  std::size_t max_sessions = 65536;
  std::size_t max_pending = 4096; // at most max_sessions
  duration pending_timeout = 10s;
  duration established_idle = 2h + 4min;
  duration half_closed_idle = 4min;
  duration closed_linger = 5s;
  duration rest = 60s;
  std::uint64_t hash_seed = 0; // 0: random
};

struct tcp_session {
  std::uint64_t id = 0; // never 0 for a session; stale ids find nothing
  flow_key app;         // A:a -> D:d as the application sent it
  endpoint nat;         // N:n, the listener's accepted peer
  tcp_state state = tcp_state::pending;
  bool fin_from_app = false;
  bool fin_from_listener = false;
  bool rst = false;
  std::uint32_t syn_seq = 0;   // the held SYN's sequence number (the latest SYN's)
  std::uint32_t syn_count = 0; // SYNs seen while pending (1: no retransmission)
  time_point created{};
  time_point last_active{};
  time_point closed_at{}; // when it became closed
};

enum class syn_outcome : std::uint8_t {
  created,         // a new session: start the upstream connect, hold the SYN
  retransmit,      // the same pending session: keep holding (no second connect)
  existing,        // a SYN on an established/half-closed session: translate it as any packet
  refused_full,    // max_sessions taken by sessions that may not be evicted: answer RST
  refused_no_port, // no NAT port free in the flow's family (pool exhausted or resting, or no pool)
};
const char* to_string(syn_outcome o);

struct syn_result {
  syn_outcome outcome = syn_outcome::refused_full;
  const tcp_session* session = nullptr; // created, retransmit, existing
  /// A pending session evicted to make room: answer its SYN and cancel its connect.
  std::optional<tcp_session> evicted;
};

enum class expiry_reason : std::uint8_t {
  pending_timeout,  // the upstream did not connect in time: ICMP unreachable to the app
  idle,             // established and idle: abort both sides
  half_closed_idle, // half-closed and idle: abort both sides
  closed,           // closed and lingered: nothing to send, forget the id
};
const char* to_string(expiry_reason r);

struct tcp_expired {
  tcp_session session;
  expiry_reason reason;
};

struct tcp_nat_counters {
  std::size_t open = 0;    // sessions in the table, every state
  std::size_t pending = 0; // of which pending
  std::size_t resting = 0; // NAT ports resting
  std::uint64_t total = 0; // sessions created
  std::uint64_t evicted = 0;
  std::uint64_t refused_full = 0;
  std::uint64_t refused_no_port = 0;
  std::uint64_t expired = 0; // timeouts: pending, idle, half-closed (not the end of a closed linger)
};

class tcp_nat {
 public:
  explicit tcp_nat(tcp_nat_options options);

  /// A SYN (without ACK) from the application. Both endpoints of `app` are of
  /// one family, as in any packet; the family picks the pool.
  syn_result on_syn(const flow_key& app, std::uint32_t seq, time_point now);

  const tcp_session* find_app(const flow_key& app) const;
  const tcp_session* find_nat(const endpoint& nat) const;
  const tcp_session* find(std::uint64_t id) const;

  /// The upstream connected: pending -> established (the engine lets the
  /// held SYN through). False if the session is gone or was not pending.
  bool established(std::uint64_t id, time_point now);

  /// A packet other than the application's SYN passed one way: activity, and
  /// its FIN or RST. The session's state after it, or nothing if it is gone.
  std::optional<tcp_state> on_packet(std::uint64_t id, tcp_dir dir, bool fin, bool rst, time_point now);

  /// Removes a session now (its connect failed, the engine aborted it); its port rests.
  std::optional<tcp_session> erase(std::uint64_t id, time_point now);

  /// Sessions whose time is up, and ports done resting freed. Sessions
  /// expire in deadline order per state.
  std::vector<tcp_expired> expire(time_point now);

  /// The earliest time expire() has work (a session deadline or a port done
  /// resting), for the engine's timer; nothing if the table is empty.
  std::optional<time_point> next_expiry() const;

  tcp_nat_counters counters() const;
  const tcp_nat_options& options() const { return options_; }
  /// Ports one address offers (the port range's size).
  std::size_t ports_per_address() const { return std::size_t{options_.last_port} - options_.first_port + 1; }

  /// Checks every internal invariant (both indexes agree with the slab, the
  /// lists hold each session once in the list of its state, counts, no NAT
  /// endpoint both in use and resting); "" if all hold, else what broke.
  /// O(table) — for tests and the fuzzer.
  std::string audit() const;

 private:
  struct node {
    tcp_session s;
    list_links links;
    std::uint8_t family = 0; // pool index: 0 v4, 1 v6
    std::uint32_t addr = 0;  // index in the family's pool
  };
  struct nat_address {
    ip_addr addr;
    std::uint32_t next_fresh = 0;     // offsets below this were handed out once
    std::vector<std::uint16_t> freed; // ports back from resting
    std::uint32_t in_use = 0;         // sessions on this address
    std::uint32_t avail_pos = k_nil;  // position in pool::available, or k_nil
  };
  struct pool {
    std::vector<nat_address> addrs;
    std::vector<std::uint32_t> available; // addresses with a port to give
    std::size_t cursor = 0;
  };
  struct resting_port {
    std::uint8_t family;
    std::uint32_t addr;
    std::uint16_t port;
    time_point until;
  };
  enum list_id : std::uint8_t { l_pending, l_established, l_half_closed, l_closed, l_count };

  struct node_links {
    list_links& operator()(node& n) const { return n.links; }
  };
  void push(std::uint8_t list, std::uint32_t i) { list_push_back(slab_, node_links{}, lists_[list], list, i); }
  void unlink(std::uint32_t i) { list_unlink(slab_, node_links{}, lists_[slab_[i].links.list], i); }

  time_point clamp(time_point now);
  duration timeout_of(std::uint8_t list) const;
  time_point deadline_of(std::uint32_t i) const;
  void set_state(std::uint32_t i, tcp_state s, time_point now);
  bool take_port(std::uint8_t family, std::uint32_t& addr, std::uint16_t& port);
  void release_rested(time_point now);
  tcp_session remove(std::uint32_t i, time_point now); // leaves the table; its port rests
  void make_available(pool& p, std::uint32_t a);
  void make_unavailable(pool& p, std::uint32_t a);

  tcp_nat_options options_;
  seeded_hash hash_;
  slab<node> slab_;
  std::unordered_map<flow_key, std::uint32_t, seeded_hash> by_app_;
  std::unordered_map<endpoint, std::uint32_t, seeded_hash> by_nat_;
  list_head lists_[l_count];
  pool pools_[2];
  std::deque<resting_port> resting_; // FIFO: `rest` is one constant, so oldest first = first done
  time_point latest_{};              // the latest `now` seen: time never runs backwards here
  tcp_nat_counters counters_;
};

} // namespace warren::tun
