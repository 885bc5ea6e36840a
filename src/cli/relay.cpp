// `warren relay [--udp] LISTEN TARGET`: a local TCP/UDP port forwarder (the
// job of `socat TCP-LISTEN:...,fork TCP:...`), built on the multi-bind
// listeners and the Happy Eyeballs connector. One thread, one io_context:
// the TCP data path is splice(2), so the kernel does the copying.
#include "cli/command.hpp"
#include "cli/common.hpp"

#include "core/duration.hpp"
#include "core/fd_limit.hpp"
#include "core/log.hpp"
#include "net/accept_backoff.hpp"
#include "net/connector.hpp"
#include "net/listen.hpp"
#include "net/stream_relay.hpp"
#include "net/udp_forwarder.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

namespace warren::cli {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

struct relay_args {
  bool udp = false;
  std::string listen;
  std::string target;
  std::string log_level = "info";
  std::string family = "auto";
  std::string connect_timeout = "10s";
  std::string attempt_delay = "250ms";
  std::string source;
  std::string interface;
  std::string udp_idle_timeout = "60s";
  std::size_t max_udp_sessions = 4096;
  std::size_t max_connections = 10000;
  bool no_target_check = false;
  bool no_splice = false;
};

std::chrono::milliseconds duration_arg(const std::string& text, const char* option) {
  auto d = parse_duration(text);
  if (!d)
    throw user_error(std::string(option) + ": " + d.error());
  return *d;
}

/// Everything the relay needs, validated; bad input fails here with one line.
struct relay_config {
  net::listen_address listen;
  net::host_port target;
  net::connect_options connect;
  net::udp_forwarder_options udp;
  std::size_t max_connections = 0;
  std::string max_connections_why = "--max-connections"; // what bounds it, for the refusal line
  net::relay_mode mode = net::relay_mode::automatic;
};

relay_config validate(const relay_args& a) {
  relay_config c;
  auto listen = net::parse_listen_address(a.listen);
  if (!listen)
    throw user_error(listen.error());
  c.listen = *listen;
  auto target = net::parse_host_port(a.target);
  if (!target)
    throw user_error("target " + target.error());
  c.target = *target;
  if (a.udp && c.listen.kind == net::listen_kind::unix_path)
    throw user_error("--udp cannot listen on a Unix stream socket path (" + c.listen.path + ")");

  auto policy = net::parse_family_policy(a.family);
  if (!policy)
    throw user_error("--family '" + a.family + "' is not one of auto, prefer-ipv4, ipv4, ipv6");
  c.connect.he.policy = *policy;
  c.connect.he.timeout = duration_arg(a.connect_timeout, "--connect-timeout");
  if (c.connect.he.timeout < std::chrono::milliseconds(100))
    throw user_error("--connect-timeout must be at least 100ms");
  c.connect.he.attempt_delay = duration_arg(a.attempt_delay, "--attempt-delay");
  if (c.connect.he.attempt_delay < std::chrono::milliseconds(100) ||
      c.connect.he.attempt_delay > std::chrono::milliseconds(2000))
    throw user_error("--attempt-delay must be between 100ms and 2s (RFC 8305 §5)");
  if (!a.source.empty()) {
    c.connect.source = net::parse_ip(a.source);
    if (!c.connect.source)
      throw user_error("--source '" + a.source + "' is not an IP address");
    if ((c.connect.source->is_v4() && *policy == net::family_policy::ipv6_only) ||
        (c.connect.source->is_v6() && *policy == net::family_policy::ipv4_only))
      throw user_error("--source " + a.source + " contradicts --family " + a.family);
  }
  c.connect.interface = a.interface;
  c.udp.idle_timeout = duration_arg(a.udp_idle_timeout, "--udp-idle-timeout");
  if (c.udp.idle_timeout < std::chrono::milliseconds(100))
    throw user_error("--udp-idle-timeout must be at least 100ms");
  c.udp.max_sessions = a.max_udp_sessions;
  c.udp.policy = *policy;
  c.udp.source = c.connect.source;
  c.max_connections = a.max_connections;
  c.mode = a.no_splice ? net::relay_mode::copy : net::relay_mode::automatic;
  return c;
}

/// Serves TCP (or Unix) connections: accept, connect the target, relay.
class tcp_relay : public std::enable_shared_from_this<tcp_relay> {
 public:
  tcp_relay(asio::any_io_executor ex, net::resolver& r, const relay_config& c) : ex_(ex), resolver_(r), config_(c) {}

