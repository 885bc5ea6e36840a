// The packet engine: the TUN read loop, TCP by NAT into the kernel's stack,
// UDP associations, ICMP echo. See engine.hpp for the design.
#include "tun/engine.hpp"

#include "net/stream_relay.hpp"
#include "stream/pump.hpp"
#include "stream/tcp_stream.hpp"
#include "tun/build.hpp"
#include "tun/engine_detail.hpp"
#include "tun/rewrite.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <sys/uio.h>
#include <unistd.h>

namespace warren::tun {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace detail {

asio::ip::address to_asio(const ip_addr& a) {
  if (!a.v6)
    return asio::ip::address_v4({a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3]});
  asio::ip::address_v6::bytes_type b;
  std::copy(a.bytes.begin(), a.bytes.end(), b.begin());
  return asio::ip::address_v6(b);
}

std::optional<ip_addr> from_asio(const asio::ip::address& a) {
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    return ip_addr::from_bytes(b);
  }
  const auto v6 = a.to_v6();
  if (v6.is_v4_mapped()) {
    const auto b = asio::ip::make_address_v4(asio::ip::v4_mapped, v6).to_bytes();
    return ip_addr::from_bytes(b);
  }
  const auto b = v6.to_bytes();
  return ip_addr::from_bytes(b);
}

ip_address to_packet_address(const ip_addr& a) { return ip_address::from(a.span()); }

} // namespace detail

engine::engine(asio::any_io_executor ex, int tun_fd, std::shared_ptr<upstream> up, engine_options options)
    : impl_(std::make_shared<impl>(std::move(ex), tun_fd, std::move(up), std::move(options))) {}

engine::~engine() {
  if (impl_)
    impl_->stop();
}

expected<bool> engine::start() { return impl_->start(); }
void engine::stop() { impl_->stop(); }
engine_counters engine::counters() const { return impl_->counters(); }
std::uint16_t engine::listen_port4() const { return impl_->port4; }
std::uint16_t engine::listen_port6() const { return impl_->port6; }

// ---- impl: set-up, the read loop, writes ----

engine::impl::impl(asio::any_io_executor executor, int tun_fd, std::shared_ptr<upstream> u, engine_options o)
    : ex(std::move(executor)), tun(ex, tun_fd), upstream_holder(std::move(u)), up(*upstream_holder), options(std::move(o)), nat(options.tcp), flows(options.udp),
      tick(ex), rx(65536 + k_vnet_hdr_size), tx(65536 + k_vnet_hdr_size) {}

expected<bool> engine::impl::start() {
  auto bind = [&](const std::optional<ip_addr>& addr, std::optional<tcp::acceptor>& acceptor,
                  std::uint16_t& port) -> expected<bool> {
    if (!addr)
      return true;
    error_code ec;
    tcp::endpoint at(detail::to_asio(*addr), 0);
    acceptor.emplace(ex);
    acceptor->open(at.protocol(), ec);
    if (!ec)
      acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec)
      acceptor->bind(at, ec);
    if (!ec)
      acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return expected<bool>::failure("cannot listen on " + addr->to_string() + " (the TUN's address): " +
                                     ec.message());
    port = acceptor->local_endpoint().port();
    return true;
  };
  if (auto ok = bind(options.listen4, acceptor4, port4); !ok)
    return ok;
  if (auto ok = bind(options.listen6, acceptor6, port6); !ok)
    return ok;
  if (acceptor4)
    accept_loop(*acceptor4);
  if (acceptor6)
    accept_loop(*acceptor6);
  arm_read();
  arm_tick();
  return true;
}

void engine::impl::stop() {
  if (std::exchange(stopped, true))
    return;
  error_code ignored;
  tun.close(ignored);
  tick.cancel();
  if (acceptor4)
    acceptor4->close(ignored);
  if (acceptor6)
    acceptor6->close(ignored);
  held.clear(); // closes upstream connections never accepted
  for (auto& [id, r] : relays)
    r.cut();
  relays.clear();
  for (auto& [id, a] : associations)
    a->close();
  associations.clear();
  // Connects, associations being opened, DNS over TCP: cancelled, so the
  // event loop is not kept busy by a unit that stopped.
  std::vector<std::uint64_t> keys;
  for (const auto& [key, signal] : cancels)
    keys.push_back(key);
  for (auto key : keys) // a completion may erase entries: look each up again
    if (auto it = cancels.find(key); it != cancels.end())
      it->second.emit(asio::cancellation_type::terminal);
}

void engine::impl::arm_read() {
  tun.async_wait(asio::posix::descriptor_base::wait_read, [self = shared_from_this()](error_code ec) {
    if (ec || self->stopped)
      return;
    self->drain();
    self->arm_read();
  });
}

