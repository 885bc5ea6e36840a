// socks5_upstream: see socks5_upstream.hpp. Each operation is one control
// connection: reach the server (the marked Happy Eyeballs connector), run
// the shared client handshake under what is left of connect_timeout, and
// turn its outcome into the kind the engine acts on.
#include "tun/socks5_upstream.hpp"

#include "core/duration.hpp"
#include "net/connector.hpp"
#include "net/socket_mark.hpp"
#include "proxy/socks5_client.hpp"
#include "transport/proxy_config.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>

namespace warren::tun {

namespace asio = boost::asio;
namespace s5 = proxy::socks5;
using asio::ip::tcp;
using asio::ip::udp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t k_max_datagram = 65'535;

s5::address to_socks(const asio::ip::address& a, std::uint16_t port) {
  if (a.is_v4())
    return s5::address::from_ipv4(a.to_v4().to_bytes(), port);
  return *s5::address::from_ip_bytes(a.to_v6().to_bytes(), port); // a mapped v4 becomes v4
}

std::optional<asio::ip::address> to_ip(const s5::address& a) {
  if (a.kind == s5::address::type::ipv4) {
    asio::ip::address_v4::bytes_type b;
    std::copy_n(a.ip.begin(), 4, b.begin());
    return asio::ip::address_v4(b);
  }
  if (a.kind == s5::address::type::ipv6) {
    asio::ip::address_v6::bytes_type b;
    std::copy_n(a.ip.begin(), 16, b.begin());
    return asio::ip::address_v6(b);
  }
  return std::nullopt;
}

upstream_failure failed(upstream_error kind, std::string message) {
  return upstream_failure{kind, std::move(message)};
}

} // namespace

std::string_view to_string(upstream_error e) noexcept {
  switch (e) {
  case upstream_error::none:
    return "none";
  case upstream_error::refused:
    return "refused";
  case upstream_error::unreachable:
    return "unreachable";
  case upstream_error::timeout:
    return "timeout";
  case upstream_error::proxy_down:
    return "proxy down";
  case upstream_error::auth_failed:
    return "authentication failed";
  case upstream_error::udp_not_supported:
    return "UDP not supported";
  case upstream_error::other:
    break;
  }
  return "other";
}

expected<socks5_upstream_options> socks5_upstream_options_from_url(std::string_view url) {
  using result = expected<socks5_upstream_options>;
  if (!url.starts_with("socks5://") && !url.starts_with("socks5h://"))
    return result::failure("a SOCKS5 upstream is socks5://[user:pass@]host:port");
  auto parsed = transport::parse_proxy_url(url);
  if (!parsed)
    return result::failure(parsed.error());
  socks5_upstream_options o;
  o.server = parsed->endpoint;
  if (!parsed->user.empty())
    o.credentials = s5::credentials{parsed->user, parsed->password};
  return o;
}

// ---- the upstream ----

socks5_upstream::socks5_upstream(asio::any_io_executor ex, net::resolver& resolver, socks5_upstream_options options)
    : ex_(std::move(ex)), resolver_(resolver), options_(std::move(options)),
      shown_("socks5://" + net::format_host_port(options_.server.host, options_.server.port)) {}

