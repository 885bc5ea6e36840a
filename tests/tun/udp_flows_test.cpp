// udp_flows (src/tun/udp_flows.hpp) on a manual clock: both keyings, the
// LRU order and bound, idle timeouts (60 s, 10 s for DNS), the readiness
// timeout, and the queue bounds in packets and bytes per flow and overall.
#include "tun/udp_flows.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::tun;

namespace {

const ip_addr k_app = ip_addr::v4(198, 18, 0, 1);

flow_key dgram(std::uint16_t app_port, std::uint16_t dst_port, std::uint8_t dst_last = 7) {
  return flow_key{endpoint{k_app, app_port}, endpoint{ip_addr::v4(203, 0, 113, dst_last), dst_port}};
}

udp_flow_options opts() {
  udp_flow_options o;
  o.hash_seed = 9;
  return o;
}

std::vector<std::uint8_t> bytes(std::size_t n, std::uint8_t fill = 0xab) {
  return std::vector<std::uint8_t>(n, fill);
}

} // namespace

TEST(udp_flows, PerDestinationKeying) {
  udp_flows flows(opts());
  manual_clock clock;
  auto a = flows.open(dgram(5000, 443), clock.now());
  ASSERT_TRUE(a.created);
  EXPECT_FALSE(a.flow->ready);
  EXPECT_FALSE(a.flow->dns);
  const auto id = a.flow->id;
  auto again = flows.open(dgram(5000, 443), clock.now());
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.flow->id, id);
  EXPECT_TRUE(flows.open(dgram(5000, 443, 8), clock.now()).created) << "another destination, another flow";
  EXPECT_EQ(flows.find(dgram(5000, 443))->id, id);
  EXPECT_EQ(flows.find(id)->key, dgram(5000, 443));
  EXPECT_EQ(flows.counters().open, 2u);
  EXPECT_EQ(flows.counters().total, 2u);
  EXPECT_EQ(flows.audit(), "");
}

TEST(udp_flows, FullConeKeysByTheApplicationSocket) {
  auto o = opts();
  o.full_cone = true;
  udp_flows flows(o);
  manual_clock clock;
  auto a = flows.open(dgram(5000, 53), clock.now());
  ASSERT_TRUE(a.created);
  EXPECT_TRUE(a.flow->dns);
  EXPECT_EQ(a.flow->first_dst, dgram(5000, 53).dst);
  EXPECT_EQ(a.flow->key.dst, endpoint{});
  const auto id = a.flow->id;
  auto b = flows.open(dgram(5000, 53, 9), clock.now());
  EXPECT_FALSE(b.created) << "one association per application socket";
  EXPECT_TRUE(b.flow->dns) << "only DNS so far";
  auto c = flows.open(dgram(5000, 3478, 10), clock.now());
  EXPECT_EQ(c.flow->id, id);
  EXPECT_FALSE(c.flow->dns) << "talked to something other than DNS: the long timeout";
  EXPECT_TRUE(flows.open(dgram(5001, 3478, 10), clock.now()).created);
  EXPECT_EQ(flows.find(dgram(5000, 1, 1))->id, id);
  EXPECT_EQ(flows.audit(), "");
}

TEST(udp_flows, IdleTimeoutSixtySecondsTenForDns) {
  udp_flows flows(opts());
  manual_clock clock;
  const auto t0 = clock.now();
  const auto web = flows.open(dgram(5000, 443), t0).flow->id;
  const auto dns = flows.open(dgram(5001, 53), t0).flow->id;
  flows.ready(web, t0);
  flows.ready(dns, t0);
  EXPECT_EQ(flows.next_expiry(), t0 + 10s);
  EXPECT_TRUE(flows.expire(t0 + 10s - 1ms).empty());
  auto gone = flows.expire(t0 + 10s);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].flow.id, dns);
  EXPECT_EQ(gone[0].reason, udp_expiry_reason::idle);
  EXPECT_TRUE(flows.touch(web, t0 + 30s)) << "a reply keeps it alive";
  EXPECT_TRUE(flows.expire(t0 + 90s - 1ms).empty());
  gone = flows.expire(t0 + 90s);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].flow.id, web);
  EXPECT_FALSE(flows.touch(web, t0 + 90s));
  EXPECT_EQ(flows.counters().expired, 2u);
  EXPECT_FALSE(flows.next_expiry());
}

