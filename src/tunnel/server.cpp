#include "tunnel/server.hpp"

#include "core/log.hpp"
#include "stream/event.hpp"
#include "stream/pump.hpp"
#include "stream/tcp_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <algorithm>
#include <set>

namespace warren::tunnel {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

constexpr int k_datagrams_per_wakeup = 64;

wire::reset_code code_for(const error_code& ec) {
  if (ec == errc::denied)
    return wire::reset_code::denied;
  if (ec == asio::error::connection_refused)
    return wire::reset_code::refused;
  if (ec == errc::timed_out || ec == asio::error::timed_out)
    return wire::reset_code::timed_out;
  if (ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again || ec == asio::error::no_data ||
      ec == errc::no_addresses)
    return wire::reset_code::unresolvable;
  if (ec == asio::error::host_unreachable || ec == asio::error::network_unreachable)
    return wire::reset_code::unreachable;
  return wire::reset_code::internal_error;
}
/// log_within_budget() (core/log.hpp) for the server's lines.
void log_limited(line_limiter& limiter, spdlog::level::level_enum level, std::string_view kind,
                 const std::string& line) {
  log_within_budget(limiter, level, kind, "server: " + line);
}

} // namespace

server::server(asio::any_io_executor ex, net::resolver& r, server_options options)
    : ex_(std::move(ex)), resolver_(r), options_(std::move(options)),
      handshakes_(options_.max_handshakes, options_.max_handshakes_per_source),
      stream_fds_(options_.max_stream_fds) {
  options_.session.is_client = false;
  options_.session.max_opens_per_second = options_.max_opens_per_second;
  options_.session.open_burst = options_.open_burst;
  options_.session.max_buffered = options_.max_buffer_per_client != 0
                                      ? options_.max_buffer_per_client
                                      : std::uint64_t{options_.session.max_streams} * options_.session.initial_window;
  access_.users = options_.accept.users;
  access_.tls = options_.accept.tls;
  access_.fingerprint = options_.fingerprint;
  access_.policy = std::make_shared<destination_policy>(options_.policy);
  for (const auto& [name, policy] : options_.user_policies)
    access_.user_policies.emplace(name, std::make_shared<destination_policy>(policy));
}

std::shared_ptr<server::user_state> server::user_for(const std::string& name) {
  std::erase_if(users_, [](const auto& entry) { return entry.second.expired(); });
  if (auto it = users_.find(name); it != users_.end())
    return it->second.lock();
  auto u = std::make_shared<user_state>(name, net::bounded_resolver::create(resolver_, options_.max_lookups_per_client),
                                        options_);
  users_.emplace(name, u);
  return u;
}

access_change server::reload(server_access access) {
  const auto change = diff_access(access_, access);
  // The tokens of revoked users are remembered (the last k_max_revoked), so
  // their clients' retries are told "revoked" and not counted as guesses
  // against their address, which others may share.
  auto revoked = access_.users->revoked();
  for (const auto& name : change.revoked)
    if (const auto* u = access_.users->find(name))
      revoked.push_back(*u);
  std::set<transport::user_table::digest> current;
  for (const auto& u : access.users->users())
    current.insert(u.token_sha256);
  std::erase_if(revoked, [&](const auto& u) { return current.contains(u.token_sha256); });
  if (revoked.size() > transport::user_table::k_max_revoked)
    revoked.erase(revoked.begin(),
                  revoked.begin() + static_cast<std::ptrdiff_t>(revoked.size() - transport::user_table::k_max_revoked));
  auto users = std::make_shared<transport::user_table>(*access.users);
  users->set_revoked(std::move(revoked));
  access.users = std::move(users);
  access_ = std::move(access);
  spdlog::info("server: reload: {}", describe_reload(change, access_));
  for (const auto& name : change.revoked) {
    auto it = users_.find(name);
    auto user = it == users_.end() ? nullptr : it->second.lock();
    if (!user)
      continue;
    for (const auto& weak : user->sessions) {
      auto s = weak.lock();
      if (!s || s->closed())
        continue;
      spdlog::warn("server: {} closed: user {} was revoked by the reload", s->label(), name);
      s->goaway(wire::reset_code::denied, "user " + name + " was revoked");
      s->shutdown("user " + name + " revoked");
    }
  }
  return change;
}

