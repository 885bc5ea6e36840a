// The tunnel server: accepts tunnel connections on a listen URL, checks the
// token, runs one mux session per client, and serves each stream by
// connecting to its target (Happy Eyeballs, destination policy checked on the
// resolved addresses) and relaying; UDP flows get a connected UDP socket.
//
// Graceful stop: GOAWAY to every client (no new streams), open streams may
// finish until the drain deadline, then everything closes.
// Lifetime: create with make_shared, start(), stop(); single-threaded.
#pragma once

#include "core/fd_limit.hpp"
#include "core/log_limiter.hpp"
#include "net/accept_backoff.hpp"
#include "net/connector.hpp"
#include "net/listen.hpp"
#include "stream/event.hpp"
#include "transport/transport.hpp"
#include "tunnel/connect_slots.hpp"
#include "tunnel/handshake_slots.hpp"
#include "tunnel/policy.hpp"
#include "tunnel/server_access.hpp"
#include "wire/session.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace warren::tunnel {

struct server_options {
  /// Every --listen, each with its own scheme and path; one server (limits,
  /// failure limiter, handshake slots) behind all of them.
  std::vector<transport::url> listen;
  transport::accept_options accept; // accept.users: who may connect (its user names)
  destination_policy policy;        // for users without rules of their own
  /// Users limited to rules of their own (the users file's `allow`).
  std::map<std::string, destination_policy, std::less<>> user_policies;
  std::string fingerprint;      // of accept.tls's certificate (a reload reports whether it changed)
  net::connect_options connect; // he settings for outbound connections
  wire::session_config session;
  std::chrono::milliseconds drain_timeout{10'000};
  std::chrono::milliseconds udp_idle_timeout{60'000};
  /// Tunnels at a time, all users. When they are all taken, a newcomer of
  /// a user holding fewer evicts the oldest tunnel of the user holding the
  /// most (evict_for()), so the slots are shared out between users.
  std::size_t max_clients = 1024;
  /// What one client can make the server buffer: the receive windows of its
  /// streams together (session.max_buffered). 0: session.max_streams x
  /// session.initial_window, so the stream limit alone decides.
  std::uint64_t max_buffer_per_client = 0;
  /// The limits "per client" (streams, buffer, lookups, connects, opens per
  /// second) are per user: all tunnels of one user share them, so opening
  /// more tunnels gains nothing.
  /// Name lookups one client can have in the resolver at a time (cancelled
  /// ones that still run included); more wait their turn in its own queue.
  /// Keep it well below the resolver's thread count (the CLI: 32 threads),
  /// so that a client with slow names leaves the others their lookups.
  std::size_t max_lookups_per_client = 8;
  /// Connections still in their handshake (not authenticated yet), in all
  /// and from one source (an IPv4 address or IPv6 /64): one over the
  /// per-source bound is closed at once; with all taken, a newcomer evicts
  /// the oldest (of the source holding the most, if that is fairer). See
  /// tunnel/handshake_slots.hpp.
  std::size_t max_handshakes = 256;
  std::size_t max_handshakes_per_source = 32;
  /// Streams one client may open per second, and at once (its OPENs,
  /// refused ones included: each costs a connect). Beyond it the server
  /// stops reading that client's tunnel until the next is due (see
  /// wire::session_config); its other streams wait with it, nobody else does.
  std::uint32_t max_opens_per_second = 256;
  std::uint32_t open_burst = 512;
  /// Outbound connects one client may have in flight (lookups and attempts,
  /// until the stream is connected or refused); more wait their turn, in
  /// order. See tunnel/connect_slots.hpp.
  std::size_t max_connects_per_client = 64;
  /// Descriptors all clients' streams may hold together (one socket per
  /// stream, TCP or UDP); a stream beyond it is refused (limit reached), so
  /// the descriptors left keep accept() and handshakes working for everyone.
  /// warren server sizes it to the open-file limit (stream_descriptors()). 0: no bound.
  std::size_t max_stream_fds = 0;
};

/// What the streams may hold under an open-file limit: the limit less a
/// reserve (fd_reserve) and less what tunnels and handshakes take, which is
/// counted as at most a quarter of the limit. 0 (no bound) for an unknown
/// limit.
std::size_t stream_descriptors(std::uint64_t fd_limit, std::size_t max_clients, std::size_t max_handshakes);

/// --max-clients and --max-handshakes lowered (if need be) so that tunnels
/// and handshakes together fit the quarter of the limit stream_descriptors()
/// leaves them: each holds a descriptor, and past the limit accept() fails,
/// so a newcomer could no longer evict the oldest handshake (256 silent
/// connections from 8 sources held every descriptor under a limit of 256).
/// Handshakes get at most half the share. Unchanged for an unknown limit.
struct tunnel_bounds {
  std::size_t max_clients;
  std::size_t max_handshakes;
};
tunnel_bounds fit_tunnels(std::uint64_t fd_limit, std::size_t max_clients, std::size_t max_handshakes);

class server : public std::enable_shared_from_this<server> {
 public:
  server(boost::asio::any_io_executor ex, net::resolver& r, server_options options);

  /// Binds every listen URL (net/listen.hpp: `localhost` and `*` bind
  /// IPv4 and IPv6); all bound endpoints, in listen order. The error is a
  /// sentence for the user; nothing stays bound then.
  expected<std::vector<boost::asio::ip::tcp::endpoint>> bind();
  /// After bind(): what each listen URL bound.
  struct bound_listen {
    transport::url url;
    std::vector<boost::asio::ip::tcp::endpoint> endpoints;
    bool ipv6_only = false; // a bare IPv6 wildcard ([::]): IPv4 clients are refused
  };
  std::vector<bound_listen> listening() const;
  void start();
  /// Graceful stop; `done` runs when every session has ended, at most
  /// `drain` (default: options' drain_timeout) plus one 50 ms tick later.
  void stop(std::function<void()> done);
  void stop(std::chrono::milliseconds drain, std::function<void()> done);
  /// After the event loop was stopped without a drain (a second signal):
  /// drops every session, whose handlers hold the server, so what the loop
  /// still holds frees everything when it goes. Streams it cuts reset.
  void abandon();
  std::size_t sessions() const { return sessions_.size(); }
  /// Cheap totals for status: transport bytes and streams of the tunnels
  /// open now and of those that have ended.
  struct counters_view {
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t tunnels_open = 0;
    std::uint64_t tunnels_total = 0;
    std::uint64_t streams_open = 0;
    std::uint64_t streams_total = 0;
    // The mean, over the tunnels up that have measured one, of their
    // PING/PONG round trip (smoothed, last sample); 0 when none has.
    std::chrono::microseconds srtt{0};
    std::chrono::microseconds rtt_last{0};
  };
  counters_view counters() const;

  /// Applies re-read access settings (load_access()): new handshakes use
  /// the new users and certificate, new streams the new rules; open streams
  /// keep going, except that the tunnels of revoked users (removed, or
  /// their token changed) are closed (GOAWAY, then shut down). Logs one line
  /// saying what changed, and returns it.
  access_change reload(server_access access);
  const server_access& access() const { return access_; }

 private:
  /// An acceptor and the listen URL (index into options_.listen) it serves.
  struct listener {
    boost::asio::ip::tcp::acceptor acceptor;
    std::size_t url;
  };
  void accept_loop(listener& l);
  /// Whether a new connection may start its handshake; logs (within budget) why not.
  std::optional<handshake_slots::ticket> admit(boost::asio::ip::tcp::socket& socket);
  boost::asio::awaitable<void> handshake(boost::asio::ip::tcp::socket socket, handshake_slots::ticket slot,
                                         const transport::url& listen);
  /// Logs why a connection was closed or evicted, within a budget.
  void turn_away(const std::string& line);
  /// What the server keeps per user, shared by all of the user's tunnels
  /// while one is connected. Its lookups: at most max_lookups_per_client of
  /// the shared resolver's threads at a time. Its connects: at most
  /// max_connects_per_client in flight. Its streams, their buffers and its
  /// opens per second: counted in `budget` by each of its sessions.
  struct user_state {
    user_state(std::string n, std::shared_ptr<net::bounded_resolver> r, const server_options& o)
        : name(std::move(n)), lookups(std::move(r)), connects(o.max_connects_per_client),
          budget(std::make_shared<wire::peer_budget>()) {
      budget->scope = "all tunnels of user " + name;
      budget->open_rate.emplace(o.max_opens_per_second, o.open_burst);
    }
    std::string name;
    std::shared_ptr<net::bounded_resolver> lookups;
    connect_slots connects;
    std::shared_ptr<wire::peer_budget> budget;
    std::list<std::weak_ptr<wire::session>> sessions;
  };
  /// What the server keeps per tunnel beside its session: its user, and the
  /// log of its refused streams: a few per interval, then a count (log
  /// volume is a resource a client can spend).
  struct client_state {
    client_state(std::string l, std::shared_ptr<user_state> u) : label(std::move(l)), user(std::move(u)) {}
    std::string label;
    std::shared_ptr<user_state> user;
    line_limiter refused{k_refusals_logged, k_refusal_log_interval};
  };
  /// With every --max-clients slot taken: closes the oldest tunnel of the
  /// user holding the most, if that user holds at least two more than
  /// `user` (the newcomer's), so one user cannot keep the others out.
  /// Whether it did.
  bool evict_for(const std::string& user, const std::string& from);
  /// The user's state, made when its first tunnel connects.
  std::shared_ptr<user_state> user_for(const std::string& name);
  static constexpr std::size_t k_refusals_logged = 10;
  static constexpr std::chrono::seconds k_refusal_log_interval{10};

  void on_open(const std::shared_ptr<client_state>& log, std::unique_ptr<wire::mux_stream> stream,
               wire::open_request request);
  /// A connect slot of the client's; none if the stream was reset first.
  static boost::asio::awaitable<std::optional<connect_slots::ticket>> connect_slot(client_state& client,
                                                                                   wire::mux_stream& stream);
  boost::asio::awaitable<void> serve_tcp(std::shared_ptr<client_state> log, std::unique_ptr<wire::mux_stream> stream,
                                         wire::open_request request);
  boost::asio::awaitable<void> serve_udp(std::shared_ptr<client_state> client, std::unique_ptr<wire::mux_stream> stream,
                                         wire::open_request request);
  net::connect_options outbound_options(const wire::open_request& request, std::uint32_t id,
                                        const std::shared_ptr<const destination_policy>& policy) const;
  /// Why a name the policy can never allow is denied, without looking it up.
  static std::optional<std::string> denied_without_lookup(const wire::open_request& request,
                                                          const destination_policy& policy);
  /// Refuses a stream, logging it within the client's log budget.
  void refuse(client_state& log, wire::mux_stream& stream, wire::reset_code code, const std::string& detail);
  /// A descriptor for a stream's outbound socket, or the stream refused
  /// (limit reached) when all max_stream_fds are held.
  std::optional<fd_budget::ticket> stream_fd(client_state& client, wire::mux_stream& stream);

  boost::asio::any_io_executor ex_;
  net::resolver& resolver_;
  server_options options_;
  std::list<listener> listeners_;                           // a list: accept loops hold references
  std::vector<bool> ipv6_only_;                             // per --listen: a bare IPv6 wildcard
  line_limiter bad_forwarded_{1, std::chrono::seconds(60)}; // unreadable X-Forwarded-For from a trusted proxy
  line_limiter untrusted_forwarded_{1, std::chrono::seconds(60)}; // X-Forwarded-For from a peer not trusted
  std::list<std::shared_ptr<wire::session>> sessions_;
  counters_view ended_; // of the sessions that have closed (bytes, streams_total)
  /// Removes the sessions `which` picks from sessions_, counting them as ended.
  void forget_sessions(const std::function<bool(const std::shared_ptr<wire::session>&)>& which);
  std::uint64_t tunnels_total_ = 0;
  server_access access_; // users, rules, certificate: what a reload replaces
  std::map<std::string, std::weak_ptr<user_state>, std::less<>> users_; // those with a tunnel
  transport::auth_limiter limiter_;
  net::accept_backoff accept_backoff_{"server"};
  handshake_slots handshakes_;
  fd_budget stream_fds_;
  line_limiter out_of_fds_{3, std::chrono::seconds(10)}; // streams refused for lack of descriptors
  std::string evicted_; // whom admit() just evicted, for its log line
  line_limiter handshake_failures_{64, std::chrono::seconds(10)};
  line_limiter turned_away_{3, std::chrono::seconds(10)};                   // connections closed at once (limits)
  std::vector<std::uint8_t> udp_buffer_ = std::vector<std::uint8_t>(65536); // every UDP flow reads into it, in turn
  std::uint64_t next_client_ = 0;
  bool stopping_ = false;
  std::list<boost::asio::steady_timer*> udp_idle_timers_; // stop() cancels them: flows recheck their idle limit
  static constexpr std::chrono::milliseconds k_drain_udp_idle{1'000};
};

} // namespace warren::tunnel
