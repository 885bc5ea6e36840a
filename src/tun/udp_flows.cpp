#include "tun/udp_flows.hpp"

#include <algorithm>
#include <utility>

namespace warren::tun {

const char* to_string(udp_expiry_reason r) {
  switch (r) {
  case udp_expiry_reason::idle:
    return "idle";
  case udp_expiry_reason::ready_timeout:
    return "ready_timeout";
  }
  return "?";
}

udp_flows::udp_flows(udp_flow_options options)
    : options_(std::move(options)), hash_{hash_seed(options_.hash_seed)}, by_key_(0, hash_) {
  options_.max_flows = std::max<std::size_t>(options_.max_flows, 1);
}

flow_key udp_flows::key_of(const flow_key& datagram) const {
  if (!options_.full_cone)
    return datagram;
  return flow_key{datagram.app, endpoint{}};
}

time_point udp_flows::idle_deadline(std::uint32_t i) const {
  const auto& f = slab_[i].f;
  return f.last_active + (f.dns ? options_.dns_idle : options_.idle);
}

void udp_flows::touch_slot(std::uint32_t i, time_point now) {
  auto& n = slab_[i];
  n.f.last_active = now;
  n.touched = ++touches_;
  list_unlink(slab_, lru_links{}, lists_[n.lru.list], i);
  const std::uint8_t l = n.f.dns ? l_dns : l_normal;
  list_push_back(slab_, lru_links{}, lists_[l], l, i);
}

std::uint32_t udp_flows::lru_victim() const {
  const auto d = lists_[l_dns].first;
  const auto n = lists_[l_normal].first;
  if (d == k_nil)
    return n;
  if (n == k_nil)
    return d;
  return slab_[n].touched < slab_[d].touched ? n : d;
}

udp_flow udp_flows::remove(std::uint32_t i) {
  auto& n = slab_[i];
  list_unlink(slab_, lru_links{}, lists_[n.lru.list], i);
  if (n.waiting.list != 0xff)
    list_unlink(slab_, waiting_links{}, lists_[l_waiting], i);
  by_key_.erase(n.f.key);
  queued_packets_ -= n.f.queue.size();
  queued_bytes_ -= n.f.queued_bytes;
  auto f = std::move(n.f);
  slab_.free(i);
  return f;
}

udp_open_result udp_flows::open(const flow_key& datagram, time_point now) {
  latest_ = std::max(latest_, now);
  now = latest_;
  udp_open_result r;
  const auto key = key_of(datagram);
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    auto& f = slab_[it->second].f;
    if (datagram.dst.port != options_.dns_port)
      f.dns = false; // full cone: one destination other than DNS makes it an ordinary flow
    touch_slot(it->second, now);
    r.flow = &f;
    return r;
  }
  if (slab_.size() >= options_.max_flows) {
    r.evicted = remove(lru_victim());
    ++counters_.evicted;
  }
  const auto i = slab_.allocate();
  auto& n = slab_[i];
  n.f.id = slab_.id_of(i);
  n.f.key = key;
  n.f.first_dst = datagram.dst;
  n.f.dns = datagram.dst.port == options_.dns_port;
  n.f.created = n.f.last_active = now;
  n.touched = ++touches_;
  const std::uint8_t l = n.f.dns ? l_dns : l_normal;
  list_push_back(slab_, lru_links{}, lists_[l], l, i);
  list_push_back(slab_, waiting_links{}, lists_[l_waiting], l_waiting, i);
  by_key_.emplace(key, i);
  ++counters_.total;
  r.flow = &n.f;
  r.created = true;
  return r;
}

const udp_flow* udp_flows::find(const flow_key& datagram) const {
  auto it = by_key_.find(key_of(datagram));
  return it == by_key_.end() ? nullptr : &slab_[it->second].f;
}

const udp_flow* udp_flows::find(std::uint64_t id) const {
  const auto i = slab_.slot_of(id);
  return i == k_nil ? nullptr : &slab_[i].f;
}

bool udp_flows::touch(std::uint64_t id, time_point now) {
  const auto i = slab_.slot_of(id);
  if (i == k_nil)
    return false;
  latest_ = std::max(latest_, now);
  touch_slot(i, latest_);
  return true;
}

bool udp_flows::enqueue(std::uint64_t id, const endpoint& dst, std::span<const std::uint8_t> payload) {
  const auto i = slab_.slot_of(id);
  if (i == k_nil)
    return false;
  auto& f = slab_[i].f;
  if (f.queue.size() + 1 > options_.queue_packets || f.queued_bytes + payload.size() > options_.queue_bytes ||
      queued_bytes_ + payload.size() > options_.total_queue_bytes) {
    ++f.dropped;
    ++counters_.queue_drops;
    return false;
  }
  f.queue.push_back(udp_datagram{dst, std::vector<std::uint8_t>(payload.begin(), payload.end())});
  f.queued_bytes += payload.size();
  queued_bytes_ += payload.size();
  ++queued_packets_;
  return true;
}

