// What the session and its mux_streams share inside warren_wire (not a
// public header): the per-stream state, the session's events, and the
// constants both halves need. session.cpp runs the connection (reader,
// writer, pinger, frame handlers); mux_stream.cpp is the stream side that
// the code above uses like a socket. Single-threaded, as the session is.
#pragma once

#include "stream/event.hpp"
#include "wire/flow.hpp"
#include "wire/frame.hpp"
#include "wire/session.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace warren::wire {

inline constexpr std::size_t k_data_high_water = 8u << 20; // writers wait beyond this many queued bytes
inline constexpr std::size_t k_full_frame = k_header_size + k_default_max_payload; // what prepare() fills
// What a queued datagram costs beyond its payload (list node, allocation):
// counted too, so that empty datagrams fill the session's budget as well.
inline constexpr std::size_t k_datagram_overhead = 64;
inline constexpr std::size_t k_min_chunk = 4096; // received bytes: the smallest chunk allocated (stream_state::keep)

/// The error a stream ended by `r` reports to its reader or writer.
inline error_code error_for(const reset_info& r) {
  namespace aerr = boost::asio::error;
  switch (r.code) {
  case reset_code::refused:
    return aerr::connection_refused;
  case reset_code::timed_out:
    return aerr::timed_out;
  case reset_code::unreachable:
    return aerr::host_unreachable;
  case reset_code::unresolvable:
    return aerr::host_not_found;
  case reset_code::denied:
    return aerr::access_denied;
  default:
    return aerr::connection_reset;
  }
}

struct stream_state {
  stream_state(std::uint32_t initial_window, std::uint32_t max_window) : tuner(initial_window, max_window) {}

  enum class phase { opening, open, failed };
  std::uint32_t id = 0;
  stream_kind kind = stream_kind::tcp;
  std::string target;
  phase state = phase::opening;
  std::int64_t send_window = 0;
  bool fin_sent = false;
  // session::data_frames_queued_ when this stream last queued a frame: while
  // the writer has not passed it, a RESET of ours goes behind the frames.
  std::uint64_t last_queued_frame = 0;
  // std::list, not std::deque: an empty list allocates nothing (libstdc++'s
  // deque allocates ~600 bytes up front), which matters for 10,000 idle streams.
  std::list<std::vector<std::uint8_t>> chunks;
  std::size_t front_offset = 0;
  std::size_t buffered = 0;
  std::uint64_t peer_may_send = 0;
  window_tuner tuner;
  bool fin_received = false;
  std::optional<reset_info> reset;
  bool removed = false;
  std::list<std::vector<std::uint8_t>> datagrams;
  std::size_t datagram_bytes = 0; // in `datagrams`, each counted with k_datagram_overhead
  stream::async_event readable;
  stream::async_event writable;
  stream::async_event opened;

  /// Keeps a received DATA payload for the reader. A full-size one gets a
  /// chunk of its own (handed to sendmsg() in place later); a small one goes
  /// into the last chunk's spare room, or starts a chunk with room for more.
  /// Otherwise a peer that spends its window one byte per frame would cost
  /// a list node and an allocation, ~80 bytes, per byte the window counts.
  /// Appending never reallocates, so pieces peek() handed out stay valid.
  void keep(std::span<const std::uint8_t> payload) {
    if (!chunks.empty()) {
      auto& last = chunks.back();
      if (last.capacity() - last.size() >= payload.size()) {
        last.insert(last.end(), payload.begin(), payload.end());
        return;
      }
    }
    std::vector<std::uint8_t> chunk;
    chunk.reserve(std::max(payload.size(), k_min_chunk));
    chunk.assign(payload.begin(), payload.end());
    chunks.push_back(std::move(chunk));
  }

  void wake_all() {
    readable.notify();
    writable.notify();
    opened.notify();
  }
};

struct session_events {
  explicit session_events(const boost::asio::any_io_executor& ex) : ping_timer(ex), open_timer(ex) {}
  stream::async_event writer_wake;
  stream::async_event drained;
  boost::asio::steady_timer ping_timer;
  boost::asio::steady_timer open_timer; // the reader waits on it for the peer's next OPEN token
  std::optional<liveness> live;
  rtt_estimator rtt; // our PINGs' round trips; session_stats copies it
};

} // namespace warren::wire
