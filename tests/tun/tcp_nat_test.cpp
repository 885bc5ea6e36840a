// tcp_nat (src/tun/tcp_nat.hpp) on a manual clock: every bound and timeout
// to the millisecond, resting ports, pool exhaustion and spread, SYN-flood
// eviction order, and a randomized model test (tcp_nat_model.hpp) that
// checks both lookups and every outcome after each of 3 x 100,000 operations.
#include "tun/tcp_nat.hpp"

#include "tcp_nat_model.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <random>
#include <set>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::tun;

namespace {

const ip_addr k_app = ip_addr::v4(198, 18, 0, 1);
const ip_addr k_nat1 = ip_addr::v4(198, 18, 0, 2);
const ip_addr k_nat2 = ip_addr::v4(198, 18, 0, 3);
const ip_addr k_dst = ip_addr::v4(203, 0, 113, 7);

ip_addr v6(std::uint8_t last) {
  ip_addr a;
  a.v6 = true;
  a.bytes[0] = 0xfd;
  a.bytes[15] = last;
  return a;
}

flow_key flow(std::uint16_t app_port, std::uint16_t dst_port = 443) {
  return flow_key{endpoint{k_app, app_port}, endpoint{k_dst, dst_port}};
}

tcp_nat_options small(std::uint16_t ports = 100) {
  tcp_nat_options o;
  o.v4_pool = {k_nat1};
  o.v6_pool = {v6(2)};
  o.first_port = 10000;
  o.last_port = static_cast<std::uint16_t>(10000 + ports - 1);
  o.hash_seed = 42;
  return o;
}

struct tcp_nat_test : ::testing::Test {
  manual_clock clock;
};

std::uint64_t open_established(tcp_nat& nat, const flow_key& k, time_point now) {
  auto r = nat.on_syn(k, 1000, now);
  EXPECT_EQ(r.outcome, syn_outcome::created) << k.to_string();
  if (!r.session)
    return 0;
  const auto id = r.session->id;
  EXPECT_TRUE(nat.established(id, now));
  return id;
}

} // namespace

TEST_F(tcp_nat_test, SynCreatesOneSessionFoundBothWays) {
  tcp_nat nat(small());
  auto r = nat.on_syn(flow(40000), 7, clock.now());
  ASSERT_EQ(r.outcome, syn_outcome::created);
  ASSERT_TRUE(r.session);
  EXPECT_NE(r.session->id, 0u);
  EXPECT_EQ(r.session->state, tcp_state::pending);
  EXPECT_EQ(r.session->nat, (endpoint{k_nat1, 10000}));
  EXPECT_EQ(r.session->syn_seq, 7u);
  const auto id = r.session->id;
  ASSERT_TRUE(nat.find_nat(endpoint{k_nat1, 10000}));
  EXPECT_EQ(nat.find_nat(endpoint{k_nat1, 10000})->app, flow(40000));
  EXPECT_EQ(nat.find_app(flow(40000))->id, id);
  EXPECT_EQ(nat.find(id)->nat.port, 10000);
  EXPECT_FALSE(nat.find_app(flow(40000, 444))) << "another destination is another flow";
  EXPECT_FALSE(nat.find_nat(endpoint{k_nat1, 10001}));
  EXPECT_EQ(nat.counters().open, 1u);
  EXPECT_EQ(nat.counters().pending, 1u);
  EXPECT_EQ(nat.counters().total, 1u);
  EXPECT_EQ(nat.audit(), "");
}

TEST_F(tcp_nat_test, RetransmittedSynMapsToThePendingSession) {
  tcp_nat nat(small());
  const auto id = nat.on_syn(flow(40000), 7, clock.now()).session->id;
  clock.advance(1s);
  auto again = nat.on_syn(flow(40000), 7, clock.now());
  EXPECT_EQ(again.outcome, syn_outcome::retransmit);
  EXPECT_EQ(again.session->id, id);
  EXPECT_EQ(again.session->syn_count, 2u);
  auto retry = nat.on_syn(flow(40000), 99, clock.now());
  EXPECT_EQ(retry.outcome, syn_outcome::retransmit) << "a new ISN on the same 4-tuple while pending";
  EXPECT_EQ(retry.session->syn_seq, 99u) << "the SYN let through later is the latest";
  EXPECT_EQ(nat.counters().open, 1u);
  EXPECT_EQ(nat.counters().total, 1u) << "one upstream connect";
}