expected<std::vector<tcp::endpoint>> server::bind() {
  using result = expected<std::vector<tcp::endpoint>>;
  std::list<listener> bound;
  std::vector<tcp::endpoint> eps;
  // Every plan first: two listeners on one address written differently
  // (`*` and 0.0.0.0, [::1] and [0:0::1]) are named, not "port in use".
  std::vector<net::listen_plan> plans;
  for (std::size_t i = 0; i < options_.listen.size(); ++i) {
    const auto& url = options_.listen[i];
    net::listen_address address{net::listen_kind::host, url.endpoint, {}};
    if (url.endpoint.host == "*")
      address.kind = net::listen_kind::wildcard;
    auto plan = net::plan_listen(address);
    if (!plan)
      return result::failure(plan.error());
    for (std::size_t j = 0; j < plans.size(); ++j)
      if (net::overlaps(plans[j], *plan))
        return result::failure("--listen " + transport::to_string(url) + " and " +
                               transport::to_string(options_.listen[j]) +
                               " share an address: give each listener its own port");
    plans.push_back(std::move(plan).value());
  }
  ipv6_only_.clear();
  for (std::size_t i = 0; i < plans.size(); ++i) {
    ipv6_only_.push_back(net::ipv6_only(plans[i]));
    auto acceptors = net::bind_tcp(ex_, plans[i]);
    if (!acceptors)
      return result::failure(acceptors.error());
    auto bound_here = std::move(acceptors).value();
    for (auto& a : bound_here) {
      eps.push_back(a.local_endpoint());
      bound.push_back(listener{std::move(a), i});
    }
  }
  listeners_ = std::move(bound);
  return eps;
}

std::vector<server::bound_listen> server::listening() const {
  std::vector<bound_listen> out;
  for (std::size_t i = 0; i < options_.listen.size(); ++i)
    out.push_back({options_.listen[i], {}, i < ipv6_only_.size() && ipv6_only_[i]});
  for (const auto& l : listeners_)
    out[l.url].endpoints.push_back(l.acceptor.local_endpoint());
  return out;
}

void server::start() {
  for (auto& l : listeners_)
    accept_loop(l);
}

void server::accept_loop(listener& l) {
  l.acceptor.async_accept([self = shared_from_this(), &l](error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || self->stopping_)
      return;
    if (ec) {
      // Out of descriptors, say: retried every 100 ms while it lasts, logged within a budget.
      self->accept_backoff_.failed(self->ex_, ec, [self, &l] {
        if (!self->stopping_)
          self->accept_loop(l);
      });
      return;
    }
    if (auto slot = self->admit(socket))
      asio::co_spawn(self->ex_, self->handshake(std::move(socket), std::move(*slot), self->options_.listen[l.url]),
                     asio::detached);
    self->accept_loop(l); // a socket not admitted is closed here
  });
}

std::optional<handshake_slots::ticket> server::admit(tcp::socket& socket) {
  error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  if (ec)
    return std::nullopt; // already gone
  const auto from = net::format_host_port(peer.address().to_string(), peer.port());
  // Full: with one user nobody could be evicted for the newcomer, so it is
  // closed at once; with more, it may be of a user owed a share (handshake()).
  if (sessions_.size() >= options_.max_clients && access_.users->users().size() <= 1) {
    turn_away("closed a connection from " + from + " at once: " + std::to_string(sessions_.size()) +
              " clients connected (--max-clients)");
    return std::nullopt;
  }
  // Evicting shuts the connection down under its handshake, which then
  // fails and gives its ticket back. Called only from inside admit(), below.
  // A trusted reverse proxy brings many clients through one address: it
  // is bounded by --max-handshakes in all, not per source (its clients'
  // failed logins are counted per client, by the auth limiter).
  const bool proxy = transport::is_trusted(options_.accept.trusted_proxies, peer.address());
  auto slot = handshakes_.admit(
      peer.address(),
      [fd = socket.native_handle(), from, &evicted = evicted_] {
        evicted = from;
        ::shutdown(fd, SHUT_RDWR);
      },
      proxy ? options_.max_handshakes : 0);
  if (!slot) {
    turn_away("closed a connection from " + from + " at once: " + std::to_string(handshakes_.held_by(peer.address())) +
              " connections from that source in their handshake (--max-handshakes-per-source)");
  } else if (!evicted_.empty()) {
    turn_away("evicted the handshake of " + std::exchange(evicted_, {}) + " to admit " + from + ": all " +
              std::to_string(handshakes_.total()) + " handshake slots taken (--max-handshakes)");
  }
  return slot;
}

