#include "unit/relay_unit.hpp"

#include "core/duration.hpp"
#include "core/fd_limit.hpp"
#include "core/log.hpp"
#include "net/accept_backoff.hpp"
#include "net/listen.hpp"
#include "net/resolver.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <unordered_map>

namespace warren::unit {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

expected<std::chrono::milliseconds> duration_of(const std::string& text, const char* option) {
  auto d = parse_duration(text);
  if (!d)
    return expected<std::chrono::milliseconds>::failure(std::string(option) + ": " + d.error());
  return *d;
}

} // namespace

expected<relay_options> relay_options_from(const relay_args& a) {
  using result = expected<relay_options>;
  relay_options c;
  c.udp = a.udp;
  auto listen = net::parse_listen_address(a.listen);
  if (!listen)
    return result::failure(listen.error());
  c.listen = *listen;
  auto target = net::parse_host_port(a.target);
  if (!target)
    return result::failure("target " + target.error());
  c.target = *target;
  if (a.udp && c.listen.kind == net::listen_kind::unix_path)
    return result::failure("--udp cannot listen on a Unix stream socket path (" + c.listen.path + ")");

  auto policy = net::parse_family_policy(a.family);
  if (!policy)
    return result::failure("--family '" + a.family + "' is not one of auto, prefer-ipv4, ipv4, ipv6");
  c.connect.he.policy = *policy;
  auto timeout = duration_of(a.connect_timeout, "--connect-timeout");
  if (!timeout)
    return result::failure(timeout.error());
  c.connect.he.timeout = *timeout;
  if (c.connect.he.timeout < std::chrono::milliseconds(100))
    return result::failure("--connect-timeout must be at least 100ms");
  auto delay = duration_of(a.attempt_delay, "--attempt-delay");
  if (!delay)
    return result::failure(delay.error());
  c.connect.he.attempt_delay = *delay;
  if (c.connect.he.attempt_delay < std::chrono::milliseconds(100) ||
      c.connect.he.attempt_delay > std::chrono::milliseconds(2000))
    return result::failure("--attempt-delay must be between 100ms and 2s (RFC 8305 §5)");
  if (!a.source.empty()) {
    c.connect.source = net::parse_ip(a.source);
    if (!c.connect.source)
      return result::failure("--source '" + a.source + "' is not an IP address");
    if ((c.connect.source->is_v4() && *policy == net::family_policy::ipv6_only) ||
        (c.connect.source->is_v6() && *policy == net::family_policy::ipv4_only))
      return result::failure("--source " + a.source + " contradicts --family " + a.family);
  }
  c.connect.interface = a.interface;
  auto idle = duration_of(a.udp_idle_timeout, "--udp-idle-timeout");
  if (!idle)
    return result::failure(idle.error());
  c.udp_options.idle_timeout = *idle;
  if (c.udp_options.idle_timeout < std::chrono::milliseconds(100))
    return result::failure("--udp-idle-timeout must be at least 100ms");
  if (a.max_udp_sessions < 1 || a.max_udp_sessions > 1'000'000)
    return result::failure("--max-udp-sessions must be between 1 and 1000000");
  if (a.max_connections < 1 || a.max_connections > 1'000'000)
    return result::failure("--max-connections must be between 1 and 1000000");
  c.udp_options.max_sessions = a.max_udp_sessions;
  c.udp_options.policy = *policy;
  c.udp_options.source = c.connect.source;
  c.max_connections = a.max_connections;
  c.mode = a.no_splice ? net::relay_mode::copy : net::relay_mode::automatic;
  c.check_target = !a.no_target_check;
  return c;
}

/// Serves TCP (or Unix) connections: accept, connect the target, relay.
/// Owned by its pending operations as well as by the unit (a connect still
/// under way when the unit stops finishes here, and closes its client), so
/// it holds its own copy of the options and its own resolver.
class relay_server : public std::enable_shared_from_this<relay_server> {
 public:
  relay_server(asio::any_io_executor ex, std::shared_ptr<const relay_options> o) : ex_(ex), options_(std::move(o)) {}