TEST(udp_flows, AFlowNeverReadyExpiresAfterTenSecondsHoweverChatty) {
  udp_flows flows(opts());
  manual_clock clock;
  const auto t0 = clock.now();
  const auto id = flows.open(dgram(5000, 443), t0).flow->id;
  for (int s = 1; s < 10; ++s)
    flows.open(dgram(5000, 443), t0 + std::chrono::seconds(s));
  EXPECT_TRUE(flows.expire(t0 + 10s - 1ms).empty());
  auto gone = flows.expire(t0 + 10s);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].flow.id, id);
  EXPECT_EQ(gone[0].reason, udp_expiry_reason::ready_timeout);
}

TEST(udp_flows, LeastRecentlyUsedIsEvictedWhenFull) {
  auto o = opts();
  o.max_flows = 3;
  udp_flows flows(o);
  manual_clock clock;
  const auto t0 = clock.now();
  const auto a = flows.open(dgram(1, 443), t0).flow->id;
  const auto b = flows.open(dgram(2, 53), t0 + 1s).flow->id;
  const auto c = flows.open(dgram(3, 443), t0 + 2s).flow->id;
  flows.touch(a, t0 + 3s); // a is now the most recent: b (a DNS flow) is the oldest
  auto d = flows.open(dgram(4, 443), t0 + 4s);
  ASSERT_TRUE(d.created);
  ASSERT_TRUE(d.evicted);
  EXPECT_EQ(d.evicted->id, b);
  const auto d_id = d.flow->id;
  auto e = flows.open(dgram(5, 443), t0 + 5s);
  ASSERT_TRUE(e.evicted);
  EXPECT_EQ(e.evicted->id, c);
  flows.open(dgram(1, 443), t0 + 6s); // a again: touched by its own datagram
  auto f = flows.open(dgram(6, 53), t0 + 7s);
  ASSERT_TRUE(f.evicted);
  EXPECT_EQ(f.evicted->id, d_id);
  EXPECT_TRUE(flows.find(a));
  EXPECT_EQ(flows.counters().evicted, 3u);
  EXPECT_EQ(flows.counters().open, 3u);
  EXPECT_EQ(flows.audit(), "");
}

TEST(udp_flows, QueueBoundsDropTheNewest) {
  auto o = opts();
  o.queue_packets = 3;
  o.queue_bytes = 1000;
  udp_flows flows(o);
  manual_clock clock;
  const auto t0 = clock.now();
  const auto id = flows.open(dgram(1, 443), t0).flow->id;
  const auto dst = dgram(1, 443).dst;
  EXPECT_TRUE(flows.enqueue(id, dst, bytes(400, 1)));
  EXPECT_TRUE(flows.enqueue(id, dst, bytes(500, 2)));
  EXPECT_FALSE(flows.enqueue(id, dst, bytes(101, 3))) << "1001 bytes";
  EXPECT_TRUE(flows.enqueue(id, dst, bytes(100, 4))) << "exactly 1000 bytes";
  EXPECT_FALSE(flows.enqueue(id, dst, bytes(0, 5))) << "a fourth packet";
  EXPECT_EQ(flows.find(id)->dropped, 2u);
  EXPECT_EQ(flows.counters().queue_drops, 2u);
  EXPECT_EQ(flows.counters().queued_packets, 3u);
  EXPECT_EQ(flows.counters().queued_bytes, 1000u);
  auto q = flows.ready(id, t0 + 1s);
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q[0].payload, bytes(400, 1)) << "oldest first, the newest were dropped";
  EXPECT_EQ(q[1].payload, bytes(500, 2));
  EXPECT_EQ(q[2].payload, bytes(100, 4));
  EXPECT_EQ(q[0].dst, dst);
  EXPECT_TRUE(flows.find(id)->ready);
  EXPECT_TRUE(flows.find(id)->queue.empty());
  EXPECT_EQ(flows.counters().queued_bytes, 0u);
  EXPECT_TRUE(flows.expire(t0 + 30s).empty()) << "ready: no readiness timeout";
  EXPECT_FALSE(flows.enqueue(0, dst, bytes(1))) << "no such flow";
  EXPECT_EQ(flows.audit(), "");
}

