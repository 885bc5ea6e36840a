#include "unit/tun_unit.hpp"

#include "core/duration.hpp"
#include "core/fd_limit.hpp"
#include "net/ares_resolver.hpp"
#include "core/secret_file.hpp"
#include "tun/socks5_upstream.hpp"
#include "tun/tunnel_upstream.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

namespace warren::unit {

namespace {

constexpr std::size_t k_nat_addresses = 8;

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty())
      out += sep;
    out += p;
  }
  return out;
}

} // namespace

tun_tables fit_tun_tables(std::uint64_t fd_limit, std::size_t tcp_sessions, std::size_t pending, std::size_t udp_flows) {
  tun_tables t;
  t.max_tcp_sessions = fit_in_descriptors(fd_limit / 4 * 3, 6, tcp_sessions);
  t.max_pending = std::min(pending, t.max_tcp_sessions);
  t.max_udp_flows = fit_in_descriptors(fd_limit / 4, 2, udp_flows);
  return t;
}

expected<std::vector<tun::ip_addr>> nat_pool(const tun::ip_prefix& address) {
  using result = expected<std::vector<tun::ip_addr>>;
  const unsigned bits = address.family == AF_INET6 ? 128 : 32;
  // The TUN's own address plus the pool must fit in the prefix, past it.
  if (address.length + 4 > bits)
    return result::failure("the prefix of " + address.str() + " is too small: warren tun needs " +
                           std::to_string(k_nat_addresses) + " more addresses in it for its NAT (use /28 or shorter)");
  std::vector<tun::ip_addr> pool;
  const auto size = address.address_size();
  auto a = address.bytes;
  for (std::size_t i = 0; i < k_nat_addresses; ++i) {
    // The next address, kept inside the prefix (wrapping within its host bits).
    for (std::size_t k = size; k-- > 0;) {
      if (++a[k] != 0)
        break;
    }
    bool inside = true;
    for (unsigned b = 0; b < address.length; ++b) {
      const auto mask = static_cast<std::uint8_t>(0x80 >> (b % 8));
      if ((a[b / 8] & mask) != (address.bytes[b / 8] & mask))
        inside = false;
    }
    // Nor the IPv4 broadcast address (every host bit set).
    bool broadcast = address.family == AF_INET;
    for (unsigned b = address.length; b < 32 && broadcast; ++b)
      broadcast = (a[b / 8] & (0x80 >> (b % 8))) != 0;
    if (!inside || broadcast)
      return result::failure("no room after " + address.str() + " in its prefix for the NAT addresses: use an "
                             "address near the start of the prefix (e.g. .1)");
    pool.push_back(tun::ip_addr::from_bytes(std::span<const std::uint8_t>(a.data(), size)));
  }
  return pool;
}