TEST_F(tcp_nat_test, PendingExpiresTenSecondsAfterTheFirstSyn) {
  tcp_nat nat(small());
  const auto start = clock.now();
  const auto id = nat.on_syn(flow(40000), 7, start).session->id;
  EXPECT_EQ(nat.next_expiry(), start + 10s);
  nat.on_syn(flow(40000), 7, start + 5s); // retransmissions do not extend the connect timeout
  EXPECT_TRUE(nat.expire(start + 10s - 1ms).empty());
  auto gone = nat.expire(start + 10s);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].session.id, id);
  EXPECT_EQ(gone[0].reason, expiry_reason::pending_timeout);
  EXPECT_EQ(gone[0].session.syn_count, 2u);
  EXPECT_FALSE(nat.find(id));
  EXPECT_FALSE(nat.established(id, start + 10s)) << "too late: the id is stale";
  EXPECT_EQ(nat.counters().expired, 1u);
  EXPECT_EQ(nat.counters().resting, 1u);
}

TEST_F(tcp_nat_test, EstablishedIdleTimeoutRestartsWithEveryPacket) {
  tcp_nat nat(small());
  const auto t0 = clock.now();
  const auto id = open_established(nat, flow(40000), t0);
  EXPECT_EQ(nat.find(id)->state, tcp_state::established);
  EXPECT_EQ(nat.next_expiry(), t0 + 2h + 4min);
  EXPECT_EQ(nat.on_packet(id, tcp_dir::from_listener, false, false, t0 + 1h), tcp_state::established);
  EXPECT_TRUE(nat.expire(t0 + 1h + 2h + 4min - 1ms).empty());
  auto gone = nat.expire(t0 + 1h + 2h + 4min);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].reason, expiry_reason::idle);
}

TEST_F(tcp_nat_test, HalfClosedIdleTimeout) {
  tcp_nat nat(small());
  const auto t0 = clock.now();
  const auto id = open_established(nat, flow(40000), t0);
  EXPECT_EQ(nat.on_packet(id, tcp_dir::from_app, true, false, t0), tcp_state::half_closed);
  EXPECT_FALSE(nat.find(id)->fin_from_listener);
  EXPECT_TRUE(nat.find(id)->fin_from_app);
  // The other way still carries data: each packet restarts the 4 min.
  EXPECT_EQ(nat.on_packet(id, tcp_dir::from_listener, false, false, t0 + 3min), tcp_state::half_closed);
  EXPECT_EQ(nat.on_packet(id, tcp_dir::from_app, true, false, t0 + 3min), tcp_state::half_closed)
      << "a retransmitted FIN from the same side does not close it";
  EXPECT_TRUE(nat.expire(t0 + 7min - 1ms).empty());
  auto gone = nat.expire(t0 + 7min);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].reason, expiry_reason::half_closed_idle);
}

TEST_F(tcp_nat_test, BothFinsCloseAndTheSessionLingersFiveSeconds) {
  tcp_nat nat(small());
  const auto t0 = clock.now();
  const auto id = open_established(nat, flow(40000), t0);
  nat.on_packet(id, tcp_dir::from_listener, true, false, t0);
  EXPECT_EQ(nat.on_packet(id, tcp_dir::from_app, true, false, t0 + 1s), tcp_state::closed);
  // Still translates: the last ACK, a retransmitted FIN; these do not extend the linger.
  EXPECT_TRUE(nat.find_nat(endpoint{k_nat1, 10000}));
  EXPECT_EQ(nat.on_packet(id, tcp_dir::from_listener, false, false, t0 + 5s), tcp_state::closed);
  EXPECT_TRUE(nat.expire(t0 + 6s - 1ms).empty());
  auto gone = nat.expire(t0 + 6s);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].reason, expiry_reason::closed);
  EXPECT_FALSE(nat.find_app(flow(40000)));
  EXPECT_EQ(nat.counters().expired, 0u) << "a normal end is not a timeout";
  EXPECT_EQ(nat.counters().resting, 1u);
}

TEST_F(tcp_nat_test, RstClosesFromAnyState) {
  tcp_nat nat(small());
  const auto t0 = clock.now();
  const auto a = open_established(nat, flow(40000), t0);
  EXPECT_EQ(nat.on_packet(a, tcp_dir::from_listener, false, true, t0), tcp_state::closed);
  EXPECT_TRUE(nat.find(a)->rst);
  const auto b = nat.on_syn(flow(40001), 1, t0).session->id;
  EXPECT_EQ(nat.on_packet(b, tcp_dir::from_app, false, true, t0), tcp_state::closed) << "the app gave up while pending";
  EXPECT_FALSE(nat.established(b, t0)) << "a closed session does not become established";
  EXPECT_EQ(nat.on_packet(b, tcp_dir::from_app, true, false, t0), tcp_state::closed);
  EXPECT_EQ(nat.expire(t0 + 5s).size(), 2u);
}

