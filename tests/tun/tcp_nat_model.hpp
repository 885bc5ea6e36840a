// An oracle for tcp_nat (src/tun/tcp_nat.hpp), shared by the randomized
// model test (tcp_nat_test.cpp) and the fuzzer (tests/fuzz/fuzz_tun_nat.cpp):
// a std::map model of the sessions that predicts, from the rules in the
// header alone, every outcome — created / retransmit / existing / refused,
// which pending session a SYN evicts and which closed one it reclaims, the
// state after each packet, exactly which sessions expire and why — and
// checks after every step that the table agrees (both lookups, ids, NAT
// endpoints, states, counters) and that its audit() holds. A NAT endpoint
// is never handed out while in use or within `rest` of leaving the table.
// Every method returns "" or what went wrong.
#pragma once

#include "tun/tcp_nat.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>

namespace warren::tun::test {

class tcp_nat_model {
 public:
  tcp_nat_model(tcp_nat_options o, time_point start) : nat_(o), o_(nat_.options()), now_(start) {}

  tcp_nat& table() { return nat_; }
  time_point now() const { return now_; }
  std::size_t size() const { return live_.size(); }

  void advance(duration d) { now_ += d; }

  std::string syn(const flow_key& key, std::uint32_t seq) {
    auto r = nat_.on_syn(key, seq, now_);
    std::optional<std::uint64_t> want_evicted;
    if (auto it = live_.find(key); it != live_.end()) {
      auto& m = it->second;
      if (m.state != tcp_state::closed) {
        const auto want = m.state == tcp_state::pending ? syn_outcome::retransmit : syn_outcome::existing;
        if (r.outcome != want || !r.session || r.session->id != m.id)
          return "SYN on a live " + std::string(to_string(m.state)) + " session gave " + to_string(r.outcome);
        if (m.state != tcp_state::pending)
          m.last_active = now_;
        return check();
      }
      leave(key); // a new connection on a closed session's 4-tuple
    }
    const bool v6 = key.app.addr.v6;
    const auto& pool = v6 ? o_.v6_pool : o_.v4_pool;
    std::size_t used = 0;
    for (auto& [k, m] : live_)
      used += k.app.addr.v6 == v6 ? 1 : 0;
    for (auto& [e, t] : released_)
      used += e.addr.v6 == v6 && now_ < t + o_.rest ? 1 : 0;
    if (used >= std::set<ip_addr>(pool.begin(), pool.end()).size() * nat_.ports_per_address())
      return expect_refused(r, syn_outcome::refused_no_port);
    if (live_.size() >= o_.max_sessions) {
      if (auto c = oldest(tcp_state::closed))
        leave(*c);
      else if (auto p = oldest(tcp_state::pending))
        want_evicted = leave(*p);
      else
        return expect_refused(r, syn_outcome::refused_full);
    }
    if (count(tcp_state::pending) >= o_.max_pending)
      want_evicted = leave(*oldest(tcp_state::pending));
    if (r.outcome != syn_outcome::created || !r.session)
      return std::string("SYN should create a session, gave ") + to_string(r.outcome);
    if (r.evicted.has_value() != want_evicted.has_value() || (want_evicted && r.evicted->id != *want_evicted))
      return "evicted the wrong pending session (or none, or one too many)";
    const auto nat = r.session->nat;
    if (by_nat_.contains(nat))
      return "NAT endpoint " + nat.to_string() + " handed out twice";
    if (auto rel = released_.find(nat); rel != released_.end() && now_ - rel->second < o_.rest)
      return "NAT endpoint " + nat.to_string() + " reused " + std::to_string(to_ms(now_ - rel->second)) +
             " ms after it left the table";
    if (std::find(pool.begin(), pool.end(), nat.addr) == pool.end() || nat.port < o_.first_port ||
        nat.port > o_.last_port)
      return "NAT endpoint " + nat.to_string() + " outside the pool";
    live_[key] = msession{r.session->id, nat, tcp_state::pending, false, false, now_, now_, {}, ++order_};
    by_nat_[nat] = key;
    ++total_;
    return check();
  }

  std::string established(const flow_key& key) {
    auto it = live_.find(key);
    const auto id = it == live_.end() ? stale_id_ : it->second.id;
    const bool want = it != live_.end() && it->second.state == tcp_state::pending;
    if (nat_.established(id, now_) != want)
      return "established() answered wrongly";
    if (want) {
      enter(it->second, tcp_state::established);
      it->second.last_active = now_;
    }
    return check();
  }

