// Fuzzes the TUN engine's NAT tables (src/tun/tcp_nat.hpp, udp_flows.hpp)
// with a byte script. The first bytes choose the options (pool sizes, port
// range, bounds, timeouts, full cone or not); the rest is a list of
// operations on flows drawn from a small space (so they collide):
//   tcp   SYN, established, a packet either way with FIN/RST, erase, expire;
//   udp   open (with a datagram queued), ready, touch, erase, expire;
//   time  advance by milliseconds or by minutes.
// Checked after every operation (any failure aborts with what broke):
//   - tcp: the oracle of tests/tun/tcp_nat_model.hpp predicts every outcome
//     (created / retransmit / existing / refused, which pending session is
//     evicted, which closed one is reclaimed, states after FIN and RST, the
//     exact set that expires and why), both lookups agree with it and with
//     each other, counts stay within max_sessions and max_pending, and a NAT
//     endpoint is never handed out while in use or within `rest` of leaving;
//   - udp: a model predicts whether a datagram is queued (per-flow packets
//     and bytes, all flows' bytes), which flow an overflow evicts (the least
//     recently touched), and exactly which flows expire (idle 60 s / 10 s for
//     DNS-only flows, never ready in time); counters agree;
//   - both tables' audit(): indexes, intrusive lists in deadline order, port
//     and queue accounting.
#include "../tun/tcp_nat_model.hpp"
#include "tun/udp_flows.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <span>
#include <string>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::tun;

namespace {

struct input {
  std::span<const std::uint8_t> data;
  std::size_t pos = 0;
  bool empty() const { return pos >= data.size(); }
  std::uint8_t byte() { return pos < data.size() ? data[pos++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(byte() << 8 | byte()); }
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "fuzz_tun_nat: %s\n", what.c_str());
  std::abort();
}

ip_addr addr(bool v6, std::uint8_t last) {
  ip_addr a = ip_addr::v4(10, 0, 0, last);
  if (v6) {
    a = ip_addr{};
    a.v6 = true;
    a.bytes[0] = 0xfd;
    a.bytes[15] = last;
  }
  return a;
}

/// Flows from one byte: 8 application ports, 2 destination ports (one DNS),
/// 2 destination addresses, 2 families.
flow_key flow(std::uint8_t b) {
  const bool v6 = (b & 0x80) != 0;
  return flow_key{endpoint{addr(v6, 1), static_cast<std::uint16_t>(1000 + (b & 7))},
                  endpoint{addr(v6, static_cast<std::uint8_t>(100 + (b >> 4 & 1))),
                           (b & 8) != 0 ? std::uint16_t{53} : std::uint16_t{443}}};
}

/// The UDP table's model: what it predicts, checked against what it does.
struct udp_model {
  struct mflow {
    std::uint64_t id;
    std::uint64_t touched;
    time_point created, last_active;
    bool ready, dns;
    std::size_t packets, bytes;
  };
  udp_flows flows;
  udp_flow_options o;
  std::map<flow_key, mflow> live;
  std::uint64_t touches = 0, total = 0, evicted = 0, expired = 0, drops = 0;
  std::size_t all_bytes = 0;

  explicit udp_model(udp_flow_options opts) : flows(opts), o(flows.options()) {}

  flow_key key_of(const flow_key& d) const { return o.full_cone ? flow_key{d.app, endpoint{}} : d; }
  mflow* by_id(std::uint64_t id) {
    for (auto& [k, f] : live)
      if (f.id == id)
        return &f;
    return nullptr;
  }
  void forget(const flow_key& k) {
    all_bytes -= live.at(k).bytes;
    live.erase(k);
  }

  void open(const flow_key& d, std::size_t size, time_point now) {
    auto r = flows.open(d, now);
    const auto k = key_of(d);
    if (r.created == live.contains(k))
      die("udp open: created disagrees with the model");
    if (!r.created) {
      auto& f = live[k];
      f.touched = ++touches;
      f.last_active = now;
      f.dns = f.dns && d.dst.port == o.dns_port;
      if (r.flow->id != f.id || r.evicted)
        die("udp open: another flow for a known key");
    } else {
      const bool full = live.size() >= o.max_flows;
      if (r.evicted.has_value() != full)
        die("udp open: evicted without need, or not when full");
      if (full) {
        auto lru = live.begin();
        for (auto it = live.begin(); it != live.end(); ++it)
          if (it->second.touched < lru->second.touched)
            lru = it;
        if (r.evicted->key != lru->first)
          die("udp open: evicted " + r.evicted->key.to_string() + ", the least recently used is " +
              lru->first.to_string());
        forget(lru->first);
        ++evicted;
      }
      live[k] = mflow{r.flow->id, ++touches, now, now, false, d.dst.port == o.dns_port, 0, 0};
      ++total;
    }
    auto& f = live[k];
    const bool fits =
        f.packets + 1 <= o.queue_packets && f.bytes + size <= o.queue_bytes && all_bytes + size <= o.total_queue_bytes;
    std::vector<std::uint8_t> payload(size, 0x5a);
    if (flows.enqueue(f.id, d.dst, payload) != fits)
      die("udp enqueue: queued past a bound, or refused within them");
    if (fits) {
      ++f.packets;
      f.bytes += size;
      all_bytes += size;
    } else {
      ++drops;
    }
  }

