// The tunnel client's SOCKS5 server (RFC 1928, RFC 1929 username/password):
// CONNECT becomes a tunnel stream, UDP ASSOCIATE a relay socket whose
// datagrams become tunnel flows, one per target. Names are resolved by the
// server (socks5h). The codec is proxy/socks5 (pure); this file only does
// the I/O. Split from client.cpp, which keeps the supervisor and the -L
// forwards.
#include "tunnel/client.hpp"

#include "core/duration.hpp"
#include "core/log.hpp"
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

#include <array>
#include <map>
#include <optional>
#include <variant>

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

// GCC 12 mishandles temporaries with default arguments inside co_await
// expressions (double destruction), so replies are built outside them.
std::vector<std::uint8_t> reply_for(socks5::reply_code c) {
  return socks5::encode_reply(c, socks5::address{});
}

asio::awaitable<bool> send_bytes(tcp::socket& socket, std::span<const std::uint8_t> bytes) {
  auto [ec, n] = co_await asio::async_write(socket, asio::buffer(bytes.data(), bytes.size()), use_tuple);
  co_return !ec;
}
} // namespace

struct client::socks_request {
  socks5::request request;
  std::vector<std::uint8_t> rest; // what the client sent after the request (early data)
};

asio::awaitable<std::optional<client::socks_request>> client::socks_handshake(tcp::socket& socket) {
  // 1. greeting (methods) → method choice; 2. RFC 1929 username/password if
  // required → status; 3. request → nothing yet (the caller replies), or a
  // failure reply for a request it cannot parse.
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
  auto greeting = co_await read_message([](auto s) { return socks5::parse_greeting(s); });
  if (!greeting) {
    spdlog::debug("socks: {}", greeting.error());
    co_return std::nullopt;
  }
  const bool need_auth = !options_.socks_user.empty();
  const auto method = socks5::choose_method(*greeting, need_auth);
  const auto choice = socks5::encode_method_choice(method);
  if (!co_await send_bytes(socket, choice) || method == socks5::method::none_acceptable)
    co_return std::nullopt;
  if (method == socks5::method::userpass) {
    auto creds = co_await read_message([](auto s) { return socks5::parse_userpass(s); });
    if (!creds)
      co_return std::nullopt;
    const bool ok = transport::token_equal(creds->user, options_.socks_user) &&
                    transport::token_equal(creds->password, options_.socks_password);
    co_await send_bytes(socket, socks5::encode_userpass_status(ok));
    if (!ok) {
      log_local(spdlog::level::warn, "socks: wrong username or password from a local client");
      co_return std::nullopt;
    }
  }
  auto request = co_await read_message([](auto s) { return socks5::parse_request(s); });
  if (!request) {
    if (!request.need_more()) {
      spdlog::debug("socks: {}", request.error());
      const auto reply_bytes = reply_for(request.reply());
      co_await send_bytes(socket, reply_bytes);
    }
    co_return std::nullopt;
  }
  co_return socks_request{std::move(*request), std::move(in)};
}

asio::awaitable<void> client::serve_socks(tcp::socket socket, fd_budget::ticket fd) {
  auto self = shared_from_this();
  // Anyone who can reach the port can start a handshake and stop: each one
  // holds a descriptor, so it gets socks_handshake_timeout, no more.
  asio::steady_timer deadline(ex_);
  deadline.expires_after(options_.socks_handshake_timeout);
  auto handshake = co_await (socks_handshake(socket) || deadline.async_wait(use_tuple));
  if (handshake.index() == 1) {
    spdlog::debug("socks: a local client sent no complete request within {}; closed",
                  format_duration(options_.socks_handshake_timeout));
    co_return;
  }
  auto accepted = std::get<0>(std::move(handshake));
  if (!accepted)
    co_return;
  auto& request = accepted->request;
  auto& in = accepted->rest;
  auto send = [&](std::span<const std::uint8_t> bytes) { return send_bytes(socket, bytes); };
  if (request.cmd == socks5::command::udp_associate) {
    // The relay socket is a second descriptor.
    if (auto relay_fd = local_fds_.take()) {
      co_await socks_udp(socket, std::move(in));
    } else {
      log_local(spdlog::level::warn, "socks: UDP ASSOCIATE refused: " + std::to_string(local_fds_.held()) +
                                         " descriptors held for local connections, all the open-file limit leaves");
      const auto reply_bytes = reply_for(socks5::reply_code::general_failure);
      co_await send(reply_bytes);
    }
    co_return;
  }
  if (request.cmd != socks5::command::connect) {
    {
      const auto reply_bytes = reply_for(socks5::reply_code::command_not_supported);
      co_await send(reply_bytes);
    }
    co_return;
  }
  if (request.destination.port == 0) {
    {
      const auto reply_bytes = reply_for(socks5::reply_code::general_failure);
      co_await send(reply_bytes);
    }
    co_return;
  }
  auto s = co_await tunnel_for_new_stream();
  if (!s) {
    log_local(spdlog::level::warn, "socks: no tunnel within " + format_duration(options_.wait_for_tunnel) +
                                       "; refusing " + request.destination.to_string());
    {
      const auto reply_bytes = reply_for(socks5::reply_code::general_failure);
      co_await send(reply_bytes);
    }
    co_return;
  }
  auto st = s->open(wire::stream_kind::tcp, to_wire(request.destination));
  if (!st) {
    {
      const auto reply_bytes = reply_for(socks5::reply_code::general_failure);
      co_await send(reply_bytes);
    }
    co_return;
  }
  if (auto refused = co_await st->wait_open()) {
    log_local(spdlog::level::info, "socks: " + request.destination.to_string() + ": " +
                                       std::string(wire::reset_code_name(refused->code)) + " (" + refused->reason +
                                       ")");
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
  stream::start_pump(from, to,
                     [self, local = std::move(local), st = std::move(st), fd = std::move(fd)](stream::pump_stats) {});
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

} // namespace warren::tunnel
