// Fuzzes the mux session's state machine (src/wire/session.*): a real
// wire::session, client or server (the first input byte), runs over an
// in-memory byte_stream against a scripted hostile peer, on one io_context
// driven by bounded poll loops (no sockets, threads or real time: the ping
// interval is an hour, so the pinger never fires). The rest of the input is a
// list of operations:
//   peer    frames made with the real encoders from fields the input picks
//           (mostly valid: HELLO, OPEN with increasing ids, DATA within or
//           beyond the window, with FIN, WINDOW, RESET, DATAGRAM, PING and
//           PONG, GOAWAY), frames of any type and raw bytes; the end of its
//           direction; the size of the pieces reads return (so frames split
//           across reads); and whether it reads what the session writes (a
//           peer that does not makes the session's writes wait);
//   local   the session's public API: open streams, write (write, try_write_some,
//           prepare/commit), read (read_some, try_read_some, peek/consume,
//           async_wait_readable), shut down, close, drop, accept, refuse,
//           wait_open, datagrams both ways, async_wait_writable, and goaway,
//           shutdown or close of the session, from the loop or from inside
//           the open and GOAWAY handlers; run the loop, whole or a few handlers.
// Checked (any failure aborts with a line saying what):
//   - everything the session writes decodes (wire::decode), whole frames
//     only; HELLO first and once; payloads parse; OPEN ids have the
//     session's parity and increase; OPEN_OK only for streams the peer
//     opened; nothing follows a protocol-error GOAWAY or the transport's
//     shutdown; output stays within a linear bound of what it was given;
//   - DATA on a stream is a prefix of what the local side wrote on it, never
//     beyond the window the peer granted, and once the loop is idle with the
//     session open and the peer reading, all of it;
//   - PONGs echo the peer's PINGs in order, one each;
//   - the session accuses the peer only when it misbehaved: a RESET with
//     protocol_error or flow_control_error names a stream on which the peer
//     broke a rule, a GOAWAY with protocol_error follows a connection-level
//     offence; the window it grants a stream stays within what the local
//     side consumed plus max_window;
//   - bytes a local reader gets are a prefix of what the peer sent on that
//     stream (frames from the first one the session kept), and end of stream
//     comes exactly after a FIN; the open handler sees the request the peer sent;
//   - while the session is open and the peer reads, it reads all its input;
//   - after the session closes: the closed handler ran once with a reason;
//     every pending operation on every stream completed; the io_context has
//     no work left; once the handles go, the session is freed (and ASan's
//     leak check sees nothing).
// Once the peer sent raw bytes or frames whose effect the harness does not
// model, the checks that need the peer's side of the story are off for that input.
#include "stream/byte_stream.hpp"
#include "stream/event.hpp"
#include "wire/frame.hpp"
#include "wire/session.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace warren::wire;
using warren::error_code;
using bytes = std::vector<std::uint8_t>;
using byte_span = std::span<const std::uint8_t>;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_session: check failed: %s\n", what);
    std::abort();
  }
}

bool g_trace = false; // FUZZ_SESSION_TRACE=1: print operations and frames (to study a finding)

constexpr std::size_t k_max_ops = 400;
constexpr std::size_t k_handler_budget = 200'000;    // handlers per run of the loop: more is a busy loop
constexpr std::uint32_t k_two_gib = 0x80000000u;

// ---- Feedback: libFuzzer adds counters in this section to its coverage.

constexpr std::size_t k_features = 8192;
__attribute__((section("__libfuzzer_extra_counters"), used)) std::uint8_t g_features[k_features];

/// Marks that (kind, value) happened in this run. Presence only: counts
/// (how many ops of a kind) would multiply features without telling states
/// apart, and libFuzzer's entropic schedule pays for every feature.
void feature(std::uint32_t kind, std::uint32_t value) {
  std::uint32_t h = kind * 0x9E3779B1u ^ value * 0x85EBCA77u;
  h ^= h >> 15;
  g_features[h % k_features] = 1;
}

// ---- Input.

class reader {
 public:
  reader(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
  bool empty() const { return p_ == end_; }
  std::uint8_t u8() { return p_ == end_ ? 0 : *p_++; }
  std::uint16_t u16() {
    const unsigned hi = u8();
    return static_cast<std::uint16_t>(hi << 8 | u8());
  }
  std::uint32_t u32() {
    const std::uint32_t hi = u16();
    return hi << 16 | u16();
  }
  byte_span take(std::size_t n) {
    n = std::min<std::size_t>(n, static_cast<std::size_t>(end_ - p_));
    const byte_span s(p_, n);
    p_ += n;
    return s;
  }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

/// `n` bytes that differ with `seed`, so that a prefix check notices bytes
/// of the wrong frame or the wrong offset.
bytes pattern(std::size_t n, std::uint32_t seed) {
  bytes out(n);
  std::uint32_t x = seed * 2654435761u + 0x9E3779B9u;
  for (auto& b : out) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::uint8_t>(x >> 24);
  }
  return out;
}

/// 0..127, or with the top bit 0..65535 (the largest payloads cost two bytes).
std::size_t size_from(reader& in) {
  const std::uint8_t s = in.u8();
  return s & 0x80 ? in.u16() : s;
}

// ---- The transport: an in-memory byte_stream between the session and the peer.

struct wire_state {
  bytes in;                      // everything the peer sent
  std::size_t in_read = 0;       // how much of it the session has read
  std::size_t piece = SIZE_MAX;  // at most this much per read_some (mostly)
  bool eof = false;              // the peer ended its direction after `in`
  bytes out;                     // everything the session wrote
  bool blocked = false;          // the peer reads nothing: writes wait
  bool closed = false;
  bool shut_down = false;
  bool wrote_after_shutdown = false;
  warren::stream::async_event readable;
  warren::stream::async_event writable;
};

class memory_transport final : public warren::stream::byte_stream {
 public:
  memory_transport(asio::any_io_executor ex, std::shared_ptr<wire_state> w) : ex_(std::move(ex)), w_(std::move(w)) {}