TEST(udp_flows, AllQueuesTogetherAreBoundedInBytes) {
  auto o = opts();
  o.queue_bytes = 1000;
  o.total_queue_bytes = 2500;
  udp_flows flows(o);
  manual_clock clock;
  std::vector<std::uint64_t> ids;
  for (std::uint16_t p = 1; p <= 3; ++p)
    ids.push_back(flows.open(dgram(p, 443), clock.now()).flow->id);
  EXPECT_TRUE(flows.enqueue(ids[0], {}, bytes(1000)));
  EXPECT_TRUE(flows.enqueue(ids[1], {}, bytes(1000)));
  EXPECT_FALSE(flows.enqueue(ids[2], {}, bytes(501)));
  EXPECT_TRUE(flows.enqueue(ids[2], {}, bytes(500)));
  EXPECT_EQ(flows.counters().queued_bytes, 2500u);
  auto erased = flows.erase(ids[0]);
  ASSERT_TRUE(erased);
  EXPECT_EQ(erased->queue.size(), 1u);
  EXPECT_EQ(flows.counters().queued_bytes, 1500u) << "an erased flow's queue no longer counts";
  EXPECT_TRUE(flows.enqueue(ids[2], {}, bytes(500)));
  EXPECT_FALSE(flows.erase(ids[0]));
  EXPECT_EQ(flows.audit(), "");
}

TEST(udp_flows, ExpiredAndEvictedFlowsGiveBackTheirQueues) {
  auto o = opts();
  o.max_flows = 1;
  udp_flows flows(o);
  manual_clock clock;
  const auto t0 = clock.now();
  const auto a = flows.open(dgram(1, 443), t0).flow->id;
  flows.enqueue(a, {}, bytes(10));
  auto r = flows.open(dgram(2, 443), t0);
  ASSERT_TRUE(r.evicted);
  EXPECT_EQ(r.evicted->queue.size(), 1u);
  EXPECT_EQ(flows.counters().queued_packets, 0u);
  flows.enqueue(r.flow->id, {}, bytes(10));
  ASSERT_EQ(flows.expire(t0 + 10s).size(), 1u);
  EXPECT_EQ(flows.counters().queued_packets, 0u);
  EXPECT_EQ(flows.audit(), "");
}

// The LRU order against a plain model: the flow evicted is always the one
// with the oldest last activity (ties: the one touched first).
TEST(udp_flows, RandomizedLruOrderAgainstAModel) {
  auto o = opts();
  o.max_flows = 16;
  o.full_cone = false;
  udp_flows flows(o);
  std::mt19937 rng(5);
  manual_clock clock;
  std::map<flow_key, std::pair<time_point, std::uint64_t>> model; // key -> (last activity, touch order)
  std::uint64_t order = 0;
  for (int step = 0; step < 100000; ++step) {
    const auto k = dgram(static_cast<std::uint16_t>(1 + rng() % 40), rng() % 3 == 0 ? 53 : 443);
    if (rng() % 5 == 0)
      clock.advance(std::chrono::milliseconds(rng() % 2000));
    if (rng() % 7 == 0) {
      auto gone = flows.expire(clock.now());
      for (auto& g : gone) {
        ASSERT_TRUE(model.contains(g.flow.key));
        model.erase(g.flow.key);
      }
      for (auto& [key, v] : model) {
        const auto* f = flows.find(key);
        ASSERT_TRUE(f);
        ASSERT_GT(f->ready ? v.first + (f->dns ? 10s : 60s) : f->created + 10s, clock.now()) << "should have expired";
      }
      continue;
    }
    auto r = flows.open(k, clock.now());
    if (r.evicted) {
      auto oldest = std::min_element(model.begin(), model.end(), [](auto& x, auto& y) { return x.second < y.second; });
      ASSERT_EQ(r.evicted->key, oldest->first) << "step " << step;
      model.erase(oldest);
    }
    ASSERT_EQ(r.created, !model.contains(k));
    model[k] = {clock.now(), ++order};
    if (rng() % 2 == 0)
      flows.ready(r.flow->id, clock.now()), model[k] = {clock.now(), ++order};
    ASSERT_EQ(flows.counters().open, model.size());
    ASSERT_EQ(flows.audit(), "") << "step " << step;
  }
  EXPECT_GT(flows.counters().evicted, 100u);
  EXPECT_GT(flows.counters().expired, 10u);
}