void server::turn_away(const std::string& line) {
  log_limited(turned_away_, spdlog::level::warn, "closed or evicted connections", line);
}

asio::awaitable<void> server::handshake(tcp::socket socket, handshake_slots::ticket slot,
                                        const transport::url& listen) {
  auto self = shared_from_this();
  // This handshake's certificate: a reload meanwhile applies to later ones.
  // Its token is checked against the users as they are then (a user added
  // meanwhile is let in), which `checked` keeps for the test below.
  auto accept = options_.accept;
  accept.users = access_.users;
  accept.tls = access_.tls;
  std::shared_ptr<const transport::user_table> checked = access_.users;
  accept.current_users = [this, &checked] { return checked = access_.users; };
  auto accepted = co_await transport::accept_stream(std::move(socket), listen, accept, limiter_);
  // The slot's evict callback shuts the socket's descriptor down: it must be
  // given back before anything else runs, since a refused handshake has
  // closed the socket by now and its number may be reused. (accept_stream
  // takes the socket by value; its frame is gone when co_await returns.)
  const bool evicted = !slot.held();
  slot.release();
  // The client: the TCP peer, or behind a trusted proxy the one it names.
  const std::string from = accepted.client_label;
  if (!accepted.forwarded_error.empty())
    log_limited(bad_forwarded_, spdlog::level::warn, "unreadable X-Forwarded-For headers", accepted.forwarded_error);
  if (!accepted.forwarded_ignored.empty())
    log_limited(untrusted_forwarded_, spdlog::level::warn, "X-Forwarded-For headers from peers not trusted",
                accepted.forwarded_ignored);
  if (accepted.stream && evicted)
    accepted = {.stream = nullptr, .error = "tunnel from " + from + " evicted at the end of its handshake"};
  if (!accepted.stream) {
    // Anyone can make these: 64 lines per 10 s, then a count.
    log_limited(handshake_failures_, spdlog::level::warn, "failed handshakes", accepted.error);
    co_return;
  }
  if (stopping_)
    co_return;
  if (sessions_.size() >= options_.max_clients && !evict_for(accepted.user, from)) { // others finished first
    turn_away("closed the tunnel from " + from + " after its handshake: " + std::to_string(sessions_.size()) +
              " clients connected (--max-clients)");
    // Told with GOAWAY "limit reached", which a client backs off from
    // (a drain's "closed" is redialled at once).
    auto config = options_.session;
    config.label = "refused " + from;
    auto refused = wire::session::create(std::move(accepted.stream), config);
    refused->start();
    refused->goaway(wire::reset_code::limit_reached, "too many clients connected");
    refused->shutdown("too many clients");
    co_return;
  }
  const auto* now_user = access_.users->find(accepted.user);
  const auto* then_user = checked->find(accepted.user);
  if (!now_user || !then_user || now_user->token_sha256 != then_user->token_sha256) { // revoked meanwhile
    log_limited(handshake_failures_, spdlog::level::warn, "failed handshakes",
                "tunnel from " + from + " refused: user " + accepted.user + " was revoked during its handshake");
    co_return;
  }
  auto user = user_for(accepted.user);
  auto config = options_.session;
  config.label = "client#" + std::to_string(++next_client_) + " " + from + " (user " + accepted.user + ")";
  config.budget = user->budget;
  auto s = wire::session::create(std::move(accepted.stream), config);
  sessions_.push_back(s);
  ++tunnels_total_;
  std::erase_if(user->sessions, [](const auto& w) { return w.expired(); });
  user->sessions.push_back(s);
  spdlog::info("server: {} connected over {}", config.label, transport::to_string(listen.scheme));
  auto log = std::make_shared<client_state>(config.label, std::move(user));
  s->set_open_handler([self, log](std::unique_ptr<wire::mux_stream> stream, wire::open_request request) {
    self->on_open(log, std::move(stream), std::move(request));
  });
  s->set_closed_handler([self, log](const std::string& reason) {
    const auto left_out = log->refused.left_out_total();
    spdlog::info("server: {} disconnected: {}{}", log->label, reason,
                 left_out ? "; " + std::to_string(left_out) + " refused streams not logged" : "");
    self->forget_sessions([](const auto& p) { return p->closed(); });
  });
  s->start();
}

