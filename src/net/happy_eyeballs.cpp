#include "net/happy_eyeballs.hpp"

#include <algorithm>

namespace warren::net {

std::optional<family_policy> parse_family_policy(std::string_view text) {
  if (text == "auto")
    return family_policy::automatic;
  if (text == "prefer-ipv4")
    return family_policy::prefer_ipv4;
  if (text == "ipv4")
    return family_policy::ipv4_only;
  if (text == "ipv6")
    return family_policy::ipv6_only;
  return std::nullopt;
}

std::string_view to_string(family_policy p) {
  switch (p) {
  case family_policy::automatic:
    return "auto";
  case family_policy::prefer_ipv4:
    return "prefer-ipv4";
  case family_policy::ipv4_only:
    return "ipv4";
  case family_policy::ipv6_only:
    return "ipv6";
  }
  return "?";
}

std::string_view to_string(ip_family f) {
  return f == ip_family::v4 ? "IPv4" : "IPv6";
}

happy_eyeballs::happy_eyeballs(he_config config, time_point now)
    : config_(config), deadline_(now + config.timeout),
      preferred_(config.policy == family_policy::prefer_ipv4 || config.policy == family_policy::ipv4_only
                     ? ip_family::v4
                     : ip_family::v6),
      next_family_(preferred_) {}

bool happy_eyeballs::wants(ip_family f) const {
  switch (config_.policy) {
  case family_policy::ipv4_only:
    return f == ip_family::v4;
  case family_policy::ipv6_only:
    return f == ip_family::v6;
  default:
    return true;
  }
}

std::size_t happy_eyeballs::running() const {
  return static_cast<std::size_t>(
      std::count_if(attempts_.begin(), attempts_.end(), [](const attempt_record& a) { return !a.ended; }));
}

bool happy_eyeballs::may_start(time_point now) const {
  // RFC 8305 §3: once the preferred family's answer is in, go; if only the
  // other family has answered, wait for the resolution delay first.
  if (!resolving(preferred_))
    return true;
  return resolution_wait_until_ && now >= *resolution_wait_until_;
}

happy_eyeballs::actions happy_eyeballs::on_resolved(time_point now, ip_family f,
                                                    std::vector<boost::asio::ip::address> addresses, error_code ec) {
  if (finished_ || !wants(f) || resolved_[index(f)])
    return {};
  resolved_[index(f)] = true;
  resolve_ec_[index(f)] = ec;
  for (auto& a : addresses) {
    if (family_of(a) != f)
      continue;
    auto& q = queue_[index(f)];
    if (std::find(q.begin(), q.end(), a) == q.end())
      q.push_back(a);
  }
  if (f != preferred_ && resolving(preferred_) && !resolution_wait_until_)
    resolution_wait_until_ = now + config_.resolution_delay;
  return step(now);
}

happy_eyeballs::actions happy_eyeballs::on_attempt_failed(time_point now, std::size_t id, error_code ec) {
  if (finished_ || id >= attempts_.size() || attempts_[id].ended)
    return {};
  attempts_[id].ended = now;
  attempts_[id].ec = ec;
  last_attempt_ec_ = ec;
  last_start_.reset(); // the next attempt may start at once
  return step(now);
}

happy_eyeballs::actions happy_eyeballs::on_connected(time_point now, std::size_t id) {
  if (finished_ || id >= attempts_.size() || attempts_[id].ended)
    return {};
  attempts_[id].ended = now;
  finished_ = true;
  actions out;
  cancel_running(now, id, out);
  out.emplace_back(succeeded{id});
  return out;
}

happy_eyeballs::actions happy_eyeballs::on_timer(time_point now) {
  return step(now);
}

happy_eyeballs::actions happy_eyeballs::cancel(time_point now) {
  if (finished_)
    return {};
  return finish_failed(now, errc::cancelled);
}

void happy_eyeballs::cancel_running(time_point now, std::optional<std::size_t> except, actions& out) {
  for (std::size_t i = 0; i < attempts_.size(); ++i) {
    if (attempts_[i].ended || (except && *except == i))
      continue;
    attempts_[i].ended = now;
    attempts_[i].ec = errc::cancelled;
    out.emplace_back(cancel_attempt{i});
  }
}

happy_eyeballs::actions happy_eyeballs::finish_failed(time_point now, error_code ec) {
  finished_ = true;
  actions out;
  cancel_running(now, std::nullopt, out);
  out.emplace_back(failed{ec});
  return out;
}

happy_eyeballs::actions happy_eyeballs::step(time_point now) {
  if (finished_)
    return {};
  if (now >= deadline_)
    return finish_failed(now, errc::timed_out);

  actions out;
  const bool due = !last_start_ || running() == 0 || now >= *last_start_ + config_.attempt_delay;
  if (has_candidates() && may_start(now) && due) {
    ip_family f = queue_[index(next_family_)].empty() ? other(next_family_) : next_family_;
    auto address = queue_[index(f)].front();
    queue_[index(f)].pop_front();
    next_family_ = other(f);
    last_start_ = now;
    attempts_.push_back({address, now, std::nullopt, {}});
    out.emplace_back(start_attempt{attempts_.size() - 1, address});
    return out;
  }

  if (!has_candidates() && running() == 0 && !resolving(ip_family::v4) && !resolving(ip_family::v6)) {
    if (last_attempt_ec_)
      return finish_failed(now, last_attempt_ec_);
    // Nothing was ever tried: report the resolver's reason when it has one.
    for (auto f : {preferred_, other(preferred_)}) {
      if (wants(f) && resolve_ec_[index(f)])
        return finish_failed(now, resolve_ec_[index(f)]);
    }
    return finish_failed(now, errc::no_addresses);
  }
  return out;
}

std::optional<time_point> happy_eyeballs::next_wakeup() const {
  if (finished_)
    return std::nullopt;
  time_point t = deadline_;
  if (has_candidates()) {
    if (resolving(preferred_) && resolution_wait_until_)
      t = std::min(t, *resolution_wait_until_);
    if (last_start_ && running() > 0)
      t = std::min(t, *last_start_ + config_.attempt_delay);
  }
  return t;
}

} // namespace warren::net
