// Relays two byte_streams both ways until both directions have ended,
// carrying half-close through (end of stream on one side becomes shutdown()
// on the other). An error in either direction closes both streams. Used for
// tunnel streams (mux stream <-> TCP socket); plain socket pairs use the
// zero-copy net/stream_relay instead.
#pragma once

#include "stream/byte_stream.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>

namespace warren::stream {

struct pump_stats {
  std::uint64_t a_to_b = 0;
  std::uint64_t b_to_a = 0;
  error_code error; // the first error, if any (eof is not an error)
};

boost::asio::awaitable<pump_stats> pump(byte_stream& a, byte_stream& b);

} // namespace warren::stream
