#include "transport/auth.hpp"

#include <algorithm>

#include <openssl/crypto.h>
#include <openssl/sha.h>

namespace warren::transport {

bool token_equal(std::string_view a, std::string_view b) {
  // Hash both so the comparison length is fixed, then compare in constant time.
  unsigned char ha[SHA256_DIGEST_LENGTH];
  unsigned char hb[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(a.data()), a.size(), ha);
  SHA256(reinterpret_cast<const unsigned char*>(b.data()), b.size(), hb);
  return CRYPTO_memcmp(ha, hb, sizeof ha) == 0 && !b.empty();
}

user_table::digest user_table::hash(std::string_view token) {
  digest d{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), d.data());
  return d;
}

std::optional<user_table::digest> user_table::parse_digest(std::string_view hex) {
  if (hex.size() != 64)
    return std::nullopt;
  digest d{};
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < d.size(); ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    d[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return d;
}

std::shared_ptr<const user_table> user_table::single(std::string name, std::string_view token) {
  auto t = std::make_shared<user_table>();
  t->add(std::move(name), hash(token));
  return t;
}

std::optional<std::string> user_table::match(std::string_view token) const {
  const digest presented = hash(token);
  const user* found = nullptr;
  for (const auto& u : users_) {
    // Every digest is compared, whatever matched before.
    const bool same = CRYPTO_memcmp(presented.data(), u.token_sha256.data(), presented.size()) == 0;
    found = same ? &u : found;
  }
  if (!found || token.empty())
    return std::nullopt;
  return found->name;
}

std::optional<std::string> user_table::match_revoked(std::string_view token) const {
  if (token.empty() || revoked_.empty())
    return std::nullopt;
  const digest presented = hash(token);
  const user* found = nullptr;
  for (const auto& u : revoked_) {
    const bool same = CRYPTO_memcmp(presented.data(), u.token_sha256.data(), presented.size()) == 0;
    found = same ? &u : found;
  }
  return found ? std::optional<std::string>(found->name) : std::nullopt;
}

const user_table::user* user_table::find(std::string_view name) const {
  for (const auto& u : users_)
    if (u.name == name)
      return &u;
  return nullptr;
}

bool auth_limiter::allowed(const boost::asio::ip::address& source, time_point now) {
  auto it = sources_.find(net::source_group(source));
  if (it == sources_.end())
    return true;
  if (now - it->second.window_start >= k_window) {
    sources_.erase(it);
    return true;
  }
  return it->second.failures < k_max_failures;
}

std::chrono::seconds auth_limiter::retry_after(const boost::asio::ip::address& source, time_point now) const {
  auto it = sources_.find(net::source_group(source));
  if (it == sources_.end())
    return std::chrono::seconds(1);
  const auto left = std::chrono::ceil<std::chrono::seconds>(it->second.window_start + k_window - now);
  return std::max(left, std::chrono::seconds(1));
}

void auth_limiter::record_failure(const boost::asio::ip::address& source, time_point now) {
  const auto key = net::source_group(source);
  auto it = sources_.find(key);
  if (it == sources_.end() || now - it->second.window_start >= k_window) {
    if (it == sources_.end() && sources_.size() >= k_max_sources) {
      auto oldest = sources_.begin();
      for (auto i = sources_.begin(); i != sources_.end(); ++i)
        if (i->second.window_start < oldest->second.window_start)
          oldest = i;
      sources_.erase(oldest);
    }
    sources_[key] = entry{1, now};
    return;
  }
  ++it->second.failures;
}

} // namespace warren::transport
