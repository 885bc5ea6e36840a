#include "tunnel/client.hpp"

#include "core/duration.hpp"
#include "core/log.hpp"
#include "stream/pump.hpp"
#include "stream/tcp_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

namespace warren::tunnel {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

void reset_socket(tcp::socket& s) {
  const linger lg{1, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  error_code ignored;
  s.close(ignored);
}

} // namespace

struct client::udp_flow {
  net::udp_session_key key;
  std::unique_ptr<wire::mux_stream> stream;
  bool closed = false;
};

struct client::forward {
  forward_spec spec;
  std::vector<tcp::acceptor> acceptors;
  std::vector<udp::socket> udp_sockets;
  std::vector<std::vector<std::uint8_t>> udp_buffers;
  std::vector<udp::endpoint> udp_senders;
  std::unique_ptr<net::udp_session_table<std::shared_ptr<udp_flow>>> flows;
};

client::client(asio::any_io_executor ex, net::resolver& r, client_options options)
    : ex_(ex), resolver_(r), options_(std::move(options)), rng_(std::random_device{}()), sweep_timer_(ex),
      retry_timer_(ex), local_fds_(options_.max_local_descriptors) {
  options_.session.is_client = true;
}

client::~client() = default;

expected<std::vector<std::string>> client::bind() {
  using result = expected<std::vector<std::string>>;
  std::vector<std::string> lines;
  // Every plan first: two forwards on one address written differently
  // (-L 8080:… and -D localhost:8080) are named, not "port in use".
  std::vector<net::listen_plan> plans;
  auto flag = [](const forward_spec& f) { return (f.type == forward_spec::kind::socks ? "-D " : "-L ") + f.text; };
  for (std::size_t i = 0; i < options_.forwards.size(); ++i) {
    const auto& spec = options_.forwards[i];
    auto plan = net::plan_listen(spec.listen);
    if (!plan)
      return result::failure(spec.text + ": " + plan.error());
    const bool udp = spec.type == forward_spec::kind::udp;
    for (std::size_t j = 0; j < plans.size(); ++j)
      if ((options_.forwards[j].type == forward_spec::kind::udp) == udp && net::overlaps(plans[j], *plan))
        return result::failure(flag(options_.forwards[j]) + " and " + flag(spec) +
                               " share an address: give each its own port");
    if (net::ipv6_only(*plan))
      spdlog::warn("forward: {} listens on IPv6 only (IPv4 clients are refused); use * for both", plan->display);
    plans.push_back(std::move(plan).value());
  }
  for (std::size_t i = 0; i < options_.forwards.size(); ++i) {
    const auto& spec = options_.forwards[i];
    const auto* plan = &plans[i];
    auto f = std::make_unique<forward>();
    f->spec = spec;
    std::vector<std::string> where;
    if (spec.type == forward_spec::kind::udp) {
      auto bound = net::bind_udp(ex_, *plan);
      if (!bound)
        return result::failure(spec.text + ": " + bound.error());
      f->udp_sockets = std::move(bound).value();
      for (auto& s : f->udp_sockets) {
        // Replies are sent without waiting: a full send buffer (a slow link
        // to the application) drops the datagram, as UDP may, instead of
        // stalling every forward and stream of this client.
        error_code nb;
        s.non_blocking(true, nb);
        if (nb)
          return result::failure(spec.text + ": " + net::describe(nb));
      }
      for (auto& s : f->udp_sockets)
        where.push_back(net::format_host_port(s.local_endpoint().address().to_string(), s.local_endpoint().port()));
      f->flows = std::make_unique<net::udp_session_table<std::shared_ptr<udp_flow>>>(options_.max_udp_flows);
    } else {
      auto bound = net::bind_tcp(ex_, *plan);
      if (!bound)
        return result::failure(spec.text + ": " + bound.error());
      f->acceptors = std::move(bound).value();
      for (auto& a : f->acceptors)
        where.push_back(net::format_host_port(a.local_endpoint().address().to_string(), a.local_endpoint().port()));
    }
    std::string joined;
    for (auto& w : where)
      joined += (joined.empty() ? "" : ", ") + w;
    if (spec.type == forward_spec::kind::socks)
      lines.push_back("SOCKS5 on " + joined);
    else
      lines.push_back(std::string(spec.type == forward_spec::kind::udp ? "UDP " : "TCP ") + joined + " -> " +
                      net::format_host_port(spec.target.host, spec.target.port));
    forwards_.push_back(std::move(f));
  }
  return lines;
}

void client::start(std::function<void(const std::string&)> fatal) {
  fatal_ = std::move(fatal);
  asio::co_spawn(ex_, supervise(), asio::detached);
  for (auto& f : forwards_) {
    for (auto& a : f->acceptors)
      accept_loop(*f, a);
    for (std::size_t i = 0; i < f->udp_sockets.size(); ++i) {
      f->udp_buffers.emplace_back(65536);
      f->udp_senders.emplace_back();
    }
    for (std::size_t i = 0; i < f->udp_sockets.size(); ++i)
      udp_receive(*f, i);
  }
  udp_sweep();
}

void client::stop() {
  stopped_ = true;
  error_code ignored;
  for (auto& f : forwards_) {
    for (auto& a : f->acceptors)
      a.close(ignored);
    for (auto& s : f->udp_sockets)
      s.close(ignored);
  }
  sweep_timer_.cancel();
  retry_timer_.cancel();
  if (current_)
    current_->shutdown("client stopping");
  for (auto& s : retiring_)
    s->shutdown("client stopping");
  tunnel_changed_.notify();
}

client::counters_view client::counters() const {
  counters_view c = ended_;
  c.tunnels_total = tunnels_total_;
  c.redials = dials_ > 0 ? dials_ - 1 : 0;
  if (current_ && !current_->closed()) {
    c.bytes_in += current_->stats().bytes_in;
    c.bytes_out += current_->stats().bytes_out;
    c.streams_total += current_->stats().streams_opened;
    c.streams_open += current_->stream_count();
    c.srtt = current_->stats().srtt;
    c.rtt_last = current_->stats().rtt_last;
  }
  return c;
}

void client::set_token(std::string token) {
  options_.dial.token = std::move(token);
  schedule_.redial_now(steady_clock::now());
  retry_timer_.cancel();
}

asio::awaitable<void> client::supervise() {
  auto self = shared_from_this();
  const std::string where = transport::to_string(options_.server);
  while (!stopped_) {
    co_await sleep_until_next_attempt();
    if (stopped_)
      co_return;
    spdlog::debug("tunnel: connecting to {}", where);
    schedule_.attempting(steady_clock::now());
    ++dials_;
    const auto dial_options = options_.dial; // set_token() may change the token meanwhile
    auto r = co_await transport::dial(options_.server, dial_options, resolver_);
    if (stopped_)
      co_return;
    if (!r.stream) {
      const bool permanent = r.failure == transport::failure_kind::permanent;
      if (!ever_connected_ && permanent && fatal_) {
        fatal_(r.error);
        co_return;
      }
      // A refused token (the server's changed under us) or a 429 is
      // retried slowly: each refusal counts against every client of our
      // address (reconnect.hpp).
      const bool limited = r.refusal == transport::auth_refusal::limited;
      if (limited || (r.refusal == transport::auth_refusal::token && ever_connected_)) {
        schedule_.refused_credentials(limited, r.retry_after, steady_clock::now(), rng_);
        // A token that SIGHUP changed while this dial was in flight has not
        // been tried yet: it goes now (the schedule keeps its minimum gap).
        if (!limited && options_.dial.token != dial_options.token)
          schedule_.redial_now(steady_clock::now());
        spdlog::warn("tunnel: cannot connect to {}: {}; retrying in {} (attempt {}; {})", where, r.error,
                     format_duration(until_next_attempt()), schedule_.attempt(),
                     limited ? "the server's Retry-After" : "a new token by SIGHUP is tried at once");
        continue;
      }
      schedule_.ended(tunnel_end::dial_failed, steady_clock::now(), rng_);
      spdlog::warn("tunnel: cannot connect to {}: {}; retrying in {} (attempt {})", where, r.error,
                   format_duration(until_next_attempt()), schedule_.attempt());
      continue;
    }
    ever_connected_ = true;
    schedule_.connected(steady_clock::now());
    auto config = options_.session;
    config.label = "tunnel";
    auto s = wire::session::create(std::move(r.stream), config);
    // Shared with the handlers: the session may call them after this
    // iteration ends (its closed handler is posted).
    struct tunnel_end_state {
      stream::async_event ended;
      std::string reason;
      std::optional<wire::goaway_info> goaway;
    };
    auto state = std::make_shared<tunnel_end_state>();
    s->set_closed_handler([state](const std::string& why) {
      state->reason = why;
      state->ended.notify();
    });
    s->set_goaway_handler([state](const wire::goaway_info& g) {
      state->goaway = g;
      state->ended.notify();
    });
    s->start();
    current_ = s;
    tunnel_changed_.notify();
    ++tunnels_total_;
    spdlog::info("tunnel: connected to {} at {} ({}) in {} ms", where,
                 net::format_host_port(r.peer.address().to_string(), r.peer.port()),
                 r.peer.address().is_v6() ? "IPv6" : "IPv4", r.total_time.count());
    if (observer_.up)
      observer_.up(net::format_host_port(r.peer.address().to_string(), r.peer.port()));
    while (!s->closed() && !state->goaway)
      co_await state->ended.wait();
    current_.reset();
    ended_.bytes_in += s->stats().bytes_in; // a retiring tunnel's later bytes are not counted
    ended_.bytes_out += s->stats().bytes_out;
    ended_.streams_total += s->stats().streams_opened;
    if (observer_.down)
      observer_.down(stopped_ ? std::string("client stopping")
                              : state->goaway ? "the server sent GOAWAY (" + state->goaway->reason + ")"
                                              : (state->reason.empty() ? std::string("closed") : state->reason));
    tunnel_changed_.notify();
    if (stopped_) {
      if (!s->closed())
        s->shutdown("client stopping");
      co_return;
    }
    tunnel_end why = tunnel_end::lost;
    const auto& goaway = state->goaway;
    std::string what = "lost (" + (state->reason.empty() ? std::string("closed") : state->reason) + ")";
    if (goaway) {
      // A drain (code "closed": the server stops or restarts) is redialled
      // at once; another code (too many clients, an error) backs off. The
      // old tunnel's streams finish on it meanwhile.
      why = goaway->code == wire::reset_code::closed ? tunnel_end::drained : tunnel_end::refused;
      what = std::string(why == tunnel_end::drained ? "the server is going away" : "the server refused the tunnel") +
             " (" + std::string(wire::reset_code_name(goaway->code)) + ": " + goaway->reason + ")";
      if (!s->closed())
        retire(s);
    }
    schedule_.ended(why, steady_clock::now(), rng_);
    const auto delay = until_next_attempt();
    const auto level = why == tunnel_end::drained ? spdlog::level::info : spdlog::level::warn;
    if (delay.count() <= 0 && why == tunnel_end::drained)
      spdlog::log(level, "tunnel: {}; reconnecting now", what);
    else
      spdlog::log(level, "tunnel: {}; reconnecting in {} (attempt {})", what, format_duration(delay),
                  schedule_.attempt());
  }
}

std::chrono::milliseconds client::until_next_attempt() const {
  const auto now = steady_clock::now();
  return std::max(std::chrono::ceil<std::chrono::milliseconds>(schedule_.next_attempt(now, waiting()) - now),
                  std::chrono::milliseconds(0));
}

asio::awaitable<void> client::sleep_until_next_attempt() {
  for (;;) {
    const auto now = steady_clock::now();
    const auto at = schedule_.next_attempt(now, waiting());
    if (stopped_ || at <= now)
      co_return;
    retry_timer_.expires_at(at);
    co_await retry_timer_.async_wait(use_tuple); // cancelled: a connection started waiting, or stop()
  }
}

void client::retire(std::shared_ptr<wire::session> s) {
  // A server that drains every tunnel and holds it open would make us
  // keep them all: past k_max_retiring the oldest goes, streams reset.
  while (retiring_.size() >= k_max_retiring) {
    auto oldest = retiring_.front();
    retiring_.pop_front();
    spdlog::warn("tunnel: {} tunnels are draining after GOAWAY; closing the oldest ({} streams reset)",
                 k_max_retiring + 1, oldest->stream_count());
    oldest->close("too many draining tunnels");
  }
  retiring_.push_back(s);
  asio::co_spawn(
      ex_,
      [self = shared_from_this(), s]() -> asio::awaitable<void> {
        // The server closes a drained tunnel once its streams end; we do
        // too, in case it does not (checked every 100 ms: no event tells
        // the stream count).
        asio::steady_timer tick(self->ex_);
        while (!s->closed()) {
          if (s->stream_count() == 0) {
            s->shutdown("drained after GOAWAY");
          }
          tick.expires_after(std::chrono::milliseconds(100));
          co_await tick.async_wait(use_tuple);
        }
        self->retiring_.remove(s);
      },
      asio::detached);
}

std::optional<waiting_connections> client::waiting() const {
  std::optional<time_point> earliest;
  if (!waiting_deadlines_.empty())
    earliest = *waiting_deadlines_.begin();
  if (udp_waiting_until_ && *udp_waiting_until_ > steady_clock::now())
    earliest = std::min(earliest.value_or(*udp_waiting_until_), *udp_waiting_until_);
  if (!earliest)
    return std::nullopt;
  return waiting_connections{*earliest, latest_arrival_};
}

void client::arrived(time_point now) {
  latest_arrival_ = now;
  retry_timer_.cancel();
}

asio::awaitable<std::shared_ptr<wire::session>> client::tunnel_for_new_stream() {
  auto usable = [this] { return current_ && !current_->closed() && !current_->draining(); };
  if (usable())
    co_return current_;
  const auto now = steady_clock::now();
  const auto deadline = now + options_.wait_for_tunnel;
  // Counted as waiting, so that the supervisor dials at once (within its
  // minimum gap) instead of finishing a long backoff.
  const auto entry = waiting_deadlines_.insert(deadline);
  arrived(now);
  struct unregister {
    client& c;
    std::multiset<time_point>::iterator it;
    ~unregister() { c.waiting_deadlines_.erase(it); }
  } guard{*this, entry};
  asio::steady_timer timer(ex_);
  while (!stopped_) {
    if (usable())
      co_return current_;
    if (steady_clock::now() >= deadline)
      co_return nullptr;
    timer.expires_at(deadline);
    // Wake on whichever comes first: a tunnel change or the deadline.
    co_await (tunnel_changed_.wait() || timer.async_wait(use_tuple));
  }
  co_return nullptr;
}

asio::awaitable<bool> client::wait_for_tunnel() {
  co_return co_await tunnel_for_new_stream() != nullptr;
}

asio::awaitable<client::open_result> client::open_stream(wire::target_address target) {
  auto self = shared_from_this();
  open_result out;
  auto s = co_await tunnel_for_new_stream();
  if (!s) {
    out.no_tunnel = true;
    out.error = "no tunnel to " + transport::to_string(options_.server) + " within " +
                format_duration(options_.wait_for_tunnel);
    co_return out;
  }
  auto st = s->open(wire::stream_kind::tcp, target);
  if (!st) {
    out.no_tunnel = true;
    out.error = "the tunnel to " + transport::to_string(options_.server) + " ended";
    co_return out;
  }
  if (auto refused = co_await st->wait_open()) {
    out.error = "the server refused " + target.to_string() + ": " + std::string(wire::reset_code_name(refused->code)) +
                " (" + refused->reason + ")";
    out.refused = std::move(refused);
    co_return out;
  }
  out.stream = std::move(st);
  co_return out;
}

std::unique_ptr<wire::mux_stream> client::open_datagram_flow(const wire::target_address& target) {
  if (current_ && !current_->closed() && !current_->draining())
    return current_->open(wire::stream_kind::udp, target);
  // Dropped; the tunnel is dialled now, in time for a retry.
  const auto now = steady_clock::now();
  if (!udp_waiting_until_ || *udp_waiting_until_ <= now)
    arrived(now);
  udp_waiting_until_ = now + options_.wait_for_tunnel;
  return nullptr;
}

void client::accept_loop(forward& f, tcp::acceptor& acceptor) {
  acceptor.async_accept([self = shared_from_this(), &f, &acceptor](error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || self->stopped_)
      return;
    if (ec) {
      // Out of descriptors, say: retried every 100 ms while it lasts, logged within a budget.
      self->accept_backoff_.failed(self->ex_, ec, [self, &f, &acceptor] {
        if (!self->stopped_)
          self->accept_loop(f, acceptor);
      });
      return;
    }
    auto fd = self->local_fds_.take();
    if (!fd) {
      // Closed at once (here), so that the descriptors left stay for the tunnel.
      log_within_budget(self->turned_away_, spdlog::level::warn, "closed connections",
                  "forward " + f.spec.text + ": closed a local connection at once: " +
                      std::to_string(self->local_fds_.held()) +
                      " descriptors held for local connections, all the open-file limit leaves");
    } else {
      socket.set_option(tcp::no_delay(true), ec);
      if (f.spec.type == forward_spec::kind::socks)
        asio::co_spawn(self->ex_, self->serve_socks(std::move(socket), std::move(*fd)), asio::detached);
      else
        asio::co_spawn(self->ex_, self->serve_tcp_forward(std::move(socket), f, std::move(*fd)), asio::detached);
    }
    self->accept_loop(f, acceptor);
  });
}

