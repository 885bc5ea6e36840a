// UDP: one upstream association per application socket (full cone), the
// replies written back as packets from their source; DNS over TCP when the
// upstream has no UDP.
#include "core/clock.hpp"
#include "stream/tcp_stream.hpp"
#include "tun/build.hpp"
#include "tun/engine_detail.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

namespace warren::tun {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

udp::endpoint to_udp(const endpoint& e) { return udp::endpoint(detail::to_asio(e.addr), e.port); }

constexpr std::uint16_t k_dns_port = 53;

/// Not multicast (224.0.0.0/4, ff00::/8), not the limited broadcast, not
/// unspecified (0.0.0.0, ::).
bool unicast(const ip_addr& a) {
  if (!a.v6) {
    const bool any = a.bytes[0] == 0 && a.bytes[1] == 0 && a.bytes[2] == 0 && a.bytes[3] == 0;
    const bool broadcast = a.bytes[0] == 255 && a.bytes[1] == 255 && a.bytes[2] == 255 && a.bytes[3] == 255;
    return !any && !broadcast && (a.bytes[0] & 0xf0) != 0xe0;
  }
  bool any = true;
  for (auto b : a.bytes)
    any = any && b == 0;
  return !any && a.bytes[0] != 0xff;
}
constexpr auto k_dns_over_tcp_timeout = std::chrono::seconds(5);

} // namespace

void engine::impl::on_udp(std::span<std::uint8_t> packet, const packet_view& view, const vnet_header& vh) {
  const endpoint app{ip_addr::from_bytes(view.src.view()), view.src_port};
  const endpoint dst{ip_addr::from_bytes(view.dst.view()), view.dst_port};
  if (!unicast(dst.addr) || dst.port == 0) {
    // mDNS, SSDP, broadcasts: meant for this link, never for the upstream's.
    ++c.udp_not_unicast;
    return;
  }
  auto payload = std::span<const std::uint8_t>(packet).subspan(view.payload_offset);
  // With USO the kernel hands over several datagrams as one: gso_size each.
  if (options.vnet_hdr && vh.gso_kind() == k_gso_udp_l4 && vh.gso_size != 0) {
    while (!payload.empty()) {
      const auto n = std::min<std::size_t>(payload.size(), vh.gso_size);
      on_datagram(app, dst, payload.first(n));
      payload = payload.subspan(n);
    }
    return;
  }
  on_datagram(app, dst, payload);
}

void engine::impl::on_datagram(const endpoint& app, const endpoint& dst, std::span<const std::uint8_t> payload) {
  if (udp_unsupported) {
    if (dst.port == k_dns_port)
      dns_over_tcp(app, dst, payload);
    else
      ++c.udp_dropped;
    return;
  }
  const auto now = steady_clock::now();
  auto r = flows.open(flow_key{app, dst}, now);
  if (r.evicted)
    close_association(r.evicted->id);
  if (!r.flow) {
    ++c.udp_dropped;
    return;
  }
  const auto id = r.flow->id;
  if (r.created)
    open_association(id);
  if (r.flow->ready)
    send_up(id, dst, payload);
  else if (!flows.enqueue(id, dst, payload))
    ++c.udp_dropped;
}

void engine::impl::send_up(std::uint64_t id, const endpoint& dst, std::span<const std::uint8_t> payload) {
  auto a = associations.find(id);
  if (a == associations.end() || a->second->try_send(to_udp(dst), payload)) {
    ++c.udp_dropped;
    return;
  }
  ++c.udp_datagrams_up;
}