  void ready(const flow_key& d, time_point now) {
    auto it = live.find(key_of(d));
    auto q = flows.ready(it == live.end() ? 0 : it->second.id, now);
    if (it == live.end())
      return;
    auto& f = it->second;
    if (q.size() != f.packets)
      die("udp ready: handed over " + std::to_string(q.size()) + " datagrams, queued " + std::to_string(f.packets));
    all_bytes -= f.bytes;
    f.packets = f.bytes = 0;
    f.ready = true;
    f.touched = ++touches;
    f.last_active = now;
  }

  void touch(const flow_key& d, time_point now) {
    auto it = live.find(key_of(d));
    if (flows.touch(it == live.end() ? 0 : it->second.id, now) != (it != live.end()))
      die("udp touch answered wrongly");
    if (it != live.end())
      it->second.touched = ++touches, it->second.last_active = now;
  }

  void erase(const flow_key& d) {
    auto it = live.find(key_of(d));
    auto got = flows.erase(it == live.end() ? 0 : it->second.id);
    if (got.has_value() != (it != live.end()))
      die("udp erase answered wrongly");
    if (got)
      forget(it->first);
  }

  void expire(time_point now) {
    std::set<std::pair<std::uint64_t, udp_expiry_reason>> want, got;
    for (auto& [k, f] : live) {
      if (!f.ready && f.created + o.ready_timeout <= now)
        want.emplace(f.id, udp_expiry_reason::ready_timeout);
      else if (f.last_active + (f.dns ? o.dns_idle : o.idle) <= now)
        want.emplace(f.id, udp_expiry_reason::idle);
    }
    for (auto& e : flows.expire(now)) {
      got.emplace(e.flow.id, e.reason);
      if (!live.contains(e.flow.key))
        die("udp expire: a flow the model does not have");
      forget(e.flow.key);
      ++expired;
    }
    if (got != want)
      die("udp expire: took " + std::to_string(got.size()) + " flows, the model expected " +
          std::to_string(want.size()));
  }

  void check() {
    if (auto a = flows.audit(); !a.empty())
      die(a);
    const auto c = flows.counters();
    if (c.open != live.size() || c.total != total || c.evicted != evicted || c.expired != expired ||
        c.queue_drops != drops || c.queued_bytes != all_bytes)
      die("udp counters disagree with the model");
    for (auto& [k, f] : live) {
      const auto* x = flows.find(f.id);
      if (!x || x != flows.find(k) || x->key != k || x->ready != f.ready || x->dns != f.dns ||
          x->queue.size() != f.packets)
        die("udp lookups of " + k.to_string() + " disagree with the model");
    }
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  input in{{data, size}};
  tcp_nat_options t;
  const auto pools = in.byte();
  for (std::uint8_t i = 0; i < 1 + (pools & 3) % 3; ++i)
    t.v4_pool.push_back(addr(false, static_cast<std::uint8_t>(200 + i)));
  for (std::uint8_t i = 0; i < (pools >> 2 & 3) % 3; ++i)
    t.v6_pool.push_back(addr(true, static_cast<std::uint8_t>(200 + i)));
  t.first_port = static_cast<std::uint16_t>(10000 + in.byte());
  t.last_port = static_cast<std::uint16_t>(t.first_port + in.byte() % 16);
  t.max_sessions = 1 + in.byte() % 24;
  t.max_pending = 1 + in.byte() % 24;
  const auto times = in.byte();
  if (times & 1) { // short timeouts, so that everything can expire within a script
    t.established_idle = 3min;
    t.half_closed_idle = 1min;
  }
  if (times & 2)
    t.rest = 5s;
  t.hash_seed = 1;
  udp_flow_options u;
  u.full_cone = (times & 4) != 0;
  u.max_flows = 1 + in.byte() % 12;
  u.queue_packets = 1 + in.byte() % 6;
  u.queue_bytes = in.byte() * 8u;
  u.total_queue_bytes = in.byte() * 16u;
  u.hash_seed = 1;

  test::tcp_nat_model tcp(t, time_point{} + 1h);
  udp_model udp(u);
  while (!in.empty()) {
    const auto op = in.byte();
    std::string e;
    switch (op % 14) {
    case 0:
    case 1:
      e = tcp.syn(flow(in.byte()), in.byte());
      break;
    case 2:
      e = tcp.established(flow(in.byte()));
      break;
    case 3: {
      const auto b = in.byte();
      e = tcp.packet(flow(in.byte()), b & 1 ? tcp_dir::from_app : tcp_dir::from_listener, (b & 6) == 2, (b & 24) == 8);
      break;
    }
    case 4:
      e = tcp.erase(flow(in.byte()));
      break;
    case 5:
      e = tcp.expire();
      break;
    case 6:
      tcp.advance(std::chrono::milliseconds(in.u16()));
      break;
    case 7:
      tcp.advance(std::chrono::minutes(in.byte()));
      break;
    case 8:
    case 9:
      udp.open(flow(in.byte()), in.byte() * 4u, tcp.now());
      break;
    case 10:
      udp.ready(flow(in.byte()), tcp.now());
      break;
    case 11:
      udp.touch(flow(in.byte()), tcp.now());
      break;
    case 12:
      udp.erase(flow(in.byte()));
      break;
    default:
      udp.expire(tcp.now());
    }
    if (!e.empty())
      die(e);
    udp.check();
  }
  if (auto e = tcp.check(); !e.empty())
    die(e);
  return 0;
}