  std::vector<tcp::acceptor> acceptors;
  std::optional<asio::local::stream_protocol::acceptor> unix_acceptor;
  std::vector<asio::ip::udp::socket> udp_sockets; // until the forwarder takes them

  std::shared_ptr<net::system_resolver> resolver = std::make_shared<net::system_resolver>();
  std::function<void()> on_idle; // set while draining: runs when the last connection ends

  void serve() {
    if (unix_acceptor)
      accept_loop(*unix_acceptor);
    for (auto& a : acceptors)
      accept_loop(a);
  }

  void close_listeners() {
    error_code ignored;
    for (auto& a : acceptors)
      a.close(ignored);
    if (unix_acceptor && unix_acceptor->is_open()) {
      unix_acceptor->close(ignored);
      ::unlink(options_->listen.path.c_str());
    }
  }

  /// Stops new work and resets every relay; connects under way close their
  /// client when they complete.
  void cut() {
    stopping_ = true;
    cut_ = true;
    close_listeners();
    auto live = std::move(live_);
    live_.clear();
    for (auto& [id, h] : live)
      if (auto r = h.lock()) {
        account(r->progress());
        r->cut();
      }
  }

  void stop_accepting() {
    stopping_ = true;
    close_listeners();
  }

  std::size_t active() const { return active_; }

  void add_counters(unit_counters& c) const {
    c.bytes_up += bytes_up_;
    c.bytes_down += bytes_down_;
    for (const auto& [id, h] : live_)
      if (auto r = h.lock()) {
        const auto s = r->progress();
        c.bytes_up += s.a_to_b;
        c.bytes_down += s.b_to_a;
      }
    c.connections_open += active_;
    c.connections_total += total_;
  }

