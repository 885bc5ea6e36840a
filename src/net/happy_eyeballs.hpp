// Happy Eyeballs v2 (RFC 8305) as a pure state machine: no sockets, no
// timers, no clock. The driver (connector.cpp) feeds it resolver answers,
// attempt outcomes and timer expiries, each with the current time, and carries
// out the actions it returns. Tests drive it on a manual clock.
//
// Rules implemented:
//  - AAAA and A are asked separately. Under `automatic` IPv6 is preferred: if
//    A answers first, attempts wait up to resolution_delay (50 ms) for AAAA
//    (RFC 8305 §3). `prefer_ipv4` mirrors this with the families swapped.
//  - Addresses are interleaved by family, preferred family first
//    (First Address Family Count = 1, §4); late answers join the queue.
//  - A new attempt starts every attempt_delay (250 ms default, §5) while
//    others are in flight, or at once when an attempt fails.
//  - The first attempt to connect wins; every other one is cancelled and no
//    attempt is started after a winner.
//  - One overall deadline covers resolution and connection.
#pragma once

#include "core/clock.hpp"
#include "core/error.hpp"

#include <boost/asio/ip/address.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

namespace warren::net {

enum class family_policy { automatic, prefer_ipv4, ipv4_only, ipv6_only };

std::optional<family_policy> parse_family_policy(std::string_view text);
std::string_view to_string(family_policy p);

enum class ip_family { v4 = 0, v6 = 1 };
std::string_view to_string(ip_family f);
inline ip_family family_of(const boost::asio::ip::address& a) {
  return a.is_v6() ? ip_family::v6 : ip_family::v4;
}

struct he_config {
  family_policy policy = family_policy::automatic;
  std::chrono::milliseconds attempt_delay{250};   // RFC 8305 "Connection Attempt Delay"; 100 ms - 2 s
  std::chrono::milliseconds resolution_delay{50}; // RFC 8305 "Resolution Delay"
  std::chrono::milliseconds timeout{10'000};      // whole operation
};

class happy_eyeballs {
 public:
  struct start_attempt {
    std::size_t id;
    boost::asio::ip::address address;
  };
  struct cancel_attempt {
    std::size_t id;
  };
  struct succeeded {
    std::size_t id;
  };
  struct failed {
    error_code ec;
  };
  using action = std::variant<start_attempt, cancel_attempt, succeeded, failed>;
  using actions = std::vector<action>;

  /// What happened to one attempt, for diagnostics.
  struct attempt_record {
    boost::asio::ip::address address;
    time_point started;
    std::optional<time_point> ended;
    error_code ec; // empty while running, or for the winner
  };

  happy_eyeballs(he_config config, time_point now);

  /// Whether the driver should resolve this family at all.
  bool wants(ip_family f) const;

  actions on_resolved(time_point now, ip_family f, std::vector<boost::asio::ip::address> addresses, error_code ec);
  actions on_attempt_failed(time_point now, std::size_t id, error_code ec);
  actions on_connected(time_point now, std::size_t id);
  actions on_timer(time_point now);
  /// The caller gave up: cancels all running attempts and finishes with errc::cancelled.
  actions cancel(time_point now);

  /// When on_timer should next be called; nullopt once finished.
  std::optional<time_point> next_wakeup() const;
  bool finished() const { return finished_; }
  const std::vector<attempt_record>& attempts() const { return attempts_; }
  error_code resolve_error(ip_family f) const { return resolve_ec_[index(f)]; }

 private:
  static std::size_t index(ip_family f) { return static_cast<std::size_t>(f); }
  static ip_family other(ip_family f) { return f == ip_family::v4 ? ip_family::v6 : ip_family::v4; }
  bool resolving(ip_family f) const { return wants(f) && !resolved_[index(f)]; }
  bool may_start(time_point now) const;
  bool has_candidates() const { return !queue_[0].empty() || !queue_[1].empty(); }
  std::size_t running() const;
  actions step(time_point now);
  actions finish_failed(time_point now, error_code ec);
  void cancel_running(time_point now, std::optional<std::size_t> except, actions& out);

  he_config config_;
  time_point deadline_;
  ip_family preferred_;
  ip_family next_family_;
  std::array<bool, 2> resolved_{};
  std::array<error_code, 2> resolve_ec_{};
  std::array<std::deque<boost::asio::ip::address>, 2> queue_;
  std::optional<time_point> resolution_wait_until_; // set when only the non-preferred family has answered
  std::optional<time_point> last_start_;
  std::vector<attempt_record> attempts_;
  error_code last_attempt_ec_;
  bool finished_ = false;
};

} // namespace warren::net