  asio::any_io_executor get_executor() override { return ex_; }

  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buffer, error_code& ec) override {
    auto w = w_;
    co_await asio::post(ex_, asio::use_awaitable); // as on a socket: never complete inline
    while (!w->closed && w->in_read == w->in.size() && !w->eof)
      co_await w->readable.wait();
    if (w->closed) {
      ec = asio::error::operation_aborted;
      co_return 0;
    }
    if (w->in_read == w->in.size()) {
      ec = asio::error::eof;
      co_return 0;
    }
    // Pieces of the size the input chose, but no more than 64 reads for
    // what is waiting (one-byte reads of megabytes would only be slow).
    const std::size_t avail = w->in.size() - w->in_read;
    const std::size_t n = std::min({buffer.size(), std::max(w->piece, avail / 64), avail});
    std::memcpy(buffer.data(), w->in.data() + w->in_read, n);
    w->in_read += n;
    ec = {};
    co_return n;
  }

  asio::awaitable<void> write(std::span<const asio::const_buffer> buffers, error_code& ec) override {
    auto w = w_;
    co_await asio::post(ex_, asio::use_awaitable);
    while (!w->closed && w->blocked)
      co_await w->writable.wait();
    if (w->closed) {
      ec = asio::error::operation_aborted;
      co_return;
    }
    if (w->shut_down) {
      w->wrote_after_shutdown = true;
      ec = asio::error::broken_pipe;
      co_return;
    }
    for (const auto& b : buffers) {
      const auto* p = static_cast<const std::uint8_t*>(b.data());
      w->out.insert(w->out.end(), p, p + b.size());
    }
    ec = {};
  }

  asio::awaitable<void> shutdown(error_code& ec) override {
    auto w = w_;
    co_await asio::post(ex_, asio::use_awaitable);
    ec = w->closed ? error_code(asio::error::operation_aborted) : error_code();
    w->shut_down = true;
  }

  void close() override {
    w_->closed = true;
    w_->readable.notify();
    w_->writable.notify();
  }

  std::string description() const override { return "memory"; }

 private:
  asio::any_io_executor ex_;
  std::shared_ptr<wire_state> w_;
};

// ---- What the harness knows of each stream.

struct peer_frame {
  bytes payload;
  bool fin = false;
};

struct stream_model {
  // peer -> session
  std::vector<peer_frame> data;   // DATA the peer sent, in order
  bool peer_fin = false;
  std::uint64_t peer_sent = 0;
  std::uint64_t peer_window_sum = 0; // WINDOW increments the peer sent
  bool misbehaved = false;           // the peer broke a stream rule: a RESET accusing it is fair
  bool peer_opened = false;
  std::optional<open_request> request; // the valid OPEN the peer sent
  bool handed_out = false;             // the open handler got it
  // session -> peer
  bool session_opened = false;
  bool open_ok = false;
  std::uint64_t session_data = 0;   // DATA bytes the session wrote
  std::uint64_t session_granted = 0; // WINDOW increments it sent
  bool session_fin = false;
};

struct local_stream {
  std::unique_ptr<mux_stream> handle; // null once dropped
  std::uint32_t id = 0;
  stream_kind kind = stream_kind::tcp;
  bytes written;               // handed to the stream, in order (whether or not it took all of a failed write)
  std::size_t confirmed = 0;   // of which the stream took for sure (a failed write fails all later ones)
  bytes received;              // read from it
  bool eof = false;            // a read reported end of stream
  int pending = 0;             // coroutines and callbacks in flight on it
  bool reading = false;        // one reader at a time (byte_stream's contract)
  bool writing = false;        // one writer at a time; shutdown counts as writing
  bool from_peer = false;      // handed out by the open handler (accept and refuse are for these)
};

enum class handler_action : std::uint8_t { none, accept, refuse, drop, close_session, goaway, shutdown, count };

// ---- The harness.

class harness {
 public:
  harness(reader& in, std::uint8_t first) : in_(in) {
    cfg_.is_client = (first & 1) == 0;
    cfg_.label = cfg_.is_client ? "fuzz client" : "fuzz server";
    cfg_.ping_interval = std::chrono::hours(1);
    if (first & 2)
      cfg_.max_streams = 1 + (first >> 4 & 3);
    if (first & 4) {
      cfg_.initial_window = k_min_initial_window;
      cfg_.max_window = 4 * k_min_initial_window;
      cfg_.max_buffered = 6 * k_min_initial_window;
    }
    if (first & 8) {
      cfg_.max_queued_datagrams = 2;
      cfg_.datagram_send_limit = 4096;
    }
    wire_ = std::make_shared<wire_state>();
    session_ = session::create(std::make_unique<memory_transport>(io_.get_executor(), wire_), cfg_);
    weak_ = session_;
    session_->set_closed_handler([this](const std::string& why) {
      ++closed_calls_;
      close_reason_ = why;
    });
    // Handlers as a server writes them: they own state (here a counter,
    // which puts them on the heap) and use it after acting, which may have
    // closed the session from inside the handler.
    auto calls = std::make_shared<std::size_t>(0);
    session_->set_open_handler([this, calls](std::unique_ptr<mux_stream> s, open_request r) {
      on_open(std::move(s), r);
      ++*calls;
    });
    session_->set_goaway_handler([this, calls](const goaway_info&) {
      on_goaway();
      ++*calls;
    });
    session_->start();
  }

  void operate() {
    for (std::size_t i = 0; i < k_max_ops && !in_.empty(); ++i) {
      absorb();
      const std::uint8_t op = in_.u8();
      if (g_trace)
        std::fprintf(stderr, "op %u (in %zu/%zu, out %zu)\n", op % 40, wire_->in_read, wire_->in.size(),
                     wire_->out.size());
      // The operation after the previous one, and in which state of the session.
      feature(1, prev_op_ * 64 + op % 40);
      feature(7, (op % 40) << 2 | (session_->closed() ? 2u : 0u) | (session_->draining() ? 1u : 0u));
      prev_op_ = op % 40;
      step(op % 40);
    }
  }