namespace {

/// Reaches the server and runs one request; the timeout covers both.
asio::awaitable<std::pair<upstream_failure, std::optional<tcp::socket>>>
handshake(asio::any_io_executor ex, net::resolver& resolver, const socks5_upstream_options& options,
          const std::string& shown, const s5::request& req, const std::string& what, s5::client_result& reply) {
  using outcome = s5::client_result::outcome;
  using result = std::pair<upstream_failure, std::optional<tcp::socket>>;
  const auto started = steady_clock::now();
  net::connect_options o;
  o.he.timeout = options.connect_timeout;
  o.mark = options.mark;
  o.interface = options.interface;
  o.log_label = "tun upstream";
  auto reached = co_await net::async_connect(ex, resolver, options.server, o, asio::use_awaitable);
  if (reached.ec)
    co_return result{
        failed(upstream_error::proxy_down, "cannot reach the SOCKS5 server " + shown + ": " + reached.detail),
        std::nullopt};
  tcp::socket socket = std::move(*reached.socket);
  const auto spent = steady_clock::now() - started;
  asio::steady_timer timer(ex, spent < options.connect_timeout ? options.connect_timeout - spent
                                                               : steady_clock::duration::zero());
  auto raced = co_await (s5::client_handshake(socket, req, options.credentials) || timer.async_wait(use_tuple));
  if (raced.index() == 1)
    co_return result{failed(upstream_error::timeout, "the SOCKS5 server " + shown + " did not answer " + what +
                                                         " within " + format_duration(options.connect_timeout)),
                     std::nullopt};
  reply = std::get<0>(std::move(raced));
  const bool udp = req.cmd == s5::command::udp_associate;
  const std::string prefix = "the SOCKS5 server " + shown;
  switch (reply.what) {
  case outcome::ok:
    co_return result{upstream_failure{}, std::move(socket)};
  case outcome::io_error:
    if (udp && reply.request_sent)
      co_return result{failed(upstream_error::udp_not_supported,
                              prefix + " closed the connection instead of answering UDP ASSOCIATE (no UDP support)"),
                       std::nullopt};
    co_return result{
        failed(upstream_error::proxy_down, reply.ec == asio::error::eof
                                               ? prefix + " closed the connection during " + what
                                               : prefix + " failed during " + what + ": " + net::describe(reply.ec)),
        std::nullopt};
  case outcome::not_socks5:
    co_return result{failed(upstream_error::other, prefix + " is not a SOCKS5 server (" + reply.detail + ")"),
                     std::nullopt};
  case outcome::malformed:
    co_return result{failed(upstream_error::other, prefix + ": " + reply.detail), std::nullopt};
  case outcome::unexpected_method:
    co_return result{failed(upstream_error::other, prefix + " chose an authentication method warren did not offer"),
                     std::nullopt};
  case outcome::bad_credentials:
    co_return result{failed(upstream_error::auth_failed, "cannot log in to " + shown + ": " + reply.detail),
                     std::nullopt};
  case outcome::auth_refused:
    co_return result{failed(upstream_error::auth_failed, prefix + " refused the user name or password in the URL"),
                     std::nullopt};
  case outcome::no_acceptable_method:
    co_return result{
        failed(upstream_error::auth_failed,
               prefix + " accepted none of the methods offered (no authentication, user name and " + "password)"),
        std::nullopt};
  case outcome::wants_credentials:
    co_return result{failed(upstream_error::auth_failed,
                            prefix + " wants a user name and password: put them in the URL (socks5://user:pass@...)"),
                     std::nullopt};
  case outcome::refused:
    break;
  }
  const std::string said = prefix + " answered " + what + ": " + std::string(to_string(reply.code));
  switch (reply.code) {
  case s5::reply_code::connection_refused:
    co_return result{failed(upstream_error::refused, said), std::nullopt};
  case s5::reply_code::network_unreachable:
  case s5::reply_code::host_unreachable:
  case s5::reply_code::ttl_expired:
    co_return result{failed(upstream_error::unreachable, said), std::nullopt};
  case s5::reply_code::command_not_supported:
    if (udp)
      co_return result{failed(upstream_error::udp_not_supported, said), std::nullopt};
    break;
  default:
    break;
  }
  co_return result{failed(upstream_error::other, said), std::nullopt};
}

} // namespace

asio::awaitable<socks5_upstream::connect_result> socks5_upstream::connect(tcp::endpoint target) {
  // Named, not temporaries: GCC 12 destroys a braced temporary in a
  // co_await expression twice.
  const s5::request req{s5::command::connect, to_socks(target.address(), target.port())};
  const std::string what = "CONNECT " + req.destination.to_string();
  s5::client_result reply;
  auto [failure, socket] = co_await handshake(ex_, resolver_, options_, shown_, req, what, reply);
  co_return connect_result{std::move(failure), std::move(socket)};
}

asio::awaitable<socks5_upstream::associate_result> socks5_upstream::udp_associate() {
  // DST 0.0.0.0:0: "from an address not known yet" (RFC 1928 §7); the server
  // learns our port from the first datagram, and a NAT between us cannot
  // make an announced address wrong.
  const s5::request req{s5::command::udp_associate, s5::address{}};
  const std::string what = "UDP ASSOCIATE";
  s5::client_result reply;
  auto [failure, socket] = co_await handshake(ex_, resolver_, options_, shown_, req, what, reply);
  if (failure)
    co_return associate_result{std::move(failure), nullptr};
  auto relay_ip = to_ip(reply.bound);
  if (!relay_ip)
    co_return associate_result{failed(upstream_error::other, "the SOCKS5 server " + shown_ +
                                                                 " named its UDP relay by name (" +
                                                                 reply.bound.to_string() + "), not by address"),
                               nullptr};
  error_code ec;
  if (relay_ip->is_unspecified())
    relay_ip = socket->remote_endpoint(ec).address(); // "the server's own address"
  if (relay_ip->is_v6() && relay_ip->to_v6().is_v4_mapped())
    relay_ip = asio::ip::make_address_v4(asio::ip::v4_mapped, relay_ip->to_v6());
  const udp::endpoint relay(*relay_ip, reply.bound.port);
  udp::socket u(ex_);
  auto fail_udp = [&](const std::string& step, const error_code& e) {
    return associate_result{
        failed(upstream_error::other, "cannot " + step + " the UDP socket for " + shown_ + "'s relay " +
                                          net::format_host_port(relay_ip->to_string(), relay.port()) + ": " +
                                          net::describe(e)),
        nullptr};
  };
  u.open(relay.protocol(), ec);
  if (ec)
    co_return fail_udp("open", ec);
  if (options_.mark) {
    if (auto me = net::set_socket_mark(u.native_handle(), *options_.mark))
      co_return associate_result{failed(upstream_error::other, net::describe_mark_failure(*options_.mark, me)),
                                 nullptr};
  }
  if (auto be = net::bind_to_device(u.native_handle(), options_.interface))
    co_return fail_udp("bind to the device", be);
  u.connect(relay, ec);
  if (ec)
    co_return fail_udp("connect", ec);
  co_return associate_result{{}, std::make_unique<socks5_association>(std::move(*socket), std::move(u), relay)};
}

