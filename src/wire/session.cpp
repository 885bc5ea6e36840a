#include "wire/session.hpp"
#include "wire/session_state.hpp"

#include "core/clock.hpp"
#include "core/text.hpp"
#include "stream/event.hpp"
#include "wire/flow.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <cassert>
#include <cstring>
#include <limits>
#include <list>

namespace warren::wire {

namespace asio = boost::asio;

namespace {
constexpr std::size_t k_read_buffer = 512 * 1024;
constexpr std::size_t k_write_batch = 256 * 1024;
constexpr std::size_t k_pool_max = 64;
constexpr std::size_t k_frame_pool_max = 16;
// Replies (PONG; OPEN_OK and RESET for a stream the peer opened) queued
// while the transport write is blocked, beyond which the reader waits: ~100
// bytes of memory each. A peer that reads what it is sent never gets near it.
constexpr std::size_t k_max_queued_replies = 4096;
// A reader's turn: after this many frames or bytes decoded it posts itself
// behind the other handlers. 256 small frames cost well under a millisecond
// (an OPEN, the costliest, about 50 us with its connect); 256 KiB is four
// full DATA frames, so bulk transfer pays one post per 256 KiB.
constexpr std::size_t k_frames_per_turn = 256;
constexpr std::size_t k_bytes_per_turn = 256 * 1024;

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(steady_clock::now().time_since_epoch()).count());
}
} // namespace

// ---- session ---------------------------------------------------------------

std::shared_ptr<session> session::create(stream::byte_stream_ptr transport, session_config config) {
  return std::shared_ptr<session>(new session(std::move(transport), std::move(config)));
}

session::session(stream::byte_stream_ptr transport, session_config config)
    : ex_(transport->get_executor()), transport_(std::move(transport)), config_(std::move(config)),
      next_id_(config_.is_client ? 1 : 2), budget_(config_.budget ? config_.budget : std::make_shared<peer_budget>()),
      peer_initial_window_(k_min_initial_window), open_rate_(config_.max_opens_per_second, config_.open_burst),
      opens_(budget_->open_rate ? &*budget_->open_rate : &open_rate_), events_(std::make_unique<session_events>(ex_)) {}

session::~session() {
  // A shared budget outlives us: give back what close() has not.
  budget_->streams -= streams_.size();
  budget_->windows -= granted_windows_;
}

void session::start() {
  hello h;
  h.initial_window = config_.initial_window;
  h.max_payload = k_default_max_payload;
  h.max_streams = config_.max_streams;
  h.ping_interval_ms = static_cast<std::uint32_t>(config_.ping_interval.count());
  auto frame = take_buffer();
  encode_hello(frame, h);
  send_control(std::move(frame));
  if (config_.is_client) {
    // An early ping measures the round trip for window tuning.
    ping_payload p{};
    const auto t = now_ns();
    std::memcpy(p.data(), &t, sizeof t);
    auto ping = take_buffer();
    encode_ping(ping, p, false);
    send_control(std::move(ping));
  }
  events_->live.emplace(config_.ping_interval, steady_clock::now());
  auto self = shared_from_this();
  asio::co_spawn(
      ex_, [self]() { return self->reader(); }, asio::detached);
  asio::co_spawn(
      ex_, [self]() { return self->writer(); }, asio::detached);
  asio::co_spawn(
      ex_, [self]() { return self->pinger(); }, asio::detached);
}

std::unique_ptr<mux_stream> session::open(stream_kind kind, const target_address& target) {
  if (closed_ || draining() || streams_.size() >= peer_max_streams_)
    return nullptr;
  auto st = std::make_shared<stream_state>(config_.initial_window, config_.max_window);
  st->id = next_id_;
  next_id_ += 2;
  st->kind = kind;
  st->target = target.to_string();
  st->send_window = peer_initial_window_;
  st->peer_may_send = config_.initial_window;
  add_stream(st);
  auto frame = take_buffer();
  encode_open(frame, st->id, kind, target);
  send_control(std::move(frame));
  return std::make_unique<mux_stream>(shared_from_this(), st);
}