bool server::evict_for(const std::string& user, const std::string& from) {
  const auto live = [](const user_state& u) {
    std::size_t n = 0;
    for (const auto& w : u.sessions)
      if (auto s = w.lock(); s && !s->closed())
        ++n;
    return n;
  };
  std::size_t mine = 0;
  std::shared_ptr<user_state> most;
  std::size_t most_held = 0;
  for (const auto& [name, weak] : users_) {
    auto u = weak.lock();
    if (!u)
      continue;
    const auto held = live(*u);
    if (name == user)
      mine = held;
    else if (held > most_held) {
      most = u;
      most_held = held;
    }
  }
  // Only while the other user keeps at least as many as the newcomer's
  // user will have: the shares even out, and stop there.
  if (!most || most_held < mine + 2)
    return false;
  for (const auto& weak : most->sessions) {
    auto victim = weak.lock();
    if (!victim || victim->closed())
      continue;
    turn_away("closed " + victim->label() + ", the oldest of user " + most->name + "'s " + std::to_string(most_held) +
              " tunnels, to admit " + from + " (user " + user + ", " + std::to_string(mine) + " tunnels): all " +
              std::to_string(sessions_.size()) + " taken (--max-clients)");
    victim->goaway(wire::reset_code::limit_reached,
                   "too many clients connected; user " + most->name + " holds more than its share");
    victim->shutdown("evicted for another user");
    forget_sessions([&](const auto& p) { return p == victim; });
    return true;
  }
  return false;
}

net::connect_options server::outbound_options(const wire::open_request& request, std::uint32_t id,
                                              const std::shared_ptr<const destination_policy>& policy) const {
  net::connect_options o = options_.connect;
  o.log_label = "stream#" + std::to_string(id);
  // The stream's ticket covers one socket; Happy Eyeballs' racing ones
  // (two per connect to a dual-stack name, more for longer answers) take
  // their own, or a client's connects to black holes take the descriptors
  // accept() needs (64 connects in flight per tunnel, two sockets each).
  o.racing_sockets = stream_fds_;
  const auto target = request.target.to_host_port();
  const bool name = request.target.kind == wire::target_address::type::domain;
  const bool name_allowed = name && policy->allows_name(target.host, target.port);
  o.allow = [policy, name_allowed, port = target.port](const asio::ip::address& a) {
    return name_allowed || policy->allows_address(a, port);
  };
  return o;
}

std::optional<std::string> server::denied_without_lookup(const wire::open_request& request,
                                                         const destination_policy& policy) {
  if (request.target.kind != wire::target_address::type::domain)
    return std::nullopt;
  const auto target = request.target.to_host_port();
  if (policy.allows_name(target.host, target.port) || policy.allows_some_address(target.port))
    return std::nullopt;
  return "connect to " + request.target.to_string() + " denied by the destination policy (no rule allows that " +
         "name, nor any address on port " + std::to_string(target.port) + ")";
}

void server::refuse(client_state& log, wire::mux_stream& stream, wire::reset_code code, const std::string& detail) {
  log_limited(log.refused, spdlog::level::info, "refused streams",
              log.label + " " + stream.description() + ": " + detail);
  stream.refuse(code, detail);
}

std::size_t stream_descriptors(std::uint64_t fd_limit, std::size_t max_clients, std::size_t max_handshakes) {
  if (fd_limit == 0)
    return 0;
  const std::uint64_t tunnels = std::min<std::uint64_t>(std::uint64_t{max_clients} + max_handshakes, fd_limit / 4);
  const std::uint64_t taken = fd_reserve(fd_limit) + tunnels;
  return static_cast<std::size_t>(fd_limit > taken ? fd_limit - taken : 1);
}

