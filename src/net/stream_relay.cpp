#include "net/stream_relay.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <vector>

namespace warren::net {

namespace asio = boost::asio;
using asio::posix::stream_descriptor;

namespace {

// Pipe size asked of F_SETPIPE_SZ. 256 KiB keeps an unprivileged user with
// many connections under fs.pipe-user-pages-soft for longer; past it the
// kernel hands out small pipes, and below k_min_pipe we copy instead.
constexpr std::size_t k_pipe_size = 256 * 1024;
constexpr std::size_t k_min_pipe = 64 * 1024;
constexpr std::size_t k_copy_buffer = 1 << 16;

error_code last_error() {
  return error_code(errno, boost::system::system_category());
}

class relay final : public relay_handle, public std::enable_shared_from_this<relay> {
 public:
  relay(asio::any_io_executor ex, int fd_a, int fd_b, std::function<void(relay_stats, error_code)> done)
      : ex_(ex), a_(ex, fd_a), b_(ex, fd_b), done_(std::move(done)) {}

  ~relay() {
    if (!finished_) {
      // Abandoned before both directions ended (SIGTERM: the io_context
      // is destroyed with this relay's waits pending): the peers must see
      // an abort, not the FIN a plain close sends, or a cut transfer looks
      // complete.
      const linger lg{1, 0};
      if (a_.is_open())
        ::setsockopt(a_.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      if (b_.is_open())
        ::setsockopt(b_.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    for (auto* d : {&ab_, &ba_})
      for (int fd : d->pipe)
        if (fd >= 0)
          ::close(fd);
  }

  relay_stats progress() const override {
    return finished_ ? stats_ : relay_stats{ab_.bytes, ba_.bytes, stats_.spliced};
  }

  void cut() override {
    if (finished_)
      return;
    const linger lg{1, 0};
    ::setsockopt(a_.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ::setsockopt(b_.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    failed_ = true;
    error_ = asio::error::operation_aborted;
    maybe_finish();
  }

  void start(relay_mode mode) {
    error_code ec;
    a_.non_blocking(true, ec);
    b_.non_blocking(true, ec);
    stats_.spliced = mode == relay_mode::automatic && make_pipe(ab_) && make_pipe(ba_);
    if (!stats_.spliced) {
      ab_.buffer.resize(k_copy_buffer);
      ba_.buffer.resize(k_copy_buffer);
    }
    pump(ab_, a_, b_);
    pump(ba_, b_, a_);
  }

 private:
  struct direction {
    std::array<int, 2> pipe{-1, -1};
    std::size_t capacity = 0; // pipe capacity
    std::size_t pending = 0;  // bytes in the pipe (splice) or buffer (copy) not yet written
    std::size_t offset = 0;   // copy mode: write offset in buffer
    std::vector<char> buffer; // copy mode only
    bool eof = false;
    bool done = false;
    std::uint64_t bytes = 0;
  };

  static bool make_pipe(direction& d) {
    if (::pipe2(d.pipe.data(), O_NONBLOCK | O_CLOEXEC) != 0)
      return false;
    ::fcntl(d.pipe[1], F_SETPIPE_SZ, static_cast<int>(k_pipe_size)); // may fail past the per-user limit
    const int cap = ::fcntl(d.pipe[1], F_GETPIPE_SZ);
    if (cap < static_cast<int>(k_min_pipe)) {
      ::close(d.pipe[0]);
      ::close(d.pipe[1]);
      d.pipe = {-1, -1};
      return false; // a tiny pipe splices slower than a plain copy
    }
    d.capacity = static_cast<std::size_t>(cap);
    return true;
  }

  // Moves as much as possible from `from` to `to` without blocking, then
  // waits for whichever side is not ready.
  void pump(direction& d, stream_descriptor& from, stream_descriptor& to) {
    while (!failed_ && !d.done) {
      if (d.pending > 0) {
        const ssize_t n = stats_.spliced
                              ? ::splice(d.pipe[0], nullptr, to.native_handle(), nullptr, d.pending,
                                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                              : ::send(to.native_handle(), d.buffer.data() + d.offset, d.pending, MSG_NOSIGNAL);
        if (n > 0) {
          d.pending -= static_cast<std::size_t>(n);
          d.offset += static_cast<std::size_t>(n);
          d.bytes += static_cast<std::uint64_t>(n);
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          if (errno == EINTR)
            continue;
          to.async_wait(stream_descriptor::wait_write, [self = shared_from_this(), &d, &from, &to](error_code ec) {
            if (ec)
              return self->fail(ec);
            self->pump(d, from, to);
          });
          return;
        }
        return fail(last_error());
      }
      if (d.eof) {
        ::shutdown(to.native_handle(), SHUT_WR); // carry the half-close through
        d.done = true;
        break;
      }
      d.offset = 0;
      const ssize_t n = stats_.spliced ? ::splice(from.native_handle(), nullptr, d.pipe[1], nullptr, d.capacity,
                                                  SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                                       : ::recv(from.native_handle(), d.buffer.data(), d.buffer.size(), 0);
      if (n > 0) {
        d.pending = static_cast<std::size_t>(n);
        continue;
      }
      if (n == 0) {
        d.eof = true;
        continue;
      }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) {
        from.async_wait(stream_descriptor::wait_read, [self = shared_from_this(), &d, &from, &to](error_code ec) {
          if (ec)
            return self->fail(ec);
          self->pump(d, from, to);
        });
        return;
      }
      return fail(last_error());
    }
    maybe_finish();
  }

  void fail(error_code ec) {
    if (failed_ || finished_)
      return;
    failed_ = true;
    error_ = ec;
    if (ec != asio::error::operation_aborted) {
      // Propagate the failure as a reset to both peers.
      const linger lg{1, 0};
      ::setsockopt(a_.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      ::setsockopt(b_.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    maybe_finish();
  }

  void maybe_finish() {
    if (finished_ || (!failed_ && !(ab_.done && ba_.done)))
      return;
    finished_ = true;
    error_code ignored;
    a_.close(ignored); // cancels the other direction's wait, if any
    b_.close(ignored);
    stats_.a_to_b = ab_.bytes;
    stats_.b_to_a = ba_.bytes;
    asio::post(ex_, [self = shared_from_this()] { self->done_(self->stats_, self->error_); });
  }

  asio::any_io_executor ex_;
  stream_descriptor a_;
  stream_descriptor b_;
  std::function<void(relay_stats, error_code)> done_;
  direction ab_;
  direction ba_;
  relay_stats stats_;
  error_code error_;
  bool failed_ = false;
  bool finished_ = false;
};

} // namespace

std::shared_ptr<relay_handle> start_relay(asio::any_io_executor ex, int fd_a, int fd_b,
                                          std::function<void(relay_stats, error_code)> done, relay_mode mode) {
  auto r = std::make_shared<relay>(ex, fd_a, fd_b, std::move(done));
  r->start(mode);
  return r;
}

} // namespace warren::net
