// mux_stream: one stream or flow of a session, seen as a byte_stream by the
// code above (SOCKS5, forwards, the server's outbound relay). Reads take
// the DATA payloads the session's reader kept (in place, for the pump's
// zero-copy path); writes queue DATA frames for the session's writer within
// the peer's window. See session.hpp for the whole picture.
#include "wire/session.hpp"
#include "wire/session_state.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstring>

namespace warren::wire {

namespace asio = boost::asio;

// ---- mux_stream -------------------------------------------------------------

mux_stream::mux_stream(std::shared_ptr<session> s, std::shared_ptr<stream_state> st)
    : session_(std::move(s)), state_(std::move(st)) {}

mux_stream::~mux_stream() {
  close();
}

asio::any_io_executor mux_stream::get_executor() {
  return session_->ex_;
}
std::uint32_t mux_stream::id() const {
  return state_->id;
}
stream_kind mux_stream::kind() const {
  return state_->kind;
}
std::string mux_stream::description() const {
  return "stream " + std::to_string(state_->id) + " to " + state_->target;
}
std::optional<reset_info> mux_stream::reset_reason() const {
  return state_->reset;
}

namespace {
/// What reading an empty stream reports.
error_code empty_stream_error(const stream_state& st) {
  if (st.reset)
    return error_for(*st.reset);
  if (st.fin_received)
    return asio::error::eof;
  return asio::error::would_block;
}
} // namespace

std::size_t mux_stream::try_read_some(std::span<const asio::mutable_buffer> buffers, error_code& ec) {
  auto& st = *state_;
  if (st.buffered == 0) {
    ec = empty_stream_error(st);
    return 0;
  }
  std::size_t copied = 0;
  for (const auto& buffer : buffers) {
    auto* out = static_cast<std::uint8_t*>(buffer.data());
    std::size_t filled = 0;
    while (filled < buffer.size() && !st.chunks.empty()) {
      auto& chunk = st.chunks.front();
      const std::size_t n = std::min(buffer.size() - filled, chunk.size() - st.front_offset);
      std::memcpy(out + filled, chunk.data() + st.front_offset, n);
      filled += n;
      st.front_offset += n;
      if (st.front_offset == chunk.size()) {
        st.chunks.pop_front();
        st.front_offset = 0;
      }
    }
    copied += filled;
  }
  st.buffered -= copied;
  session_->consumed(st, copied);
  ec = {};
  return copied;
}

std::size_t mux_stream::peek(std::span<asio::const_buffer> out, error_code& ec) {
  auto& st = *state_;
  if (st.buffered == 0) {
    ec = empty_stream_error(st);
    return 0;
  }
  std::size_t pieces = 0;
  std::size_t offset = st.front_offset;
  for (const auto& chunk : st.chunks) {
    if (pieces == out.size())
      break;
    out[pieces++] = asio::const_buffer(chunk.data() + offset, chunk.size() - offset);
    offset = 0;
  }
  ec = {};
  return pieces;
}

void mux_stream::consume(std::size_t n) {
  auto& st = *state_;
  std::size_t taken = 0;
  while (taken < n && !st.chunks.empty()) {
    auto& chunk = st.chunks.front();
    const std::size_t m = std::min(n - taken, chunk.size() - st.front_offset);
    taken += m;
    st.front_offset += m;
    if (st.front_offset == chunk.size()) {
      st.chunks.pop_front();
      st.front_offset = 0;
    }
  }
  st.buffered -= taken;
  session_->consumed(st, taken);
}

asio::awaitable<std::size_t> mux_stream::read_some(asio::mutable_buffer buffer, error_code& ec) {
  auto st = state_;
  for (;;) {
    const std::size_t n = try_read_some(buffer, ec);
    if (ec != asio::error::would_block)
      co_return n;
    co_await st->readable.wait();
  }
}

void mux_stream::async_wait_readable(std::function<void(error_code)> ready) {
  session_->wait_readable(state_, std::move(ready));
}

void session::wait_readable(const std::shared_ptr<stream_state>& st, std::function<void(error_code)> ready,
                            bool posted) {
  if (st->buffered > 0 || st->reset || st->fin_received) {
    if (posted)
      ready({}); // already on a fresh stack: the event's completion was posted
    else
      asio::post(ex_, [ready = std::move(ready)] { ready({}); });
    return;
  }
  // readable is also notified for what read_some does not return (an empty
  // DATA frame): look again when it fires.
  st->readable.async_wait(asio::bind_executor(ex_, [self = shared_from_this(), st, ready = std::move(ready)]() mutable {
    self->wait_readable(st, std::move(ready), true);
  }));
}

namespace {
/// Why a stream can take no bytes now, or nothing.
error_code send_blocked(const stream_state& st, std::size_t queued) {
  if (st.reset)
    return error_for(*st.reset);
  if (st.fin_sent)
    return asio::error::shut_down;
  if (st.send_window <= 0 || queued >= k_data_high_water)
    return asio::error::would_block;
  return {};
}
} // namespace

std::size_t mux_stream::try_write_some(std::span<const asio::const_buffer> buffers, error_code& ec) {
  auto& st = *state_;
  auto& s = *session_;
  ec = send_blocked(st, s.data_q_bytes_);
  if (ec)
    return 0;
  std::size_t total = 0;
  for (const auto& buffer : buffers) {
    const auto* data = static_cast<const std::uint8_t*>(buffer.data());
    std::size_t offset = 0;
    while (offset < buffer.size() && st.send_window > 0) {
      const std::size_t n =
          std::min<std::size_t>({buffer.size() - offset, static_cast<std::size_t>(st.send_window), s.max_payload()});
      auto frame = s.take_buffer();
      frame.reserve(k_header_size + n);
      encode_data_header(frame, st.id, static_cast<std::uint32_t>(n), false);
      frame.insert(frame.end(), data + offset, data + offset + n);
      s.send_data(st, std::move(frame));
      st.send_window -= static_cast<std::int64_t>(n);
      offset += n;
    }
    total += offset;
    if (offset < buffer.size())
      break;
  }
  return total;
}

bool mux_stream::async_wait_writable(std::function<void(error_code)> ready) {
  session_->wait_writable(state_, std::move(ready));
  return true;
}

void session::wait_writable(const std::shared_ptr<stream_state>& st, std::function<void(error_code)> ready,
                            bool posted) {
  if (send_blocked(*st, data_q_bytes_) != asio::error::would_block) {
    // Writable, or the next write says why not.
    if (posted)
      ready({});
    else
      asio::post(ex_, [ready = std::move(ready)] { ready({}); });
    return;
  }
  // No window: the peer's WINDOW frame wakes us; too much queued: the writer does.
  auto& event = st->send_window <= 0 ? st->writable : events_->drained;
  event.async_wait(asio::bind_executor(ex_, [self = shared_from_this(), st, ready = std::move(ready)]() mutable {
    self->wait_writable(st, std::move(ready), true);
  }));
}

std::size_t mux_stream::prepare(std::size_t max, std::span<asio::mutable_buffer> out, error_code& ec) {
  auto& st = *state_;
  auto& s = *session_;
  ec = send_blocked(st, s.data_q_bytes_);
  if (ec)
    return 0;
  assert(s.prepared_.empty() && "prepare() twice without commit()");
  std::size_t allowed = std::min<std::size_t>(max, static_cast<std::size_t>(st.send_window));
  std::size_t pieces = 0;
  while (allowed > 0 && pieces < out.size()) {
    const std::size_t n = std::min<std::size_t>({allowed, s.max_payload(), k_full_frame - k_header_size});
    auto frame = s.take_frame();
    out[pieces++] = asio::mutable_buffer(frame.data() + k_header_size, n);
    s.prepared_.emplace_back(std::move(frame), n); // moving keeps the bytes where they are
    allowed -= n;
  }
  return pieces;
}

void mux_stream::commit(std::size_t n) {
  auto& st = *state_;
  auto& s = *session_;
  for (auto& [frame, offered] : s.prepared_) {
    const std::size_t m = std::min(n, offered);
    n -= m;
    st.send_window -= static_cast<std::int64_t>(m);
    if (2 * m < frame.size()) {
      // A short payload (request/response traffic) is copied into a frame
      // of its own size: cheaper than shrinking this one, which would be
      // zeroed again up to full size when reused.
      if (m > 0) {
        auto small = s.take_buffer();
        small.reserve(k_header_size + m);
        encode_data_header(small, st.id, static_cast<std::uint32_t>(m), false);
        small.insert(small.end(), frame.data() + k_header_size, frame.data() + k_header_size + m);
        s.send_data(st, std::move(small), false);
      }
      s.recycle(std::move(frame));
      continue;
    }
    frame.resize(k_header_size + m);
    write_data_header(std::span(frame.data(), k_header_size).first<k_header_size>(), st.id,
                      static_cast<std::uint32_t>(m), false);
    s.send_data(st, std::move(frame), false);
  }
  s.prepared_.clear();
  // An idle writer sends what was committed right here, inside the caller's
  // readiness callback, instead of one trip through the io_context's queue
  // (and one reactor poll) later. A busy one takes it after its write.
  s.wake_writer_now();
}

asio::awaitable<void> mux_stream::write(std::span<const asio::const_buffer> buffers, error_code& ec) {
  auto st = state_;
  auto s = session_;
  ec = {};
  for (const auto& b : buffers) {
    std::size_t offset = 0;
    while (offset < b.size()) {
      offset += try_write_some(b + offset, ec);
      if (ec == asio::error::would_block) {
        if (st->send_window <= 0)
          co_await st->writable.wait();
        else
          co_await s->events_->drained.wait();
        ec = {};
        continue;
      }
      if (ec)
        co_return;
    }
  }
}

asio::awaitable<void> mux_stream::shutdown(error_code& ec) {
  ec = {};
  auto st = state_;
  if (st->reset) {
    ec = error_for(*st->reset);
    co_return;
  }
  if (!st->fin_sent) {
    st->fin_sent = true;
    auto frame = session_->take_buffer();
    encode_data_header(frame, st->id, 0, true);
    session_->send_data(*st, std::move(frame));
    session_->finish_stream(st);
  }
  co_return;
}

void mux_stream::close() {
  if (!state_->removed && !state_->reset)
    session_->fail_stream(state_, {reset_code::closed, "closed"}, true);
}

asio::awaitable<std::optional<reset_info>> mux_stream::wait_open() {
  auto st = state_;
  // A stream that finished both ways before OPEN_OK was evidently open.
  while (st->state == stream_state::phase::opening && !st->reset && !st->removed)
    co_await st->opened.wait();
  co_return st->reset;
}

asio::awaitable<void> mux_stream::wait_reset() {
  auto st = state_;
  while (!st->reset)
    co_await st->opened.wait(); // every reset wakes all of a stream's events
}

void mux_stream::accept() {
  if (state_->reset || state_->state != stream_state::phase::opening)
    return;
  state_->state = stream_state::phase::open;
  auto frame = session_->take_buffer();
  encode_open_ok(frame, state_->id);
  session_->send_reply(std::move(frame)); // answers the peer's OPEN
}

void mux_stream::refuse(reset_code code, std::string_view reason) {
  session_->fail_stream(state_, {code, std::string(reason)}, true);
}

bool mux_stream::send_datagram(std::span<const std::uint8_t> datagram) {
  auto& s = *session_;
  if (state_->reset || s.closed_ || datagram.size() > s.max_payload() ||
      s.data_q_bytes_ + datagram.size() > s.config_.datagram_send_limit) {
    ++s.stats_.datagrams_dropped;
    return false;
  }
  auto frame = s.take_buffer();
  encode_datagram_header(frame, state_->id, static_cast<std::uint32_t>(datagram.size()));
  frame.insert(frame.end(), datagram.begin(), datagram.end());
  s.send_data(*state_, std::move(frame));
  return true;
}

asio::awaitable<std::optional<std::vector<std::uint8_t>>> mux_stream::receive_datagram() {
  auto st = state_;
  while (st->datagrams.empty() && !st->reset && !st->removed)
    co_await st->readable.wait();
  if (st->datagrams.empty())
    co_return std::nullopt;
  auto d = std::move(st->datagrams.front());
  st->datagrams.pop_front();
  st->datagram_bytes -= k_datagram_overhead + d.size();
  session_->datagram_bytes_ -= k_datagram_overhead + d.size();
  co_return d;
}

} // namespace warren::wire