void engine::impl::open_association(std::uint64_t id) {
  spawn(
      [self = shared_from_this(), id]() -> asio::awaitable<void> {
        auto r = co_await self->up.open_udp();
        if (self->stopped) {
          if (r.association)
            r.association->close();
          co_return;
        }
        if (r.failure) {
          if (r.failure.kind == upstream_error::udp_not_supported && !self->udp_unsupported) {
            self->udp_unsupported = true;
            spdlog::warn("tun: {} carries no UDP ({}): DNS queries go over TCP, other UDP is dropped",
                         self->up.describe(), r.failure.message);
          } else if (r.failure.kind != upstream_error::udp_not_supported) {
            spdlog::debug("tun: UDP association: {}", r.failure.message);
          }
          if (auto flow = self->flows.erase(id))
            self->no_udp_upstream(*flow);
          co_return;
        }
        if (!self->flows.find(id)) {
          r.association->close(); // expired or evicted meanwhile
          co_return;
        }
        std::shared_ptr<udp_association> a = std::move(r.association);
        self->associations[id] = a;
        for (auto& d : self->flows.ready(id, steady_clock::now()))
          self->send_up(id, d.dst, d.payload);
        // The end of the association (the upstream closed it) ends the flow.
        asio::co_spawn(
            self->ex,
            [self, id, a]() -> asio::awaitable<void> {
              co_await a->wait_closed();
              if (auto it = self->associations.find(id); it != self->associations.end() && it->second == a) {
                self->associations.erase(it);
                self->flows.erase(id);
              }
            },
            asio::detached);
        for (;;) {
          auto got = co_await a->receive();
          if (got.ec || self->stopped)
            break;
          const auto* flow = self->flows.find(id);
          if (!flow)
            break;
          auto from = detail::from_asio(got.source.address());
          if (!from || from->v6 != flow->key.app.addr.v6) {
            ++self->c.udp_dropped; // a reply of the other family cannot reach this socket
            continue;
          }
          self->flows.touch(id, steady_clock::now());
          ++self->c.udp_datagrams_down;
          self->reply_datagram(endpoint{*from, got.source.port()}, flow->key.app, got.payload);
        }
      });
}

void engine::impl::close_association(std::uint64_t id) {
  if (auto a = associations.find(id); a != associations.end()) {
    a->second->close();
    associations.erase(a);
  }
}

void engine::impl::no_udp_upstream(const udp_flow& flow) {
  for (const auto& d : flow.queue) {
    if (udp_unsupported && d.dst.port == k_dns_port)
      dns_over_tcp(flow.key.app, d.dst, d.payload);
    else
      ++c.udp_dropped;
  }
}

void engine::impl::reply_datagram(const endpoint& from, const endpoint& to, std::span<const std::uint8_t> payload) {
  const auto n = build_udp(tx, detail::to_packet_address(from.addr), from.port, detail::to_packet_address(to.addr),
                           to.port, payload);
  if (n == 0) {
    ++c.udp_dropped; // larger than a packet can be
    return;
  }
  write_packet(std::span<const std::uint8_t>(tx.data(), n), vnet_header{});
}

void engine::impl::dns_over_tcp(const endpoint& app, const endpoint& dst, std::span<const std::uint8_t> query) {
  if (dns_in_flight >= options.max_dns_over_tcp || query.size() > 65535) {
    ++c.udp_dropped;
    return;
  }
  ++dns_in_flight;
  ++c.dns_over_tcp;
  spawn(
      [self = shared_from_this(), app, dst,
       q = std::vector<std::uint8_t>(query.begin(), query.end())]() -> asio::awaitable<void> {
        using namespace asio::experimental::awaitable_operators;
        auto exchange = [&]() -> asio::awaitable<std::vector<std::uint8_t>> {
          auto conn = co_await self->up.connect(tcp::endpoint(detail::to_asio(dst.addr), dst.port));
          stream::byte_stream_ptr s = std::move(conn.stream);
          if (conn.socket)
            s = stream::make_tcp_stream(std::move(*conn.socket), "dns");
          if (conn.failure || !s)
            co_return std::vector<std::uint8_t>{};
          // RFC 7766: a two-byte length before each message.
          const std::uint8_t len[2] = {static_cast<std::uint8_t>(q.size() >> 8),
                                       static_cast<std::uint8_t>(q.size() & 0xff)};
          const std::array<asio::const_buffer, 2> out{asio::buffer(len), asio::buffer(q)};
          error_code ec;
          co_await s->write(out, ec);
          std::vector<std::uint8_t> in(2);
          std::size_t got = 0;
          std::size_t want = 2;
          while (!ec && got < want) {
            got += co_await s->read_some(asio::buffer(in.data() + got, want - got), ec);
            if (got == 2 && want == 2) {
              want = 2 + (std::size_t{in[0]} << 8 | in[1]);
              in.resize(want);
            }
          }
          s->close();
          if (ec || want <= 2)
            co_return std::vector<std::uint8_t>{};
          in.erase(in.begin(), in.begin() + 2);
          co_return in;
        };
        asio::steady_timer timer(self->ex, k_dns_over_tcp_timeout);
        auto result = co_await (exchange() || timer.async_wait(asio::use_awaitable));
        --self->dns_in_flight;
        if (self->stopped || result.index() != 0 || std::get<0>(result).empty()) {
          ++self->c.udp_dropped;
          co_return;
        }
        ++self->c.udp_datagrams_down;
        self->reply_datagram(dst, app, std::get<0>(result));
      });
}

} // namespace warren::tun
