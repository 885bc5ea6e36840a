#include "tunnel/client.hpp"

#include "core/duration.hpp"
#include "proxy/socks5.hpp"
#include "stream/pump.hpp"
#include "stream/tcp_stream.hpp"
#include "transport/auth.hpp"

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
namespace socks5 = proxy::socks5;
using asio::ip::tcp;
using asio::ip::udp;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

socks5::reply_code socks_reply_for(const wire::reset_info& r) {
  switch (r.code) {
  case wire::reset_code::refused:
    return socks5::reply_code::connection_refused;
  case wire::reset_code::denied:
    return socks5::reply_code::not_allowed;
  case wire::reset_code::unresolvable:
  case wire::reset_code::timed_out:
    return socks5::reply_code::host_unreachable;
  case wire::reset_code::unreachable:
    return socks5::reply_code::network_unreachable;
  default:
    return socks5::reply_code::general_failure;
  }
}

wire::target_address to_wire(const socks5::address& a) {
  wire::target_address t;
  t.port = a.port;
  switch (a.kind) {
  case socks5::address::type::ipv4:
    t.kind = wire::target_address::type::ipv4;
    std::copy(a.ip.begin(), a.ip.begin() + 4, t.ip.begin());
    break;
  case socks5::address::type::ipv6:
    t.kind = wire::target_address::type::ipv6;
    t.ip = a.ip;
    break;
  case socks5::address::type::domain:
    // Some clients send IP literals as names (an IPv6 literal is not a
    // valid name on the wire, and an IPv4 one would cost the server a
    // lookup): a literal is the address it spells.
    if (auto literal = wire::target_address::from_host_port(a.to_host_port());
        literal && literal->kind != wire::target_address::type::domain)
      return *literal;
    t.kind = wire::target_address::type::domain;
    t.domain = a.domain;
    break;
  }
  return t;
}

