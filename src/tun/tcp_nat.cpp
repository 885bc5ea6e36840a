#include "tun/tcp_nat.hpp"

#include <algorithm>
#include <set>
#include <utility>

namespace warren::tun {

const char* to_string(tcp_state s) {
  switch (s) {
  case tcp_state::pending:
    return "pending";
  case tcp_state::established:
    return "established";
  case tcp_state::half_closed:
    return "half_closed";
  case tcp_state::closed:
    return "closed";
  }
  return "?";
}

const char* to_string(syn_outcome o) {
  switch (o) {
  case syn_outcome::created:
    return "created";
  case syn_outcome::retransmit:
    return "retransmit";
  case syn_outcome::existing:
    return "existing";
  case syn_outcome::refused_full:
    return "refused_full";
  case syn_outcome::refused_no_port:
    return "refused_no_port";
  }
  return "?";
}

const char* to_string(expiry_reason r) {
  switch (r) {
  case expiry_reason::pending_timeout:
    return "pending_timeout";
  case expiry_reason::idle:
    return "idle";
  case expiry_reason::half_closed_idle:
    return "half_closed_idle";
  case expiry_reason::closed:
    return "closed";
  }
  return "?";
}

namespace {

std::uint8_t list_of(tcp_state s) {
  return static_cast<std::uint8_t>(s); // the lists are numbered as the states
}

} // namespace

tcp_nat::tcp_nat(tcp_nat_options options)
    : options_(std::move(options)), hash_{hash_seed(options_.hash_seed)}, by_app_(0, hash_), by_nat_(0, hash_) {
  if (options_.first_port == 0)
    options_.first_port = 1;
  if (options_.last_port < options_.first_port)
    options_.last_port = options_.first_port;
  options_.max_sessions = std::max<std::size_t>(options_.max_sessions, 1);
  options_.max_pending = std::clamp<std::size_t>(options_.max_pending, 1, options_.max_sessions);
  for (std::uint8_t family = 0; family < 2; ++family) {
    const auto& list = family == 0 ? options_.v4_pool : options_.v6_pool;
    auto& p = pools_[family];
    std::set<ip_addr> seen;
    for (const auto& a : list) {
      if (a.v6 != (family == 1) || !seen.insert(a).second)
        continue;
      p.addrs.push_back(nat_address{a});
      make_available(p, static_cast<std::uint32_t>(p.addrs.size() - 1));
    }
  }
}

time_point tcp_nat::clamp(time_point now) {
  latest_ = std::max(latest_, now);
  return latest_;
}

duration tcp_nat::timeout_of(std::uint8_t list) const {
  switch (list) {
  case l_pending:
    return options_.pending_timeout;
  case l_established:
    return options_.established_idle;
  case l_half_closed:
    return options_.half_closed_idle;
  default:
    return options_.closed_linger;
  }
}

time_point tcp_nat::deadline_of(std::uint32_t i) const {
  const auto& n = slab_[i];
  // Each list's clock: the first SYN (a retransmission does not extend the
  // connect timeout), the last packet, or the close.
  const auto start = n.links.list == l_pending  ? n.s.created
                     : n.links.list == l_closed ? n.s.closed_at
                                                : n.s.last_active;
  return start + timeout_of(n.links.list);
}

void tcp_nat::make_available(pool& p, std::uint32_t a) {
  auto& na = p.addrs[a];
  if (na.avail_pos != k_nil)
    return;
  na.avail_pos = static_cast<std::uint32_t>(p.available.size());
  p.available.push_back(a);
}

void tcp_nat::make_unavailable(pool& p, std::uint32_t a) {
  auto& na = p.addrs[a];
  if (na.avail_pos == k_nil)
    return;
  const auto last = p.available.back();
  p.available[na.avail_pos] = last;
  p.addrs[last].avail_pos = na.avail_pos;
  p.available.pop_back();
  na.avail_pos = k_nil;
}

bool tcp_nat::take_port(std::uint8_t family, std::uint32_t& addr, std::uint16_t& port) {
  auto& p = pools_[family];
  if (p.available.empty())
    return false;
  // Round-robin over the addresses with a free port: sessions spread evenly.
  if (p.cursor >= p.available.size())
    p.cursor = 0;
  addr = p.available[p.cursor++];
  auto& na = p.addrs[addr];
  // Never-used ports first (no history at all), then those back from resting.
  if (na.next_fresh < ports_per_address())
    port = static_cast<std::uint16_t>(options_.first_port + na.next_fresh++);
  else {
    port = na.freed.back();
    na.freed.pop_back();
  }
  ++na.in_use;
  if (na.freed.empty() && na.next_fresh >= ports_per_address())
    make_unavailable(p, addr);
  return true;
}

void tcp_nat::release_rested(time_point now) {
  while (!resting_.empty() && resting_.front().until <= now) {
    const auto r = resting_.front();
    resting_.pop_front();
    auto& p = pools_[r.family];
    p.addrs[r.addr].freed.push_back(r.port);
    make_available(p, r.addr);
  }
}

tcp_session tcp_nat::remove(std::uint32_t i, time_point now) {
  unlink(i);
  auto& n = slab_[i];
  by_app_.erase(n.s.app);
  by_nat_.erase(n.s.nat);
  --pools_[n.family].addrs[n.addr].in_use;
  resting_.push_back(resting_port{n.family, n.addr, n.s.nat.port, now + options_.rest});
  auto s = std::move(n.s);
  slab_.free(i);
  return s;
}

void tcp_nat::set_state(std::uint32_t i, tcp_state s, time_point now) {
  unlink(i);
  auto& n = slab_[i];
  n.s.state = s;
  if (s == tcp_state::closed)
    n.s.closed_at = now;
  push(list_of(s), i);
}

syn_result tcp_nat::on_syn(const flow_key& app, std::uint32_t seq, time_point now) {
  now = clamp(now);
  release_rested(now);
  syn_result r;
  if (auto it = by_app_.find(app); it != by_app_.end()) {
    const auto i = it->second;
    auto& n = slab_[i];
    switch (n.s.state) {
    case tcp_state::pending:
      // The application retransmits (or retries with a new ISN): the same
      // session and upstream connect; the SYN let through later is the latest.
      n.s.syn_seq = seq;
      ++n.s.syn_count;
      n.s.last_active = now;
      r.outcome = syn_outcome::retransmit;
      r.session = &n.s;
      return r;
    case tcp_state::established:
    case tcp_state::half_closed:
      // The kernel answers it as TCP does (a challenge ACK); not ours to judge.
      n.s.last_active = now;
      unlink(i);
      push(list_of(n.s.state), i);
      r.outcome = syn_outcome::existing;
      r.session = &n.s;
      return r;
    case tcp_state::closed:
      // A new connection on the same 4-tuple: it never meets the old one's
      // NAT port, which starts resting now.
      remove(i, now);
      break;
    }
  }
  const std::uint8_t family = app.app.addr.v6 ? 1 : 0;
  // Evicting cannot free a port (it rests), so refuse first if none is free.
  if (pools_[family].available.empty()) {
    ++counters_.refused_no_port;
    r.outcome = syn_outcome::refused_no_port;
    return r;
  }
  if (slab_.size() >= options_.max_sessions) {
    if (lists_[l_closed].size != 0) {
      remove(lists_[l_closed].first, now); // done but for its linger: the cheapest to lose
    } else if (lists_[l_pending].size != 0) {
      r.evicted = remove(lists_[l_pending].first, now);
      ++counters_.evicted;
    } else {
      ++counters_.refused_full;
      r.outcome = syn_outcome::refused_full;
      return r;
    }
  }
  if (lists_[l_pending].size >= options_.max_pending) {
    // A SYN flood: the oldest pending SYN is the likeliest never to connect.
    r.evicted = remove(lists_[l_pending].first, now);
    ++counters_.evicted;
  }
  std::uint32_t addr = 0;
  std::uint16_t port = 0;
  take_port(family, addr, port); // cannot fail: checked above, and removing only adds resting ports
  const auto i = slab_.allocate();
  auto& n = slab_[i];
  n.family = family;
  n.addr = addr;
  n.s.id = slab_.id_of(i);
  n.s.app = app;
  n.s.nat = endpoint{pools_[family].addrs[addr].addr, port};
  n.s.state = tcp_state::pending;
  n.s.syn_seq = seq;
  n.s.syn_count = 1;
  n.s.created = n.s.last_active = now;
  by_app_.emplace(app, i);
  by_nat_.emplace(n.s.nat, i);
  push(l_pending, i);
  ++counters_.total;
  r.outcome = syn_outcome::created;
  r.session = &n.s;
  return r;
}

const tcp_session* tcp_nat::find_app(const flow_key& app) const {
  auto it = by_app_.find(app);
  return it == by_app_.end() ? nullptr : &slab_[it->second].s;
}

const tcp_session* tcp_nat::find_nat(const endpoint& nat) const {
  auto it = by_nat_.find(nat);
  return it == by_nat_.end() ? nullptr : &slab_[it->second].s;
}

const tcp_session* tcp_nat::find(std::uint64_t id) const {
  const auto i = slab_.slot_of(id);
  return i == k_nil ? nullptr : &slab_[i].s;
}

bool tcp_nat::established(std::uint64_t id, time_point now) {
  const auto i = slab_.slot_of(id);
  if (i == k_nil || slab_[i].s.state != tcp_state::pending)
    return false;
  now = clamp(now);
  slab_[i].s.last_active = now;
  set_state(i, tcp_state::established, now);
  return true;
}

std::optional<tcp_state> tcp_nat::on_packet(std::uint64_t id, tcp_dir dir, bool fin, bool rst, time_point now) {
  const auto i = slab_.slot_of(id);
  if (i == k_nil)
    return std::nullopt;
  now = clamp(now);
  auto& s = slab_[i].s;
  if (s.state == tcp_state::closed)
    return s.state; // translated while it lingers; the linger is not extended
  s.last_active = now;
  if (rst) {
    s.rst = true;
    set_state(i, tcp_state::closed, now);
    return s.state;
  }
  if (s.state == tcp_state::pending)
    return s.state; // nothing but a RST can come before the SYN was let through
  if (fin)
    (dir == tcp_dir::from_app ? s.fin_from_app : s.fin_from_listener) = true;
  const auto next = s.fin_from_app && s.fin_from_listener   ? tcp_state::closed
                    : s.fin_from_app || s.fin_from_listener ? tcp_state::half_closed
                                                            : tcp_state::established;
  if (next != s.state) {
    set_state(i, next, now);
  } else {
    unlink(i); // idle clock restarts: to the back of its list
    push(list_of(next), i);
  }
  return s.state;
}

std::optional<tcp_session> tcp_nat::erase(std::uint64_t id, time_point now) {
  const auto i = slab_.slot_of(id);
  if (i == k_nil)
    return std::nullopt;
  return remove(i, clamp(now));
}

std::vector<tcp_expired> tcp_nat::expire(time_point now) {
  now = clamp(now);
  release_rested(now);
  std::vector<tcp_expired> out;
  static constexpr expiry_reason reasons[l_count] = {expiry_reason::pending_timeout, expiry_reason::idle,
                                                     expiry_reason::half_closed_idle, expiry_reason::closed};
  for (std::uint8_t l = 0; l < l_count; ++l) {
    while (lists_[l].first != k_nil && deadline_of(lists_[l].first) <= now) {
      out.push_back(tcp_expired{remove(lists_[l].first, now), reasons[l]});
      if (l != l_closed)
        ++counters_.expired;
    }
  }
  return out;
}

std::optional<time_point> tcp_nat::next_expiry() const {
  std::optional<time_point> t;
  auto consider = [&](time_point x) { t = t ? std::min(*t, x) : x; };
  for (std::uint8_t l = 0; l < l_count; ++l)
    if (lists_[l].first != k_nil)
      consider(deadline_of(lists_[l].first));
  if (!resting_.empty())
    consider(resting_.front().until);
  return t;
}

tcp_nat_counters tcp_nat::counters() const {
  auto c = counters_;
  c.open = slab_.size();
  c.pending = lists_[l_pending].size;
  c.resting = resting_.size();
  return c;
}

std::string tcp_nat::audit() const {
  auto fail = [](const std::string& what) { return "tcp_nat: " + what; };
  if (by_app_.size() != slab_.size() || by_nat_.size() != slab_.size())
    return fail("index sizes " + std::to_string(by_app_.size()) + "/" + std::to_string(by_nat_.size()) +
                " != sessions " + std::to_string(slab_.size()));
  if (slab_.size() > options_.max_sessions || lists_[l_pending].size > options_.max_pending)
    return fail("over a bound");
  for (const auto& [key, i] : by_app_) {
    if (!slab_.live(i) || slab_[i].s.app != key)
      return fail("by_app " + key.to_string() + " names a wrong slot");
    const auto& n = slab_[i];
    auto nat = by_nat_.find(n.s.nat);
    if (nat == by_nat_.end() || nat->second != i)
      return fail("by_nat disagrees for " + key.to_string());
    if (n.s.id != slab_.id_of(i) || n.s.app.app.addr.v6 != (n.family == 1) ||
        n.s.app.dst.addr.v6 != n.s.app.app.addr.v6)
      return fail("id or family wrong for " + key.to_string());
    const auto& p = pools_[n.family];
    if (n.addr >= p.addrs.size() || p.addrs[n.addr].addr != n.s.nat.addr || n.s.nat.port < options_.first_port ||
        n.s.nat.port > options_.last_port)
      return fail("NAT endpoint outside the pool for " + key.to_string());
  }
  for (const auto& [nat, i] : by_nat_)
    if (!slab_.live(i) || slab_[i].s.nat != nat)
      return fail("by_nat " + nat.to_string() + " names a wrong slot");
  std::size_t listed = 0;
  for (std::uint8_t l = 0; l < l_count; ++l) {
    std::size_t count = 0;
    std::uint32_t prev = k_nil;
    for (auto i = lists_[l].first; i != k_nil; i = slab_[i].links.next) {
      const auto& n = slab_[i];
      if (!slab_.live(i) || n.links.list != l || list_of(n.s.state) != l || n.links.prev != prev)
        return fail("list " + std::to_string(l) + " is broken at slot " + std::to_string(i));
      if (prev != k_nil && deadline_of(prev) > deadline_of(i))
        return fail("list " + std::to_string(l) + " out of deadline order");
      if (++count > slab_.size())
        return fail("list " + std::to_string(l) + " loops");
      prev = i;
    }
    if (count != lists_[l].size || prev != lists_[l].last)
      return fail("list " + std::to_string(l) + " size or tail wrong");
    listed += count;
  }
  if (listed != slab_.size())
    return fail("sessions outside every list");
  // Ports: each address's handed-out ports are in use, resting or freed, once each.
  std::vector<std::vector<std::uint8_t>> marks[2];
  std::vector<std::uint32_t> in_use[2];
  for (std::uint8_t family = 0; family < 2; ++family) {
    for (const auto& na : pools_[family].addrs)
      marks[family].emplace_back(na.next_fresh, std::uint8_t{0});
    in_use[family].assign(pools_[family].addrs.size(), 0);
  }
  auto mark = [&](std::uint8_t family, std::uint32_t a, std::uint16_t port) {
    const auto off = static_cast<std::size_t>(port - options_.first_port);
    auto& m = marks[family][a];
    return off < m.size() && m[off]++ == 0;
  };
  for (const auto& [nat, i] : by_nat_) {
    ++in_use[slab_[i].family][slab_[i].addr];
    if (!mark(slab_[i].family, slab_[i].addr, nat.port))
      return fail("port of " + nat.to_string() + " not handed out, or twice");
  }
  for (const auto& r : resting_)
    if (!mark(r.family, r.addr, r.port))
      return fail("port " + std::to_string(r.port) + " resting twice, resting and in use, or never handed out");
  for (std::uint8_t family = 0; family < 2; ++family) {
    const auto& p = pools_[family];
    for (std::uint32_t a = 0; a < p.addrs.size(); ++a) {
      const auto& na = p.addrs[a];
      for (auto port : na.freed)
        if (!mark(family, a, port))
          return fail("port " + std::to_string(port) + " free and in use or resting");
      for (auto m : marks[family][a])
        if (m != 1)
          return fail("a port of " + na.addr.to_string() + " lost");
      if (in_use[family][a] != na.in_use)
        return fail("port accounting of " + na.addr.to_string());
      const bool has_port = !na.freed.empty() || na.next_fresh < ports_per_address();
      if (has_port != (na.avail_pos != k_nil) || (has_port && p.available[na.avail_pos] != a))
        return fail("availability of " + na.addr.to_string());
    }
  }
  for (std::size_t k = 1; k < resting_.size(); ++k)
    if (resting_[k - 1].until > resting_[k].until)
      return fail("resting ports out of order");
  return {};
}

} // namespace warren::tun
