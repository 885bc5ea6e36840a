// The mux session: many TCP streams and UDP flows over one byte_stream,
// speaking the wire protocol of docs/PROTOCOL.md. Knows nothing of sockets.
//
// Shape: three coroutines per session on one executor — the reader (decodes
// frames, dispatches), the writer (the only writer of the transport: exactly
// one write in flight, control frames before data, frames batched into one
// transport write) and the pinger (liveness + RTT). Streams are byte_streams
// (mux_stream), so the code above (SOCKS5, forwards, the server's outbound
// relay) uses them like sockets.
//
// Memory bounds: per stream, at most one receive window of buffered data
// (the peer may not send more; small DATA payloads share chunks, so memory
// stays near the bytes), and all windows together within max_buffered (a
// new stream whose window would not fit is refused); at most one send
// window queued per stream; UDP
// datagrams are dropped and counted when their flow's queue or the
// session's (max_queued_datagram_bytes for all flows) is full. Replies the
// peer's frames call for (PONG; OPEN_OK and RESET for a stream the peer
// opened, whoever ends it and why) wait at most k_max_queued_replies deep:
// beyond that the reader stops reading until the writer has sent them, so a
// peer that floods PINGs or OPENs (however quickly it resets them) and
// reads nothing back is slowed to its own reading pace, then cut off by the
// ping timeout, instead of growing our queue without bound. Frames we send
// on our own (our OPENs and their RESETs, WINDOW, our PINGs) do not count:
// a peer that stopped reading for that reason would never start again.
//
// Work bounds: memory is not all a peer can spend. Its OPENs (each a
// connect on the server) pass a token bucket (max_opens_per_second,
// open_burst): beyond it the reader stops reading until the next is due,
// as for replies. And the reader lets the other sessions on the executor
// run (it posts itself to the back of the queue) after a bounded turn of
// frames or bytes, so a peer whose frames arrive faster than we handle them
// cannot hold the one event-loop thread, whatever the frames are.
//
// Lifetime: session is shared (its coroutines hold it); a mux_stream handle
// is owned by its user and resets the stream if destroyed while still open.
// Thread-safety: none; everything runs on the transport's executor.
#pragma once

#include "core/stored_handler.hpp"
#include "core/token_bucket.hpp"
#include "stream/byte_stream.hpp"
#include "wire/frame.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace warren::wire {

/// Limits that several sessions share (the server: one user's tunnels):
/// their streams and granted windows are counted here, so max_streams and
/// max_buffered bound them together, and with open_rate set their peers'
/// OPENs take tokens from one bucket (instead of each session's
/// max_opens_per_second). Single-threaded, like the sessions.
struct peer_budget {
  std::uint64_t streams = 0; // live streams of all the sessions
  std::uint64_t windows = 0; // receive windows granted to their TCP streams
  std::optional<token_bucket> open_rate;
  std::string scope; // for refusals, e.g. "all tunnels of user alice"
};

struct session_config {
  bool is_client = true;
  std::uint32_t initial_window = k_default_initial_window; // granted to each new stream
  std::uint32_t max_window = 16u << 20;                    // auto-tuning ceiling
  std::uint32_t max_streams = k_default_max_streams;       // concurrent streams we accept
  // The receive windows granted to all streams together, i.e. what the peer
  // can make this session buffer: windows stop growing at it, and a peer's
  // OPEN whose window would not fit is refused (limit reached).
  std::uint64_t max_buffered = 64u << 20;
  std::chrono::milliseconds ping_interval{15'000};
  std::size_t max_queued_datagrams = 256;           // per flow, receive side
  std::size_t max_queued_datagram_bytes = 4u << 20; // all flows together, receive side
  std::size_t datagram_send_limit = 1 << 20;        // queued bytes beyond which outgoing datagrams drop
  // Streams the peer may open (its OPEN frames, refused ones included), per
  // second and at once: a token bucket. An OPEN beyond it stops the reader
  // until its token is due, so a peer that opens faster waits in its own
  // socket, and the work its opens cause (a connect each, on the server) is
  // bounded. 0: no limit (the client; a server never opens streams).
  std::uint32_t max_opens_per_second = 0;
  std::uint32_t open_burst = 0;
  std::string label = "session";                    // log prefix
  // Shared with other sessions: max_streams and max_buffered then bound
  // them all together. Null: this session's own.
  std::shared_ptr<peer_budget> budget;
};

struct session_stats {
  std::uint64_t bytes_in = 0; // transport bytes
  std::uint64_t bytes_out = 0;
  std::uint64_t streams_opened = 0;
  std::uint64_t datagrams_dropped = 0;
  std::uint64_t open_pauses = 0; // times the reader waited for the peer's open rate
  std::chrono::microseconds srtt{0};     // smoothed round trip (flow.hpp rtt_estimator); 0: no sample yet
  std::chrono::microseconds rtt_last{0}; // the last PING/PONG sample
  std::uint64_t rtt_samples = 0;
};

class session;
struct stream_state;

/// One multiplexed TCP stream or UDP flow. Owned by its user.
class mux_stream final : public stream::byte_stream {
 public:
  mux_stream(std::shared_ptr<session> s, std::shared_ptr<stream_state> st);
  ~mux_stream() override;
  mux_stream(const mux_stream&) = delete;
  mux_stream& operator=(const mux_stream&) = delete;