void reset_socket(tcp::socket& s) {
  const linger lg{1, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  error_code ignored;
  s.close(ignored);
}

bool permanent(const std::string& error) {
  return error.find("token") != std::string::npos || error.find("pin mismatch") != std::string::npos ||
         error.find("certificate verification failed") != std::string::npos;
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
      retry_timer_(ex) {
  options_.session.is_client = true;
}

client::~client() = default;

expected<std::vector<std::string>> client::bind() {
  using result = expected<std::vector<std::string>>;
  std::vector<std::string> lines;
  for (const auto& spec : options_.forwards) {
    auto f = std::make_unique<forward>();
    f->spec = spec;
    auto plan = net::plan_listen(spec.listen);
    if (!plan)
      return result::failure(spec.text + ": " + plan.error());
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
  tunnel_changed_.notify();
}

asio::awaitable<void> client::supervise() {
  auto self = shared_from_this();
  const std::string where = transport::to_string(options_.server);
  while (!stopped_) {
    spdlog::debug("tunnel: connecting to {}", where);
    auto r = co_await transport::dial(options_.server, options_.dial, resolver_);
    if (stopped_)
      co_return;
    if (!r.stream) {
      if (!ever_connected_ && permanent(r.error) && fatal_) {
        fatal_(r.error);
        co_return;
      }
      const auto delay = backoff_.next(rng_);
      spdlog::warn("tunnel: cannot connect to {}: {}; retrying in {} (attempt {})", where, r.error,
                   format_duration(delay), backoff_.attempt());
      retry_timer_.expires_after(delay);
      co_await retry_timer_.async_wait(use_tuple);
      continue;
    }
    ever_connected_ = true;
    backoff_.connected(steady_clock::now());
    auto config = options_.session;
    config.label = "tunnel";
    auto s = wire::session::create(std::move(r.stream), config);
    stream::async_event ended;
    std::string reason;
    s->set_closed_handler([&ended, &reason](const std::string& why) {
      reason = why;
      ended.notify();
    });
    s->set_goaway_handler([](const wire::goaway_info& g) {
      spdlog::info("tunnel: the server is going away ({}); new streams will use a new tunnel", g.reason);
    });
    s->start();
    current_ = s;
    tunnel_changed_.notify();
    spdlog::info("tunnel: connected to {} at {} ({}) in {} ms", where,
                 net::format_host_port(r.peer.address().to_string(), r.peer.port()),
                 r.peer.address().is_v6() ? "IPv6" : "IPv4", r.total_time.count());
    while (!s->closed() && !(s->draining() && s->stream_count() == 0))
      co_await ended.wait();
    if (!s->closed())
      s->close("drained after GOAWAY");
    current_.reset();
    tunnel_changed_.notify();
    if (stopped_)
      co_return;
    backoff_.disconnected(steady_clock::now());
    const auto delay = backoff_.next(rng_);
    spdlog::warn("tunnel: lost ({}); reconnecting in {} (attempt {})", reason.empty() ? "server going away" : reason,
                 format_duration(delay), backoff_.attempt());
    retry_timer_.expires_after(delay);
    co_await retry_timer_.async_wait(use_tuple);
  }
}

asio::awaitable<std::shared_ptr<wire::session>> client::tunnel_for_new_stream() {
  const auto deadline = steady_clock::now() + options_.wait_for_tunnel;
  asio::steady_timer timer(ex_);
  while (!stopped_) {
    if (current_ && !current_->closed() && !current_->draining())
      co_return current_;
    if (steady_clock::now() >= deadline)
      co_return nullptr;
    timer.expires_at(deadline);
    // Wake on whichever comes first: a tunnel change or the deadline.
    co_await (tunnel_changed_.wait() || timer.async_wait(use_tuple));
  }
  co_return nullptr;
}

void client::accept_loop(forward& f, tcp::acceptor& acceptor) {
  acceptor.async_accept([self = shared_from_this(), &f, &acceptor](error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || self->stopped_)
      return;
    if (!ec) {
      socket.set_option(tcp::no_delay(true), ec);
      if (f.spec.type == forward_spec::kind::socks)
        asio::co_spawn(self->ex_, self->serve_socks(std::move(socket)), asio::detached);
      else
        asio::co_spawn(self->ex_, self->serve_tcp_forward(std::move(socket), f), asio::detached);
    } else {
      spdlog::warn("forward {}: accept failed: {}", f.spec.text, net::describe(ec));
    }
    self->accept_loop(f, acceptor);
  });
}

asio::awaitable<void> client::serve_tcp_forward(tcp::socket socket, forward& f) {
  auto self = shared_from_this();
  auto s = co_await tunnel_for_new_stream();
  if (!s) {
    spdlog::warn("forward {}: no tunnel within {}; refusing the local connection", f.spec.text,
                 format_duration(options_.wait_for_tunnel));
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
  stream::start_pump(from, to, [self, &f, local = std::move(local), st = std::move(st)](stream::pump_stats stats) {
    if (auto r = st->reset_reason(); r && r->code != wire::reset_code::closed) {
      // A target's refusal is worth a warning; streams ended by a lost tunnel
      // are already reported once, by the supervisor.
      const bool target_problem = r->code != wire::reset_code::internal_error;
      spdlog::log(target_problem ? spdlog::level::warn : spdlog::level::debug, "forward {}: {}: {}", f.spec.text,
                  wire::reset_code_name(r->code), r->reason);
    }
    spdlog::debug("forward {}: done, {} bytes up, {} down", f.spec.text, stats.a_to_b, stats.b_to_a);
  });
}

// ---- SOCKS5 -----------------------------------------------------------------

asio::awaitable<void> client::serve_socks(tcp::socket socket) {
  auto self = shared_from_this();
  std::vector<std::uint8_t> in;
  std::array<std::uint8_t, 1024> buf{};
  // Reads until `parse` is done or failed; keeps what follows for the next step.
  auto read_message = [&](auto parse) -> asio::awaitable<decltype(parse(std::span<const std::uint8_t>{}))> {
    for (;;) {
      auto r = parse(std::span<const std::uint8_t>(in));
      if (!r.need_more()) {
        if (r)
          in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(r.consumed()));
        co_return r;
      }
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
      if (ec)
        co_return decltype(r)::failure("the client went away (" + net::describe(ec) + ")");
      in.insert(in.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
  };
  // GCC 12 mishandles temporaries with default arguments inside co_await
  // expressions (double destruction), so replies are built here, outside.
  auto reply_for = [](socks5::reply_code c) { return socks5::encode_reply(c, socks5::address{}); };
  auto send = [&](std::span<const std::uint8_t> bytes) -> asio::awaitable<bool> {
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(bytes.data(), bytes.size()), use_tuple);
    co_return !ec;
  };

  auto greeting = co_await read_message([](auto s) { return socks5::parse_greeting(s); });
  if (!greeting) {
    spdlog::debug("socks: {}", greeting.error());
    co_return;
  }
  const bool need_auth = !options_.socks_user.empty();
  const auto method = socks5::choose_method(*greeting, need_auth);
  const auto choice = socks5::encode_method_choice(method);
  if (!co_await send(choice) || method == socks5::method::none_acceptable)
    co_return;
  if (method == socks5::method::userpass) {
    auto creds = co_await read_message([](auto s) { return socks5::parse_userpass(s); });
    if (!creds)
      co_return;
    const bool ok = transport::token_equal(creds->user, options_.socks_user) &&
                    transport::token_equal(creds->password, options_.socks_password);
    co_await send(socks5::encode_userpass_status(ok));
    if (!ok) {
      spdlog::warn("socks: wrong username or password from a local client");
      co_return;
    }
  }
  auto request = co_await read_message([](auto s) { return socks5::parse_request(s); });
  if (!request) {
    if (!request.need_more()) {
      spdlog::debug("socks: {}", request.error());
      {
        const auto reply_bytes = reply_for(request.reply());
        co_await send(reply_bytes);
      }
    }
    co_return;
  }
  if (request->cmd == socks5::command::udp_associate) {
    co_await socks_udp(socket, std::move(in));
    co_return;
  }
  if (request->cmd != socks5::command::connect) {
    {
      const auto reply_bytes = reply_for(socks5::reply_code::command_not_supported);
      co_await send(reply_bytes);
    }
    co_return;
  }
  if (request->destination.port == 0) {
    {
      const auto reply_bytes = reply_for(socks5::reply_code::general_failure);
      co_await send(reply_bytes);
    }
    co_return;
  }
  auto s = co_await tunnel_for_new_stream();
  if (!s) {
    spdlog::warn("socks: no tunnel within {}; refusing {}", format_duration(options_.wait_for_tunnel),
                 request->destination.to_string());
    {
      const auto reply_bytes = reply_for(socks5::reply_code::general_failure);
      co_await send(reply_bytes);
    }
    co_return;
  }
  auto st = s->open(wire::stream_kind::tcp, to_wire(request->destination));
  if (!st) {
    {
      const auto reply_bytes = reply_for(socks5::reply_code::general_failure);
      co_await send(reply_bytes);
    }
    co_return;
  }
  if (auto refused = co_await st->wait_open()) {
    spdlog::info("socks: {}: {} ({})", request->destination.to_string(), wire::reset_code_name(refused->code),
                 refused->reason);
    {
      const auto reply_bytes = reply_for(socks_reply_for(*refused));
      co_await send(reply_bytes);
    }
    co_return;
  }
  {
    const auto reply_bytes = reply_for(socks5::reply_code::succeeded);
    if (!co_await send(reply_bytes))
      co_return;
  }
  if (!in.empty()) {
    const asio::const_buffer early(in.data(), in.size());
    error_code ec;
    co_await st->write(std::span(&early, 1), ec);
    if (ec)
      co_return;
  }
  auto local = stream::make_tcp_stream(std::move(socket), "socks client");
  auto& from = *local;
  auto& to = *st;
  stream::start_pump(from, to, [self, local = std::move(local), st = std::move(st)](stream::pump_stats) {});
}

asio::awaitable<void> client::socks_udp(tcp::socket& control, std::vector<std::uint8_t>) {
  // UDP ASSOCIATE (RFC 1928 §7): a relay socket on the address the client
  // reached us on; datagrams carry a SOCKS header naming their target; one
  // tunnel flow per target; the association lives as long as `control`.
  error_code ec;
  const auto local = control.local_endpoint(ec);
  const auto peer = control.remote_endpoint(ec);
  udp::socket relay(ex_);
  const udp::endpoint bind_ep(local.address(), 0);
  relay.open(bind_ep.protocol(), ec);
  if (!ec)
    relay.bind(bind_ep, ec);
  if (!ec)
    relay.non_blocking(true, ec); // a full send buffer drops a datagram rather than stalling the client
  if (ec) {
    const auto reply = socks5::encode_reply(socks5::reply_code::general_failure, socks5::address{});
    co_await asio::async_write(control, asio::buffer(reply), use_tuple);
    co_return;
  }
  const auto bound = relay.local_endpoint();
  const auto bound_bytes = bound.address().is_v4() ? std::vector<std::uint8_t>(4) : std::vector<std::uint8_t>(16);
  socks5::address bound_addr;
  if (bound.address().is_v4()) {
    auto b = bound.address().to_v4().to_bytes();
    bound_addr = socks5::address::from_ipv4({b[0], b[1], b[2], b[3]}, bound.port());
  } else {
    bound_addr = socks5::address::from_ipv6(bound.address().to_v6().to_bytes(), bound.port());
  }
  const auto reply = socks5::encode_reply(socks5::reply_code::succeeded, bound_addr);
  auto [wec, wn] = co_await asio::async_write(control, asio::buffer(reply), use_tuple);
  if (wec)
    co_return;

  std::map<std::string, std::shared_ptr<wire::mux_stream>> flows;
  std::optional<udp::endpoint> client_ep;
  auto flow_reader = [&](std::shared_ptr<wire::mux_stream> st, socks5::address from) -> asio::awaitable<void> {
    const auto header = socks5::encode_udp_header(from);
    std::vector<std::uint8_t> out;
    for (;;) {
      auto d = co_await st->receive_datagram();
      if (!d || !client_ep)
        co_return;
      out.assign(header.begin(), header.end());
      out.insert(out.end(), d->begin(), d->end());
      error_code sec;
      relay.send_to(asio::buffer(out), *client_ep, 0, sec);
    }
  };
  auto up = [&]() -> asio::awaitable<void> {
    std::vector<std::uint8_t> buf(65536);
    udp::endpoint sender;
    for (;;) {
      auto [rec, n] = co_await relay.async_receive_from(asio::buffer(buf), sender, use_tuple);
      if (rec == asio::error::operation_aborted)
        co_return;
      if (rec || sender.address() != peer.address())
        continue; // only the client that asked for the association
      client_ep = sender;
      auto d = socks5::parse_udp_datagram(std::span<const std::uint8_t>(buf.data(), n));
      if (!d)
        continue;
      const auto key = d->destination.to_string();
      auto it = flows.find(key);
      if (it == flows.end() || it->second->reset_reason()) {
        if (flows.size() >= 256)
          continue;
        auto s = current_;
        if (!s || s->closed())
          continue;
        auto st = s->open(wire::stream_kind::udp, to_wire(d->destination));
        if (!st)
          continue;
        std::shared_ptr<wire::mux_stream> shared = std::move(st);
        it = flows.insert_or_assign(key, shared).first;
        asio::co_spawn(ex_, flow_reader(shared, d->destination), asio::detached);
      }
      it->second->send_datagram(d->payload);
    }
  };
  auto control_watch = [&]() -> asio::awaitable<void> {
    std::array<char, 64> b{};
    for (;;) {
      auto [rec, n] = co_await control.async_read_some(asio::buffer(b), use_tuple);
      if (rec)
        co_return;
    }
  };
  co_await (up() || control_watch());
  for (auto& [k, st] : flows)
    st->close();
  error_code ignored;
  relay.close(ignored);
  (void)bound_bytes;
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
          if (flow)
            flow->stream->send_datagram(std::span(f.udp_buffers[listener].data(), n));
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
