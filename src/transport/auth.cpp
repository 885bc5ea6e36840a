#include "transport/auth.hpp"

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
