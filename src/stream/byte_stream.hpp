// The one stream shape of warren (ARCHITECTURE.md "One idea"): every carrier
// — TCP, Unix, TLS, WebSocket, later ICE or QUIC — is adapted once into
// byte_stream, and everything above it (the multiplexer, SOCKS5, the control
// API) is written once against this interface. Beast and asio::ssl types
// never appear here: adapters live in transport/*.cpp.
//
// Coroutine style: each operation is an awaitable that reports failure
// through an error_code out-parameter (errors are values on the data path).
// Thread-safety: none; one reader and one writer at a time, on the
// stream's executor. At most one write in flight (callers queue).
#pragma once

#include "core/error.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <functional>
#include <memory>
#include <span>
#include <string>

namespace warren::stream {

class byte_stream {
 public:
  virtual ~byte_stream() = default;

  virtual boost::asio::any_io_executor get_executor() = 0;

  /// Reads at least one byte; end of stream is boost::asio::error::eof.
  virtual boost::asio::awaitable<std::size_t> read_some(boost::asio::mutable_buffer buffer, error_code& ec) = 0;

  /// Calls `ready` on the stream's executor (never inline) once read_some
  /// would not block: data, end of stream or an error is ready. A callback,
  /// not an awaitable, and no buffer: a stream idling here holds no coroutine
  /// frame and no read buffer, which is what 10,000 idle tunnel streams cost
  /// (see pump). ec is set when waiting itself failed (operation_aborted
  /// after close()). Carriers that cannot tell call `ready` at once.
  virtual void async_wait_readable(std::function<void(error_code)> ready) {
    boost::asio::post(get_executor(), [ready = std::move(ready)] { ready({}); });
  }

  /// Calls `ready` on the stream's executor (never inline) once a write
  /// could take bytes, or would fail, without waiting. Returns false, and
  /// never calls `ready`, when the carrier cannot tell (then only write()
  /// waits properly).
  virtual bool async_wait_writable(std::function<void(error_code)>) { return false; }

  /// Non-blocking variants for the pump's fast path (no coroutine, no
  /// completion posted): they move what can be moved right now, scattering
  /// or gathering over `buffers` (one system call on a socket), and report
  /// boost::asio::error::would_block when nothing can. Carriers without
  /// them always say would_block, and the pump takes the coroutine path.
  virtual std::size_t try_read_some(std::span<const boost::asio::mutable_buffer>, error_code& ec) {
    ec = boost::asio::error::would_block;
    return 0;
  }
  virtual std::size_t try_write_some(std::span<const boost::asio::const_buffer>, error_code& ec) {
    ec = boost::asio::error::would_block;
    return 0;
  }
  std::size_t try_read_some(boost::asio::mutable_buffer buffer, error_code& ec) {
    return try_read_some(std::span(&buffer, 1), ec);
  }
  std::size_t try_write_some(boost::asio::const_buffer buffer, error_code& ec) {
    return try_write_some(std::span(&buffer, 1), ec);
  }

  /// Zero-copy reading, for carriers that hold received bytes in memory (a
  /// mux stream): fills `out` with up to out.size() pieces of what read_some
  /// would return next, in place, and returns how many; they stay valid
  /// until consume() or any other call on the stream. consume(n) then takes
  /// n of those bytes. ec as for try_read_some (would_block, eof, the
  /// stream's error); operation_not_supported when the carrier has no such
  /// buffers (sockets: the kernel has them).
  virtual std::size_t peek(std::span<boost::asio::const_buffer>, error_code& ec) {
    ec = boost::asio::error::operation_not_supported;
    return 0;
  }
  virtual void consume(std::size_t) {}

  /// Zero-copy writing, for carriers that build their own output buffers (a
  /// mux stream's frames): fills `out` with up to out.size() pieces of space
  /// for at most `max` bytes that the stream may send right now (flow
  /// control permitting) and returns how many; commit(n) then sends the
  /// first n bytes written there (0: nothing) and must follow before any
  /// other call on the stream. ec: would_block when nothing may be sent now,
  /// the stream's error, or operation_not_supported.
  virtual std::size_t prepare(std::size_t, std::span<boost::asio::mutable_buffer>, error_code& ec) {
    ec = boost::asio::error::operation_not_supported;
    return 0;
  }
  virtual void commit(std::size_t) {}

  /// Writes every byte of every buffer (a WebSocket adapter sends them as one message).
  virtual boost::asio::awaitable<void> write(std::span<const boost::asio::const_buffer> buffers, error_code& ec) = 0;

  /// Graceful end of the sending direction or of the whole stream, as the
  /// carrier allows (TCP: FIN; TLS: close_notify; WebSocket: close frame).
  virtual boost::asio::awaitable<void> shutdown(error_code& ec) = 0;

  /// Abrupt close; pending operations complete with operation_aborted.
  virtual void close() = 0;

  /// Abrupt close that the peer sees as one (TCP: an RST, not a FIN), for a
  /// stream whose other half failed: a FIN would make a cut transfer look
  /// complete. Carriers without such a signal just close().
  virtual void reset() { close(); }

  /// The io_context is being destroyed while this stream still relays (a
  /// second SIGTERM: io.stop() with transfers running): what the peer
  /// should see then. A socket resets, as for a cut transfer, instead of
  /// the FIN its destruction would send; carriers whose peer learns it
  /// otherwise (a tunnel stream: its tunnel ends) do nothing.
  virtual void abandon() {}

  /// For logs: "wss 203.0.113.7:443 TLSv1.3".
  virtual std::string description() const = 0;
};

using byte_stream_ptr = std::unique_ptr<byte_stream>;

} // namespace warren::stream