  // byte_stream (TCP streams)
  boost::asio::any_io_executor get_executor() override;
  boost::asio::awaitable<std::size_t> read_some(boost::asio::mutable_buffer buffer, error_code& ec) override;
  void async_wait_readable(std::function<void(error_code)> ready) override;
  bool async_wait_writable(std::function<void(error_code)> ready) override;
  using byte_stream::try_read_some;
  using byte_stream::try_write_some;
  std::size_t try_read_some(std::span<const boost::asio::mutable_buffer> buffers, error_code& ec) override;
  std::size_t try_write_some(std::span<const boost::asio::const_buffer> buffers, error_code& ec) override;
  // Zero-copy for the pump: received DATA payloads are written to the
  // socket in place, and the socket is read straight into DATA frames.
  std::size_t peek(std::span<boost::asio::const_buffer> out, error_code& ec) override;
  void consume(std::size_t n) override;
  std::size_t prepare(std::size_t max, std::span<boost::asio::mutable_buffer> out, error_code& ec) override;
  void commit(std::size_t n) override;
  boost::asio::awaitable<void> write(std::span<const boost::asio::const_buffer> buffers, error_code& ec) override;
  boost::asio::awaitable<void> shutdown(error_code& ec) override; // DATA + FIN (half-close)
  void close() override;                                          // RESET (closed) unless already finished
  std::string description() const override;

  std::uint32_t id() const;
  stream_kind kind() const;

  /// Client: waits for OPEN_OK (nullopt) or the RESET that refused the open.
  boost::asio::awaitable<std::optional<reset_info>> wait_open();
  /// Returns once the stream has been reset: by the peer, by close() or
  /// refuse(), or because the session ended. The server awaits it next to
  /// the outbound connect, which then ends with the stream.
  boost::asio::awaitable<void> wait_reset();
  /// Server: the outbound side is up (OPEN_OK) / could not be opened (RESET).
  void accept();
  void refuse(reset_code code, std::string_view reason);
  /// The reset that ended the stream, if any.
  std::optional<reset_info> reset_reason() const;

  // UDP flows
  bool send_datagram(std::span<const std::uint8_t> datagram); // false: dropped (congested or closed)
  /// The next datagram; nullopt when the flow or session ended.
  boost::asio::awaitable<std::optional<std::vector<std::uint8_t>>> receive_datagram();

 private:
  std::shared_ptr<session> session_;
  std::shared_ptr<stream_state> state_;
};

class session : public std::enable_shared_from_this<session> {
 public:
  using open_handler = std::function<void(std::unique_ptr<mux_stream>, open_request)>;
  using closed_handler = std::function<void(const std::string& reason)>;

  static std::shared_ptr<session> create(stream::byte_stream_ptr transport, session_config config);
  ~session();

  /// Server side: called for every accepted OPEN.
  void set_open_handler(open_handler h) { open_handler_ = std::move(h); }
  /// Called once when the session ends (reason: why, for the user).
  void set_closed_handler(closed_handler h) { closed_handler_ = std::move(h); }
  /// Called when the peer sends GOAWAY (no new streams on this session).
  void set_goaway_handler(std::function<void(const goaway_info&)> h) { goaway_handler_ = std::move(h); }

  /// Sends HELLO and starts the reader, writer and pinger.
  void start();

  /// Client: a new stream; data may be written at once (no round trip).
  /// Null when the session is closed or draining.
  std::unique_ptr<mux_stream> open(stream_kind kind, const target_address& target);

  /// No new streams from the peer; open ones continue. Sends GOAWAY.
  void goaway(reset_code code, std::string_view reason);
  /// Ends the session now; every stream fails.
  void close(std::string reason);
  /// Ends the session politely: queued frames are written, then the
  /// transport is shut down (WebSocket close, TLS close_notify) within
  /// 1 s, then close(reason).
  void shutdown(std::string reason);

  bool closed() const { return closed_; }
  bool draining() const { return draining_ || peer_goaway_; }
  std::size_t stream_count() const { return streams_.size(); }
  const session_stats& stats() const { return stats_; }
  const std::string& label() const { return config_.label; }
  boost::asio::any_io_executor get_executor() const { return ex_; }

 private:
  friend class mux_stream;
  session(stream::byte_stream_ptr transport, session_config config);