  template <class Acceptor>
  void accept_loop(Acceptor& acceptor) {
    using socket_type = typename Acceptor::protocol_type::socket;
    acceptor.async_accept([self = shared_from_this(), &acceptor](error_code ec, socket_type socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open())
        return;
      if (ec) {
        // EMFILE and friends: back off briefly instead of spinning, logged within a budget.
        self->accept_backoff_.failed(self->ex_, ec, [self, &acceptor] {
          if (acceptor.is_open())
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
    if (active_ >= config_.max_connections) {
      log_within_budget(turned_away_, spdlog::level::warn, "refused connections",
                        "relay: conn#" + std::to_string(id) + " from " + peer_name(socket) +
                            " refused: " + std::to_string(active_) + " connections already open (" +
                            config_.max_connections_why + ")");
      return;
    }
    if constexpr (std::is_same_v<Socket, tcp::socket>)
      socket.set_option(tcp::no_delay(true), ec);
    ++active_;
    net::connect_options options = config_.connect;
    options.log_label = "conn#" + std::to_string(id);
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("relay: conn#{} accepted from {}", id, peer_name(socket));
    auto client = std::make_shared<Socket>(std::move(socket));
    net::async_connect(ex_, resolver_, config_.target, std::move(options),
                       [self = shared_from_this(), client, id](net::connect_result r) {
                         self->on_connected(id, *client, std::move(r));
                       });
  }

  template <class Socket>
  void on_connected(std::uint64_t id, Socket& client, net::connect_result r) {
    if (r.ec) {
      --active_;
      log_within_budget(connect_failures_, spdlog::level::warn, "failed connections",
                        "relay: conn#" + std::to_string(id) + " from " + peer_name(client) + ": " + r.detail);
      // Reset the client: a refused target looks refused, not like an empty reply.
      const linger lg{1, 0};
      ::setsockopt(client.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      error_code ignored;
      client.close(ignored);
      return;
    }
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("relay: conn#{} {} -> {} ({} ms)", id, peer_name(client),
                    net::format_host_port(r.peer.address().to_string(), r.peer.port()), r.elapsed.count());
    const int a = client.release();
    const int b = r.socket->release();
    net::start_relay(
        ex_, a, b,
        [self = shared_from_this(), id](net::relay_stats s, error_code ec) {
          --self->active_;
          spdlog::debug("relay: conn#{} closed: {} bytes up, {} bytes down{}{}", id, s.a_to_b, s.b_to_a,
                        s.spliced ? " (spliced)" : "", ec ? ", " + net::describe(ec) : "");
        },
        config_.mode);
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
  net::resolver& resolver_;
  const relay_config& config_;
  std::uint64_t next_id_ = 0;
  std::size_t active_ = 0;
  // Every line a client can make us repeat is logged within a budget.
  net::accept_backoff accept_backoff_{"relay"};
  line_limiter turned_away_{3, std::chrono::seconds(10)};
  line_limiter connect_failures_{10, std::chrono::seconds(10)};
};

/// Start-up check of the target: an unresolvable or refusing target is
/// reported now, in one line, rather than on the first client connection.
/// `done` gets an empty string when the target is fine.
void check_target(asio::io_context& io, net::resolver& r, const relay_config& c, bool udp,
                  std::function<void(std::string)> done) {
  const std::string hint = " (use --no-target-check to start anyway)";
  if (udp) {
    if (net::parse_ip(c.target.host))
      return done({});
    error_code first;
    for (auto f : {net::ip_family::v4, net::ip_family::v6}) {
      std::vector<asio::ip::address> some;
      auto ec = net::resolve_blocking(c.target.host, f, some);
      if (!some.empty())
        return done({});
      if (ec && ec != asio::error::no_data && !first)
        first = ec;
    }
    return done("cannot resolve target " + c.target.host + ": " +
                (first ? net::describe(first) : std::string("no addresses")) + hint);
  }
  net::connect_options options = c.connect;
  options.log_label = "target check";
  net::async_connect(io.get_executor(), r, c.target, options, [&c, hint, done](net::connect_result result) {
    if (result.ec)
      return done(result.detail + hint);
    spdlog::info("relay: target {} reachable at {} in {} ms", net::format_host_port(c.target.host, c.target.port),
                 net::format_host_port(result.peer.address().to_string(), result.peer.port()), result.elapsed.count());
    done({});
  });
}

/// Raises the open-file limit and sizes the tables to it: a TCP connection
/// holds two sockets and, spliced, two pipes; a UDP session one socket. Out
/// of descriptors, every new client would fail (and the UDP table would stop
/// taking sessions long before it evicts), so the tables fill up first.
/// Returns the lines to log once the relay serves (a start-up error must
/// stay the only line).
std::vector<std::string> fit_to_descriptors(relay_config& c, bool udp) {
  std::vector<std::string> notes;
  const auto fds = raise_fd_limit();
  if (fds.now != fds.before)
    notes.push_back(fmt::format("relay: open-file limit raised from {} to {}", fds.before, fds.now));
  if (udp) {
    const auto fit = fit_in_descriptors(fds.now, 1, c.udp.max_sessions);
    if (fit < c.udp.max_sessions)
      notes.push_back(fmt::format("relay: at most {} UDP sessions at once (one socket each under the open-file "
                                  "limit {}; --max-udp-sessions {}); the least recently active is closed for a new one",
                                  fit, fds.now, c.udp.max_sessions));
    c.udp.max_sessions = fit;
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

int run(const relay_args& args) {
  const auto level = log::parse_level(args.log_level);
  if (!level)
    throw user_error("--log-level '" + args.log_level + "' is not one of trace, debug, info, warn, error, off");
  log::init(*level);
  relay_config config = validate(args);
  const auto descriptor_notes = fit_to_descriptors(config, args.udp);

  asio::io_context io(1);
  // Registered first: a signal during start-up (binding, the target check)
  // is queued by Asio and handled as a clean shutdown, never the default action.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  net::system_resolver resolver;

  // 1. Bind: every listen socket is open before anything else, so a port
  //    conflict is reported first. Connections queue in the kernel meanwhile;
  //    "listening on" is logged once they are actually served.
  const std::string target = net::format_host_port(config.target.host, config.target.port);
  std::vector<tcp::acceptor> acceptors;
  std::optional<asio::local::stream_protocol::acceptor> unix_acceptor;
  std::vector<asio::ip::udp::socket> udp_sockets;
  std::string listening;
  if (config.listen.kind == net::listen_kind::unix_path) {
    auto bound = net::bind_unix(io.get_executor(), config.listen.path);
    if (!bound)
      throw user_error(bound.error());
    unix_acceptor.emplace(std::move(bound).value());
    listening = "unix " + config.listen.path;
  } else {
    auto plan = net::plan_listen(config.listen);
    if (!plan)
      throw user_error(plan.error());
    if (net::ipv6_only(*plan))
      spdlog::warn("relay: {} listens on IPv6 only (IPv4 clients are refused); use * for both", plan->display);
    if (args.udp) {
      auto bound = net::bind_udp(io.get_executor(), *plan);
      if (!bound)
        throw user_error(bound.error());
      udp_sockets = std::move(bound).value();
      std::vector<tcp::endpoint> eps;
      for (auto& s : udp_sockets)
        eps.emplace_back(s.local_endpoint().address(), s.local_endpoint().port());
      listening = "UDP " + net::describe_endpoints(eps);
    } else {
      auto bound = net::bind_tcp(io.get_executor(), *plan);
      if (!bound)
        throw user_error(bound.error());
      acceptors = std::move(bound).value();
      std::vector<tcp::endpoint> eps;
      for (auto& a : acceptors)
        eps.push_back(a.local_endpoint());
      listening = "TCP " + net::describe_endpoints(eps);
    }
  }

  // 2. Serve once the target check (if any) has passed.
  auto relay = std::make_shared<tcp_relay>(io.get_executor(), resolver, config);
  std::shared_ptr<net::udp_forwarder> forwarder;
  auto serve = [&] {
    for (const auto& note : descriptor_notes)
      spdlog::info("{}", note);
    spdlog::info("relay: listening on {}, forwarding to {}", listening, target);
    if (unix_acceptor)
      relay->accept_loop(*unix_acceptor);
    for (auto& a : acceptors)
      relay->accept_loop(a);
    if (args.udp) {
      forwarder = std::make_shared<net::udp_forwarder>(io.get_executor(), resolver, std::move(udp_sockets),
                                                       config.target, config.udp);
      forwarder->start();
    }
  };
  auto shutdown = [&] {
    error_code ignored;
    for (auto& a : acceptors)
      a.close(ignored);
    if (unix_acceptor) {
      unix_acceptor->close(ignored);
      ::unlink(config.listen.path.c_str());
    }
    if (forwarder)
      forwarder->stop();
    io.stop();
  };
  signals.async_wait([&](error_code ec, int signo) {
    if (ec)
      return;
    spdlog::info("relay: {} received, shutting down", signo == SIGINT ? "SIGINT" : "SIGTERM");
    shutdown();
  });

  std::string fatal;
  if (args.no_target_check) {
    serve();
  } else {
    check_target(io, resolver, config, args.udp, [&](std::string problem) {
      if (problem.empty())
        return serve();
      fatal = std::move(problem);
      shutdown();
    });
  }
  io.run();
  if (!fatal.empty())
    throw user_error(fatal);
  return 0;
}

} // namespace

std::function<int()> add_relay_command(CLI::App& app) {
  auto args = std::make_shared<relay_args>();
  auto* cmd = app.add_subcommand("relay", "Forward a local TCP or UDP port to a target (like socat, dual-stack)");
  cmd->add_flag("--udp", args->udp, "Forward UDP instead of TCP");
  cmd->add_option("LISTEN", args->listen,
                  "host:port, [v6]:port, *:port or a Unix socket path; localhost binds 127.0.0.1 and ::1")
      ->required();
  cmd->add_option("TARGET", args->target, "host:port or [v6]:port to forward to")->required();
  cmd->add_option("--log-level", args->log_level, "trace, debug, info, warn, error, off")->capture_default_str();
  cmd->add_option("--family", args->family, "Address family policy: auto (RFC 8305), prefer-ipv4, ipv4, ipv6")
      ->capture_default_str();
  cmd->add_option("--connect-timeout", args->connect_timeout, "Overall connect timeout, e.g. 10s")
      ->capture_default_str();
  cmd->add_option("--attempt-delay", args->attempt_delay, "Happy Eyeballs attempt delay, 100ms-2s")
      ->capture_default_str();
  cmd->add_option("--source", args->source, "Source IP address for outbound connections");
  cmd->add_option("--interface", args->interface, "Outbound interface (SO_BINDTODEVICE)");
  cmd->add_option("--udp-idle-timeout", args->udp_idle_timeout, "Close idle UDP sessions after this long")
      ->capture_default_str();
  cmd->add_option("--max-udp-sessions", args->max_udp_sessions, "UDP sessions kept at once (LRU eviction)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--max-connections", args->max_connections, "TCP connections open at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_flag("--no-target-check", args->no_target_check,
                "Start even if the target is unreachable now (it is checked at start-up by default)");
  cmd->add_flag("--no-splice", args->no_splice, "Copy through user space instead of splice(2)");
  refuse_negative_numbers(*cmd);
  return [args] { return run(*args); };
}

} // namespace warren::cli