std::vector<udp_datagram> udp_flows::ready(std::uint64_t id, time_point now) {
  const auto i = slab_.slot_of(id);
  if (i == k_nil)
    return {};
  auto& n = slab_[i];
  if (!n.f.ready) {
    n.f.ready = true;
    list_unlink(slab_, waiting_links{}, lists_[l_waiting], i);
  }
  latest_ = std::max(latest_, now);
  touch_slot(i, latest_);
  queued_packets_ -= n.f.queue.size();
  queued_bytes_ -= n.f.queued_bytes;
  n.f.queued_bytes = 0;
  return std::exchange(n.f.queue, {});
}

std::optional<udp_flow> udp_flows::erase(std::uint64_t id) {
  const auto i = slab_.slot_of(id);
  if (i == k_nil)
    return std::nullopt;
  return remove(i);
}

std::vector<udp_expired> udp_flows::expire(time_point now) {
  latest_ = std::max(latest_, now);
  now = latest_;
  std::vector<udp_expired> out;
  while (lists_[l_waiting].first != k_nil && slab_[lists_[l_waiting].first].f.created + options_.ready_timeout <= now) {
    out.push_back(udp_expired{remove(lists_[l_waiting].first), udp_expiry_reason::ready_timeout});
    ++counters_.expired;
  }
  for (std::uint8_t l : {l_dns, l_normal})
    while (lists_[l].first != k_nil && idle_deadline(lists_[l].first) <= now) {
      out.push_back(udp_expired{remove(lists_[l].first), udp_expiry_reason::idle});
      ++counters_.expired;
    }
  return out;
}

std::optional<time_point> udp_flows::next_expiry() const {
  std::optional<time_point> t;
  auto consider = [&](time_point x) { t = t ? std::min(*t, x) : x; };
  if (lists_[l_waiting].first != k_nil)
    consider(slab_[lists_[l_waiting].first].f.created + options_.ready_timeout);
  for (std::uint8_t l : {l_dns, l_normal})
    if (lists_[l].first != k_nil)
      consider(idle_deadline(lists_[l].first));
  return t;
}

udp_flow_counters udp_flows::counters() const {
  auto c = counters_;
  c.open = slab_.size();
  c.queued_packets = queued_packets_;
  c.queued_bytes = queued_bytes_;
  return c;
}

std::string udp_flows::audit() const {
  auto fail = [](const std::string& what) { return "udp_flows: " + what; };
  if (by_key_.size() != slab_.size() || slab_.size() > options_.max_flows)
    return fail("index size or bound");
  std::size_t packets = 0;
  std::size_t bytes = 0;
  std::size_t waiting = 0;
  for (const auto& [key, i] : by_key_) {
    if (!slab_.live(i))
      return fail("index names a free slot");
    const auto& n = slab_[i];
    const auto& f = n.f;
    if (f.key != key || key_of(f.key) != key || f.id != slab_.id_of(i))
      return fail("key or id wrong for " + key.to_string());
    if (n.lru.list != (f.dns ? l_dns : l_normal) || (n.waiting.list == l_waiting) == f.ready)
      return fail("flow " + key.to_string() + " in the wrong list");
    std::size_t b = 0;
    for (const auto& d : f.queue)
      b += d.payload.size();
    if (b != f.queued_bytes || f.queue.size() > options_.queue_packets || b > options_.queue_bytes)
      return fail("queue of " + key.to_string());
    packets += f.queue.size();
    bytes += b;
    waiting += f.ready ? 0 : 1;
  }
  if (packets != queued_packets_ || bytes != queued_bytes_ || bytes > options_.total_queue_bytes)
    return fail("queue totals");
  auto walk = [&](std::uint8_t l, auto links, auto deadline) -> std::string {
    std::size_t count = 0;
    std::uint32_t prev = k_nil;
    for (auto i = lists_[l].first; i != k_nil; i = links(slab_[i]).next) {
      if (!slab_.live(i) || links(slab_[i]).list != l || links(slab_[i]).prev != prev || ++count > slab_.size())
        return fail("list " + std::to_string(l) + " broken");
      if (prev != k_nil && deadline(prev) > deadline(i))
        return fail("list " + std::to_string(l) + " out of order");
      prev = i;
    }
    if (count != lists_[l].size || prev != lists_[l].last)
      return fail("list " + std::to_string(l) + " size or tail");
    return {};
  };
  auto lru = [](const node& n) -> const list_links& { return n.lru; };
  auto wait = [](const node& n) -> const list_links& { return n.waiting; };
  auto idle = [&](std::uint32_t i) { return idle_deadline(i); };
  auto created = [&](std::uint32_t i) { return slab_[i].f.created; };
  for (auto e : {walk(l_dns, lru, idle), walk(l_normal, lru, idle), walk(l_waiting, wait, created)})
    if (!e.empty())
      return e;
  if (lists_[l_dns].size + lists_[l_normal].size != slab_.size() || lists_[l_waiting].size != waiting)
    return fail("list sizes");
  return {};
}

} // namespace warren::tun