TEST_F(tcp_nat_test, FinWhilePendingIsIgnored) {
  tcp_nat nat(small());
  const auto id = nat.on_syn(flow(40000), 1, clock.now()).session->id;
  EXPECT_EQ(nat.on_packet(id, tcp_dir::from_app, true, false, clock.now()), tcp_state::pending);
  EXPECT_TRUE(nat.established(id, clock.now()));
  EXPECT_FALSE(nat.find(id)->fin_from_app);
}

TEST_F(tcp_nat_test, SynOnLiveSessionsAndOnAClosedOne) {
  tcp_nat nat(small());
  const auto t0 = clock.now();
  const auto id = open_established(nat, flow(40000), t0);
  auto r = nat.on_syn(flow(40000), 5, t0 + 1h);
  EXPECT_EQ(r.outcome, syn_outcome::existing);
  EXPECT_EQ(r.session->id, id);
  EXPECT_TRUE(nat.expire(t0 + 2h + 4min).empty()) << "the SYN counted as activity";
  nat.on_packet(id, tcp_dir::from_app, false, true, t0 + 1h);
  auto fresh = nat.on_syn(flow(40000), 6, t0 + 1h + 1s);
  ASSERT_EQ(fresh.outcome, syn_outcome::created) << "a new connection on the 4-tuple of a closed one";
  EXPECT_NE(fresh.session->id, id);
  EXPECT_NE(fresh.session->nat.port, 10000) << "the old NAT port rests";
  EXPECT_FALSE(nat.find(id));
  EXPECT_EQ(nat.counters().resting, 1u);
}

TEST_F(tcp_nat_test, FreedPortRestsSixtySecondsBeforeReuse) {
  tcp_nat nat(small(1)); // one address, one port: reuse is forced as soon as allowed
  const auto t0 = clock.now();
  const auto id = open_established(nat, flow(40000), t0);
  EXPECT_EQ(nat.on_syn(flow(40001), 1, t0).outcome, syn_outcome::refused_no_port);
  ASSERT_TRUE(nat.erase(id, t0 + 1s));
  EXPECT_EQ(nat.counters().resting, 1u);
  EXPECT_EQ(nat.next_expiry(), t0 + 61s);
  EXPECT_EQ(nat.on_syn(flow(40001), 1, t0 + 61s - 1ms).outcome, syn_outcome::refused_no_port) << "reused before 60 s";
  auto r = nat.on_syn(flow(40001), 1, t0 + 61s);
  ASSERT_EQ(r.outcome, syn_outcome::created);
  EXPECT_EQ(r.session->nat, (endpoint{k_nat1, 10000}));
  EXPECT_EQ(nat.counters().resting, 0u);
  EXPECT_EQ(nat.counters().refused_no_port, 2u);
}

TEST_F(tcp_nat_test, RestStartsWhenAClosedSessionLeavesAfterItsLinger) {
  tcp_nat nat(small(1));
  const auto t0 = clock.now();
  const auto id = open_established(nat, flow(40000), t0);
  nat.on_packet(id, tcp_dir::from_app, true, false, t0);
  nat.on_packet(id, tcp_dir::from_listener, true, false, t0);
  ASSERT_EQ(nat.expire(t0 + 5s).size(), 1u);
  EXPECT_EQ(nat.on_syn(flow(40001), 1, t0 + 65s - 1ms).outcome, syn_outcome::refused_no_port);
  EXPECT_EQ(nat.on_syn(flow(40001), 1, t0 + 65s).outcome, syn_outcome::created);
}

TEST_F(tcp_nat_test, ExpireFreesRestedPortsForTheNextSyn) {
  tcp_nat nat(small(2));
  const auto t0 = clock.now();
  const auto a = open_established(nat, flow(1), t0);
  const auto b = open_established(nat, flow(2), t0);
  nat.erase(a, t0);
  nat.erase(b, t0 + 1s);
  EXPECT_TRUE(nat.expire(t0 + 60s).empty());
  EXPECT_EQ(nat.counters().resting, 1u) << "the first port is back, the second still rests";
  EXPECT_EQ(nat.on_syn(flow(3), 1, t0 + 60s).session->nat.port, 10000);
  EXPECT_EQ(nat.on_syn(flow(4), 1, t0 + 60s).outcome, syn_outcome::refused_no_port);
  EXPECT_EQ(nat.audit(), "");
}