void session::goaway(reset_code code, std::string_view reason) {
  if (closed_ || draining_)
    return;
  draining_ = true;
  auto frame = take_buffer();
  encode_goaway(frame, last_peer_id_, code, reason);
  send_control(std::move(frame));
}

void session::close(std::string reason) {
  if (closed_)
    return;
  closed_ = true;
  close_reason_ = reason;
  spdlog::debug("{}: closed: {}", config_.label, reason);
  transport_->close();
  for (auto& [id, st] : streams_) {
    st->removed = true;
    drop_datagrams(*st);
    if (!st->reset)
      st->reset = reset_info{reset_code::internal_error, "tunnel closed: " + reason};
    st->state = stream_state::phase::failed;
    st->wake_all();
  }
  budget_->streams -= streams_.size();
  budget_->windows -= granted_windows_;
  streams_.clear();
  granted_windows_ = 0;
  control_q_.clear();
  data_q_.clear();
  data_q_bytes_ = 0;
  data_frames_written_ = data_frames_queued_;
  events_->writer_wake.notify();
  events_->drained.notify();
  events_->ping_timer.cancel();
  events_->open_timer.cancel();
  open_handler_ = nullptr;
  goaway_handler_ = nullptr;
  if (auto h = std::move(closed_handler_)) {
    closed_handler_ = nullptr;
    asio::post(ex_, [h = std::move(h), reason] { h(reason); });
  }
}

void session::shutdown(std::string reason) {
  if (closed_ || !close_after_flush_.empty())
    return;
  draining_ = true;
  close_after_flush_ = std::move(reason);
  graceful_ = true;
  events_->writer_wake.notify();
  if (control_q_.empty() && data_q_.empty()) {
    // Nothing to flush: put a PING out so the writer runs the close path.
    ping_payload p{};
    auto frame = take_buffer();
    encode_ping(frame, p, false);
    send_control(std::move(frame));
  }
}

std::vector<std::uint8_t> session::take_buffer() {
  if (pool_.empty())
    return {};
  auto b = std::move(pool_.back());
  pool_.pop_back();
  b.clear();
  return b;
}

std::vector<std::uint8_t> session::take_frame() {
  std::vector<std::uint8_t> b;
  if (!frame_pool_.empty()) {
    b = std::move(frame_pool_.back());
    frame_pool_.pop_back();
  } else {
    b.resize(k_full_frame);
  }
  return b;
}

void session::recycle(std::vector<std::uint8_t> frame) {
  if (frame.capacity() >= k_full_frame) {
    if (frame_pool_.size() < k_frame_pool_max) {
      // Growing a vector zeroes the new part: cheap here, because commit()
      // sends a frame shrunk by at most half (a shorter payload is copied).
      frame.resize(k_full_frame);
      frame_pool_.push_back(std::move(frame));
    }
  } else if (pool_.size() < k_pool_max) {
    pool_.push_back(std::move(frame));
  }
}

void session::send_control(std::vector<std::uint8_t> frame) {
  if (closed_ || failed_)
    return;
  control_q_.push_back(std::move(frame));
  events_->writer_wake.notify();
}

void session::send_reply(std::vector<std::uint8_t> frame) {
  if (closed_ || failed_)
    return;
  ++replies_queued_;
  send_control(std::move(frame));
}

void session::send_data(stream_state& st, std::vector<std::uint8_t> frame, bool wake) {
  if (closed_ || failed_)
    return;
  st.last_queued_frame = ++data_frames_queued_;
  data_q_bytes_ += frame.size();
  data_q_.push_back(std::move(frame));
  if (wake)
    events_->writer_wake.notify();
}

void session::wake_writer_now() {
  std::vector<core::stored_handler<void()>> writer;
  events_->writer_wake.notify_into(writer);
  for (auto& h : writer)
    std::move(h)();
}

void session::send_reset(std::uint32_t id, reset_code code, std::string_view reason, bool reply) {
  auto frame = take_buffer();
  encode_reset(frame, id, code, reason);
  if (reply)
    send_reply(std::move(frame));
  else
    send_control(std::move(frame));
}

