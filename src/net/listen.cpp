#include "net/listen.hpp"

#include "net/connector.hpp"
#include "net/resolver.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace warren::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

expected<listen_plan> plan_listen(const listen_address& address) {
  listen_plan plan;
  plan.port = address.endpoint.port;
  plan.display = address.kind == listen_kind::wildcard ? format_host_port("*", address.endpoint.port)
                                                       : format_host_port(address.endpoint.host, plan.port);
  if (address.kind == listen_kind::unix_path)
    return expected<listen_plan>::failure("a Unix socket path has no IP addresses to plan");
  if (address.kind == listen_kind::wildcard) {
    plan.addresses = {asio::ip::address_v4::any(), asio::ip::address_v6::any()};
    return plan;
  }
  if (auto literal = parse_ip(address.endpoint.host)) {
    if (literal->is_v6() && literal->to_v6().is_v4_mapped())
      return expected<listen_plan>::failure(
          "cannot listen on " + plan.display + ": an IPv4-mapped address is not an address of this host; listen on " +
          format_host_port(asio::ip::make_address_v4(asio::ip::v4_mapped, literal->to_v6()).to_string(), plan.port) +
          " instead");
    plan.addresses = {*literal};
    plan.literal = true;
    return plan;
  }
  // A name: bind every address it resolves to, IPv4 first (both are bound,
  // the order only decides which one picks an ephemeral port).
  error_code first_error;
  for (auto f : {ip_family::v4, ip_family::v6}) {
    std::vector<asio::ip::address> found;
    auto ec = resolve_blocking(address.endpoint.host, f, found);
    if (ec && ec != asio::error::no_data && !first_error)
      first_error = ec;
    for (auto& a : found)
      if (std::find(plan.addresses.begin(), plan.addresses.end(), a) == plan.addresses.end())
        plan.addresses.push_back(a);
  }
  if (plan.addresses.empty())
    return expected<listen_plan>::failure("cannot resolve listen host " + address.endpoint.host + ": " +
                                          (first_error ? describe(first_error) : "no addresses"));
  return plan;
}

bool overlaps(const listen_plan& a, const listen_plan& b) {
  if (a.port == 0 || a.port != b.port)
    return false; // port 0 picks a port of its own for each
  for (const auto& x : a.addresses)
    for (const auto& y : b.addresses)
      if (x == y || (x.is_v4() == y.is_v4() && (x.is_unspecified() || y.is_unspecified())))
        return true;
  return false;
}

bool ipv6_only(const listen_plan& plan) {
  return plan.literal && plan.addresses.size() == 1 && plan.addresses.front().is_v6() &&
         plan.addresses.front().is_unspecified();
}

namespace {

std::string bind_error(const asio::ip::address& a, std::uint16_t port, const error_code& ec) {
  const std::string where = format_host_port(a.to_string(), port);
  if (ec == asio::error::address_in_use)
    return "cannot listen on " + where + ": port " + std::to_string(port) + " is already in use";
  if (ec == asio::error::access_denied)
    return "cannot listen on " + where + ": permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)";
  if (ec == asio::error::address_family_not_supported)
    return "cannot listen on " + where + ": " + (a.is_v6() ? "IPv6" : "IPv4") + " is not available on this system";
  if (ec.value() == EADDRNOTAVAIL)
    return "cannot listen on " + where + ": the address is not assigned to any interface" +
           (a.is_v6() ? " (is IPv6 disabled?)" : "");
  return "cannot listen on " + where + ": " + describe(ec);
}

/// Whether a bind failed because the address cannot exist on this host
/// (rather than being taken, or forbidden).
bool cannot_exist_here(const error_code& ec) {
  return ec == asio::error::address_family_not_supported || ec.value() == EADDRNOTAVAIL || ec.value() == EAFNOSUPPORT ||
         ec.value() == EPROTONOSUPPORT;
}

template <class Socket, class Protocol>
error_code open_for_bind(Socket& s, const Protocol& protocol) {
  error_code ec;
  s.open(protocol, ec);
  if (ec)
    return ec;
  if (protocol.family() == AF_INET6)
    s.set_option(asio::ip::v6_only(true), ec); // explicit: never rely on net.ipv6.bindv6only
  return ec;
}

error_code bind_one(tcp::acceptor& acceptor, const tcp::endpoint& ep, const bind_options& options) {
  error_code ec = open_for_bind(acceptor, ep.protocol());
  if (!ec && options.reuse_address)
    acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec)
    acceptor.bind(ep, ec);
  if (!ec)
    acceptor.listen(options.backlog, ec);
  return ec;
}

