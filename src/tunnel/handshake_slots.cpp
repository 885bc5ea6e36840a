#include "tunnel/handshake_slots.hpp"

#include <algorithm>

namespace warren::tunnel {

namespace ip = boost::asio::ip;

handshake_slots::ticket& handshake_slots::ticket::operator=(ticket&& other) noexcept {
  if (this != &other) {
    release();
    slots_ = std::exchange(other.slots_, nullptr);
    key_ = other.key_;
  }
  return *this;
}

void handshake_slots::ticket::release() {
  if (auto* s = std::exchange(slots_, nullptr))
    s->give_back(key_);
}

handshake_slots::source_key handshake_slots::key_of(const ip::address& a) {
  if (a.is_v4())
    return ip::make_address_v6(ip::v4_mapped, a.to_v4()).to_bytes();
  auto bytes = a.to_v6().to_bytes();
  if (a.to_v6().is_v4_mapped())
    return bytes;
  std::fill(bytes.begin() + 8, bytes.end(), 0); // the /64
  return bytes;
}

std::optional<handshake_slots::ticket> handshake_slots::admit(const ip::address& source) {
  if (held_ >= total_)
    return std::nullopt;
  const auto key = key_of(source);
  auto& n = by_source_[key];
  if (n >= per_source_)
    return std::nullopt; // n > 0: no empty entry is left behind
  ++n;
  ++held_;
  return ticket(this, key);
}

std::size_t handshake_slots::held_by(const ip::address& source) const {
  auto it = by_source_.find(key_of(source));
  return it == by_source_.end() ? 0 : it->second;
}

void handshake_slots::give_back(const source_key& key) {
  auto it = by_source_.find(key);
  if (it == by_source_.end())
    return;
  --held_;
  if (--it->second == 0)
    by_source_.erase(it);
}

} // namespace warren::tunnel