TEST_F(tcp_nat_test, PoolExhaustionPerFamily) {
  tcp_nat nat(small(10));
  const auto t0 = clock.now();
  std::set<endpoint> nats;
  for (std::uint16_t p = 1; p <= 10; ++p) {
    auto r = nat.on_syn(flow(p), p, t0);
    ASSERT_EQ(r.outcome, syn_outcome::created);
    nats.insert(r.session->nat);
    nat.established(r.session->id, t0);
  }
  EXPECT_EQ(nats.size(), 10u);
  EXPECT_EQ(nat.on_syn(flow(11), 1, t0).outcome, syn_outcome::refused_no_port);
  // The IPv6 pool is separate.
  flow_key six{endpoint{v6(1), 5000}, endpoint{v6(9), 80}};
  auto r6 = nat.on_syn(six, 1, t0);
  ASSERT_EQ(r6.outcome, syn_outcome::created);
  EXPECT_EQ(r6.session->nat, (endpoint{v6(2), 10000}));
  // A family without a pool refuses.
  auto o = small();
  o.v6_pool.clear();
  tcp_nat v4_only(o);
  EXPECT_EQ(v4_only.on_syn(six, 1, t0).outcome, syn_outcome::refused_no_port);
  EXPECT_EQ(nat.audit(), "");
}

TEST_F(tcp_nat_test, PoolIgnoresDuplicatesAndOtherFamilies) {
  auto o = small(1);
  o.v4_pool = {k_nat1, k_nat1, v6(7), k_nat2};
  tcp_nat nat(o);
  const auto t0 = clock.now();
  std::set<ip_addr> used;
  for (std::uint16_t p = 1; p <= 2; ++p)
    used.insert(nat.on_syn(flow(p), 1, t0).session->nat.addr);
  EXPECT_EQ(used, (std::set<ip_addr>{k_nat1, k_nat2}));
  EXPECT_EQ(nat.on_syn(flow(3), 1, t0).outcome, syn_outcome::refused_no_port);
}

// The default bound needs more than one address: 65,536 sessions over a pool
// of N take turns across it; the 65,537th is refused.
TEST_F(tcp_nat_test, SixtyFiveThousandSessionsSpreadOverThePool) {
  for (std::size_t n : {2u, 3u}) {
    tcp_nat_options o;
    for (std::uint8_t i = 0; i < n; ++i)
      o.v4_pool.push_back(ip_addr::v4(198, 18, 1, i));
    o.hash_seed = 7;
    tcp_nat nat(o);
    ASSERT_EQ(nat.ports_per_address(), 55536u);
    const auto t0 = clock.now();
    std::map<ip_addr, std::size_t> per_address;
    for (std::uint32_t k = 0; k < 65536; ++k) {
      flow_key f{endpoint{ip_addr::v4(10, 0, static_cast<std::uint8_t>(k >> 8), static_cast<std::uint8_t>(k)), 40000},
                 endpoint{k_dst, 443}};
      auto r = nat.on_syn(f, k, t0);
      ASSERT_EQ(r.outcome, syn_outcome::created) << k;
      ++per_address[r.session->nat.addr];
      nat.established(r.session->id, t0);
    }
    EXPECT_EQ(nat.counters().open, 65536u);
    EXPECT_EQ(per_address.size(), n);
    for (auto& [a, count] : per_address)
      EXPECT_LE(count, 65536 / n + 1) << a.to_string() << " holds more than its share";
    EXPECT_EQ(nat.on_syn(flow(1), 1, t0).outcome, syn_outcome::refused_full);
    EXPECT_EQ(nat.counters().refused_full, 1u);
    EXPECT_EQ(nat.audit(), "");
    for (std::uint32_t k = 0; k < 65536; k += 4099) {
      flow_key f{endpoint{ip_addr::v4(10, 0, static_cast<std::uint8_t>(k >> 8), static_cast<std::uint8_t>(k)), 40000},
                 endpoint{k_dst, 443}};
      const auto* s = nat.find_app(f);
      ASSERT_TRUE(s);
      EXPECT_EQ(nat.find_nat(s->nat), s);
    }
  }
}