  std::string packet(const flow_key& key, tcp_dir dir, bool fin, bool rst) {
    auto it = live_.find(key);
    const auto got = nat_.on_packet(it == live_.end() ? stale_id_ : it->second.id, dir, fin, rst, now_);
    if (it == live_.end())
      return got ? "a packet found a session that is gone" : check();
    auto& m = it->second;
    if (m.state != tcp_state::closed) {
      m.last_active = now_;
      if (rst) {
        enter(m, tcp_state::closed);
      } else if (m.state != tcp_state::pending) {
        (dir == tcp_dir::from_app ? m.fin_app : m.fin_listener) |= fin;
        const auto next = m.fin_app && m.fin_listener   ? tcp_state::closed
                          : m.fin_app || m.fin_listener ? tcp_state::half_closed
                                                        : tcp_state::established;
        if (next != m.state)
          enter(m, next);
      }
    }
    if (got != m.state)
      return "state after a packet: " + std::string(got ? to_string(*got) : "gone") + ", want " + to_string(m.state);
    return check();
  }

  std::string erase(const flow_key& key) {
    auto it = live_.find(key);
    const auto got = nat_.erase(it == live_.end() ? stale_id_ : it->second.id, now_);
    if (got.has_value() != (it != live_.end()))
      return "erase() answered wrongly";
    if (got)
      leave(key);
    return check();
  }

  std::string expire() {
    std::set<std::tuple<std::uint64_t, expiry_reason>> want;
    for (auto& [k, m] : live_)
      if (deadline(m) <= now_)
        want.emplace(m.id, reason(m.state));
    std::set<std::tuple<std::uint64_t, expiry_reason>> got;
    for (auto& e : nat_.expire(now_)) {
      got.emplace(e.session.id, e.reason);
      if (!live_.contains(e.session.app) || live_[e.session.app].id != e.session.id)
        return "expired a session the model does not have";
      expired_ += e.reason == expiry_reason::closed ? 0 : 1;
      leave(e.session.app);
    }
    if (got != want)
      return "expire() took " + std::to_string(got.size()) + " sessions, the model expected " +
             std::to_string(want.size());
    return check();
  }

  /// Everything the table says agrees with the model.
  std::string check() const {
    if (auto a = nat_.audit(); !a.empty())
      return a;
    const auto c = nat_.counters();
    if (c.open != live_.size() || c.pending != count(tcp_state::pending) || c.total != total_ || c.expired != expired_)
      return "counters disagree with the model";
    for (auto& [k, m] : live_) {
      const auto* a = nat_.find_app(k);
      const auto* b = nat_.find_nat(m.nat);
      if (!a || a != b || a != nat_.find(m.id) || a->app != k || a->nat != m.nat || a->state != m.state)
        return "lookups of " + k.to_string() + " disagree with the model";
    }
    if (nat_.find(stale_id_))
      return "a stale id finds a session";
    return {};
  }

 private:
  struct msession {
    std::uint64_t id;
    endpoint nat;
    tcp_state state;
    bool fin_app, fin_listener;
    time_point created, last_active, closed_at;
    std::uint64_t order; // when it entered its state's list
  };

  void enter(msession& m, tcp_state s) {
    m.state = s;
    m.order = ++order_;
    if (s == tcp_state::closed)
      m.closed_at = now_;
  }
  std::uint64_t leave(const flow_key& key) {
    auto& m = live_.at(key);
    const auto id = m.id;
    released_[m.nat] = now_;
    by_nat_.erase(m.nat);
    stale_id_ = id;
    live_.erase(key);
    return id;
  }
  std::optional<flow_key> oldest(tcp_state s) const {
    std::optional<flow_key> best;
    std::uint64_t best_order = 0;
    for (auto& [k, m] : live_)
      if (m.state == s && (!best || m.order < best_order))
        best = k, best_order = m.order;
    return best;
  }
  std::size_t count(tcp_state s) const {
    std::size_t n = 0;
    for (auto& [k, m] : live_)
      n += m.state == s ? 1 : 0;
    return n;
  }
  time_point deadline(const msession& m) const {
    switch (m.state) {
    case tcp_state::pending:
      return m.created + o_.pending_timeout;
    case tcp_state::established:
      return m.last_active + o_.established_idle;
    case tcp_state::half_closed:
      return m.last_active + o_.half_closed_idle;
    case tcp_state::closed:
      break;
    }
    return m.closed_at + o_.closed_linger;
  }
  static expiry_reason reason(tcp_state s) {
    return s == tcp_state::pending       ? expiry_reason::pending_timeout
           : s == tcp_state::established ? expiry_reason::idle
           : s == tcp_state::half_closed ? expiry_reason::half_closed_idle
                                         : expiry_reason::closed;
  }
  std::string expect_refused(const syn_result& r, syn_outcome want) const {
    if (r.outcome != want || r.session || r.evicted)
      return std::string("SYN should be ") + to_string(want) + ", gave " + to_string(r.outcome);
    return check();
  }

  tcp_nat nat_;
  const tcp_nat_options& o_;
  time_point now_;
  std::map<flow_key, msession> live_;
  std::map<endpoint, flow_key> by_nat_;
  std::map<endpoint, time_point> released_;
  std::uint64_t order_ = 0;
  std::uint64_t total_ = 0;
  std::uint64_t expired_ = 0;
  std::uint64_t stale_id_ = 0x12345678; // the last id that left (or a never-valid one)
};

} // namespace warren::tun::test
