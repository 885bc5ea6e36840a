// The tunnel client: keeps one tunnel to the server up (reconnecting on the
// schedule of tunnel/reconnect.hpp, local listeners staying bound
// meanwhile) and serves
// the forwards through it: -L TCP and UDP port forwards and -D SOCKS5
// (CONNECT and UDP ASSOCIATE, names resolved by the server: socks5h).
// A new local connection waits for the tunnel up to wait_for_tunnel, then
// gets a clean refusal (a reset, or a SOCKS5 failure reply).
// Lifetime: make_shared, bind(), start(), stop(); single-threaded.
#pragma once

#include "core/fd_limit.hpp"
#include "core/log_limiter.hpp"
#include "net/accept_backoff.hpp"
#include "net/listen.hpp"
#include "net/udp_sessions.hpp"
#include "stream/event.hpp"
#include "transport/transport.hpp"
#include "tunnel/forward.hpp"
#include "tunnel/reconnect.hpp"
#include "wire/session.hpp"

#include <boost/asio/ip/udp.hpp>
#include <spdlog/spdlog.h>

#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace warren::tunnel {

struct client_options {
  transport::url server;
  transport::dial_options dial;
  wire::session_config session;
  std::vector<forward_spec> forwards;
  std::chrono::milliseconds wait_for_tunnel{10'000};
  std::chrono::milliseconds udp_idle_timeout{60'000};
  std::size_t max_udp_flows = 4096;
  /// A SOCKS5 client must send its greeting, authentication and request
  /// within this; anyone who can reach the port can open connections that
  /// send nothing, and each holds a descriptor.
  std::chrono::milliseconds socks_handshake_timeout{10'000};
  /// Descriptors the local side may hold (accepted connections, SOCKS5 UDP
  /// relay sockets); a connection past it is closed at once, so the tunnel
  /// can still redial. 0: no bound. The CLI sizes it from the open-file
  /// limit (core/fd_limit.hpp).
  std::size_t max_local_descriptors = 0;
  std::string socks_user; // RFC 1929 username/password required when set
  std::string socks_password;
};

class client : public std::enable_shared_from_this<client> {
 public:
  client(boost::asio::any_io_executor ex, net::resolver& r, client_options options);
  ~client();

  /// Binds every forward's listen address; the error names the forward.
  expected<std::vector<std::string>> bind();
  /// Starts the tunnel supervisor and the forwards. `fatal` is called if
  /// the very first connection fails for a reason retrying cannot fix
  /// (token refused, certificate pin mismatch or verification, a client
  /// certificate required, the wrong scheme: transport::failure_kind).
  /// After a tunnel has been up, such failures are retried (the server's
  /// configuration may change back), logged with their hint.
  void start(std::function<void(const std::string&)> fatal);
  void stop();
  /// No tunnel is up (after stop(): the polite close has finished).
  bool idle() const { return !current_ && retiring_.empty(); }
  /// The token for the next dials (SIGHUP re-read it); tunnels up keep
  /// theirs. Without a tunnel, the next dial is now (within the minimum gap).
  void set_token(std::string token);

  /// Told on the executor when a tunnel comes up (the server's address,
  /// "host:port") and when it ends (why, as the log line says it).
  struct tunnel_observer {
    std::function<void(const std::string& peer)> up;
    std::function<void(const std::string& why)> down;
  };
  void set_observer(tunnel_observer o) { observer_ = std::move(o); }
  /// Cheap totals: transport bytes and streams of the tunnel up now and of
  /// those that ended, tunnels established, dials after the first.
  struct counters_view {
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t streams_open = 0;
    std::uint64_t streams_total = 0;
    std::uint64_t tunnels_total = 0;
    std::uint64_t redials = 0;
    // The tunnel up now: its PING/PONG round trip (smoothed, last sample); 0 without one.
    std::chrono::microseconds srtt{0};
    std::chrono::microseconds rtt_last{0};
  };
  counters_view counters() const;

  // ---- streams for an embedder (`warren tun --upstream wss://...`) ----
  // A client with no forwards still keeps its tunnel up; these open streams
  // on it directly. On the client's executor.

  struct open_result {
    std::unique_ptr<wire::mux_stream> stream; // open (the server said OPEN_OK)
    std::optional<wire::reset_info> refused;  // the server's RESET instead
    std::string error;                        // without a stream: one sentence
    bool no_tunnel = false;                   // none came within wait_for_tunnel
  };
  /// A TCP stream to `target`: waits up to wait_for_tunnel for a tunnel, then
  /// for the server's answer (it connects first). Cancellable (`||`).
  boost::asio::awaitable<open_result> open_stream(wire::target_address target);
  /// A UDP flow to `target` on the tunnel up now, without waiting: null when
  /// none is up (the supervisor then dials at once, as for a -L UDP
  /// datagram). Datagrams may be sent at once; the server connects a socket
  /// to `target`, so replies come from it alone.
  std::unique_ptr<wire::mux_stream> open_datagram_flow(const wire::target_address& target);
  /// Waits up to wait_for_tunnel for a usable tunnel; false when none came.
  boost::asio::awaitable<bool> wait_for_tunnel();
  /// stop() was called.
  bool stopped() const { return stopped_; }

 private:
  struct forward;
  struct udp_flow;
  boost::asio::awaitable<void> supervise();
  /// Sleeps until the schedule's next attempt; a local connection that
  /// starts waiting meanwhile wakes it (the schedule then says "now").
  boost::asio::awaitable<void> sleep_until_next_attempt();
  std::chrono::milliseconds until_next_attempt() const; // for the log; 0: now
  /// Keeps a tunnel the server sent GOAWAY on until its streams end.
  void retire(std::shared_ptr<wire::session> s);
  std::optional<waiting_connections> waiting() const;
  /// A local connection or datagram wants a tunnel: the supervisor's sleep ends.
  void arrived(time_point now);
  boost::asio::awaitable<std::shared_ptr<wire::session>> tunnel_for_new_stream();
  void accept_loop(forward& f, boost::asio::ip::tcp::acceptor& acceptor);
  boost::asio::awaitable<void> serve_tcp_forward(boost::asio::ip::tcp::socket socket, forward& f, fd_budget::ticket fd);
  boost::asio::awaitable<void> serve_socks(boost::asio::ip::tcp::socket socket, fd_budget::ticket fd);
  /// Greeting, authentication and request; nothing when the connection is
  /// to end (what it was told is sent). Bounded by socks_handshake_timeout.
  struct socks_request;
  boost::asio::awaitable<std::optional<socks_request>> socks_handshake(boost::asio::ip::tcp::socket& socket);
  boost::asio::awaitable<void> socks_udp(boost::asio::ip::tcp::socket& control, std::vector<std::uint8_t> leftover);
  /// Logs a line a local connection can make us repeat, within the budget.
  void log_local(spdlog::level::level_enum level, const std::string& line);
  void udp_receive(forward& f, std::size_t listener);
  void udp_flow_reader(forward& f, std::shared_ptr<udp_flow> flow);
  void udp_sweep();

  boost::asio::any_io_executor ex_;
  net::resolver& resolver_;
  client_options options_;
  std::vector<std::unique_ptr<forward>> forwards_;
  std::shared_ptr<wire::session> current_;
  stream::async_event tunnel_changed_;
  std::list<std::shared_ptr<wire::session>> retiring_; // GOAWAY received; their streams finish
  static constexpr std::size_t k_max_retiring = 4;      // beyond it the oldest is closed (retire())
  reconnect_schedule schedule_;
  std::multiset<time_point> waiting_deadlines_; // of local connections waiting for a tunnel
  time_point latest_arrival_{};
  // A datagram that found no tunnel (dropped, as UDP may): its sender will
  // likely retry, so it counts as a connection waiting until then.
  std::optional<time_point> udp_waiting_until_;
  std::mt19937_64 rng_;
  std::function<void(const std::string&)> fatal_;
  bool ever_connected_ = false;
  tunnel_observer observer_;
  counters_view ended_; // of tunnels that have ended: bytes and streams_total
  std::uint64_t dials_ = 0;
  std::uint64_t tunnels_total_ = 0;
  bool stopped_ = false;
  boost::asio::steady_timer sweep_timer_;
  boost::asio::steady_timer retry_timer_;
  // Bounds on what local connections can make us hold and log.
  fd_budget local_fds_;
  net::accept_backoff accept_backoff_{"client"};
  line_limiter turned_away_{3, std::chrono::seconds(10)};
  line_limiter local_log_{10, std::chrono::seconds(10)};
};

} // namespace warren::tunnel
