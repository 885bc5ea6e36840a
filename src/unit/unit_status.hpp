// A unit's status and counters as plain values (no Asio), so that what
// reads them off a unit's executor — the daemon's metrics formatter and
// control replies, in warren_daemon_codec — can use them without the unit
// layer's event-loop types. unit.hpp is the interface these describe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace warren::unit {

enum class unit_state { starting, running, draining, stopped, failed };

inline std::string_view to_string(unit_state s) {
  switch (s) {
  case unit_state::starting:
    return "starting";
  case unit_state::running:
    return "running";
  case unit_state::draining:
    return "draining";
  case unit_state::stopped:
    return "stopped";
  case unit_state::failed:
    return "failed";
  }
  return "?";
}

/// Every state, in declaration order (for a per-state series).
inline constexpr unit_state k_unit_states[] = {unit_state::starting, unit_state::running, unit_state::draining,
                                               unit_state::stopped, unit_state::failed};

using wall_time = std::chrono::system_clock::time_point;

/// What a unit is doing now; a plain copy, safe to hand to another thread.
struct unit_status {
  unit_state state = unit_state::starting;
  std::vector<std::string> listening; // "TCP 127.0.0.1:8080", "unix /run/x.sock", …
  std::string peer;                   // a client's server while its tunnel is up; else empty
  wall_time since{};                  // when `state` was entered
  std::string last_error;             // empty when none yet
  wall_time last_error_at{};
  wall_time connected_since{}; // a client's tunnel: when the one up now came up; {} when none is
};

/// Cheap counters, plain integers touched only on the unit's executor. What
/// a kind does not have stays 0 (a relay has no streams, reconnects or RTT).
struct unit_counters {
  std::uint64_t bytes_up = 0;   // from the side that opened the connection toward its target
  std::uint64_t bytes_down = 0; // back; a tunnel's are transport bytes (data and framing)
  std::uint64_t connections_open = 0;
  std::uint64_t connections_total = 0;
  std::uint64_t streams_open = 0;
  std::uint64_t streams_total = 0;
  std::uint64_t reconnects = 0;
  // The tunnel's round trip, measured by PING/PONG on the mux session, in
  // microseconds; 0: no sample yet (or no tunnel up). A client: its tunnel's
  // smoothed RTT (as TCP's SRTT: 7/8 old + 1/8 sample) and the last sample.
  // A server: the mean of those over its tunnels up that have a sample.
  std::uint64_t tunnel_rtt_us = 0;
  std::uint64_t tunnel_rtt_last_us = 0;
};

} // namespace warren::unit