TEST_F(tcp_nat_test, OneAddressCannotHoldTheDefaultBound) {
  tcp_nat_options o;
  o.v4_pool = {k_nat1};
  tcp_nat nat(o);
  const auto t0 = clock.now();
  for (std::uint32_t k = 0; k < 55536; ++k) {
    flow_key f{endpoint{ip_addr::v4(10, 1, static_cast<std::uint8_t>(k >> 8), static_cast<std::uint8_t>(k)), 1},
               endpoint{k_dst, 443}};
    auto r = nat.on_syn(f, k, t0);
    ASSERT_EQ(r.outcome, syn_outcome::created) << k;
    nat.established(r.session->id, t0);
  }
  EXPECT_EQ(nat.on_syn(flow(1), 1, t0).outcome, syn_outcome::refused_no_port);
}

TEST_F(tcp_nat_test, SynFloodEvictsTheOldestPendingFirst) {
  auto o = small();
  o.max_pending = 3;
  tcp_nat nat(o);
  const auto t0 = clock.now();
  const auto kept = open_established(nat, flow(1), t0);
  std::vector<std::uint64_t> ids;
  for (std::uint16_t p = 10; p < 13; ++p) {
    auto r = nat.on_syn(flow(p), p, t0 + std::chrono::milliseconds(p));
    EXPECT_FALSE(r.evicted);
    ids.push_back(r.session->id);
  }
  nat.on_syn(flow(10), 10, t0 + 1s); // a retransmission does not make the oldest younger
  for (std::uint16_t p = 13; p < 16; ++p) {
    auto r = nat.on_syn(flow(p), p, t0 + 2s);
    ASSERT_EQ(r.outcome, syn_outcome::created);
    ASSERT_TRUE(r.evicted) << p;
    EXPECT_EQ(r.evicted->id, ids[p - 13]) << "evicted out of order";
    EXPECT_EQ(r.evicted->syn_seq, p - 3u) << "the evicted SYN's identity, to answer it";
    EXPECT_EQ(r.evicted->state, tcp_state::pending);
  }
  EXPECT_TRUE(nat.find(kept)) << "an established session is never evicted by SYNs";
  EXPECT_EQ(nat.counters().evicted, 3u);
  EXPECT_EQ(nat.counters().pending, 3u);
  EXPECT_EQ(nat.counters().resting, 3u) << "evicted sessions' ports rest too";
  EXPECT_EQ(nat.audit(), "");
}

TEST_F(tcp_nat_test, FullTableReclaimsClosedThenEvictsPendingThenRefuses) {
  auto o = small();
  o.max_sessions = 3;
  tcp_nat nat(o);
  const auto t0 = clock.now();
  const auto closed = open_established(nat, flow(1), t0);
  nat.on_packet(closed, tcp_dir::from_app, false, true, t0);
  const auto pending = nat.on_syn(flow(2), 2, t0).session->id;
  const auto est = open_established(nat, flow(3), t0);
  auto r = nat.on_syn(flow(4), 4, t0);
  ASSERT_EQ(r.outcome, syn_outcome::created);
  EXPECT_FALSE(r.evicted) << "a lingering closed session goes silently";
  EXPECT_FALSE(nat.find(closed));
  nat.established(r.session->id, t0);
  r = nat.on_syn(flow(5), 5, t0);
  ASSERT_EQ(r.outcome, syn_outcome::created);
  ASSERT_TRUE(r.evicted);
  EXPECT_EQ(r.evicted->id, pending);
  nat.established(r.session->id, t0);
  r = nat.on_syn(flow(6), 6, t0);
  EXPECT_EQ(r.outcome, syn_outcome::refused_full);
  EXPECT_FALSE(r.session);
  EXPECT_TRUE(nat.find(est));
  EXPECT_EQ(nat.counters().refused_full, 1u);
  EXPECT_EQ(nat.counters().open, 3u);
}

TEST_F(tcp_nat_test, StaleIdsFindNothingAfterTheirSlotIsReused) {
  tcp_nat nat(small());
  const auto t0 = clock.now();
  const auto old = nat.on_syn(flow(1), 1, t0).session->id;
  ASSERT_TRUE(nat.erase(old, t0));
  const auto fresh = nat.on_syn(flow(2), 2, t0).session->id;
  EXPECT_NE(fresh, old);
  EXPECT_EQ(static_cast<std::uint32_t>(fresh), static_cast<std::uint32_t>(old)) << "the slot is reused";
  EXPECT_FALSE(nat.find(old));
  EXPECT_FALSE(nat.established(old, t0));
  EXPECT_FALSE(nat.on_packet(old, tcp_dir::from_app, false, true, t0));
  EXPECT_FALSE(nat.erase(old, t0));
  EXPECT_EQ(nat.find(fresh)->state, tcp_state::pending) << "the stale RST did not touch the new session";
  EXPECT_FALSE(nat.find(0));
}