tunnel_bounds fit_tunnels(std::uint64_t fd_limit, std::size_t max_clients, std::size_t max_handshakes) {
  const std::uint64_t share = fd_limit / 4;
  if (fd_limit == 0 || std::uint64_t{max_clients} + max_handshakes <= share)
    return {max_clients, max_handshakes};
  const auto handshakes = std::clamp<std::uint64_t>(share / 2, 1, max_handshakes);
  const auto clients = std::clamp<std::uint64_t>(share > handshakes ? share - handshakes : 1, 1, max_clients);
  return {static_cast<std::size_t>(clients), static_cast<std::size_t>(handshakes)};
}

std::optional<fd_budget::ticket> server::stream_fd(client_state& client, wire::mux_stream& stream) {
  if (auto t = stream_fds_.take())
    return t;
  const std::string detail = "the server is out of descriptors for streams (" + std::to_string(stream_fds_.max()) +
                             " held by all clients); try again later";
  log_limited(out_of_fds_, spdlog::level::warn, "streams refused for lack of descriptors",
              client.label + " " + stream.description() + ": " + detail);
  stream.refuse(wire::reset_code::limit_reached, detail);
  return std::nullopt;
}

void server::on_open(const std::shared_ptr<client_state>& log, std::unique_ptr<wire::mux_stream> stream,
                     wire::open_request request) {
  if (stopping_) {
    stream->refuse(wire::reset_code::refused, "the server is shutting down");
    return;
  }
  if (request.kind == wire::stream_kind::tcp)
    asio::co_spawn(ex_, serve_tcp(log, std::move(stream), std::move(request)), asio::detached);
  else
    asio::co_spawn(ex_, serve_udp(log, std::move(stream), std::move(request)), asio::detached);
}

asio::awaitable<void> server::serve_tcp(std::shared_ptr<client_state> log, std::unique_ptr<wire::mux_stream> stream,
                                        wire::open_request request) {
  auto self = shared_from_this();
  if (stream->reset_reason())
    co_return; // reset before we got to it: nothing to connect
  const auto policy = access_.policy_for(log->user->name); // the rules when it opened
  if (auto denied = denied_without_lookup(request, *policy)) {
    refuse(*log, *stream, wire::reset_code::denied, *denied);
    co_return;
  }
  auto fd = stream_fd(*log, *stream);
  if (!fd)
    co_return;
  const auto target = request.target.to_host_port();
  auto options = outbound_options(request, stream->id(), policy);
  auto slot = co_await connect_slot(*log, *stream);
  if (!slot || stream->reset_reason())
    co_return; // reset while it waited: nothing to connect (the slot goes to the next)
  // The connect (lookups, attempts) ends with the stream: the stream's slot
  // is free once it is reset, so a client that resets streams as fast as it
  // opens them would otherwise have any number of connects in flight.
  auto outcome = co_await (net::async_connect(ex_, *log->user->lookups, target, options, asio::use_awaitable) ||
                           stream->wait_reset());
  if (outcome.index() == 1)
    co_return;
  slot.reset(); // connected or not, this stream's connect is over
  auto& r = std::get<0>(outcome);
  if (r.ec) {
    refuse(*log, *stream, code_for(r.ec), r.detail);
    co_return;
  }
  stream->accept();
  auto outbound =
      stream::make_tcp_stream(std::move(*r.socket), net::format_host_port(r.peer.address().to_string(), r.peer.port()));
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("server: {} connected to {}", stream->description(), outbound->description());
  // Not awaited: this coroutine ends here and the pump's done handler owns the
  // streams, so an idle stream holds no coroutine frame (stream/pump.hpp).
  auto& inbound = *stream;
  auto& outward = *outbound;
  stream::start_pump(inbound, outward,
                     [self, stream = std::move(stream), outbound = std::move(outbound),
                      fd = std::move(*fd)](stream::pump_stats stats) {
                       if (spdlog::should_log(spdlog::level::debug))
                         spdlog::debug("server: {} done: {} bytes up, {} down{}", stream->description(), stats.a_to_b,
                                       stats.b_to_a, stats.error ? ", " + net::describe(stats.error) : "");
                     });
}