  template <class Acceptor>
  void accept_loop(Acceptor& acceptor) {
    using socket_type = typename Acceptor::protocol_type::socket;
    acceptor.async_accept([self = shared_from_this(), &acceptor](error_code ec, socket_type socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open() || self->stopping_)
        return;
      if (ec) {
        // EMFILE and friends: back off briefly instead of spinning, logged within a budget.
        self->accept_backoff_.failed(self->ex_, ec, [self, &acceptor] {
          if (acceptor.is_open() && !self->stopping_)
            self->accept_loop(acceptor);
        });
        return;
      }
      self->on_accept(std::move(socket));
      self->accept_loop(acceptor);
    });
  }

 private:
  template <class Socket>
  void on_accept(Socket socket) {
    const auto id = ++next_id_;
    error_code ec;
    // The peer's name is only for log lines: looked up when one is written.
    if (active_ >= options_->max_connections) {
      log_within_budget(turned_away_, spdlog::level::warn, "refused connections",
                        "relay: conn#" + std::to_string(id) + " from " + peer_name(socket) +
                            " refused: " + std::to_string(active_) + " connections already open (" +
                            options_->max_connections_why + ")");
      return;
    }
    if constexpr (std::is_same_v<Socket, tcp::socket>)
      socket.set_option(tcp::no_delay(true), ec);
    ++active_;
    ++total_;
    net::connect_options options = options_->connect;
    options.log_label = "conn#" + std::to_string(id);
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("relay: conn#{} accepted from {}", id, peer_name(socket));
    auto client = std::make_shared<Socket>(std::move(socket));
    net::async_connect(ex_, *resolver, options_->target, std::move(options),
                       [self = shared_from_this(), client, id](net::connect_result r) {
                         self->on_connected(id, *client, std::move(r));
                       });
  }

  template <class Socket>
  void on_connected(std::uint64_t id, Socket& client, net::connect_result r) {
    if (r.ec || cut_) {
      if (r.ec)
        log_within_budget(connect_failures_, spdlog::level::warn, "failed connections",
                          "relay: conn#" + std::to_string(id) + " from " + peer_name(client) + ": " + r.detail);
      // Reset the client: a refused target looks refused, not like an empty reply.
      const linger lg{1, 0};
      ::setsockopt(client.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      if (!r.ec && r.socket) // cut while connecting: the target sees a reset too
        ::setsockopt(r.socket->native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      error_code ignored;
      client.close(ignored);
      ended();
      return;
    }
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("relay: conn#{} {} -> {} ({} ms)", id, peer_name(client),
                    net::format_host_port(r.peer.address().to_string(), r.peer.port()), r.elapsed.count());
    const int a = client.release();
    const int b = r.socket->release();
    live_[id] = net::start_relay(
        ex_, a, b,
        [self = shared_from_this(), id](net::relay_stats s, error_code ec) {
          if (self->live_.erase(id) != 0)
            self->account(s);
          spdlog::debug("relay: conn#{} closed: {} bytes up, {} bytes down{}{}", id, s.a_to_b, s.b_to_a,
                        s.spliced ? " (spliced)" : "", ec ? ", " + net::describe(ec) : "");
          self->ended();
        },
        options_->mode);
  }

  void account(const net::relay_stats& s) {
    bytes_up_ += s.a_to_b;
    bytes_down_ += s.b_to_a;
  }

  void ended() {
    --active_;
    if (active_ == 0 && on_idle) {
      auto idle = std::move(on_idle);
      on_idle = nullptr;
      idle();
    }
  }

  template <class Socket>
  static std::string peer_name(const Socket& s) {
    error_code ec;
    auto ep = s.remote_endpoint(ec);
    if constexpr (std::is_same_v<Socket, tcp::socket>)
      return ec ? "?" : net::format_host_port(ep.address().to_string(), ep.port());
    else
      return "unix";
  }

  asio::any_io_executor ex_;
  std::shared_ptr<const relay_options> options_;
  std::uint64_t next_id_ = 0;
  std::size_t active_ = 0; // accepted and not yet ended: connecting or relaying
  std::uint64_t total_ = 0;
  std::uint64_t bytes_up_ = 0; // of relays that have ended (or been cut)
  std::uint64_t bytes_down_ = 0;
  std::unordered_map<std::uint64_t, std::weak_ptr<net::relay_handle>> live_;
  bool stopping_ = false; // no new connections
  bool cut_ = false;      // and none finishes connecting
  // Every line a client can make us repeat is logged within a budget.
  net::accept_backoff accept_backoff_{"relay"};
  line_limiter turned_away_{3, std::chrono::seconds(10)};
  line_limiter connect_failures_{10, std::chrono::seconds(10)};
};

namespace {

/// Raises the open-file limit and sizes the tables to it: a TCP connection
/// holds two sockets and, spliced, two pipes; a UDP session one socket. Out
/// of descriptors, every new client would fail (and the UDP table would stop
/// taking sessions long before it evicts), so the tables fill up first.
/// Returns the lines to log once the relay serves.
std::vector<std::string> fit_to_descriptors(relay_options& c) {
  std::vector<std::string> notes;
  const auto fds = raise_fd_limit();
  if (fds.now != fds.before)
    notes.push_back(fmt::format("relay: open-file limit raised from {} to {}", fds.before, fds.now));
  if (c.udp) {
    const auto fit = fit_in_descriptors(fds.now, 1, c.udp_options.max_sessions);
    if (fit < c.udp_options.max_sessions)
      notes.push_back(fmt::format("relay: at most {} UDP sessions at once (one socket each under the open-file "
                                  "limit {}; --max-udp-sessions {}); the least recently active is closed for a new one",
                                  fit, fds.now, c.udp_options.max_sessions));
    c.udp_options.max_sessions = fit;
    return notes;
  }
  const std::size_t per_connection = c.mode == net::relay_mode::copy ? 2 : 6;
  const auto fit = fit_in_descriptors(fds.now, per_connection, c.max_connections);
  if (fit < c.max_connections) {
    notes.push_back(fmt::format("relay: at most {} connections at once ({} descriptors each under the open-file "
                                "limit {}; --max-connections {})",
                                fit, per_connection, fds.now, c.max_connections));
    c.max_connections_why = "the open-file limit";
  }
  c.max_connections = fit;
  return notes;
}

} // namespace

relay_unit::relay_unit(asio::any_io_executor ex, relay_options options)
    : unit(std::move(ex)), options_(std::make_shared<relay_options>(std::move(options))) {}

relay_unit::~relay_unit() {
  alive_.reset();
  if (server_)
    server_->cut();
  if (forwarder_)
    forwarder_->stop();
}

expected<bool> relay_unit::start() {
  auto fitted = std::make_shared<relay_options>(*options_);
  notes_ = fit_to_descriptors(*fitted);
  options_ = fitted;
  const auto& c = *options_;
  server_ = std::make_shared<relay_server>(executor(), options_);
  auto failed = [this](std::string why) {
    server_.reset();
    fail(why);
    return expected<bool>::failure(std::move(why));
  };

  // Bind: every listen socket is open before anything else, so a port
  // conflict is reported first. Connections queue in the kernel meanwhile;
  // "listening on" is logged once they are actually served.
  if (c.listen.kind == net::listen_kind::unix_path) {
    auto bound = net::bind_unix(executor(), c.listen.path);
    if (!bound)
      return failed(bound.error());
    server_->unix_acceptor.emplace(std::move(bound).value());
    listening_ = "unix " + c.listen.path;
  } else {
    auto plan = net::plan_listen(c.listen);
    if (!plan)
      return failed(plan.error());
    if (net::ipv6_only(*plan))
      spdlog::warn("relay: {} listens on IPv6 only (IPv4 clients are refused); use * for both", plan->display);
    if (c.udp) {
      auto bound = net::bind_udp(executor(), *plan);
      if (!bound)
        return failed(bound.error());
      server_->udp_sockets = std::move(bound).value();
      std::vector<tcp::endpoint> eps;
      for (auto& s : server_->udp_sockets)
        eps.emplace_back(s.local_endpoint().address(), s.local_endpoint().port());
      listening_ = "UDP " + net::describe_endpoints(eps);
    } else {
      auto bound = net::bind_tcp(executor(), *plan);
      if (!bound)
        return failed(bound.error());
      server_->acceptors = std::move(bound).value();
      std::vector<tcp::endpoint> eps;
      for (auto& a : server_->acceptors)
        eps.push_back(a.local_endpoint());
      listening_ = "TCP " + net::describe_endpoints(eps);
    }
  }
  mutable_status().listening = {listening_};

  // Serve once the target check (if any) has passed.
  if (c.check_target)
    check_target();
  else
    serve();
  return true;
}

/// Start-up check of the target: an unresolvable or refusing target is
/// reported now, in one line, rather than on the first client connection.
void relay_unit::check_target() {
  const auto& c = *options_;
  const std::string hint = " (use --no-target-check to start anyway)";
  auto verdict = [this, alive = std::weak_ptr<int>(alive_)](std::string problem) {
    if (alive.expired() || status().state != unit_state::starting)
      return;
    if (problem.empty())
      return serve();
    close_listeners();
    server_.reset();
    fail(std::move(problem));
  };
  if (c.udp) {
    if (net::parse_ip(c.target.host))
      return serve();
    error_code first;
    for (auto f : {net::ip_family::v4, net::ip_family::v6}) {
      std::vector<asio::ip::address> some;
      auto ec = net::resolve_blocking(c.target.host, f, some);
      if (!some.empty())
        return serve();
      if (ec && ec != asio::error::no_data && !first)
        first = ec;
    }
    // Reported from the executor, as a TCP check's failure is: start() succeeded.
    asio::post(executor(),
               [verdict, why = "cannot resolve target " + c.target.host + ": " +
                               (first ? net::describe(first) : std::string("no addresses")) + hint] { verdict(why); });
    return;
  }
  net::connect_options options = c.connect;
  options.log_label = "target check";
  net::async_connect(executor(), *server_->resolver, c.target, options,
                     [verdict, hint, o = options_, keep = server_->resolver](net::connect_result result) {
                       if (result.ec)
                         return verdict(result.detail + hint);
                       spdlog::info("relay: target {} reachable at {} in {} ms",
                                    net::format_host_port(o->target.host, o->target.port),
                                    net::format_host_port(result.peer.address().to_string(), result.peer.port()),
                                    result.elapsed.count());
                       verdict({});
                     });
}

void relay_unit::serve() {
  for (const auto& note : notes_)
    spdlog::info("{}", note);
  spdlog::info("relay: listening on {}, forwarding to {}", listening_,
               net::format_host_port(options_->target.host, options_->target.port));
  server_->serve();
  if (options_->udp) {
    forwarder_ = std::make_shared<net::udp_forwarder>(executor(), *server_->resolver, std::move(server_->udp_sockets),
                                                      options_->target, options_->udp_options);
    forwarder_->start();
  }
  set_state(unit_state::running);
}

void relay_unit::close_listeners() {
  if (server_)
    server_->stop_accepting();
  if (forwarder_)
    forwarder_->stop();
}

void relay_unit::stop(std::chrono::milliseconds drain, std::function<void()> done) {
  stop_done_ = std::move(done);
  const auto s = status().state;
  if (s == unit_state::stopped || s == unit_state::failed || !server_) {
    if (s != unit_state::failed)
      set_state(unit_state::stopped);
    return finish_stop();
  }
  set_state(unit_state::draining);
  close_listeners();
  if (server_->active() == 0 || drain <= std::chrono::milliseconds(0)) {
    server_->cut();
    set_state(unit_state::stopped);
    return finish_stop();
  }
  auto timer = std::make_shared<asio::steady_timer>(executor(), drain);
  auto alive = std::weak_ptr<int>(alive_);
  server_->on_idle = [this, alive, timer] {
    if (alive.expired() || status().state != unit_state::draining)
      return;
    timer->cancel();
    set_state(unit_state::stopped);
    finish_stop();
  };
  timer->async_wait([this, alive](error_code ec) {
    if (ec || alive.expired() || status().state != unit_state::draining)
      return;
    server_->on_idle = nullptr;
    server_->cut(); // the deadline: what is still open is reset
    set_state(unit_state::stopped);
    finish_stop();
  });
}

void relay_unit::finish_stop() {
  if (!stop_done_)
    return;
  asio::post(executor(), [done = std::move(stop_done_), alive = std::weak_ptr<int>(alive_)] {
    if (!alive.expired())
      done();
  });
  stop_done_ = nullptr;
}

void relay_unit::abandon() {
  stop_done_ = nullptr;
  if (server_) {
    server_->on_idle = nullptr;
    server_->cut();
  }
  if (forwarder_)
    forwarder_->stop();
  if (status().state != unit_state::failed)
    set_state(unit_state::stopped);
}

reload_result relay_unit::reload(std::string_view cause) {
  reload_result r{true, "a relay has nothing to reload (its listen address and target are fixed)"};
  spdlog::info("relay: {}; {}", cause, r.summary);
  emit(unit_event::kind::reloaded, r.summary);
  return r;
}

unit_counters relay_unit::counters() const {
  unit_counters c;
  if (server_)
    server_->add_counters(c);
  if (forwarder_) {
    const auto& u = forwarder_->counters();
    c.connections_open += forwarder_->sessions();
    c.connections_total += u.sessions_opened;
  }
  return c;
}

} // namespace warren::unit