expected<tun_options> tun_options_from(const tun_args& args) {
  using result = expected<tun_options>;
  tun_options o;
  o.upstream_url = args.upstream;
  if (args.upstream.empty())
    return result::failure("--upstream is required: socks5://[user:pass@]host:port or a warren server URL "
                           "(wss://, ws://, tls://, tcp://)");
  if (args.upstream.starts_with("socks5://") || args.upstream.starts_with("socks5h://")) {
    auto s = tun::socks5_upstream_options_from_url(args.upstream);
    if (!s)
      return result::failure("--upstream: " + s.error());
    o.socks5 = std::move(s).value();
    if (!args.token_file.empty() || !args.pin.empty() || !args.ca.empty())
      return result::failure("--token-file, --pin and --ca are for a warren server upstream (wss://, ws://, tls://, "
                             "tcp://), not socks5://");
  } else if (args.upstream.starts_with("wss://") || args.upstream.starts_with("ws://") ||
             args.upstream.starts_with("tls://") || args.upstream.starts_with("tcp://")) {
    client_args ca;
    ca.url = args.upstream;
    ca.token_file = args.token_file;
    ca.pin = args.pin;
    ca.ca = args.ca;
    ca.insecure_token = args.insecure_token;
    ca.no_forwards = true;
    ca.connect_timeout = args.connect_timeout;
    auto co = client_options_from(ca);
    if (!co)
      return result::failure("--upstream: " + co.error());
    o.tunnel = std::move(co).value();
  } else {
    return result::failure("--upstream " + args.upstream +
                           ": not a socks5://, wss://, ws://, tls:// or tcp:// URL");
  }
  auto timeout = parse_duration(args.connect_timeout);
  if (!timeout)
    return result::failure("--connect-timeout: " + timeout.error());
  if (*timeout < std::chrono::milliseconds(100) || *timeout > std::chrono::minutes(5))
    return result::failure("--connect-timeout " + args.connect_timeout + ": 100ms to 5m");
  o.connect_timeout = *timeout;
  if (o.socks5) {
    o.socks5->connect_timeout = *timeout;
    o.socks5->mark = args.mark;
  }

  auto a4 = tun::ip_prefix::parse(args.address, true);
  if (!a4 || a4->family != AF_INET)
    return result::failure("--address " + args.address + ": an IPv4 address with its prefix, e.g. 198.18.0.1/15");
  o.address4 = *a4;
  if (args.address6 != "none" && !args.address6.empty()) {
    auto a6 = tun::ip_prefix::parse(args.address6, true);
    if (!a6 || a6->family != AF_INET6)
      return result::failure("--address6 " + args.address6 +
                             ": an IPv6 address with its prefix, e.g. fd00:77::1/64, or none");
    o.address6 = *a6;
  }
  for (const auto* a : {&o.address4, &o.address6})
    if (*a)
      if (auto pool = nat_pool(**a); !pool)
        return result::failure(pool.error());
  if (args.mtu < 1280 || args.mtu > 65535)
    return result::failure("--mtu " + std::to_string(args.mtu) + ": 1280 to 65535");

  auto& r = o.routing;
  r.device = args.name;
  r.mtu = args.mtu;
  r.addresses.push_back(*o.address4);
  if (o.address6)
    r.addresses.push_back(*o.address6);
  for (const auto& text : args.routes) {
    auto p = tun::ip_prefix::parse(text, false);
    if (!p)
      return result::failure("--route " + text + ": " + p.error());
    r.routes.push_back(*p);
  }
  for (const auto& text : args.excludes) {
    auto p = tun::ip_prefix::parse(text, false);
    if (!p)
      return result::failure("--exclude " + text + ": " + p.error());
    r.excludes.push_back(*p);
  }
  if (!r.excludes.empty() && !args.default_route)
    return result::failure("--exclude only means something with --default-route");
  r.default_route = args.default_route;
  r.table = args.table;
  r.fwmark = args.mark;
  r.priority = tun::k_default_priority;
  if (auto plan = tun::make_plan(r); !plan)
    return result::failure(plan.error());
  if (args.name.empty() || args.name.size() > 15)
    return result::failure("--name " + args.name + ": 1 to 15 characters (an interface name)");
  o.fd = args.fd;
  o.offload = !args.no_offload;
  o.icmp_reply = !args.no_icmp_reply;
  o.mark = args.mark;
  o.lock_dir = args.lock_dir;
  if (args.max_tcp_sessions < 1 || args.max_udp_flows < 1)
    return result::failure("--max-tcp-sessions and --max-udp-flows must be at least 1");
  o.max_tcp_sessions = args.max_tcp_sessions;
  o.max_udp_flows = args.max_udp_flows;
  o.token_file = args.token_file;
  if (o.tunnel && args.token_file.empty())
    return result::failure("a warren server upstream needs --token-file");
  o.pin = args.pin;
  o.ca = args.ca;
  return o;
}

tun_unit::tun_unit(boost::asio::any_io_executor ex, tun_options options) : unit(std::move(ex)), options_(std::move(options)) {}

tun_unit::~tun_unit() { teardown(); }