  void finish() {
    run();
    // The loop is idle: an open session whose peer reads has read all its
    // input and written all the data it took.
    if (!session_->closed() && !wire_->blocked) {
      check(wire_->in_read == wire_->in.size(), "an open session stopped reading its input");
      check(!wire_->eof, "the session outlived the end of its transport");
      for (auto& l : locals_) {
        auto it = model_.find(l->id);
        check(it == model_.end() || it->second.session_data >= l->confirmed,
              "data a stream took was not written while the session was open and the peer read");
      }
    }
    wire_->blocked = false;
    wire_->writable.notify();
    if (in_.u8() & 1) { // how it ends: the peer goes, or the local side closes
      wire_->eof = true;
      wire_->readable.notify();
      run();
      check(session_->closed(), "the session outlived the end of its transport");
    }
    session_->close("fuzz: done");
    run();
    check(session_->closed(), "close() left the session open");
    check(closed_calls_ == 1, "the closed handler did not run exactly once");
    check(!close_reason_.empty(), "the session closed without a reason");
    check(session_->stream_count() == 0, "a closed session still counts streams");
    check(!session_->open(stream_kind::tcp, target_address::ipv4({10, 0, 0, 1}, 80)), "a closed session opened a stream");
    for (auto& l : locals_) {
      check(l->pending == 0, "an operation on a stream still waits after the session closed");
      check_received(*l);
    }
    io_.restart();
    io_.poll();
    check(io_.stopped(), "work is left on the io_context after the session closed");
    check(!wire_->wrote_after_shutdown, "the session wrote after shutting the transport down");
    check(session_->stats().bytes_in == wire_->in_read && session_->stats().bytes_out <= wire_->out.size(),
          "the session's byte counts disagree with its transport");
    locals_.clear();
    by_id_.clear();
    session_.reset();
    check(weak_.expired(), "the session outlived its handles");
    feature(2, static_cast<std::uint32_t>(std::hash<std::string>{}(close_reason_.substr(0, 24)) & 0xffff));
  }

 private:
  // ---- Running the loop.

  void run(std::size_t at_most = k_handler_budget) {
    io_.restart();
    std::size_t n = 0;
    while (n < at_most && io_.poll_one() != 0)
      ++n;
    check(at_most != k_handler_budget || n < at_most, "the loop never went idle: a busy loop");
    absorb();
  }

  template <class F>
  void spawn(const std::shared_ptr<local_stream>& l, F f) {
    ++l->pending;
    asio::co_spawn(io_, std::move(f), [l](const std::exception_ptr& e) {
      --l->pending;
      if (e)
        std::rethrow_exception(e);
    });
  }

  // ---- The peer's side.

  bool peer_can_send() const { return !wire_->eof; }

  void send(const bytes& frame) {
    wire_->in.insert(wire_->in.end(), frame.begin(), frame.end());
    frames_in_ += 1;
    wire_->readable.notify();
  }

  /// Frame `type` goes out: before a valid HELLO, anything else is an offence.
  void before_send(frame_type type) {
    if (!peer_hello_ && type != frame_type::hello)
      conn_misbehaved_ = true;
  }

  std::uint32_t pick_id() {
    const std::uint8_t s = in_.u8();
    if (s % 8 < 6 && !ids_.empty()) {
      auto it = ids_.begin();
      std::advance(it, (s >> 3) % ids_.size());
      return *it;
    }
    if (s % 8 == 6)
      return s >> 3;
    return in_.u32();
  }

  std::uint32_t pick_window() {
    switch (in_.u8() % 6) {
    case 0:
      return 0;
    case 1:
      return 1;
    case 2:
      return 65536;
    case 3:
      return k_two_gib;
    default:
      return in_.u32();
    }
  }