asio::awaitable<std::optional<connect_slots::ticket>> server::connect_slot(client_state& client,
                                                                         wire::mux_stream& stream) {
  if (auto t = client.user->connects.try_take())
    co_return t;
  // Handed over when one of the client's connects ends; shared with the
  // waiter's callback, which may run after this frame is gone (io_context
  // shutdown) and then just drops the slot, giving it to the next.
  struct waiting {
    std::optional<connect_slots::ticket> slot;
    stream::async_event granted;
  };
  auto w = std::make_shared<waiting>();
  const auto id = client.user->connects.wait([w](connect_slots::ticket t) {
    w->slot = std::move(t);
    w->granted.notify();
  });
  while (!w->slot && !stream.reset_reason())
    co_await (w->granted.wait() || stream.wait_reset());
  client.user->connects.cancel(id);
  co_return std::move(w->slot);
}

asio::awaitable<void> server::serve_udp(std::shared_ptr<client_state> client, std::unique_ptr<wire::mux_stream> stream,
                                        wire::open_request request) {
  auto self = shared_from_this();
  if (stream->reset_reason())
    co_return;
  const auto policy = access_.policy_for(client->user->name);
  if (auto denied = denied_without_lookup(request, *policy)) {
    refuse(*client, *stream, wire::reset_code::denied, *denied);
    co_return;
  }
  const auto target = request.target.to_host_port();
  auto options = outbound_options(request, stream->id(), policy);
  // Resolve with the same policy filter by asking the connector's resolver path.
  std::vector<asio::ip::address> candidates;
  if (auto ip = net::parse_ip(target.host)) {
    candidates.push_back(*ip);
  } else {
    auto resolve = [&]() -> asio::awaitable<void> {
      for (auto f : {net::ip_family::v4, net::ip_family::v6}) {
        auto [rec, found] = co_await net::async_resolve(*client->user->lookups, ex_, target.host, f, use_tuple);
        candidates.insert(candidates.end(), found.begin(), found.end());
      }
    };
    if ((co_await (resolve() || stream->wait_reset())).index() == 1)
      co_return; // as for TCP: the lookups end with the flow
  }
  std::erase_if(candidates, [&](const auto& a) { return !options.allow(a); });
  if (candidates.empty()) {
    refuse(*client, *stream, wire::reset_code::denied, "no allowed address for " + request.target.to_string());
    co_return;
  }
  auto fd = stream_fd(*client, *stream);
  if (!fd)
    co_return;
  udp::socket socket(ex_);
  error_code ec;
  const udp::endpoint ep(candidates.front(), target.port);
  socket.open(ep.protocol(), ec);
  if (!ec)
    socket.connect(ep, ec);
  // A send never waits: the io_context serves every client, and a full send
  // buffer (a link slower than the tunnel) would stall them all. UDP may
  // lose: what does not fit is dropped.
  if (!ec)
    socket.non_blocking(true, ec);
  if (ec) {
    refuse(*client, *stream, code_for(ec), "cannot reach " + request.target.to_string() + ": " + net::describe(ec));
    co_return;
  }
  stream->accept();
  auto last = std::make_shared<steady_clock::time_point>(steady_clock::now());
  auto up = [&]() -> asio::awaitable<void> {
    for (;;) {
      auto d = co_await stream->receive_datagram();
      if (!d)
        co_return;
      *last = steady_clock::now();
      error_code sec;
      socket.send(asio::buffer(*d), 0, sec); // would_block: dropped
    }
  };
  auto down = [&]() -> asio::awaitable<void> {
    // Waits for readability, then reads into the server's one buffer (as
    // the relay's UDP forwarder does): an idle flow holds no 64 KiB buffer.
    // A few datagrams per wake-up, so a flooded flow cannot hog the thread.
    for (;;) {
      auto [rec] = co_await socket.async_wait(udp::socket::wait_read, use_tuple);
      if (rec == asio::error::operation_aborted)
        co_return;
      for (int i = 0; i < k_datagrams_per_wakeup; ++i) {
        error_code e;
        const std::size_t n = socket.receive(asio::buffer(udp_buffer_), 0, e);
        if (e == asio::error::would_block)
          break;
        if (e)
          continue; // ICMP errors: keep the flow, UDP may lose
        *last = steady_clock::now();
        stream->send_datagram(std::span(udp_buffer_.data(), n));
      }
    }
  };
  // A flow idle for --udp-idle-timeout ends; once the server drains, one
  // idle for k_drain_udp_idle does (UDP has no end of its own to wait for,
  // and an idle flow would hold the drain until its deadline).
  // stop() cancels the timer (udp_idle_timers_) so the shorter limit
  // applies at once; a plain timer, not a race with an event: an idle flow
  // costs one wait, and there may be thousands.
  auto idle = [&]() -> asio::awaitable<void> {
    asio::steady_timer t(ex_);
    const auto registered = udp_idle_timers_.insert(udp_idle_timers_.end(), &t);
    struct unregister {
      std::list<asio::steady_timer*>& timers;
      std::list<asio::steady_timer*>::iterator at;
      ~unregister() { timers.erase(at); }
    } guard{udp_idle_timers_, registered};
    for (;;) {
      const auto limit = stopping_ ? std::min<duration>(options_.udp_idle_timeout, k_drain_udp_idle)
                                   : duration(options_.udp_idle_timeout);
      if (steady_clock::now() - *last >= limit)
        co_return;
      t.expires_at(*last + limit);
      co_await t.async_wait(use_tuple);
    }
  };
  co_await (up() || down() || idle());
  error_code ignored;
  socket.close(ignored);
}