expected<bool> tun_unit::start() {
  using result = expected<bool>;
  auto fail_start = [&](std::string why) {
    teardown();
    fail(why);
    return result::failure(std::move(why));
  };
  // The device: ours, or a parent's (--fd: its set-up is the parent's).
  auto dev = options_.fd >= 0 ? tun::device::adopt(options_.fd)
                              : tun::device::open(tun::device_options{options_.routing.device, options_.offload});
  if (!dev)
    return fail_start(dev.error());
  device_.emplace(std::move(dev).value());
  if (options_.fd < 0) {
    auto routing = options_.routing;
    routing.device = device_->name();
    tun::session_options so;
    so.lock_dir = options_.lock_dir;
    auto session = tun::routing_session::start(routing, so);
    if (!session)
      return fail_start(session.error());
    routing_.emplace(std::move(session).value());
    for (const auto& line : routing_->leftovers().removed)
      spdlog::info("tun: removed a leftover of an earlier run: {}", line);
  }

  net::ares_resolver_options ro;
  ro.mark = options_.mark;
  if (options_.socks5) {
    upstream_ = std::make_shared<tun::socks5_tun_upstream>(executor(), std::make_unique<net::ares_resolver>(ro),
                                                           *options_.socks5);
  } else {
    tun::tunnel_upstream_options to;
    to.client = options_.tunnel->client;
    if (!options_.token_file.empty()) {
      auto token = read_secret_line(options_.token_file, "token file");
      if (!token)
        return fail_start(token.error());
      to.client.dial.token = std::move(*token);
    }
    to.mark = options_.mark;
    to.connect_timeout = options_.connect_timeout;
    auto t = std::make_shared<tun::tunnel_upstream>(executor(), std::make_unique<net::ares_resolver>(ro), std::move(to));
    // A refusal retrying cannot fix (token, pin, scheme) ends the unit.
    t->start([this](const std::string& why) {
      spdlog::error("tun: upstream: {}", why);
      teardown();
      fail(why);
    });
    upstream_ = t;
  }

  // Descriptors: a TCP session holds two sockets and two splice pipes, a
  // UDP flow (SOCKS5) a control connection and a UDP socket. The tables are
  // sized to fit the open-file limit (three quarters for TCP), so running
  // out of descriptors is a refused SYN, not a failed accept.
  const auto fds = raise_fd_limit();
  tun::engine_options eo;
  eo.vnet_hdr = device_->vnet_hdr();
  eo.icmp_reply = options_.icmp_reply;
  const auto tables = fit_tun_tables(fds.now, options_.max_tcp_sessions, eo.tcp.max_pending, options_.max_udp_flows);
  eo.tcp.max_sessions = tables.max_tcp_sessions;
  eo.tcp.max_pending = tables.max_pending;
  eo.udp.max_flows = tables.max_udp_flows;
  if (eo.tcp.max_sessions < options_.max_tcp_sessions || eo.udp.max_flows < options_.max_udp_flows)
    spdlog::info("tun: the open-file limit ({}) holds {} TCP sessions and {} UDP flows (asked: {} and {}); raise "
                 "it (LimitNOFILE=, ulimit -n) for more",
                 fds.now, eo.tcp.max_sessions, eo.udp.max_flows, options_.max_tcp_sessions, options_.max_udp_flows);
  eo.udp.full_cone = true; // one SOCKS5 association per application socket
  auto listen = [](const tun::ip_prefix& p) {
    return tun::ip_addr::from_bytes(std::span<const std::uint8_t>(p.bytes.data(), p.address_size()));
  };
  eo.listen4 = listen(*options_.address4);
  eo.tcp.v4_pool = nat_pool(*options_.address4).value();
  if (options_.address6) {
    eo.listen6 = listen(*options_.address6);
    eo.tcp.v6_pool = nat_pool(*options_.address6).value();
  }
  const int fd = ::dup(device_->fds()[0]);
  if (fd < 0)
    return fail_start(std::string("dup of the TUN descriptor: ") + std::strerror(errno));
  engine_ = std::make_unique<tun::engine>(executor(), fd, upstream_, eo);
  if (auto ok = engine_->start(); !ok)
    return fail_start(ok.error());
  set_state(unit_state::running);
  std::vector<std::string> addrs{options_.address4->str()};
  if (options_.address6)
    addrs.push_back(options_.address6->str());
  spdlog::info("tun: {} up ({}; mtu {}; upstream {}; offloads {}{}{})", device_->name(), join(addrs, ", "),
               options_.routing.mtu, upstream_->describe(),
               device_->vnet_hdr() ? device_->offloads().describe() : std::string("off"),
               options_.routing.default_route ? "; default route, mark " + std::to_string(options_.mark) : "",
               options_.fd >= 0 ? "; adopted fd " + std::to_string(options_.fd) : "");
  return true;
}

void tun_unit::teardown() {
  if (engine_) {
    const auto c = engine_->counters();
    engine_->stop();
    std::size_t rejected = 0;
    for (auto n : c.rejected)
      rejected += n;
    spdlog::info("tun: {} packets in ({} bytes), {} out ({} bytes); TCP {} sessions ({} connected, {} RST, {} "
                 "unreachable); UDP {} flows, {} up, {} down, {} dropped, {} not unicast, {} DNS over TCP; ICMP {} echo "
                 "replies, {} dropped; {} bad packets",
                 c.packets_in, c.bytes_in, c.packets_out, c.bytes_out, c.tcp.total, c.tcp_connected, c.tcp_rst_sent,
                 c.tcp_unreachable, c.udp.total, c.udp_datagrams_up, c.udp_datagrams_down, c.udp_dropped,
                 c.udp_not_unicast, c.dns_over_tcp, c.icmp_echo_replies, c.icmp_dropped, rejected + c.bad_vnet);
    engine_.reset();
  }
  if (upstream_)
    upstream_->stop();
  upstream_.reset();
  if (routing_) {
    for (const auto& e : routing_->stop())
      spdlog::warn("tun: cleanup: {}", e);
    routing_.reset();
  }
  device_.reset();
}

void tun_unit::stop(std::chrono::milliseconds, std::function<void()> done) {
  teardown();
  if (status().state != unit_state::failed)
    set_state(unit_state::stopped);
  boost::asio::post(executor(), std::move(done));
}

void tun_unit::abandon() {
  teardown();
  if (status().state != unit_state::failed)
    set_state(unit_state::stopped);
}

reload_result tun_unit::reload(std::string_view cause) {
  spdlog::info("tun: {}; nothing to reload", cause);
  return {true, "nothing to reload"};
}

tun::engine_counters tun_unit::engine_counters() const { return engine_ ? engine_->counters() : tun::engine_counters{}; }

unit_counters tun_unit::counters() const {
  unit_counters u;
  if (!engine_)
    return u;
  const auto c = engine_->counters();
  u.bytes_up = c.bytes_in;
  u.bytes_down = c.bytes_out;
  u.connections_open = c.tcp.open;
  u.connections_total = c.tcp.total;
  u.streams_open = c.udp.open;
  u.streams_total = c.udp.total;
  return u;
}

} // namespace warren::unit