void session::add_stream(const std::shared_ptr<stream_state>& st) {
  streams_[st->id] = st;
  ++budget_->streams;
  if (st->kind == stream_kind::tcp) { // UDP flows have no window (their datagrams are bounded apart)
    granted_windows_ += st->tuner.window();
    budget_->windows += st->tuner.window();
  }
  ++stats_.streams_opened;
}

void session::remove_stream(const std::shared_ptr<stream_state>& ref) {
  const auto st = ref; // `ref` may be the map's own entry, which erase() destroys
  st->removed = true;
  if (streams_.erase(st->id) != 0) {
    --budget_->streams;
    if (st->kind == stream_kind::tcp) {
      granted_windows_ -= st->tuner.window();
      budget_->windows -= st->tuner.window();
    }
  }
  drop_datagrams(*st);
}

void session::drop_datagrams(stream_state& st) {
  datagram_bytes_ -= st.datagram_bytes;
  st.datagram_bytes = 0;
  st.datagrams.clear(); // a flow that ended delivers nothing more
}

void session::finish_stream(const std::shared_ptr<stream_state>& st) {
  if (!st->removed && st->fin_sent && st->fin_received) {
    remove_stream(st);
    st->wake_all(); // wait_open() and receive_datagram() end with the stream, not only with a reset
  }
}

void session::fail_stream(const std::shared_ptr<stream_state>& ref, reset_info why, bool send) {
  const auto st = ref; // keeps the state alive across remove_stream()
  if (st->reset || st->removed) {
    st->wake_all();
    return;
  }
  if (send && st->last_queued_frame > data_frames_written_) {
    // Frames of this stream still wait for the writer: the RESET goes behind
    // them, so that what the stream wrote before it ended is delivered, as a
    // TCP peer's data arrives before its RST. (Not counted as a reply: the
    // stream limit bounds these, one per stream.)
    auto frame = take_buffer();
    encode_reset(frame, st->id, why.code, why.reason);
    send_data(*st, std::move(frame));
  } else if (send) {
    send_reset(st->id, why.code, why.reason, peer_opened(st->id));
  }
  st->reset = std::move(why);
  st->state = stream_state::phase::failed;
  remove_stream(st);
  st->wake_all();
}

void session::consumed(stream_state& st, std::size_t n) {
  if (st.fin_received || st.removed || closed_)
    return;
  const auto srtt = std::chrono::duration_cast<duration>(stats_.srtt);
  const std::uint32_t before = st.tuner.window();
  const bool may_grow = budget_->windows + before <= config_.max_buffered;
  if (auto inc = st.tuner.on_consumed(static_cast<std::uint32_t>(n), steady_clock::now(), srtt, may_grow)) {
    granted_windows_ += st.tuner.window() - before;
    budget_->windows += st.tuner.window() - before;
    st.peer_may_send += *inc;
    auto frame = take_buffer();
    encode_window(frame, st.id, *inc);
    send_control(std::move(frame));
  }
}

void session::protocol_error(reset_code code, const std::string& message) {
  spdlog::warn("{}: protocol error from peer: {}", config_.label, message);
  auto frame = take_buffer();
  encode_goaway(frame, last_peer_id_, code, message);
  // The GOAWAY is the last frame written; the writer closes after it.
  control_q_.clear();
  data_q_.clear();
  data_q_bytes_ = 0;
  data_frames_written_ = data_frames_queued_;
  control_q_.push_back(std::move(frame));
  failed_ = true; // nothing more is queued: whatever the streams write now is lost with the session
  draining_ = true;
  close_after_flush_ = "protocol error: " + message;
  events_->writer_wake.notify();
}