  target_address pick_target() {
    switch (in_.u8() % 4) {
    case 0:
      return target_address::ipv4({10, 0, 0, 1}, 80);
    case 1:
      return target_address::ipv6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 22);
    case 2: {
      target_address t;
      t.kind = target_address::type::domain;
      t.domain = "example.com";
      t.port = 443;
      return t;
    }
    default: {
      target_address t;
      t.kind = target_address::type::domain;
      t.domain = std::string(1 + in_.u8() % 64, 'a');
      t.port = static_cast<std::uint16_t>(1 + in_.u8());
      return t;
    }
    }
  }

  std::string pick_reason() {
    const std::size_t n = in_.u8();
    return std::string(n + (n > 250 ? 100 : 0), 'r'); // a few beyond the 256-byte limit
  }

  void peer_hello() {
    const std::uint8_t f = in_.u8();
    hello h;
    if (f & 1) {
      static constexpr std::uint32_t windows[] = {k_min_initial_window, k_default_initial_window, 1u << 20,
                                                  0x7fffffffu, 0xffffffffu, 1000};
      h.initial_window = windows[(f >> 4) % 6];
    }
    if (f & 2)
      h.max_payload = (f & 0x40) ? 1u << 20 : 100;
    if (f & 4) {
      static constexpr std::uint32_t streams[] = {0, 1, 2, 1024};
      h.max_streams = streams[(f >> 6) % 4];
    }
    if (f & 8)
      h.ping_interval_ms = 15'000;
    if (in_.u8() % 16 == 0)
      h.version = 2;
    bytes frame;
    encode_hello(frame, h);
    auto parsed = parse_hello(byte_span(frame).subspan(k_header_size));
    if (peer_hello_ || !parsed || parsed->version != k_version) {
      conn_misbehaved_ = true;
    } else {
      peer_hello_ = true;
      peer_initial_ = parsed->initial_window.value_or(k_default_initial_window);
    }
    send(frame);
  }

  void peer_open() {
    const std::uint8_t s = in_.u8();
    std::uint32_t id = 0;
    switch (s % 4) {
    case 0:
    case 1:
      id = last_peer_open_ + (last_peer_open_ % 2 == 1 ? 2 : 1); // the next odd id
      break;
    case 2:
      id = last_peer_open_; // again
      break;
    default:
      id = pick_id();
    }
    const auto kind = (s & 0x10) ? stream_kind::udp : stream_kind::tcp;
    const auto target = pick_target();
    bytes frame;
    encode_open(frame, id, kind, target);
    const bool bad_payload = (s & 0xe0) == 0xe0;
    if (bad_payload) { // an unknown kind
      frame[k_header_size] = 9;
    }
    before_send(frame_type::open);
    auto& m = model_[id];
    if (!cfg_.is_client) {
      if (id % 2 == 0 || id <= last_peer_open_) {
        conn_misbehaved_ = true;
      } else {
        last_peer_open_ = id;
        m.peer_opened = true;
        if (bad_payload)
          m.misbehaved = true;
        else
          m.request = open_request{kind, target};
      }
    } else {
      m.peer_opened = true; // refused
      last_peer_open_ = std::max(last_peer_open_, id);
    }
    ids_.insert(id);
    send(frame);
  }

  void peer_data() {
    const std::uint32_t id = pick_id();
    const std::uint8_t flags = in_.u8();
    const bool fin = flags & 1;
    std::size_t n = size_from(in_);
    n = std::min<std::size_t>(n, k_default_max_payload);
    if (flags & 2) { // exactly what the window allows
      const auto& m = model_[id];
      const std::uint64_t granted = cfg_.initial_window + m.session_granted;
      n = granted > m.peer_sent ? std::min<std::uint64_t>(granted - m.peer_sent, k_default_max_payload) : 0;
    }
    auto payload = pattern(n, ++seed_);
    bytes frame;
    encode_data_header(frame, id, static_cast<std::uint32_t>(n), fin);
    frame.insert(frame.end(), payload.begin(), payload.end());
    before_send(frame_type::data);
    auto& m = model_[id];
    if (m.peer_fin)
      m.misbehaved = true; // DATA after FIN
    m.peer_sent += n;
    if (m.peer_sent > cfg_.initial_window + m.session_granted)
      m.misbehaved = true; // beyond the window it was granted
    m.peer_fin = m.peer_fin || fin;
    m.data.push_back({std::move(payload), fin});
    send(frame);
  }

  void peer_window() {
    const std::uint32_t id = pick_id();
    const std::uint32_t inc = pick_window();
    bytes frame;
    encode_window(frame, id, inc);
    before_send(frame_type::window);
    auto& m = model_[id];
    if (inc == 0)
      m.misbehaved = true;
    m.peer_window_sum += inc;
    if (std::uint64_t{peer_initial_} + m.peer_window_sum > k_two_gib)
      m.misbehaved = true; // the session's send window would grow beyond 2 GiB
    send(frame);
  }

  void peer_simple(frame_type type) {
    const std::uint32_t id = pick_id();
    bytes frame;
    switch (type) {
    case frame_type::open_ok:
      encode_open_ok(frame, id);
      break;
    case frame_type::reset:
      encode_reset(frame, id, static_cast<reset_code>(in_.u8() % 12), pick_reason());
      break;
    case frame_type::goaway:
      encode_goaway(frame, id, static_cast<reset_code>(in_.u8() % 12), pick_reason());
      break;
    case frame_type::datagram: {
      const std::size_t n = std::min<std::size_t>(size_from(in_), k_default_max_payload);
      encode_datagram_header(frame, id, static_cast<std::uint32_t>(n));
      const auto payload = pattern(n, ++seed_);
      frame.insert(frame.end(), payload.begin(), payload.end());
      break;
    }
    default:
      return;
    }
    before_send(type);
    send(frame);
  }

  void peer_ping() {
    const std::uint8_t f = in_.u8();
    ping_payload p{};
    if (f & 2) {
      // A timestamp of 1 ns: a huge round trip, so windows grow whenever
      // they may (real timestamps would make that depend on timing).
      const std::uint64_t one = 1;
      std::memcpy(p.data(), &one, sizeof one);
    } else {
      const auto b = in_.take(8);
      std::copy(b.begin(), b.end(), p.begin());
    }
    const bool ack = f & 1;
    bytes frame;
    encode_ping(frame, p, ack);
    before_send(frame_type::ping);
    if (!ack)
      pings_.push_back(p);
    send(frame);
  }

  /// A frame of any type, flags and payload: the model cannot follow known types.
  void peer_frame_any() {
    frame_header h;
    h.type = static_cast<frame_type>(in_.u8());
    h.flags = in_.u8();
    h.stream = pick_id();
    const auto payload = in_.take(in_.u8());
    h.length = static_cast<std::uint32_t>(payload.size());
    bytes frame;
    encode_header(frame, h);
    frame.insert(frame.end(), payload.begin(), payload.end());
    before_send(h.type);
    if (h.known())
      tainted_ = true;
    send(frame);
  }

  void peer_raw() {
    const auto b = in_.take(in_.u8());
    tainted_ = true;
    wire_->in.insert(wire_->in.end(), b.begin(), b.end());
    frames_in_ += 1 + b.size() / k_header_size;
    wire_->readable.notify();
  }

  // ---- The local side.

  std::shared_ptr<local_stream> pick_local() {
    const std::uint8_t s = in_.u8();
    if (locals_.empty())
      return nullptr;
    auto l = locals_[s % locals_.size()];
    return l->handle ? l : nullptr;
  }

  void add_local(std::unique_ptr<mux_stream> s) {
    auto l = std::make_shared<local_stream>();
    l->id = s->id();
    l->kind = s->kind();
    l->handle = std::move(s);
    check(by_id_.emplace(l->id, l).second, "two streams with one id");
    ids_.insert(l->id);
    locals_.push_back(std::move(l));
  }

  void local_open() {
    const auto kind = (in_.u8() & 1) ? stream_kind::udp : stream_kind::tcp;
    auto s = session_->open(kind, pick_target());
    ++local_calls_;
    if (!s)
      return;
    check(!session_->closed() && !session_->draining(), "open() gave a stream on a closed or draining session");
    check(s->id() % 2 == (cfg_.is_client ? 1u : 0u), "a stream id of the wrong parity");
    add_local(std::move(s));
  }

  void local_write() {
    auto l = pick_local();
    const std::uint8_t how = in_.u8();
    std::size_t n = size_from(in_) * (1 + (how >> 4 & 3));
    if (!l || l->writing)
      return;
    ++local_calls_;
    auto data = pattern(n, ++seed_);
    error_code ec;
    switch (how % 3) {
    case 0: { // the coroutine write, in up to three buffers
      l->writing = true;
      l->written.insert(l->written.end(), data.begin(), data.end());
      spawn(l, [](std::shared_ptr<local_stream> l, bytes data, std::size_t cut) -> asio::awaitable<void> {
        cut = std::min(cut, data.size());
        const std::array<asio::const_buffer, 3> bufs{asio::buffer(data.data(), cut / 2),
                                                     asio::buffer(data.data() + cut / 2, cut - cut / 2),
                                                     asio::buffer(data.data() + cut, data.size() - cut)};
        error_code ec;
        co_await l->handle->write(bufs, ec);
        if (!ec && !data.empty()) // writing nothing succeeds even on a failed stream
          l->confirmed = l->written.size();
        l->writing = false;
      }(l, std::move(data), in_.u16()));
      break;
    }
    case 1: {
      const std::size_t took = l->handle->try_write_some(asio::buffer(data), ec);
      check(took <= n && (took == 0 || !ec), "try_write_some took bytes and failed");
      check(took > 0 || ec || n == 0, "try_write_some took nothing without saying why");
      // A stream that takes bytes has not failed, so every earlier write went through.
      l->written.insert(l->written.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(took));
      if (took > 0)
        l->confirmed = l->written.size();
      break;
    }
    default: { // zero-copy, as the pump does it
      std::array<asio::mutable_buffer, 4> space;
      const std::size_t pieces = l->handle->prepare(n, space, ec);
      check(pieces <= space.size() && (pieces == 0 || !ec), "prepare() offered space and failed");
      std::size_t offered = 0;
      for (std::size_t i = 0; i < pieces; ++i)
        offered += space[i].size();
      check(offered <= n, "prepare() offered more than asked");
      const std::size_t commit = offered == 0 ? 0 : in_.u16() % (offered + 1);
      std::size_t left = commit;
      std::size_t off = 0;
      for (std::size_t i = 0; i < pieces && left > 0; ++i) {
        const std::size_t m = std::min(left, space[i].size());
        std::memcpy(space[i].data(), data.data() + off, m);
        off += m;
        left -= m;
      }
      if (pieces > 0)
        l->handle->commit(commit);
      l->written.insert(l->written.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(commit));
      if (commit > 0)
        l->confirmed = l->written.size();
      break;
    }
    }
  }

  void take(local_stream& l, const std::uint8_t* p, std::size_t n) {
    l.received.insert(l.received.end(), p, p + n);
  }

  void local_read() {
    auto l = pick_local();
    const std::uint8_t how = in_.u8();
    const std::size_t want = 1 + size_from(in_) * (1 + (how >> 4 & 7));
    if (!l || l->reading)
      return;
    ++local_calls_;
    error_code ec;
    switch (how % 4) {
    case 0: // the coroutine read, until `want` bytes or an error
      l->reading = true;
      spawn(l, [](std::shared_ptr<local_stream> l, std::size_t want, harness* h) -> asio::awaitable<void> {
        bytes buf(std::min<std::size_t>(want, 70'000));
        std::size_t got = 0;
        while (got < want) {
          error_code ec;
          const std::size_t n = co_await l->handle->read_some(asio::buffer(buf), ec);
          check(n <= buf.size() && (n == 0) == static_cast<bool>(ec), "read_some: bytes and an error, or neither");
          h->take(*l, buf.data(), n);
          got += n;
          if (ec) {
            h->note_read_end(*l, ec);
            break;
          }
        }
        l->reading = false;
      }(l, want, this));
      break;
    case 1: {
      bytes a(want / 2 + 1);
      bytes b(want);
      const std::array<asio::mutable_buffer, 2> bufs{asio::buffer(a), asio::buffer(b)};
      const std::size_t n = l->handle->try_read_some(bufs, ec);
      check(n <= a.size() + b.size() && (n == 0) == static_cast<bool>(ec), "try_read_some: bytes and an error");
      take(*l, a.data(), std::min(n, a.size()));
      if (n > a.size())
        take(*l, b.data(), n - a.size());
      note_read_end(*l, ec);
      break;
    }
    case 2: {
      std::array<asio::const_buffer, 4> pieces;
      const std::size_t count = l->handle->peek(pieces, ec);
      check(count <= pieces.size() && (count == 0) == static_cast<bool>(ec), "peek: pieces and an error");
      std::size_t left = want;
      for (std::size_t i = 0; i < count && left > 0; ++i) {
        const std::size_t m = std::min(left, pieces[i].size());
        check(m > 0, "peek gave an empty piece");
        take(*l, static_cast<const std::uint8_t*>(pieces[i].data()), m);
        left -= m;
      }
      if (count > 0)
        l->handle->consume(want - left);
      note_read_end(*l, ec);
      break;
    }
    default: // the pump's way: wait for readiness, then read without waiting
      l->reading = true;
      ++l->pending;
      l->handle->async_wait_readable([this, l, want](error_code e) {
        --l->pending;
        l->reading = false;
        if (e || !l->handle)
          return;
        bytes buf(want);
        error_code ec;
        const std::size_t n = l->handle->try_read_some(asio::buffer(buf), ec);
        take(*l, buf.data(), n);
        note_read_end(*l, ec);
      });
      break;
    }
  }

  void note_read_end(local_stream& l, const error_code& ec) {
    if (ec == asio::error::eof)
      l.eof = true;
    if (ec)
      feature(3, static_cast<std::uint32_t>(ec.value()));
  }

  void local_shutdown() {
    auto l = pick_local();
    if (!l || l->writing)
      return;
    ++local_calls_;
    l->writing = true;
    spawn(l, [](std::shared_ptr<local_stream> l) -> asio::awaitable<void> {
      error_code ec;
      co_await l->handle->shutdown(ec);
      l->writing = false;
    }(l));
  }

  void local_close_or_drop(bool drop) {
    auto l = pick_local();
    if (!l)
      return;
    ++local_calls_;
    if (drop && l->pending == 0)
      l->handle.reset(); // resets the stream if still open
    else
      l->handle->close();
  }

  static reset_code local_code(std::uint8_t c) {
    // The codes a server gives for an outbound failure; never the peer-accusing ones.
    static constexpr reset_code codes[] = {reset_code::refused,     reset_code::denied,        reset_code::unresolvable,
                                           reset_code::timed_out,   reset_code::unreachable,   reset_code::limit_reached,
                                           reset_code::internal_error, reset_code::closed};
    return codes[c % 8];
  }

  void local_accept_refuse() {
    auto l = pick_local();
    const std::uint8_t c = in_.u8();
    if (!l || !l->from_peer)
      return;
    ++local_calls_;
    if (c & 1)
      l->handle->accept();
    else
      l->handle->refuse(local_code(c >> 1), pick_reason());
  }

  void local_wait_open() {
    auto l = pick_local();
    if (!l)
      return;
    ++local_calls_;
    spawn(l, [](std::shared_ptr<local_stream> l) -> asio::awaitable<void> {
      auto r = co_await l->handle->wait_open();
      if (r)
        check(l->handle->reset_reason() == r, "wait_open and reset_reason disagree");
    }(l));
  }

  void local_datagram() {
    auto l = pick_local();
    const std::uint8_t how = in_.u8();
    const std::size_t n = size_from(in_);
    if (!l)
      return;
    ++local_calls_;
    if (how & 1) {
      const auto d = pattern(n, ++seed_);
      if (l->handle->send_datagram(d))
        datagram_bytes_ += n;
      return;
    }
    spawn(l, [](std::shared_ptr<local_stream> l) -> asio::awaitable<void> {
      auto d = co_await l->handle->receive_datagram();
      if (d)
        check(d->size() <= k_default_max_payload, "a datagram larger than a frame");
    }(l));
  }

  void local_wait_writable() {
    auto l = pick_local();
    if (!l)
      return;
    ++local_calls_;
    ++l->pending;
    const bool can_tell = l->handle->async_wait_writable([l](error_code) { --l->pending; });
    check(can_tell, "a mux stream cannot tell when it is writable");
  }

  void session_action(std::uint8_t what) {
    ++local_calls_;
    switch (what % 3) {
    case 0:
      session_->goaway(local_code(in_.u8()), pick_reason());
      break;
    case 1:
      session_->shutdown("fuzz: shutdown");
      break;
    default:
      session_->close("fuzz: close");
      break;
    }
  }

  // The handlers, which may act on the session from inside its reader.

  void on_open(std::unique_ptr<mux_stream> s, const open_request& r) {
    check(!cfg_.is_client, "a client's open handler ran");
    auto& m = model_[s->id()];
    check(!m.handed_out, "the open handler got one stream twice");
    m.handed_out = true;
    if (!tainted_) {
      check(m.request.has_value(), "the open handler got a stream the peer did not validly open");
      check(*m.request == r, "the open handler got another request than the peer sent");
    }
    check(s->kind() == r.kind, "a stream of another kind than its request");
    add_local(std::move(s));
    locals_.back()->from_peer = true;
    act(open_action_, locals_.back());
    open_action_ = handler_action::none;
  }

  void on_goaway() {
    const auto a = goaway_action_;
    goaway_action_ = handler_action::none;
    act(a, nullptr);
  }

  void act(handler_action a, const std::shared_ptr<local_stream>& l) {
    switch (a) {
    case handler_action::accept:
      if (l)
        l->handle->accept();
      break;
    case handler_action::refuse:
      if (l)
        l->handle->refuse(reset_code::refused, "fuzz: refused");
      break;
    case handler_action::drop:
      if (l)
        l->handle.reset();
      break;
    case handler_action::close_session:
      session_->close("fuzz: closed from a handler");
      break;
    case handler_action::goaway:
      session_->goaway(reset_code::closed, "fuzz: goaway from a handler");
      break;
    case handler_action::shutdown:
      session_->shutdown("fuzz: shutdown from a handler");
      break;
    default:
      break;
    }
  }

  // ---- The operations.

  void step(std::uint8_t op) {
    switch (op) {
    // the peer
    case 0:
    case 1:
      if (peer_can_send())
        peer_hello();
      break;
    case 2:
    case 3:
      if (peer_can_send())
        peer_open();
      break;
    case 4:
    case 5:
    case 6:
      if (peer_can_send())
        peer_data();
      break;
    case 7:
      if (peer_can_send())
        peer_window();
      break;
    case 8:
      if (peer_can_send())
        peer_simple(frame_type::open_ok);
      break;
    case 9:
      if (peer_can_send())
        peer_simple(frame_type::reset);
      break;
    case 10:
      if (peer_can_send())
        peer_simple(frame_type::datagram);
      break;
    case 11:
      if (peer_can_send())
        peer_ping();
      break;
    case 12:
      if (peer_can_send())
        peer_simple(frame_type::goaway);
      break;
    case 13:
      if (peer_can_send())
        peer_frame_any();
      break;
    case 14:
      if (peer_can_send())
        peer_raw();
      break;
    case 15:
      wire_->eof = true;
      wire_->readable.notify();
      break;
    case 16: {
      const std::uint8_t p = in_.u8();
      wire_->piece = p == 0 ? SIZE_MAX : p < 0x80 ? p : std::size_t{p - 0x7fu} * 1024;
      break;
    }
    case 17:
      wire_->blocked = !wire_->blocked;
      if (!wire_->blocked)
        wire_->writable.notify();
      break;
    // the loop
    case 18:
    case 19:
    case 20:
      run();
      break;
    case 21:
      run(1 + in_.u8() % 16);
      break;
    // the local side
    case 22:
    case 23:
      local_open();
      break;
    case 24:
    case 25:
      local_write();
      break;
    case 26:
    case 27:
      local_read();
      break;
    case 28:
      local_shutdown();
      break;
    case 29:
      local_close_or_drop(false);
      break;
    case 30:
      local_close_or_drop(true);
      break;
    case 31:
      local_accept_refuse();
      break;
    case 32:
      local_wait_open();
      break;
    case 33:
      local_datagram();
      break;
    case 34:
      local_wait_writable();
      break;
    case 35:
      session_action(in_.u8());
      break;
    case 36: {
      const std::uint8_t a = in_.u8();
      open_action_ = static_cast<handler_action>(a % static_cast<std::uint8_t>(handler_action::count));
      goaway_action_ = static_cast<handler_action>((a >> 4) % static_cast<std::uint8_t>(handler_action::count));
      break;
    }
    default: // 37..39: let time pass for the loop, in a few handlers
      run(1);
      break;
    }
  }

  // ---- What the session wrote.

  void absorb() {
    auto& out = wire_->out;
    check(out.size() <= output_bound(), "the session wrote more than a linear bound of what it was given");
    while (out_off_ < out.size()) {
      const auto r = decode(byte_span(out).subspan(out_off_), k_default_max_payload);
      check(!std::holds_alternative<decode_error>(r), "the session wrote a frame that does not decode");
      const auto* f = std::get_if<decoded_frame>(&r);
      check(f != nullptr, "the session wrote part of a frame");
      on_output(*f);
      out_off_ += f->consumed;
    }
  }

  std::size_t output_bound() const {
    std::size_t data = datagram_bytes_;
    for (const auto& l : locals_)
      data += l->written.size();
    return 4096 + 300 * (frames_in_ + local_calls_) + 10 * data + wire_->in.size();
  }

  void on_output(const decoded_frame& f) {
    const auto& h = f.header;
    if (g_trace)
      std::fprintf(stderr, "  session wrote %s stream %u flags %u length %u\n",
                   std::string(frame_type_name(h.type)).c_str(), h.stream, h.flags, h.length);
    check(h.known(), "the session wrote a frame of an unknown type");
    check(!final_goaway_, "the session wrote after its protocol-error GOAWAY");
    feature(4, static_cast<std::uint32_t>(h.type) << 8 | h.flags);
    if (!hello_out_) {
      check(h.type == frame_type::hello, "the session's first frame is not HELLO");
      auto v = parse_hello(f.payload);
      check(v && v->initial_window == cfg_.initial_window, "the session's HELLO does not parse or lies");
      hello_out_ = true;
      return;
    }
    auto& m = model_[h.stream];
    switch (h.type) {
    case frame_type::hello:
      check(false, "the session sent HELLO twice");
      break;
    case frame_type::open: {
      check(static_cast<bool>(parse_open(f.payload)), "the session's OPEN does not parse");
      check(h.stream % 2 == (cfg_.is_client ? 1u : 0u) && h.stream > last_session_open_,
            "the session's OPEN ids are not of its parity and increasing");
      last_session_open_ = h.stream;
      m.session_opened = true;
      break;
    }
    case frame_type::open_ok:
      check(f.payload.empty(), "OPEN_OK with a payload");
      check(m.peer_opened && m.handed_out && !m.open_ok, "OPEN_OK for a stream the peer did not open, or twice");
      m.open_ok = true;
      break;
    case frame_type::data: {
      check((m.session_opened || m.handed_out) && !m.session_fin, "DATA on a stream not ours, or after FIN");
      auto it = by_id_.find(h.stream);
      check(it != by_id_.end(), "DATA on a stream that has no handle");
      const auto& written = it->second->written;
      check(m.session_data + f.payload.size() <= written.size() &&
                std::equal(f.payload.begin(), f.payload.end(),
                           written.begin() + static_cast<std::ptrdiff_t>(m.session_data)),
            "DATA differs from what the stream was given");
      m.session_data += f.payload.size();
      if (h.flags & k_flag_fin)
        m.session_fin = true;
      if (!tainted_) {
        const std::uint64_t credit = (peer_hello_ ? peer_initial_ : k_min_initial_window) + m.peer_window_sum;
        check(m.session_data <= credit, "the session sent beyond the window the peer granted");
      }
      break;
    }
    case frame_type::window: {
      auto inc = parse_window(f.payload);
      check(static_cast<bool>(inc), "the session's WINDOW does not parse");
      check(m.session_opened || m.handed_out, "WINDOW for a stream not ours");
      m.session_granted += *inc;
      auto it = by_id_.find(h.stream);
      const std::uint64_t consumed = it == by_id_.end() ? 0 : it->second->received.size();
      check(m.session_granted <= consumed + std::max(cfg_.max_window, cfg_.initial_window),
            "the session granted a window beyond max_window");
      break;
    }
    case frame_type::reset: {
      auto r = parse_reset(f.payload);
      check(static_cast<bool>(r), "the session's RESET does not parse");
      feature(5, static_cast<std::uint32_t>(r->code));
      check(m.peer_opened || m.session_opened || tainted_, "RESET for a stream nobody opened");
      if (r->code == reset_code::protocol_error || r->code == reset_code::flow_control_error)
        check(m.misbehaved || tainted_, "the session accused the peer of an offence on a stream where it made none");
      break;
    }
    case frame_type::datagram:
      check(m.session_opened || m.handed_out, "DATAGRAM on a stream not ours");
      break;
    case frame_type::ping: {
      auto p = parse_ping(f.payload);
      check(static_cast<bool>(p), "the session's PING does not parse");
      if (h.flags & k_flag_ack) {
        if (!tainted_) {
          check(!pings_.empty() && pings_.front() == *p, "a PONG that answers no PING, or out of order");
          pings_.pop_front();
        }
      }
      break;
    }
    case frame_type::goaway: {
      auto g = parse_goaway(f.payload);
      check(static_cast<bool>(g), "the session's GOAWAY does not parse");
      feature(6, static_cast<std::uint32_t>(g->code));
      if (g->code == reset_code::protocol_error || g->code == reset_code::frame_too_large) {
        check(conn_misbehaved_ || tainted_, "a protocol-error GOAWAY to a peer that made no offence");
        final_goaway_ = true;
      }
      break;
    }
    default:
      break;
    }
  }

  /// What a local reader got is a prefix of the DATA the peer sent on the
  /// stream, from the first frame the session kept (it drops those that
  /// come before the stream exists) up to the first FIN after it; at end of
  /// stream, all of that.
  void check_received(const local_stream& l) {
    if (tainted_)
      return;
    const auto& frames = model_[l.id].data;
    const auto& got = l.received;
    bool found = false;
    for (std::size_t start = 0; start <= frames.size() && !found; ++start) {
      std::size_t off = 0;
      bool ok = true;
      bool fin = false;
      for (std::size_t i = start; i < frames.size() && ok && !fin; ++i) {
        const auto& p = frames[i].payload;
        const std::size_t n = std::min(p.size(), got.size() - off);
        ok = std::equal(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(n),
                        got.begin() + static_cast<std::ptrdiff_t>(off));
        off += n;
        if (n < p.size())
          break; // got ends inside this frame
        fin = frames[i].fin;
      }
      found = ok && off == got.size() && (!l.eof || fin);
    }
    check(found, "a stream's reader got bytes the peer did not send there (or end of stream without FIN)");
  }

  reader& in_;
  asio::io_context io_; // before everything that holds its handlers
  session_config cfg_;
  std::shared_ptr<wire_state> wire_;
  std::shared_ptr<session> session_;
  std::weak_ptr<session> weak_;
  std::vector<std::shared_ptr<local_stream>> locals_;
  std::map<std::uint32_t, std::shared_ptr<local_stream>> by_id_;
  std::map<std::uint32_t, stream_model> model_;
  std::set<std::uint32_t> ids_; // stream ids in play, for pick_id
  std::deque<ping_payload> pings_;
  handler_action open_action_ = handler_action::none;
  handler_action goaway_action_ = handler_action::none;
  int closed_calls_ = 0;
  std::string close_reason_;
  std::size_t out_off_ = 0;
  std::size_t frames_in_ = 0;
  std::size_t local_calls_ = 0;
  std::size_t datagram_bytes_ = 0; // sent by the local side
  std::uint32_t seed_ = 0;
  std::uint32_t prev_op_ = 63;
  std::uint32_t last_peer_open_ = 0;
  std::uint32_t last_session_open_ = 0;
  std::uint32_t peer_initial_ = k_default_initial_window;
  bool peer_hello_ = false;
  bool conn_misbehaved_ = false;
  bool tainted_ = false;
  bool hello_out_ = false;
  bool final_goaway_ = false;
};

// ---- Seeds for a fresh corpus.

void write_seeds(const fs::path& dir) {
  auto put = [&](const std::string& name, const bytes& content) {
    std::ofstream(dir / name, std::ios::binary)
        .write(reinterpret_cast<const char*>(content.data()), static_cast<std::streamsize>(content.size()));
  };
  put("seed-client", {
                         0,                        // a client with the default settings
                         0,  0x01, 1,              // HELLO: initial window 64 KiB
                         22, 0,    2,              // open a TCP stream to example.com:443
                         24, 0,    0, 0x40, 0, 32, // write 64 bytes (coroutine, two buffers)
                         18,                       // run
                         8,  0,                    // OPEN_OK
                         4,  0,    1, 0x30,        // 48 bytes of DATA with FIN
                         26, 0,    0, 0x7f,        // read (coroutine)
                         28, 0,                    // shut down
                         18,                       // run
                         1,                        // the peer ends the transport
                     });
  put("seed-server", {
                         1,                                // a server with the default settings
                         0,  0,    1,                      // HELLO without settings
                         2,  0,    0,                      // OPEN stream 1 to 10.0.0.1:80
                         18,                               // run
                         31, 0,    1,                      // accept it
                         4,  0,    0, 0x50,                // 80 bytes of DATA
                         18,                               // run
                         26, 0,    0, 0x7f,                // read (coroutine)
                         24, 0,    1, 0x20,                // try_write_some 32 bytes
                         11, 0,    1, 2, 3, 4, 5, 6, 7, 8, // PING
                         18,                               // run
                         0,                                // the local side closes the session
                     });
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  g_trace = std::getenv("FUZZ_SESSION_TRACE") != nullptr;
  spdlog::set_level(g_trace ? spdlog::level::debug : spdlog::level::off); // protocol errors are the point here
  for (int i = 1; i < *argc; ++i) {
    const std::string_view arg((*argv)[i]);
    std::error_code ec;
    if (arg.starts_with("-") || !fs::is_directory(arg, ec))
      continue;
    if (fs::is_empty(arg, ec))
      write_seeds(fs::path(arg));
    break;
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in(data, size);
  harness h(in, in.u8());
  h.operate();
  h.finish();
  return 0;
}