error_code bind_one(udp::socket& socket, const udp::endpoint& ep, const bind_options&) {
  error_code ec = open_for_bind(socket, ep.protocol());
  if (!ec)
    socket.bind(ep, ec);
  return ec;
}

/// Binds one socket per planned address. With port 0, the first bound
/// address picks the port and the others must get the same one; when another
/// program holds it on one of them, the whole set is retried.
template <class Socket, class Endpoint>
expected<std::vector<Socket>> bind_all(asio::any_io_executor ex, const listen_plan& plan, const bind_options& options,
                                       const char* proto) {
  constexpr int k_port_zero_tries = 16;
  for (int attempt = 0;; ++attempt) {
    std::vector<Socket> bound;
    std::vector<std::string> skipped;
    std::uint16_t port = plan.port;
    bool retry = false;
    for (const auto& a : plan.addresses) {
      Socket s(ex);
      const error_code ec = bind_one(s, Endpoint(a, port), options);
      if (ec) {
        if (plan.port == 0 && port != 0 && ec == asio::error::address_in_use && attempt + 1 < k_port_zero_tries) {
          retry = true;
          break;
        }
        // Only an address that cannot exist here (IPv6 disabled, an
        // address of a name not assigned to this host) is skipped. A port
        // in use on one of them is fatal: another program would get that
        // half of the traffic (clients trying ::1 first would reach it).
        if (plan.literal || !cannot_exist_here(ec))
          return expected<std::vector<Socket>>::failure(bind_error(a, port, ec));
        skipped.push_back(bind_error(a, port, ec));
        continue;
      }
      if (port == 0)
        port = s.local_endpoint().port();
      bound.push_back(std::move(s));
    }
    if (retry)
      continue;
    if (bound.empty()) {
      std::string why;
      for (auto& s : skipped)
        why += (why.empty() ? "" : "; ") + s;
      return expected<std::vector<Socket>>::failure("nothing could be bound for " + std::string(proto) + " " +
                                                    plan.display + ": " + why);
    }
    for (auto& s : skipped)
      spdlog::warn("{} (skipped; listening on the other addresses of {})", s, plan.display);
    return bound;
  }
}

} // namespace

expected<std::vector<tcp::acceptor>> bind_tcp(asio::any_io_executor ex, const listen_plan& plan, bind_options options) {
  return bind_all<tcp::acceptor, tcp::endpoint>(std::move(ex), plan, options, "TCP");
}

expected<std::vector<udp::socket>> bind_udp(asio::any_io_executor ex, const listen_plan& plan) {
  return bind_all<udp::socket, udp::endpoint>(std::move(ex), plan, bind_options{}, "UDP");
}

expected<asio::local::stream_protocol::acceptor> bind_unix(asio::any_io_executor ex, const std::string& path,
                                                           int backlog) {
  using local = asio::local::stream_protocol;
  using result = expected<local::acceptor>;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return result::failure("cannot listen on " + path + ": a file that is not a socket is in the way");
    local::socket probe(ex);
    error_code ec;
    probe.connect(local::endpoint(path), ec);
    if (!ec)
      return result::failure("cannot listen on " + path + ": another process is listening there");
    ::unlink(path.c_str()); // stale socket from a process that is gone
  }
  local::acceptor acceptor(ex);
  error_code ec;
  acceptor.open(local(), ec);
  if (!ec)
    acceptor.bind(local::endpoint(path), ec);
  if (!ec)
    acceptor.listen(backlog, ec);
  if (ec)
    return result::failure("cannot listen on " + path + ": " + describe(ec));
  return result(std::move(acceptor));
}

std::string describe_endpoints(const std::vector<tcp::endpoint>& endpoints) {
  std::string out;
  for (const auto& ep : endpoints)
    out += (out.empty() ? "" : ", ") + format_host_port(ep.address().to_string(), ep.port());
  return out;
}

} // namespace warren::net
