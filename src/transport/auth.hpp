// Server-side authentication helpers: constant-time token comparison and a
// per-source failure limiter (pure; takes `now`, tested on a manual clock).
// After k_max_failures bad tokens from one source within k_window (fixed
// from the first failure), that source is refused without a check until the
// window passes, so a token cannot be guessed at line rate. A source is an
// IPv4 address or an IPv6 /64 (net/source_group.hpp), as for the handshake
// slots, so walking the addresses of one subnet does not reset the count. A
// success does not clear the count either: a peer holding one credential
// must not be able to wipe its guesses at another. The server asks the
// limiter when the token is about to be checked, not only at accept, so
// connections opened in parallel get no more guesses than sequential ones.
// Memory stays bounded: at most k_max_sources sources are tracked, oldest
// forgotten first. Not thread-safe.
#pragma once

#include "core/clock.hpp"
#include "net/source_group.hpp"
#include "transport/http_auth.hpp"

#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <string_view>

namespace warren::transport {

/// Compares in time independent of where the strings differ (and of their lengths).
bool token_equal(std::string_view a, std::string_view b);

class auth_limiter {
 public:
  static constexpr int k_max_failures = 5;
  static constexpr std::chrono::seconds k_window{60};
  static constexpr std::size_t k_max_sources = 4096;

  /// Whether this source may have a token checked now.
  bool allowed(const boost::asio::ip::address& source, time_point now);
  void record_failure(const boost::asio::ip::address& source, time_point now);
  std::size_t tracked() const { return sources_.size(); }

 private:
  struct entry {
    int failures = 0;
    time_point window_start;
  };
  std::map<net::source_key, entry> sources_;
};

} // namespace warren::transport
