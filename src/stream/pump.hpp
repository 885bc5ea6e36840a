// Relays two byte_streams both ways until both directions have ended,
// carrying half-close through (end of stream on one side becomes shutdown()
// on the other). An error in either direction closes both streams. Used for
// tunnel streams (mux stream <-> TCP socket); plain socket pairs use the
// zero-copy net/stream_relay instead.
//
// Idle costs next to nothing: each direction waits with a readiness callback
// (byte_stream::async_wait_readable) and a coroutine runs only while bytes
// move, with a read buffer borrowed from a pool. So a relay nobody talks on
// holds no coroutine frame and no buffer (bench goal: 10,000 idle streams
// through one tunnel at <= 8 KiB each, client and server together).
#pragma once

#include "core/stored_handler.hpp"
#include "stream/byte_stream.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>

namespace warren::stream {

struct pump_stats {
  std::uint64_t a_to_b = 0;
  std::uint64_t b_to_a = 0;
  error_code error; // the first error, if any (eof is not an error)
};

/// Starts relaying; `done` runs (posted, on a's executor) once both
/// directions have ended. Both streams must live until then: a caller that
/// does not wait can hand them to `done` (it is destroyed right after it ran).
/// If the io_context is destroyed first, the pump abandons both streams
/// (byte_stream::abandon(): a socket resets) and destroys `done` unrun.
void start_pump(byte_stream& a, byte_stream& b, core::stored_handler<void(pump_stats)> done);

/// The same, awaited.
boost::asio::awaitable<pump_stats> pump(byte_stream& a, byte_stream& b);

} // namespace warren::stream