TEST_F(tcp_nat_test, TimeThatRunsBackwardsIsHeldAtItsLatest) {
  tcp_nat nat(small());
  const auto t0 = clock.now();
  nat.on_syn(flow(1), 1, t0 + 5s);
  nat.on_syn(flow(2), 1, t0); // earlier than the last call: treated as t0 + 5s
  EXPECT_EQ(nat.audit(), "");
  EXPECT_EQ(nat.expire(t0 + 15s).size(), 2u);
}

TEST_F(tcp_nat_test, NextExpiryIsTheEarliestDeadline) {
  tcp_nat nat(small());
  const auto t0 = clock.now();
  EXPECT_FALSE(nat.next_expiry());
  const auto a = open_established(nat, flow(1), t0);
  nat.on_syn(flow(2), 1, t0 + 1s);
  EXPECT_EQ(nat.next_expiry(), t0 + 11s);
  nat.on_packet(a, tcp_dir::from_app, true, false, t0 + 2s);
  EXPECT_EQ(nat.next_expiry(), t0 + 11s);
  nat.on_packet(a, tcp_dir::from_listener, true, false, t0 + 3s);
  EXPECT_EQ(nat.next_expiry(), t0 + 8s) << "the closed session's linger";
}

// Random operations on a small pool against the model (tcp_nat_model.hpp),
// which predicts every outcome and checks both lookups after each step.
TEST_F(tcp_nat_test, RandomizedAgainstAModel) {
  for (std::uint32_t seed : {1u, 2u, 3u}) {
    auto o = small(seed == 1 ? 16 : 200); // seed 1: ports run out first; else the table fills first
    o.v4_pool = {k_nat1, k_nat2};
    o.v6_pool = {v6(2)};
    o.max_sessions = 24;
    o.max_pending = 8;
    o.hash_seed = seed;
    if (seed == 3) { // short idle timeouts, or the full table would hardly ever move
      o.established_idle = 2min;
      o.half_closed_idle = 1min;
    }
    test::tcp_nat_model model(o, clock.now());
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    auto key = [&] {
      const bool six = pick(4) == 0;
      const auto port = static_cast<std::uint16_t>(1 + pick(120));
      if (six)
        return flow_key{endpoint{v6(1), port}, endpoint{v6(9), 443}};
      return flow(port, static_cast<std::uint16_t>(443 + pick(2)));
    };
    for (int step = 0; step < 100000; ++step) {
      std::string e;
      switch (pick(10)) {
      case 0:
      case 1:
      case 2: {
        const auto k = key();
        e = model.syn(k, rng());
        if (e.empty() && seed == 3 && pick(10) != 0)
          e = model.established(k); // seed 3: upstreams connect at once, the table fills with live sessions
        break;
      }
      case 3:
      case 4:
        e = model.established(key());
        break;
      case 5:
      case 6:
        e = model.packet(key(), pick(2) ? tcp_dir::from_app : tcp_dir::from_listener, pick(3) == 0, pick(12) == 0);
        break;
      case 7:
        e = pick(4) == 0 ? model.erase(key()) : model.expire();
        break;
      default:
        model.advance(std::chrono::milliseconds(pick(20) == 0 ? pick(90000) : pick(500)));
        e = model.expire();
      }
      ASSERT_EQ(e, "") << "seed " << seed << " step " << step;
    }
    const auto c = model.table().counters();
    std::printf("seed %u: total %llu evicted %llu refused_full %llu refused_no_port %llu expired %llu\n", seed,
                static_cast<unsigned long long>(c.total), static_cast<unsigned long long>(c.evicted),
                static_cast<unsigned long long>(c.refused_full), static_cast<unsigned long long>(c.refused_no_port),
                static_cast<unsigned long long>(c.expired));
    EXPECT_GT(model.table().counters().total, 1000u);
    EXPECT_GT(model.table().counters().evicted, 0u);
    EXPECT_GT(seed == 1 ? c.refused_no_port : seed == 2 ? c.evicted : c.refused_full, 0u);
    EXPECT_GT(c.expired, 1000u);
  }
}