void client::log_local(spdlog::level::level_enum level, const std::string& line) {
  log_within_budget(local_log_, level, "lines about local connections", line);
}

asio::awaitable<void> client::serve_tcp_forward(tcp::socket socket, forward& f, fd_budget::ticket fd) {
  auto self = shared_from_this();
  auto s = co_await tunnel_for_new_stream();
  if (!s) {
    log_local(spdlog::level::warn, "forward " + f.spec.text + ": no tunnel within " +
                                       format_duration(options_.wait_for_tunnel) + "; refusing the local connection");
    reset_socket(socket);
    co_return;
  }
  auto target = wire::target_address::from_host_port(f.spec.target);
  auto st = target ? s->open(wire::stream_kind::tcp, *target) : nullptr;
  if (!st) {
    reset_socket(socket);
    co_return;
  }
  auto local = stream::make_tcp_stream(std::move(socket), "local");
  // Not awaited: this coroutine ends here and the pump's done handler owns the
  // streams, so an idle stream holds no coroutine frame (stream/pump.hpp).
  auto& from = *local;
  auto& to = *st;
  stream::start_pump(from, to, [self, &f, local = std::move(local), st = std::move(st),
                                fd = std::move(fd)](stream::pump_stats stats) {
    if (auto r = st->reset_reason(); r && r->code != wire::reset_code::closed) {
      // A target's refusal is worth a warning (within the budget: each local
      // connection can cause one); streams ended by a lost tunnel are
      // already reported once, by the supervisor.
      const bool target_problem = r->code != wire::reset_code::internal_error;
      const auto line = "forward " + f.spec.text + ": " + std::string(wire::reset_code_name(r->code)) + ": " + r->reason;
      if (target_problem)
        self->log_local(spdlog::level::warn, line);
      else
        spdlog::debug("{}", line);
    }
    spdlog::debug("forward {}: done, {} bytes up, {} down", f.spec.text, stats.a_to_b, stats.b_to_a);
  });
}