asio::awaitable<void> session::writer() {
  auto self = shared_from_this();
  std::vector<std::vector<std::uint8_t>> batch;
  std::vector<asio::const_buffer> bufs;
  while (!closed_) {
    if (control_q_.empty() && data_q_.empty()) {
      co_await events_->writer_wake.wait();
      continue;
    }
    std::size_t bytes = 0;
    while (!control_q_.empty()) {
      bytes += control_q_.front().size();
      batch.push_back(std::move(control_q_.front()));
      control_q_.pop_front();
    }
    replies_queued_ = 0;
    while (!data_q_.empty() && bytes < k_write_batch) {
      bytes += data_q_.front().size();
      data_q_bytes_ -= data_q_.front().size();
      batch.push_back(std::move(data_q_.front()));
      data_q_.pop_front();
      ++data_frames_written_;
    }
    if (data_q_bytes_ < k_data_high_water || reader_paused_)
      events_->drained.notify();
    bufs.clear();
    for (auto& f : batch)
      bufs.emplace_back(f.data(), f.size());
    error_code ec;
    co_await transport_->write(bufs, ec);
    if (closed_)
      break;
    if (ec) {
      close("write to peer failed: " + ec.message());
      break;
    }
    stats_.bytes_out += bytes;
    if (!close_after_flush_.empty() && control_q_.empty() && (!graceful_ || data_q_.empty())) {
      if (graceful_) {
        // Polite end of the transport, bounded: the peer may be gone.
        asio::steady_timer limit(ex_, std::chrono::seconds(1));
        limit.async_wait([self](error_code e) {
          if (!e)
            self->transport_->close();
        });
        error_code sec;
        co_await transport_->shutdown(sec);
        limit.cancel();
      }
      close(close_after_flush_);
      break;
    }
    for (auto& f : batch)
      if (f.capacity() <= 2 * k_default_max_payload)
        recycle(std::move(f));
    batch.clear();
  }
}

void session::run_woken() {
  auto run = std::move(woken_);
  woken_.clear();
  for (auto& h : run)
    std::move(h)();
}

