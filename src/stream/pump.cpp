#include "stream/pump.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/context_as.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <vector>

namespace warren::stream {

namespace asio = boost::asio;

namespace {

constexpr std::size_t k_buffer = 256 * 1024;
constexpr std::size_t k_pool_max = 16;
constexpr std::size_t k_pieces = 16; // buffers per recvmsg/sendmsg on the zero-copy paths

/// Read buffers are borrowed only between "readable" and "written", so an
/// idle stream holds none (10,000 idle streams cost no 64 KiB buffers).
class buffer_pool {
 public:
  std::unique_ptr<char[]> take() {
    if (free_.empty())
      return std::make_unique<char[]>(k_buffer);
    auto b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void give(std::unique_ptr<char[]> b) {
    if (free_.size() < k_pool_max)
      free_.push_back(std::move(b));
  }

 private:
  std::vector<std::unique_ptr<char[]>> free_;
};

thread_local buffer_pool pool;

class pump_state;

/// The running pumps of one execution context. A pump owns itself (its
/// pending callbacks merely point at it), so destroying the context while
/// pumps still run (io.stop() on a signal) would leak them and the streams
/// their done handlers own. This service deletes them when the context
/// shuts down, as Asio destroys the pending operations of its I/O objects;
/// their callbacks are then destroyed, never run. Its streams are abandoned
/// first (byte_stream::abandon(): a socket resets), since a transfer cut
/// there must not end with the FIN of a closing socket.
class pump_registry final : public asio::execution_context::service {
 public:
  static inline asio::execution_context::id id;

  explicit pump_registry(asio::execution_context& context) : service(context) {}

  void add(pump_state& p);
  void remove(pump_state& p);

 private:
  void shutdown() override;

  pump_state* first_ = nullptr;
};

/// One pump. Owns itself: deleted once both directions have ended (or by
/// its registry), and until then every pending callback or coroutine of it
/// points here. A direction is either waiting for readiness (a callback, no
/// coroutine) or moving one chunk (a coroutine spawned for that chunk: read,
/// write, then back to waiting).
class pump_state {
 public:
  pump_state(byte_stream& a, byte_stream& b, core::stored_handler<void(pump_stats)> done)
      : streams_{&a, &b}, done_(std::move(done)),
        registry_(asio::use_service<pump_registry>(
            asio::query(a.get_executor(), asio::execution::context_as<asio::execution_context&>))) {
    registry_.add(*this);
  }
  ~pump_state() { registry_.remove(*this); }
  pump_state(const pump_state&) = delete;
  pump_state& operator=(const pump_state&) = delete;

  void start() {
    wait(0);
    wait(1);
  }

 private:
  // Direction d reads streams_[d] and writes streams_[1 - d].
  void wait(int d) {
    streams_[d]->async_wait_readable([this, d](error_code ec) { on_readable(d, ec); });
  }

  /// The fast path: when the chunk can be read and written without waiting
  /// (the usual case for request/response traffic), move it right here, with
  /// no coroutine and no completion posted through the io_context: each of
  /// those is one more trip through Asio's queue (and an epoll_wait) per hop.
  /// Between a mux stream and a socket it moves without a copy in user
  /// space: the stream's received payloads go to sendmsg() in place, and
  /// recvmsg() fills the stream's outgoing frames directly.
  /// Anything else (a partial write, end of stream, an error) goes on in a
  /// coroutine from where the fast path stopped.
  void on_readable(int d, error_code ec) {
    if (ec)
      return spawn_move(d, ec);
    byte_stream& from = *streams_[d];
    byte_stream& to = *streams_[1 - d];

    // A source that holds its bytes in memory (mux stream -> socket).
    std::array<asio::const_buffer, k_pieces> view;
    const std::size_t pieces = from.peek(view, ec);
    if (ec != asio::error::operation_not_supported) {
      if (ec == asio::error::would_block)
        return wait(d); // nothing after all (an empty DATA frame)
      if (ec)
        return spawn_move(d, ec); // end of stream or the stream's error
      if (write_in_place(d, std::span(view.data(), pieces), ec))
        return wait(d);
      // The sink is full: the bytes stay where they are (and the peer's
      // window with them) until it drains.
      if (ec == asio::error::would_block && to.async_wait_writable([this, d](error_code e) { on_readable(d, e); }))
        return;
      return spawn_move(d, ec == asio::error::would_block ? error_code{} : ec);
    }

    // A sink that builds its own frames (socket -> mux stream).
    ec = {};
    std::array<asio::mutable_buffer, k_pieces> space;
    error_code pec;
    const std::size_t slots = to.prepare(k_buffer, space, pec);
    if (!pec) {
      const std::size_t n = from.try_read_some(std::span<const asio::mutable_buffer>(space.data(), slots), ec);
      to.commit(ec ? 0 : n);
      if (!ec) {
        count(d, n);
        return wait(d);
      }
      if (ec == asio::error::would_block)
        return wait(d); // spurious readiness
      return spawn_move(d, ec);
    }
    // It takes nothing now (flow control): the bytes stay in the socket,
    // whose buffer then pushes back on the sender, until it can.
    if (pec == asio::error::would_block) {
      if (!to.async_wait_writable([this, d](error_code e) { on_readable(d, e); }))
        spawn_move(d, {}); // the coroutine reads, and its write waits
      return;
    }
    if (pec != asio::error::operation_not_supported)
      return spawn_move(d, pec); // the sink failed (reset, tunnel gone): end both directions now

    // Neither: through a pool buffer.
    auto buffer = pool.take();
    const std::size_t n = from.try_read_some(asio::buffer(buffer.get(), k_buffer), ec);
    std::size_t written = 0;
    if (!ec) {
      error_code wec;
      written = to.try_write_some(asio::const_buffer(buffer.get(), n), wec);
      count(d, written);
      if (!wec && written == n) {
        pool.give(std::move(buffer));
        return wait(d);
      }
      if (wec && wec != asio::error::would_block)
        ec = wec;
    } else if (ec == asio::error::would_block) {
      ec = {}; // this carrier cannot say, or the readiness was spurious: read in the coroutine
    }
    spawn_move(d, ec, std::move(buffer), ec ? 0 : n, written);
  }

