#include "tunnel/handshake_slots.hpp"

namespace warren::tunnel {

namespace ip = boost::asio::ip;

handshake_slots::ticket& handshake_slots::ticket::operator=(ticket&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
    other.state_.reset();
    key_ = other.key_;
    id_ = other.id_;
  }
  return *this;
}

bool handshake_slots::ticket::held() const {
  auto s = state_.lock();
  if (!s)
    return false;
  auto it = s->by_source.find(key_);
  return it != s->by_source.end() && it->second.contains(id_);
}

void handshake_slots::ticket::release() {
  if (auto s = state_.lock())
    s->give_back(key_, id_);
  state_.reset();
}

void handshake_slots::state::give_back(const source_key& key, std::uint64_t id) {
  auto it = by_source.find(key);
  if (it == by_source.end() || it->second.erase(id) == 0)
    return; // evicted: the slot went to another already
  --held;
  if (it->second.empty())
    by_source.erase(it);
}

std::optional<handshake_slots::ticket> handshake_slots::admit(const ip::address& source, std::function<void()> evict,
                                                              std::size_t per_source) {
  const auto key = net::source_group(source);
  const std::size_t mine = held_by(source);
  if (mine >= (per_source != 0 ? per_source : per_source_))
    return std::nullopt;
  if (s_->held >= total_) {
    // The victim: the oldest of the source holding the most, if that is
    // fairer than what the newcomer's source holds; else the oldest of all
    // (a handshake takes milliseconds: the oldest is the likeliest stuck).
    auto heaviest = s_->by_source.begin();
    auto oldest = s_->by_source.begin();
    for (auto it = s_->by_source.begin(); it != s_->by_source.end(); ++it) {
      if (it->second.size() > heaviest->second.size())
        heaviest = it;
      if (it->second.begin()->first < oldest->second.begin()->first)
        oldest = it;
    }
    auto from = heaviest->second.size() > mine + 1 ? heaviest : oldest;
    auto victim = from->second.begin();
    auto evict_victim = std::move(victim->second);
    from->second.erase(victim);
    if (from->second.empty())
      s_->by_source.erase(from);
    --s_->held;
    ++s_->evictions;
    if (evict_victim)
      evict_victim();
  }
  const auto id = s_->next_id++;
  s_->by_source[key].emplace(id, std::move(evict));
  ++s_->held;
  return ticket(s_, key, id);
}

std::size_t handshake_slots::held_by(const ip::address& source) const {
  auto it = s_->by_source.find(net::source_group(source));
  return it == s_->by_source.end() ? 0 : it->second.size();
}

} // namespace warren::tunnel