  boost::asio::awaitable<void> reader();
  boost::asio::awaitable<void> writer();
  boost::asio::awaitable<void> pinger();
  bool on_frame(const decoded_frame& f); // false: connection error (closed)
  void on_hello(std::span<const std::uint8_t> payload);
  void on_open(const frame_header& h, std::span<const std::uint8_t> payload);
  void on_data(const frame_header& h, std::span<const std::uint8_t> payload);
  void on_window(const frame_header& h, std::span<const std::uint8_t> payload);
  void on_reset(const frame_header& h, std::span<const std::uint8_t> payload);
  void on_datagram(const frame_header& h, std::span<const std::uint8_t> payload);
  void on_ping(const frame_header& h, std::span<const std::uint8_t> payload);
  void on_goaway(std::span<const std::uint8_t> payload);
  void protocol_error(reset_code code, const std::string& message);
  void run_woken(); // the waiters in woken_, now

  // Frame output: control frames jump the data queue.
  std::vector<std::uint8_t> take_buffer();
  std::vector<std::uint8_t> take_frame();        // a full-size DATA frame, contents unspecified
  void recycle(std::vector<std::uint8_t> frame); // a written or unused frame, for reuse
  void send_control(std::vector<std::uint8_t> frame);
  void send_reply(std::vector<std::uint8_t> frame); // a control frame that answers one of the peer's (counted)
  bool peer_opened(std::uint32_t id) const { return (id % 2 == 1) != config_.is_client; } // client ids are odd
  // A stream's DATA, FIN or datagram frame, in order; wake: post the writer's wake-up.
  void send_data(stream_state& st, std::vector<std::uint8_t> frame, bool wake = true);
  void wake_writer_now(); // an idle writer runs now, on this stack
  void send_reset(std::uint32_t id, reset_code code, std::string_view reason, bool reply = false);
  void finish_stream(const std::shared_ptr<stream_state>& st); // remove when both directions are done
  void fail_stream(const std::shared_ptr<stream_state>& st, reset_info why, bool send);
  void consumed(stream_state& st, std::size_t n);
  // `posted`: called from the event's completion (a fresh stack), so
  // `ready` may run at once instead of being posted once more.
  void wait_readable(const std::shared_ptr<stream_state>& st, std::function<void(error_code)> ready,
                     bool posted = false);
  void wait_writable(const std::shared_ptr<stream_state>& st, std::function<void(error_code)> ready,
                     bool posted = false);
  void add_stream(const std::shared_ptr<stream_state>& st);
  void remove_stream(const std::shared_ptr<stream_state>& st);
  void drop_datagrams(stream_state& st);
  std::uint32_t max_payload() const { return peer_max_payload_; }

  boost::asio::any_io_executor ex_;
  stream::byte_stream_ptr transport_;
  session_config config_;
  std::map<std::uint32_t, std::shared_ptr<stream_state>> streams_;
  std::uint32_t next_id_;
  std::uint64_t granted_windows_ = 0; // sum of the receive windows of live streams (memory bound)
  std::shared_ptr<peer_budget> budget_; // config_.budget or our own: streams_ and granted_windows_ summed with others
  std::uint32_t last_peer_id_ = 0;
  std::uint32_t peer_initial_window_ = k_default_initial_window;
  std::uint32_t peer_max_payload_ = k_default_max_payload;
  std::uint32_t peer_max_streams_ = k_default_max_streams;
  bool hello_received_ = false;
  bool closed_ = false;
  bool draining_ = false;
  bool peer_goaway_ = false;
  std::deque<std::vector<std::uint8_t>> control_q_;
  std::size_t replies_queued_ = 0; // send_reply() frames in control_q_
  bool reader_paused_ = false;     // waiting for the replies to go out
  token_bucket open_rate_;         // the peer's OPENs (config_.max_opens_per_second)
  token_bucket* opens_;            // &open_rate_, or the shared budget's bucket
  // Waiters of streams that the frames just decoded made readable (a pump,
  // a reading coroutine): the reader runs them between decoding and its
  // next read, so a reply goes out before we look for more input.
  std::vector<core::stored_handler<void()>> woken_;
  std::deque<std::vector<std::uint8_t>> data_q_;
  std::size_t data_q_bytes_ = 0;
  std::uint64_t data_frames_queued_ = 0;  // into data_q_, ever
  std::uint64_t data_frames_written_ = 0; // out of it (or dropped with it)
  std::size_t datagram_bytes_ = 0;        // received, queued in all flows
  std::vector<std::vector<std::uint8_t>> pool_;
  std::vector<std::vector<std::uint8_t>> frame_pool_; // full-size DATA frames (k_full_frame bytes)
  std::vector<std::pair<std::vector<std::uint8_t>, std::size_t>> prepared_; // prepare() .. commit(): frame, offered
  std::unique_ptr<struct session_events> events_;
  open_handler open_handler_;
  closed_handler closed_handler_;
  std::function<void(const goaway_info&)> goaway_handler_;
  session_stats stats_;
  std::string close_reason_;
  std::string close_after_flush_; // close once the queued frames are written (protocol error, shutdown)
  bool failed_ = false;           // a protocol error: its GOAWAY is the last frame written
  bool graceful_ = false;         // shutdown(): also end the transport politely
};

} // namespace warren::wire