  void spawn_move(int d, error_code ec, std::unique_ptr<char[]> buffer = {}, std::size_t n = 0,
                  std::size_t written = 0) {
    asio::co_spawn(streams_[d]->get_executor(), move_chunk(d, ec, std::move(buffer), n, written), asio::detached);
  }

  /// Writes a stream's buffered bytes to the sink in place; true when all
  /// of them went. Otherwise `ec` says why (would_block: the sink is full).
  bool write_in_place(int d, std::span<const asio::const_buffer> view, error_code& ec) {
    std::size_t total = 0;
    for (const auto& b : view)
      total += b.size();
    const std::size_t w = streams_[1 - d]->try_write_some(view, ec);
    streams_[d]->consume(w);
    count(d, w);
    if (!ec && w < total)
      ec = asio::error::would_block;
    return !ec;
  }

  void count(int d, std::size_t n) { (d == 0 ? stats_.a_to_b : stats_.b_to_a) += n; }

  /// Moves one chunk, or what is left of it: `n` bytes already in `buffer`
  /// of which `written` went out (n == 0: nothing read yet).
  asio::awaitable<void> move_chunk(int d, error_code ec, std::unique_ptr<char[]> buffer, std::size_t n,
                                   std::size_t written) {
    byte_stream& from = *streams_[d];
    byte_stream& to = *streams_[1 - d];
    if (!ec && n == 0) {
      if (!buffer)
        buffer = pool.take();
      n = co_await from.read_some(asio::buffer(buffer.get(), k_buffer), ec);
    }
    if (!ec && n > written) {
      const asio::const_buffer out(buffer.get() + written, n - written);
      error_code wec;
      co_await to.write(std::span(&out, 1), wec);
      if (wec) {
        ec = wec;
      } else {
        count(d, n - written);
      }
    }
    if (buffer)
      pool.give(std::move(buffer));
    if (ec == asio::error::eof) {
      error_code sec;
      co_await to.shutdown(sec);
      ended();
      co_return;
    }
    if (ec) {
      if (!stats_.error)
        stats_.error = ec;
      // Both ends see an abort (TCP: RST), never a FIN: the bytes that did
      // not arrive must not look like a complete transfer.
      from.reset(); // ends the other direction too
      to.reset();
      ended();
      co_return;
    }
    wait(d);
  }

  void ended() {
    if (++ended_ < 2)
      return;
    auto ex = streams_[0]->get_executor();
    asio::post(ex, [done = std::move(done_), stats = stats_]() mutable { std::move(done)(stats); });
    delete this;
  }

  friend class pump_registry;

  std::array<byte_stream*, 2> streams_;
  core::stored_handler<void(pump_stats)> done_;
  pump_stats stats_;
  int ended_ = 0;
  pump_registry& registry_;
  pump_state* prev_ = nullptr; // registry_'s list
  pump_state* next_ = nullptr;
};

void pump_registry::add(pump_state& p) {
  p.next_ = first_;
  if (first_)
    first_->prev_ = &p;
  first_ = &p;
}

void pump_registry::remove(pump_state& p) {
  if (p.prev_)
    p.prev_->next_ = p.next_;
  else
    first_ = p.next_;
  if (p.next_)
    p.next_->prev_ = p.prev_;
}

void pump_registry::shutdown() {
  while (first_) {
    for (auto* s : first_->streams_)
      s->abandon();
    delete first_;
  }
}

} // namespace

void start_pump(byte_stream& a, byte_stream& b, core::stored_handler<void(pump_stats)> done) {
  (new pump_state(a, b, std::move(done)))->start();
}

asio::awaitable<pump_stats> pump(byte_stream& a, byte_stream& b) {
  return asio::async_initiate<decltype(asio::use_awaitable), void(pump_stats)>(
      [&a, &b](auto handler) { start_pump(a, b, std::move(handler)); }, asio::use_awaitable);
}

} // namespace warren::stream