void engine::impl::drain() {
  const int fd = tun.native_handle();
  // A batch per wake-up: bounded so the loop's other work (accepts,
  // upstream replies) is not starved by a flood on the device.
  for (int i = 0; i < 64 && !stopped; ++i) {
    const ssize_t n = ::read(fd, rx.data(), rx.size());
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        spdlog::warn("tun: read: {}", std::strerror(errno));
      return;
    }
    on_frame(std::span<std::uint8_t>(rx.data(), static_cast<std::size_t>(n)));
  }
}

void engine::impl::on_frame(std::span<std::uint8_t> frame) {
  ++c.packets_in;
  c.bytes_in += frame.size();
  vnet_header vh{};
  if (options.vnet_hdr) {
    auto parsed = parse_vnet_header(frame);
    if (!parsed || frame.size() < k_vnet_hdr_size) {
      ++c.bad_vnet;
      return;
    }
    vh = *parsed;
    frame = frame.subspan(k_vnet_hdr_size);
  }
  const csum_form form = options.vnet_hdr ? form_of(vh) : csum_form::full;
  const auto r = parse(frame, parse_options{options.verify_checksums, form});
  if (!r) {
    ++c.rejected[static_cast<std::size_t>(r.reason())];
    return;
  }
  packet_view view = r.view();
  if (options.vnet_hdr && validate(vh, view)) {
    ++c.bad_vnet;
    return;
  }
  auto packet = frame.first(view.size);
  switch (view.protocol) {
  case k_proto_tcp: on_tcp(packet, view, vh, form); break;
  case k_proto_udp: on_udp(packet, view, vh); break;
  default: on_icmp(packet, view); break;
  }
}

void engine::impl::write_packet(std::span<const std::uint8_t> packet, const vnet_header& vh) {
  if (stopped)
    return;
  const int fd = tun.native_handle();
  ssize_t n;
  if (options.vnet_hdr) {
    std::uint8_t header[k_vnet_hdr_size];
    encode_vnet_header(header, vh);
    iovec iov[2] = {{header, sizeof header}, {const_cast<std::uint8_t*>(packet.data()), packet.size()}};
    n = ::writev(fd, iov, 2);
  } else {
    n = ::write(fd, packet.data(), packet.size());
  }
  if (n < 0) {
    ++c.write_errors;
    return;
  }
  ++c.packets_out;
  c.bytes_out += packet.size();
}

void engine::impl::arm_tick() {
  tick.expires_after(std::chrono::seconds(1));
  tick.async_wait([self = shared_from_this()](error_code ec) {
    if (ec || self->stopped)
      return;
    self->expire(steady_clock::now());
    self->arm_tick();
  });
}

void engine::impl::expire(time_point now) {
  for (auto& e : nat.expire(now)) {
    const auto id = e.session.id;
    switch (e.reason) {
    case expiry_reason::pending_timeout:
      if (auto h = held.find(id); h != held.end()) {
        if (!h->second.released)
          answer_syn(h->second, upstream_error::timeout);
        drop_held(h);
      }
      break;
    case expiry_reason::idle:
    case expiry_reason::half_closed_idle:
      if (auto r = relays.find(id); r != relays.end()) {
        r->second.cut();
        relays.erase(r);
      }
      break;
    case expiry_reason::closed:
      // A RST between the upstream's connect and the listener's accept (the
      // application answered the SYN-ACK with one: a SYN flood from the TUN's
      // own address does that): the held connection, upstream included, goes
      // with the session, or it stays for the engine's lifetime.
      if (auto h = held.find(id); h != held.end())
        drop_held(h);
      break;
    }
  }
  // Whatever else ended a session (a closed one evicted to make room, say)
  // must not leave its held connection behind: held entries are few (at
  // most the pending bound and the accepts in progress), so look each up.
  for (auto h = held.begin(); h != held.end();) {
    auto next = std::next(h);
    if (!nat.find(h->first))
      drop_held(h);
    h = next;
  }
  for (auto& e : flows.expire(now))
    close_association(e.flow.id);
}

// ---- ICMP ----

void engine::impl::on_icmp(std::span<std::uint8_t> packet, const packet_view& view) {
  if (!view.is_echo_request() || !options.icmp_reply) {
    ++c.icmp_dropped;
    return;
  }
  const auto n = build_echo_reply(tx, packet, view);
  if (n == 0) {
    ++c.icmp_dropped;
    return;
  }
  ++c.icmp_echo_replies;
  write_packet(std::span<const std::uint8_t>(tx.data(), n), vnet_header{});
}

engine_counters engine::impl::counters() const {
  auto out = c;
  out.tcp = nat.counters();
  out.udp = flows.counters();
  return out;
}

} // namespace warren::tun
