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

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace warren::transport {

/// Compares in time independent of where the strings differ (and of their lengths).
bool token_equal(std::string_view a, std::string_view b);

/// The tokens the server accepts, each under a user name. Holds SHA-256
/// digests only, so a users file can store digests instead of tokens.
/// match() hashes the token presented and compares it in constant time with
/// every user's digest, without an early exit: timing tells nothing of
/// which user (if any) it belongs to.
class user_table {
 public:
  using digest = std::array<unsigned char, 32>;
  struct user {
    std::string name;
    digest token_sha256;
  };
  static digest hash(std::string_view token);
  /// 64 hex digits into a digest; nullopt if malformed.
  static std::optional<digest> parse_digest(std::string_view hex);
  /// A table of one user (--token-file, tests).
  static std::shared_ptr<const user_table> single(std::string name, std::string_view token);

  void add(std::string name, const digest& d) { users_.push_back({std::move(name), d}); }
  /// The name of the user this token is of; nullopt for an empty or unknown token.
  std::optional<std::string> match(std::string_view token) const;
  const std::vector<user>& users() const { return users_; }
  const user* find(std::string_view name) const;

  /// Tokens of users revoked by recent reloads (the server keeps the last
  /// k_max_revoked): one presented again is refused as revoked, not
  /// counted as a guess (it is a credential the server issued).
  static constexpr std::size_t k_max_revoked = 1024;
  void set_revoked(std::vector<user> revoked) { revoked_ = std::move(revoked); }
  const std::vector<user>& revoked() const { return revoked_; }
  /// The name of the revoked user this token was of; nullopt if none.
  std::optional<std::string> match_revoked(std::string_view token) const;

 private:
  std::vector<user> users_;
  std::vector<user> revoked_;
};

class auth_limiter {
 public:
  static constexpr int k_max_failures = 5;
  static constexpr std::chrono::seconds k_window{60};
  static constexpr std::size_t k_max_sources = 4096;

  /// Whether this source may have a token checked now.
  bool allowed(const boost::asio::ip::address& source, time_point now);
  void record_failure(const boost::asio::ip::address& source, time_point now);
  /// For a source not allowed(): whole seconds until its window ends (at
  /// least 1), the 429's Retry-After.
  std::chrono::seconds retry_after(const boost::asio::ip::address& source, time_point now) const;
  std::size_t tracked() const { return sources_.size(); }

 private:
  struct entry {
    int failures = 0;
    time_point window_start;
  };
  std::map<net::source_key, entry> sources_;
};

} // namespace warren::transport