asio::awaitable<void> session::reader() {
  auto self = shared_from_this();
  std::vector<std::uint8_t> buf(k_read_buffer);
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t turn_frames = 0; // decoded since the reader last let others run
  std::size_t turn_bytes = 0;
  std::optional<time_point> open_due; // an OPEN waits in buf for its token
  while (!closed_) {
    if (replies_queued_ > k_max_queued_replies) {
      // The peer asks for replies faster than it reads them: go on once
      // the writer has taken them (the ping timeout ends a peer that never does).
      reader_paused_ = true;
      while (!closed_ && replies_queued_ > 0)
        co_await events_->drained.wait();
      reader_paused_ = false;
      turn_frames = turn_bytes = 0;
      continue;
    }
    if (open_due) {
      // The peer opens streams faster than its rate: nothing more is read
      // or handled until the OPEN in front may go (its socket fills, and
      // its sending stalls). Waiting lets the other sessions run too.
      ++stats_.open_pauses;
      events_->open_timer.expires_at(*std::exchange(open_due, std::nullopt));
      co_await events_->open_timer.async_wait(asio::as_tuple(asio::use_awaitable));
      // We chose not to read: the peer is not silent, its frames wait in
      // buf. Without this a client paced for longer than the ping timeout
      // (1,000 opens at once under --max-opens-per-second-per-client 10)
      // was cut off as dead while it answered every PING we sent.
      events_->live->on_receive(steady_clock::now());
      turn_frames = turn_bytes = 0;
      continue;
    }
    // The frames in the buffer first: a pause may have left some.
    while (!closed_ && begin < end && replies_queued_ <= k_max_queued_replies && turn_frames < k_frames_per_turn &&
           turn_bytes < k_bytes_per_turn) {
      auto result = decode(std::span(buf.data() + begin, end - begin), k_default_max_payload);
      if (std::holds_alternative<need_more>(result))
        break;
      if (auto* err = std::get_if<decode_error>(&result)) {
        protocol_error(err->code, err->message);
        run_woken();
        co_return;
      }
      const auto& f = std::get<decoded_frame>(result);
      if (f.header.type == frame_type::open && hello_received_ && !opens_->try_take(steady_clock::now())) {
        open_due = opens_->ready_at(steady_clock::now()); // the OPEN stays in buf until then
        break;
      }
      if (!on_frame(f)) {
        run_woken();
        co_return;
      }
      begin += f.consumed;
      ++turn_frames;
      turn_bytes += f.consumed;
    }
    if (closed_ || replies_queued_ > k_max_queued_replies || open_due) {
      run_woken();
      continue;
    }
    if (!woken_.empty()) {
      // The streams these frames made readable go first (a pump writing
      // to its socket): on request/response traffic the reply leaves
      // before the next read is even started.
      run_woken();
      continue;
    }
    if (turn_frames >= k_frames_per_turn || turn_bytes >= k_bytes_per_turn) {
      // Fairness: the other sessions (and the accept loop, and handshakes)
      // get their turn before we decode more. A read that completes at once
      // (TLS or WebSocket data already buffered) does not count as a turn.
      co_await asio::post(ex_, asio::use_awaitable);
      turn_frames = turn_bytes = 0;
      continue;
    }
    if (begin == end)
      begin = end = 0;
    if (buf.size() - end < k_header_size + k_default_max_payload) {
      std::memmove(buf.data(), buf.data() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
    error_code ec;
    const std::size_t n = co_await transport_->read_some(asio::buffer(buf.data() + end, buf.size() - end), ec);
    if (closed_)
      break;
    if (ec) {
      close(ec == asio::error::eof ? "the peer closed the connection" : "read from peer failed: " + ec.message());
      break;
    }
    end += n;
    stats_.bytes_in += n;
    events_->live->on_receive(steady_clock::now());
    if (!hello_received_ && begin < end && buf[begin] != static_cast<std::uint8_t>(frame_type::hello)) {
      // Judge the peer by its first byte, before any length check: an HTTP
      // or SSH banner read as a header would otherwise look like a huge frame.
      const auto shown = std::min<std::size_t>(end - begin, 40);
      protocol_error(reset_code::protocol_error,
                     "the first frame was not HELLO; the peer sent " +
                         quote_untrusted(std::string_view(reinterpret_cast<const char*>(buf.data() + begin), shown)) +
                         " (not a warren peer?)");
      co_return;
    }
  }
}

asio::awaitable<void> session::pinger() {
  auto self = shared_from_this();
  auto& timer = events_->ping_timer;
  while (!closed_) {
    timer.expires_after(events_->live->tick());
    [[maybe_unused]] auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (closed_)
      break;
    const auto now = steady_clock::now();
    switch (events_->live->on_tick(now)) {
    case liveness::action::dead:
      if (reader_paused_)
        close("the peer read nothing we sent for " + std::to_string(to_ms(events_->live->silent_for(now)) / 1000) +
              " s while " + std::to_string(replies_queued_) +
              " replies to its frames waited (a flood of PINGs or OPENs?); ping timeout");
      else
        close("no data from the peer for " + std::to_string(to_ms(events_->live->silent_for(now)) / 1000) +
              " s (ping timeout)");
      co_return;
    case liveness::action::send_ping: {
      ping_payload p{};
      const auto t = now_ns();
      std::memcpy(p.data(), &t, sizeof t);
      auto frame = take_buffer();
      encode_ping(frame, p, false);
      send_control(std::move(frame));
      break;
    }
    case liveness::action::none:
      break;
    }
  }
}

bool session::on_frame(const decoded_frame& f) {
  const auto& h = f.header;
  if (!hello_received_) {
    if (h.type != frame_type::hello) {
      protocol_error(reset_code::protocol_error, "the first frame was " + std::string(frame_type_name(h.type)) +
                                                     ", not HELLO (not a warren peer?)");
      return false;
    }
    on_hello(f.payload);
    return !closed_ && !failed_; // not draining_: goaway() may have come first
  }
  switch (h.type) {
  case frame_type::hello:
    protocol_error(reset_code::protocol_error, "a second HELLO");
    return false;
  case frame_type::open:
    on_open(h, f.payload);
    break;
  case frame_type::open_ok:
    if (auto it = streams_.find(h.stream); it != streams_.end() && it->second->state == stream_state::phase::opening) {
      it->second->state = stream_state::phase::open;
      it->second->opened.notify();
    }
    break;
  case frame_type::data:
    on_data(h, f.payload);
    break;
  case frame_type::window:
    on_window(h, f.payload);
    break;
  case frame_type::reset:
    on_reset(h, f.payload);
    break;
  case frame_type::datagram:
    on_datagram(h, f.payload);
    break;
  case frame_type::ping:
    on_ping(h, f.payload);
    break;
  case frame_type::goaway:
    on_goaway(f.payload);
    break;
  default:
    break; // unknown frame types are skipped (forward compatibility)
  }
  return !closed_ && !failed_; // after a protocol error, the peer's frames are not read
}

void session::on_hello(std::span<const std::uint8_t> payload) {
  auto h = parse_hello(payload);
  if (!h) {
    protocol_error(reset_code::protocol_error, h.error());
    return;
  }
  if (h->version != k_version) {
    protocol_error(reset_code::protocol_error, "unsupported protocol version " + std::to_string(h->version));
    return;
  }
  hello_received_ = true;
  const std::uint32_t initial = h->initial_window.value_or(k_default_initial_window);
  // Streams opened before HELLO used the minimum window; grant the difference.
  for (auto& [id, st] : streams_) {
    st->send_window += static_cast<std::int64_t>(initial) - peer_initial_window_;
    st->writable.notify();
  }
  peer_initial_window_ = initial;
  // We send frames no larger than the default, which every peer accepts.
  peer_max_payload_ = k_default_max_payload;
  peer_max_streams_ = h->max_streams.value_or(k_default_max_streams);
}

void session::on_open(const frame_header& h, std::span<const std::uint8_t> payload) {
  const bool peer_is_client = !config_.is_client;
  if (!peer_is_client) {
    send_reset(h.stream, reset_code::refused, "this client accepts no streams", true);
    return;
  }
  if (h.stream % 2 == 0 || h.stream <= last_peer_id_) {
    protocol_error(reset_code::protocol_error,
                   "OPEN with stream id " + std::to_string(h.stream) + " (must be odd and increasing)");
    return;
  }
  last_peer_id_ = h.stream;
  if (draining_) {
    send_reset(h.stream, reset_code::refused, "the server is shutting down", true);
    return;
  }
  const std::string scope = budget_->scope.empty() ? "" : ", " + budget_->scope;
  if (budget_->streams >= config_.max_streams) {
    send_reset(h.stream, reset_code::limit_reached,
               "too many open streams (limit " + std::to_string(config_.max_streams) + scope + ")", true);
    return;
  }
  auto request = parse_open(payload);
  if (!request) {
    send_reset(h.stream, reset_code::protocol_error, request.error(), true);
    return;
  }
  if (request->kind == stream_kind::tcp && budget_->windows + config_.initial_window > config_.max_buffered) {
    // Each stream may be sent a window's worth before anyone reads it:
    // the windows granted are what the peer can make us buffer.
    send_reset(h.stream, reset_code::limit_reached,
               "buffer limit reached: the windows of the open streams take " + std::to_string(budget_->windows >> 10) +
                   " of " + std::to_string(config_.max_buffered >> 10) + " KiB" + scope,
               true);
    return;
  }
  if (!open_handler_) {
    send_reset(h.stream, reset_code::refused, "no handler for new streams", true);
    return;
  }
  auto st = std::make_shared<stream_state>(config_.initial_window, config_.max_window);
  st->id = h.stream;
  st->kind = request->kind;
  st->target = request->target.to_string();
  st->send_window = peer_initial_window_;
  st->peer_may_send = config_.initial_window;
  add_stream(st);
  // Called through a copy: a handler may close the session, which drops
  // open_handler_ (and would destroy the handler while it runs).
  const auto handler = open_handler_;
  handler(std::make_unique<mux_stream>(shared_from_this(), st), std::move(request).value());
}

void session::on_data(const frame_header& h, std::span<const std::uint8_t> payload) {
  auto it = streams_.find(h.stream);
  if (it == streams_.end())
    return; // late data for a stream we reset: dropped
  auto st = it->second;
  if (st->fin_received) {
    fail_stream(st, {reset_code::protocol_error, "DATA after FIN"}, true);
    return;
  }
  if (payload.size() > st->peer_may_send) {
    fail_stream(st,
                {reset_code::flow_control_error, "the peer sent " + std::to_string(payload.size()) +
                                                     " bytes beyond its window of " +
                                                     std::to_string(st->peer_may_send)},
                true);
    return;
  }
  st->peer_may_send -= payload.size();
  if (!payload.empty()) {
    st->keep(payload);
    st->buffered += payload.size();
  }
  if (h.flags & k_flag_fin)
    st->fin_received = true;
  st->readable.notify_into(woken_);
  finish_stream(st);
}

void session::on_window(const frame_header& h, std::span<const std::uint8_t> payload) {
  auto it = streams_.find(h.stream);
  if (it == streams_.end())
    return;
  auto inc = parse_window(payload);
  if (!inc) {
    fail_stream(it->second, {reset_code::protocol_error, inc.error()}, true);
    return;
  }
  auto st = it->second;
  st->send_window += *inc;
  if (st->send_window > (std::int64_t{1} << 31)) {
    fail_stream(st, {reset_code::flow_control_error, "window grew beyond 2 GiB"}, true);
    return;
  }
  st->writable.notify();
}

void session::on_reset(const frame_header& h, std::span<const std::uint8_t> payload) {
  auto it = streams_.find(h.stream);
  if (it == streams_.end())
    return;
  auto info = parse_reset(payload);
  fail_stream(it->second, info ? std::move(info).value() : reset_info{reset_code::protocol_error, info.error()}, false);
}

void session::on_datagram(const frame_header& h, std::span<const std::uint8_t> payload) {
  auto it = streams_.find(h.stream);
  if (it == streams_.end() || it->second->kind != stream_kind::udp)
    return;
  auto& st = *it->second;
  // Bounded per flow and, since a peer may open as many flows as streams,
  // for the session as a whole.
  if (st.datagrams.size() >= config_.max_queued_datagrams ||
      datagram_bytes_ + k_datagram_overhead + payload.size() > config_.max_queued_datagram_bytes) {
    ++stats_.datagrams_dropped;
    return;
  }
  st.datagrams.emplace_back(payload.begin(), payload.end());
  st.datagram_bytes += k_datagram_overhead + payload.size();
  datagram_bytes_ += k_datagram_overhead + payload.size();
  st.readable.notify_into(woken_);
}

void session::on_ping(const frame_header& h, std::span<const std::uint8_t> payload) {
  auto p = parse_ping(payload);
  if (!p)
    return;
  if (!(h.flags & k_flag_ack)) {
    auto frame = take_buffer();
    encode_ping(frame, *p, true);
    send_reply(std::move(frame));
    return;
  }
  std::uint64_t sent = 0;
  std::memcpy(&sent, p->data(), sizeof sent);
  if (sent == 0 || sent > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return;
  const time_point sent_at{std::chrono::duration_cast<duration>(std::chrono::nanoseconds(sent))};
  if (!events_->rtt.on_pong(sent_at, steady_clock::now()))
    return;
  stats_.srtt = events_->rtt.smoothed();
  stats_.rtt_last = events_->rtt.last();
  stats_.rtt_samples = events_->rtt.samples();
}

void session::on_goaway(std::span<const std::uint8_t> payload) {
  auto g = parse_goaway(payload);
  peer_goaway_ = true;
  goaway_info info = g ? std::move(g).value() : goaway_info{0, reset_code::protocol_error, g.error()};
  spdlog::debug("{}: peer sent GOAWAY ({}: {})", config_.label, reset_code_name(info.code), info.reason);
  if (goaway_handler_) {
    const auto handler = goaway_handler_; // a copy, as for the open handler
    handler(info);
  }
}

} // namespace warren::wire