// ---- UDP forwards --------------------------------------------------------------

void client::udp_receive(forward& f, std::size_t listener) {
  f.udp_sockets[listener].async_receive_from(
      asio::buffer(f.udp_buffers[listener]), f.udp_senders[listener],
      [self = shared_from_this(), &f, listener](error_code ec, std::size_t n) {
        if (ec == asio::error::operation_aborted || self->stopped_)
          return;
        if (!ec) {
          const net::udp_session_key key{listener, f.udp_senders[listener]};
          const auto now = steady_clock::now();
          auto* found = f.flows->find(key, now);
          std::shared_ptr<udp_flow> flow = found ? *found : nullptr;
          if (flow && (flow->closed || flow->stream->reset_reason())) {
            f.flows->erase(key);
            flow = nullptr;
          }
          if (!flow && self->current_ && !self->current_->closed() && !self->current_->draining()) {
            auto target = wire::target_address::from_host_port(f.spec.target);
            auto st = target ? self->current_->open(wire::stream_kind::udp, *target) : nullptr;
            if (st) {
              flow = std::make_shared<udp_flow>();
              flow->key = key;
              flow->stream = std::move(st);
              if (auto evicted = f.flows->insert(key, flow, now)) {
                (*evicted)->closed = true;
                (*evicted)->stream->close();
              }
              self->udp_flow_reader(f, flow);
            }
          }
          if (flow) {
            flow->stream->send_datagram(std::span(f.udp_buffers[listener].data(), n));
          } else if (!self->current_) {
            // Dropped; the tunnel is dialled now, in time for a retry.
            if (!self->udp_waiting_until_ || *self->udp_waiting_until_ <= now)
              self->arrived(now);
            self->udp_waiting_until_ = now + self->options_.wait_for_tunnel;
          }
        }
        self->udp_receive(f, listener);
      });
}

void client::udp_flow_reader(forward& f, std::shared_ptr<udp_flow> flow) {
  asio::co_spawn(
      ex_,
      [self = shared_from_this(), &f, flow]() -> asio::awaitable<void> {
        for (;;) {
          auto d = co_await flow->stream->receive_datagram();
          if (!d || flow->closed)
            break;
          f.flows->touch(flow->key, steady_clock::now());
          error_code ec;
          f.udp_sockets[flow->key.listener].send_to(asio::buffer(*d), flow->key.client, 0, ec);
        }
        flow->closed = true;
      },
      asio::detached);
}

void client::udp_sweep() {
  if (stopped_)
    return;
  const auto idle = std::chrono::duration_cast<duration>(options_.udp_idle_timeout);
  for (auto& f : forwards_) {
    if (!f->flows)
      continue;
    for (auto& flow : f->flows->expire(steady_clock::now(), idle)) {
      flow->closed = true;
      flow->stream->close();
    }
  }
  sweep_timer_.expires_after(std::max<duration>(idle / 4, std::chrono::milliseconds(100)));
  sweep_timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec)
      self->udp_sweep();
  });
}

} // namespace warren::tunnel
