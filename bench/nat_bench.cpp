// What the TUN engine's NAT tables cost per packet and per connection
// (src/tun/tcp_nat.hpp, udp_flows.hpp), with Google Benchmark:
//   tcp_lookup      find_app + find_nat on a table of N sessions (every
//                   packet does one of the two), hits spread over the table;
//   tcp_cycle       one connection's bookkeeping: SYN, established, FIN both
//                   ways, erase (its port rests, later reused), on a table of N;
//   udp_open        a datagram's flow lookup + touch on a table of N flows.
//   ./build/release/bench/nat_bench [--benchmark_filter=...]
#include "tun/tcp_nat.hpp"
#include "tun/udp_flows.hpp"

#include <benchmark/benchmark.h>

#include <vector>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::tun;

namespace {

flow_key key(std::uint32_t k) {
  return flow_key{endpoint{ip_addr::v4(10, static_cast<std::uint8_t>(k >> 16), static_cast<std::uint8_t>(k >> 8),
                                       static_cast<std::uint8_t>(k)),
                           40000},
                  endpoint{ip_addr::v4(203, 0, 113, 7), 443}};
}

tcp_nat_options pool_of(std::size_t addresses) {
  tcp_nat_options o;
  for (std::size_t i = 0; i < addresses; ++i)
    o.v4_pool.push_back(ip_addr::v4(198, 18, 1, static_cast<std::uint8_t>(i)));
  return o;
}

void fill(tcp_nat& nat, std::uint32_t n, time_point now, std::vector<endpoint>& nats) {
  for (std::uint32_t k = 0; k < n; ++k) {
    auto r = nat.on_syn(key(k), k, now);
    nat.established(r.session->id, now);
    nats.push_back(r.session->nat);
  }
}

void tcp_lookup(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  tcp_nat nat(pool_of(2));
  manual_clock clock;
  std::vector<endpoint> nats;
  fill(nat, n, clock.now(), nats);
  std::uint32_t k = 0;
  for (auto _ : state) {
    k = (k + 7919) % n;
    benchmark::DoNotOptimize(nat.find_app(key(k)));
    benchmark::DoNotOptimize(nat.find_nat(nats[k]));
  }
  state.SetItemsProcessed(state.iterations() * 2);
}

void tcp_cycle(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  auto o = pool_of(16);
  o.rest = 0s; // a real engine's churn rests ports; here the pool must not run dry
  tcp_nat nat(o);
  manual_clock clock;
  std::vector<endpoint> nats;
  fill(nat, n, clock.now(), nats);
  std::uint32_t k = n;
  for (auto _ : state) {
    clock.advance(1us);
    const auto now = clock.now();
    ++k;
    auto r = nat.on_syn(key(k % 1000000 + n), k, now);
    const auto id = r.session->id;
    nat.established(id, now);
    nat.on_packet(id, tcp_dir::from_app, true, false, now);
    nat.on_packet(id, tcp_dir::from_listener, true, false, now);
    nat.erase(id, now);
    if (k % 1024 == 0)
      nat.expire(now);
  }
  state.SetItemsProcessed(state.iterations());
}

void udp_open(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  udp_flow_options o;
  o.max_flows = n;
  udp_flows flows(o);
  manual_clock clock;
  for (std::uint32_t k = 0; k < n; ++k)
    flows.ready(flows.open(key(k), clock.now()).flow->id, clock.now());
  std::uint32_t k = 0;
  for (auto _ : state) {
    k = (k + 7919) % n;
    benchmark::DoNotOptimize(flows.open(key(k), clock.now()).flow);
  }
  state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(tcp_lookup)->Arg(1000)->Arg(65536);
BENCHMARK(tcp_cycle)->Arg(1000)->Arg(60000);
BENCHMARK(udp_open)->Arg(1000)->Arg(16384);
BENCHMARK_MAIN();