void server::forget_sessions(const std::function<bool(const std::shared_ptr<wire::session>&)>& which) {
  sessions_.remove_if([&](const auto& s) {
    if (!which(s))
      return false;
    ended_.bytes_in += s->stats().bytes_in;
    ended_.bytes_out += s->stats().bytes_out;
    ended_.streams_total += s->stats().streams_opened;
    return true;
  });
}

server::counters_view server::counters() const {
  counters_view c = ended_;
  c.tunnels_total = tunnels_total_;
  std::chrono::microseconds srtt_sum{0}, last_sum{0};
  std::uint64_t measured = 0;
  for (const auto& s : sessions_) {
    if (s->closed())
      continue;
    c.bytes_in += s->stats().bytes_in;
    c.bytes_out += s->stats().bytes_out;
    c.streams_total += s->stats().streams_opened;
    c.streams_open += s->stream_count();
    ++c.tunnels_open;
    if (s->stats().rtt_samples > 0) {
      srtt_sum += s->stats().srtt;
      last_sum += s->stats().rtt_last;
      ++measured;
    }
  }
  if (measured > 0) {
    c.srtt = srtt_sum / measured;
    c.rtt_last = last_sum / measured;
  }
  return c;
}

void server::stop(std::function<void()> done) {
  stop(options_.drain_timeout, std::move(done));
}

void server::stop(std::chrono::milliseconds drain, std::function<void()> done) {
  stopping_ = true;
  for (auto* t : udp_idle_timers_) // idle UDP flows recheck their limit now
    t->cancel();
  error_code ignored;
  for (auto& l : listeners_)
    l.acceptor.close(ignored);
  for (auto& s : sessions_)
    s->goaway(wire::reset_code::closed, "the server is shutting down");
  asio::co_spawn(
      ex_,
      [self = shared_from_this(), drain, done = std::move(done)]() -> asio::awaitable<void> {
        // Open streams may finish until the drain deadline; idle sessions close at once.
        const auto deadline = steady_clock::now() + drain;
        asio::steady_timer tick(self->ex_);
        while (!self->sessions_.empty() && steady_clock::now() < deadline) {
          for (auto& s : std::list(self->sessions_))
            if (s->stream_count() == 0)
              s->shutdown("server shutting down");
          self->forget_sessions([](const auto& p) { return p->closed(); });
          if (self->sessions_.empty())
            break;
          tick.expires_after(std::chrono::milliseconds(50));
          co_await tick.async_wait(use_tuple);
        }
        // Streams cut here reset their targets when the io_context goes
        // (stream/pump.cpp: the pump registry abandons what still runs),
        // so a cut upload does not end like a complete one.
        const bool cut = !self->sessions_.empty();
        for (auto& s : std::list(self->sessions_))
          s->close("drain deadline passed");
        self->forget_sessions([](const auto&) { return true; });
        spdlog::info("server: stopped{}", cut ? " (streams cut at the drain deadline)" : "");
        done();
      },
      asio::detached);
}

void server::abandon() {
  stopping_ = true;
  error_code ignored;
  for (auto& l : listeners_)
    l.acceptor.close(ignored);
  for (auto& s : std::list(sessions_))
    s->close("server stopped");
  forget_sessions([](const auto&) { return true; });
}

} // namespace warren::tunnel
