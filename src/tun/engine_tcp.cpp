// TCP through the kernel's own stack: the NAT rewrite in both directions,
// held SYNs, the upstream connect, the listener's accepts and the relays.
#include "core/clock.hpp"
#include "stream/pump.hpp"
#include "stream/tcp_stream.hpp"
#include "tun/build.hpp"
#include "tun/engine_detail.hpp"
#include "tun/rewrite.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

namespace warren::tun {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

endpoint src_of(const packet_view& v) { return {ip_addr::from_bytes(v.src.view()), v.src_port}; }
endpoint dst_of(const packet_view& v) { return {ip_addr::from_bytes(v.dst.view()), v.dst_port}; }

} // namespace

void engine::impl::on_tcp(std::span<std::uint8_t> packet, packet_view& view, const vnet_header& vh,
                          csum_form form) {
  const auto now = steady_clock::now();
  const bool fin = (view.tcp_flags & k_tcp_fin) != 0;
  const bool rst = (view.tcp_flags & k_tcp_rst) != 0;
  const auto from = src_of(view);
  const auto to = dst_of(view);

  // The kernel's side: L:l → N:n becomes D:d → A:a.
  const auto& listen = view.is_v4() ? options.listen4 : options.listen6;
  const auto listen_port = view.is_v4() ? port4 : port6;
  if (listen && from.addr == *listen && from.port == listen_port) {
    const auto* s = nat.find_nat(to);
    if (!s) {
      ++c.tcp_no_session;
      return;
    }
    const auto id = s->id;
    const auto app = s->app;
    rewrite(packet, view, form,
            rewrite_spec{detail::to_packet_address(app.dst.addr), detail::to_packet_address(app.app.addr),
                         app.dst.port, app.app.port});
    nat.on_packet(id, tcp_dir::from_listener, fin, rst, now);
    write_packet(packet, vh);
    return;
  }

  // The application's side: A:a → D:d becomes N:n → L:l.
  const flow_key key{from, to};
  if ((view.tcp_flags & (k_tcp_syn | k_tcp_ack | k_tcp_rst)) == k_tcp_syn) {
    auto r = nat.on_syn(key, view.seq, now);
    if (r.evicted) {
      // A SYN flood pushed out the oldest pending connection: it hears a RST.
      if (auto h = held.find(r.evicted->id); h != held.end()) {
        if (!h->second.released)
          answer_syn(h->second, upstream_error::refused);
        drop_held(h);
      }
    }
    switch (r.outcome) {
    case syn_outcome::created: {
      auto& h = held[r.session->id];
      h.packet.assign(packet.begin(), packet.end());
      h.vh = vh;
      h.connect_op = start_connect(r.session->id, to);
      return;
    }
    case syn_outcome::retransmit:
      if (auto h = held.find(r.session->id); h != held.end() && !h->second.released) {
        h->second.packet.assign(packet.begin(), packet.end()); // the latest SYN is the one answered
        h->second.vh = vh;
        return;
      }
      break; // released: the kernel answers the retransmission itself
    case syn_outcome::existing: break;
    case syn_outcome::refused_full:
    case syn_outcome::refused_no_port: {
      const auto n = build_tcp_rst(tx, view);
      if (n != 0) {
        ++c.tcp_rst_sent;
        write_packet(std::span<const std::uint8_t>(tx.data(), n), vnet_header{});
      }
      return;
    }
    }
  }
  const auto* s = nat.find_app(key);
  if (!s || !listen) {
    ++c.tcp_no_session;
    return;
  }
  if (s->state == tcp_state::pending) {
    auto h = held.find(s->id);
    if (h == held.end() || !h->second.released) {
      ++c.tcp_no_session; // nothing passes before the SYN does
      return;
    }
  }
  const auto id = s->id;
  rewrite(packet, view, form,
          rewrite_spec{detail::to_packet_address(s->nat.addr), detail::to_packet_address(*listen), s->nat.port,
                       listen_port});
  nat.on_packet(id, tcp_dir::from_app, fin, rst, now);
  write_packet(packet, vh);
}

void engine::impl::drop_held(std::unordered_map<std::uint64_t, held_syn>::iterator h) {
  if (!h->second.released)
    cancel(h->second.connect_op);
  held.erase(h);
}

std::uint64_t engine::impl::start_connect(std::uint64_t id, endpoint dst) {
  const tcp::endpoint target(detail::to_asio(dst.addr), dst.port);
  return spawn(
      [self = shared_from_this(), id, target]() -> asio::awaitable<void> {
        auto conn = co_await self->up.connect(target);
        self->connected(id, std::move(conn));
      });
}