// ---- the association ----

socks5_association::socks5_association(tcp::socket control, udp::socket u, udp::endpoint relay)
    : control_(std::move(control)), udp_(std::move(u)), relay_(relay) {}

namespace {

// RSV(2) FRAG(1) ATYP(1) ADDR(4|16) PORT(2): the header before a datagram.
std::size_t udp_header(std::array<std::uint8_t, 4 + 16 + 2>& header, const udp::endpoint& destination) {
  std::size_t n = 3;
  const auto a = destination.address();
  const auto port = destination.port();
  if (a.is_v4() || (a.is_v6() && a.to_v6().is_v4_mapped())) {
    const auto b =
        a.is_v4() ? a.to_v4().to_bytes() : asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_bytes();
    header[n++] = static_cast<std::uint8_t>(s5::address::type::ipv4);
    for (auto x : b)
      header[n++] = x;
  } else {
    header[n++] = static_cast<std::uint8_t>(s5::address::type::ipv6);
    for (auto x : a.to_v6().to_bytes())
      header[n++] = x;
  }
  header[n++] = static_cast<std::uint8_t>(port >> 8);
  header[n++] = static_cast<std::uint8_t>(port & 0xff);
  return n;
}

} // namespace

asio::awaitable<error_code> socks5_association::send(const udp::endpoint& destination,
                                                     std::span<const std::uint8_t> payload) {
  std::array<std::uint8_t, 4 + 16 + 2> header{};
  const auto n = udp_header(header, destination);
  const std::array<asio::const_buffer, 2> parts{asio::buffer(header.data(), n),
                                                asio::buffer(payload.data(), payload.size())};
  auto [ec, sent] = co_await udp_.async_send(parts, use_tuple);
  co_return ec;
}

error_code socks5_association::try_send(const udp::endpoint& destination, std::span<const std::uint8_t> payload) {
  std::array<std::uint8_t, 4 + 16 + 2> header{};
  const auto n = udp_header(header, destination);
  const std::array<asio::const_buffer, 2> parts{asio::buffer(header.data(), n),
                                                asio::buffer(payload.data(), payload.size())};
  error_code ec;
  if (!udp_.non_blocking())
    udp_.non_blocking(true, ec);
  if (!ec)
    udp_.send(parts, 0, ec);
  return ec;
}

asio::awaitable<socks5_association::received> socks5_association::receive() {
  for (;;) {
    // Wait for a datagram, then read it into one buffer shared by every
    // association of this thread: an idle association holds no buffer (a
    // flood of flows would otherwise cost 64 KiB each). The payload is
    // valid until the caller's next co_await, which is all it needs.
    auto [wait_ec] = co_await udp_.async_wait(udp::socket::wait_read, use_tuple);
    if (wait_ec)
      co_return received{wait_ec, {}, {}};
    thread_local std::vector<std::uint8_t> shared(k_max_datagram);
    error_code ec;
    if (!udp_.non_blocking())
      udp_.non_blocking(true, ec);
    const auto n = ec ? 0 : udp_.receive(asio::buffer(shared), 0, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again)
      continue;
    if (ec)
      co_return received{ec, {}, {}};
    const std::span<const std::uint8_t> in(shared.data(), n);
    if (n >= 3 && in[2] != 0) {
      ++fragments_dropped_; // FRAG ≠ 0: reassembly is optional (RFC 1928 §7) and not done
      continue;
    }
    auto d = s5::parse_udp_datagram(in);
    std::optional<asio::ip::address> source;
    if (d)
      source = to_ip(d->destination);
    if (!source) {
      ++malformed_dropped_;
      continue;
    }
    co_return received{{}, udp::endpoint(*source, d->destination.port), d->payload};
  }
}

asio::awaitable<error_code> socks5_association::wait_closed() {
  std::array<std::uint8_t, 256> sink{};
  error_code ec;
  while (!ec) {
    // Nothing is expected on the control connection after the reply; stray
    // bytes are read and ignored, only its end matters.
    auto [e, n] = co_await control_.async_read_some(asio::buffer(sink), use_tuple);
    ec = e;
  }
  close();
  co_return ec;
}

void socks5_association::close() {
  error_code ignored;
  control_.close(ignored);
  udp_.close(ignored);
}

// ---- the engine's view ----

asio::awaitable<tcp_connection> socks5_tun_upstream::connect(tcp::endpoint target) {
  auto r = co_await socks5_.connect(target);
  tcp_connection out;
  out.failure = std::move(r.failure);
  out.socket = std::move(r.socket);
  co_return out;
}

asio::awaitable<udp_association_result> socks5_tun_upstream::open_udp() {
  auto r = co_await socks5_.udp_associate();
  udp_association_result out;
  out.failure = std::move(r.failure);
  out.association = std::move(r.association);
  co_return out;
}

std::string socks5_tun_upstream::describe() const {
  const auto& s = socks5_.options().server;
  return "socks5://" + net::format_host_port(s.host, s.port);
}

} // namespace warren::tun