void engine::impl::connected(std::uint64_t id, tcp_connection conn) {
  if (stopped)
    return;
  auto h = held.find(id);
  const auto* s = nat.find(id);
  if (h == held.end() || !s || s->state != tcp_state::pending)
    return; // timed out or evicted meanwhile: the connection closes here
  if (conn.failure) {
    spdlog::debug("tun: {}: {}", s->app.to_string(), conn.failure.message);
    answer_syn(h->second, conn.failure.kind);
    held.erase(h);
    nat.erase(id, steady_clock::now());
    return;
  }
  ++c.tcp_connected;
  h->second.released = true;
  h->second.socket = std::move(conn.socket);
  h->second.stream = std::move(conn.stream);
  // The held SYN, rewritten toward the listener: the kernel answers it.
  auto& packet = h->second.packet;
  auto parsed = parse(packet, parse_options{false, options.vnet_hdr ? form_of(h->second.vh) : csum_form::full});
  const auto& listen = s->app.app.addr.v6 ? options.listen6 : options.listen4;
  if (!parsed || !listen)
    return;
  auto view = parsed.view();
  rewrite(packet, view, options.vnet_hdr ? form_of(h->second.vh) : csum_form::full,
          rewrite_spec{detail::to_packet_address(s->nat.addr), detail::to_packet_address(*listen), s->nat.port,
                       s->app.app.addr.v6 ? port6 : port4});
  write_packet(packet, h->second.vh);
}

void engine::impl::answer_syn(const held_syn& h, upstream_error why) {
  auto parsed = parse(h.packet, parse_options{false, options.vnet_hdr ? form_of(h.vh) : csum_form::full});
  if (!parsed)
    return;
  std::size_t n = 0;
  if (why == upstream_error::refused) {
    n = build_tcp_rst(tx, parsed.view());
    ++c.tcp_rst_sent;
  } else {
    const bool v4 = parsed->is_v4();
    n = build_icmp_unreachable(tx, h.packet, parsed.view(),
                               v4 ? k_icmp4_host_unreachable : k_icmp6_address_unreachable);
    ++c.tcp_unreachable;
  }
  if (n != 0)
    write_packet(std::span<const std::uint8_t>(tx.data(), n), vnet_header{});
}

void engine::impl::accept_loop(tcp::acceptor& acceptor) {
  acceptor.async_accept([self = shared_from_this(), &acceptor](error_code ec, tcp::socket socket) {
    if (self->stopped || ec == asio::error::operation_aborted)
      return;
    if (!ec)
      self->accepted(std::move(socket));
    self->accept_loop(acceptor);
  });
}

void engine::impl::accepted(tcp::socket socket) {
  error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  const auto addr = ec ? std::nullopt : detail::from_asio(peer.address());
  const auto* s = addr ? nat.find_nat(endpoint{*addr, peer.port()}) : nullptr;
  auto h = s ? held.find(s->id) : held.end();
  if (h == held.end() || !h->second.released) {
    socket.close(ec); // not ours: someone else connected to the listener
    return;
  }
  const auto id = s->id;
  nat.established(id, steady_clock::now());
  held_syn conn = std::move(h->second);
  held.erase(h);
  socket.set_option(tcp::no_delay(true), ec);
  auto done = [self = shared_from_this(), id](std::uint64_t bytes_up, std::uint64_t bytes_down) {
    self->c.relay_bytes_up += bytes_up;
    self->c.relay_bytes_down += bytes_down;
    self->relays.erase(id);
  };
  tcp_relay relay;
  if (conn.socket) {
    relay.spliced = net::start_relay(ex, socket.release(), conn.socket->release(),
                                     [done](net::relay_stats st, error_code) { done(st.a_to_b, st.b_to_a); });
  } else if (conn.stream) {
    auto pair = std::make_shared<std::pair<stream::byte_stream_ptr, stream::byte_stream_ptr>>(
        stream::make_tcp_stream(std::move(socket), "tun"), std::move(conn.stream));
    relay.pumped = pair;
    stream::start_pump(*pair->first, *pair->second,
                       [done, pair](stream::pump_stats st) { done(st.a_to_b, st.b_to_a); });
  } else {
    return;
  }
  relays[id] = std::move(relay);
}

} // namespace warren::tun
