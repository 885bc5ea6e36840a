#include "tunnel/policy.hpp"

#include "net/address.hpp"

#include <algorithm>
#include <initializer_list>

namespace warren::tunnel {

namespace ip = boost::asio::ip;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c); });
  if (!out.empty() && out.back() == '.')
    out.pop_back();
  return out;
}

bool in_network(const ip::address& a, const ip::address& net, unsigned prefix) {
  if (a.is_v4() != net.is_v4())
    return false;
  auto bytes = [](const ip::address& v) {
    std::array<unsigned char, 16> b{};
    if (v.is_v4()) {
      auto b4 = v.to_v4().to_bytes();
      std::copy(b4.begin(), b4.end(), b.begin());
    } else {
      b = v.to_v6().to_bytes();
    }
    return b;
  };
  const auto ab = bytes(a);
  const auto nb = bytes(net);
  for (unsigned i = 0; i < prefix; ++i) {
    const unsigned mask = 0x80u >> (i % 8);
    if ((ab[i / 8] & mask) != (nb[i / 8] & mask))
      return false;
  }
  return true;
}

ip::address_v4 v4_at(const ip::address_v6::bytes_type& b, std::size_t at, std::uint8_t flip = 0) {
  return ip::address_v4(ip::address_v4::bytes_type{static_cast<unsigned char>(b[at] ^ flip),
                                                   static_cast<unsigned char>(b[at + 1] ^ flip),
                                                   static_cast<unsigned char>(b[at + 2] ^ flip),
                                                   static_cast<unsigned char>(b[at + 3] ^ flip)});
}

bool starts_with_bytes(const ip::address_v6::bytes_type& b, std::initializer_list<unsigned char> prefix) {
  return std::equal(prefix.begin(), prefix.end(), b.begin());
}

/// A v4 address as the kernel treats it as a destination: 0.0.0.0/8 ("this
/// host on this network") reaches the local host, so it is loopback.
ip::address judged_v4(const ip::address_v4& a) {
  if ((a.to_uint() >> 24) == 0)
    return ip::address_v4::loopback();
  return a;
}

} // namespace

judged_addresses judge_destination(const ip::address& a) {
  judged_addresses out;
  auto add = [&out](const ip::address& x) { out.list[out.count++] = x; };
  if (a.is_v4()) {
    add(judged_v4(a.to_v4()));
    return out;
  }
  const auto v6 = a.to_v6();
  const auto b = v6.to_bytes();
  if (v6.is_v4_mapped()) { // ::ffff:a.b.c.d is a.b.c.d, and only that
    add(judged_v4(ip::make_address_v4(ip::v4_mapped, v6)));
    return out;
  }
  if (v6.is_unspecified()) { // connect(::) reaches the local host
    add(ip::address_v6::loopback());
    return out;
  }
  add(a);
  const bool first_96_zero = std::all_of(b.begin(), b.begin() + 12, [](unsigned char c) { return c == 0; });
  if (first_96_zero && !v6.is_loopback()) // IPv4-compatible ::a.b.c.d (deprecated, RFC 4291)
    add(judged_v4(v4_at(b, 12)));
  else if (starts_with_bytes(b, {0x00, 0x64, 0xff, 0x9b}) &&
           std::all_of(b.begin() + 4, b.begin() + 12, [](unsigned char c) { return c == 0; }))
    add(judged_v4(v4_at(b, 12))); // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052)
  else if (starts_with_bytes(b, {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}))
    add(judged_v4(v4_at(b, 12))); // NAT64 local-use 64:ff9b:1::/48 (RFC 8215), /96 form
  else if (starts_with_bytes(b, {0x20, 0x02}))
    add(judged_v4(v4_at(b, 2))); // 6to4 2002:V4ADDR::/48 (RFC 3056)
  else if (starts_with_bytes(b, {0x20, 0x01, 0x00, 0x00})) {
    add(judged_v4(v4_at(b, 4)));       // Teredo server (RFC 4380)
    add(judged_v4(v4_at(b, 12, 0xff))); // Teredo client, stored inverted
  } else if ((b[8] & 0xfd) == 0x00 && b[9] == 0x00 && b[10] == 0x5e && b[11] == 0xfe)
    add(judged_v4(v4_at(b, 12))); // ISATAP interface id ::0:5efe:V4 / ::200:5efe:V4 (RFC 5214)
  return out;
}

expected<allow_rule> parse_allow_rule(std::string_view text) {
  using result = expected<allow_rule>;
  const std::string shown = "--allow '" + std::string(text.substr(0, 100)) + "'";
  allow_rule r;
  r.text = std::string(text);
  std::string_view addr = text;
  std::string_view ports;
  if (text.starts_with("[")) {
    const auto close = text.find(']');
    if (close == std::string_view::npos)
      return result::failure(shown + ": '[' without ']'");
    addr = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (rest.starts_with("/")) {
      const auto colon = rest.find(':');
      addr = text.substr(1, close - 1);
      const auto prefix_text = rest.substr(1, colon == std::string_view::npos ? std::string_view::npos : colon - 1);
      rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon);
      r.prefix = 0;
      for (char c : prefix_text) {
        if (c < '0' || c > '9' || r.prefix > 128)
          return result::failure(shown + ": bad prefix length");
        r.prefix = r.prefix * 10 + static_cast<unsigned>(c - '0');
      }
      if (prefix_text.empty() || r.prefix > 128)
        return result::failure(shown + ": bad prefix length (0-128)");
    } else {
      r.prefix = 128;
    }
    if (!rest.empty()) {
      if (!rest.starts_with(":"))
        return result::failure(shown + ": expected ':' before the ports");
      ports = rest.substr(1);
    }
    error_code ec;
    r.network = ip::make_address(std::string(addr), ec);
    if (ec || !r.network.is_v6())
      return result::failure(shown + ": '" + std::string(addr.substr(0, 60)) + "' is not an IPv6 address");
    r.type = allow_rule::kind::network;
    if (r.network.to_v6().is_v4_mapped() && r.prefix >= 96) {
      // [::ffff:10.0.0.0]/104 means 10.0.0.0/8: destinations are judged as
      // the IPv4 addresses they map to, so the rule must be one too.
      r.network = ip::make_address_v4(ip::v4_mapped, r.network.to_v6());
      r.prefix -= 96;
    }
  } else {
    const auto colon = text.find(':');
    if (colon != std::string_view::npos) {
      addr = text.substr(0, colon);
      ports = text.substr(colon + 1);
      if (ports.find(':') != std::string_view::npos)
        return result::failure(shown + ": put IPv6 networks in brackets, e.g. [fd00::]/8:443");
    }
    std::string_view net_text = addr;
    std::optional<unsigned> prefix;
    if (const auto slash = addr.find('/'); slash != std::string_view::npos) {
      net_text = addr.substr(0, slash);
      unsigned p = 0;
      const auto pt = addr.substr(slash + 1);
      for (char c : pt) {
        if (c < '0' || c > '9' || p > 32)
          return result::failure(shown + ": bad prefix length");
        p = p * 10 + static_cast<unsigned>(c - '0');
      }
      if (pt.empty() || p > 32)
        return result::failure(shown + ": bad prefix length (0-32)");
      prefix = p;
    }
    if (addr == "*") {
      r.type = allow_rule::kind::any;
    } else if (net::is_ipv4_literal(net_text)) {
      r.type = allow_rule::kind::network;
      r.network = ip::make_address(std::string(net_text));
      r.prefix = prefix.value_or(32);
    } else if (prefix) {
      return result::failure(shown + ": a prefix length needs an IPv4 network, e.g. 10.0.0.0/8");
    } else if (addr.starts_with("*.") && net::is_valid_hostname(addr.substr(2))) {
      r.type = allow_rule::kind::host_suffix;
      r.host = lower(addr.substr(1)); // ".internal"
    } else if (net::is_valid_hostname(addr)) {
      r.type = allow_rule::kind::host;
      r.host = lower(addr);
    } else {
      return result::failure(shown + ": expected a network (10.0.0.0/8), an address, a host name, *.domain or *");
    }
  }
  if (!ports.empty() && ports != "*") {
    const auto dash = ports.find('-');
    auto lo = net::parse_port(ports.substr(0, dash), false);
    if (!lo)
      return result::failure(shown + ": " + lo.error());
    r.port_min = r.port_max = *lo;
    if (dash != std::string_view::npos) {
      auto hi = net::parse_port(ports.substr(dash + 1), false);
      if (!hi)
        return result::failure(shown + ": " + hi.error());
      if (*hi < *lo)
        return result::failure(shown + ": the port range is reversed");
      r.port_max = *hi;
    }
  }
  return r;
}

bool destination_policy::allows_name(std::string_view name, std::uint16_t port) const {
  const std::string n = lower(name);
  for (const auto& r : rules_) {
    if (port < r.port_min || port > r.port_max)
      continue;
    if (r.type == allow_rule::kind::host && n == r.host)
      return true;
    if (r.type == allow_rule::kind::host_suffix && (n.ends_with(r.host) || "." + n == r.host))
      return true;
  }
  return false;
}

bool destination_policy::allows_address(const ip::address& a, std::uint16_t port) const {
  const auto judged = judge_destination(a);
  for (std::size_t i = 0; i < judged.count; ++i)
    if (!allows_judged(judged.list[i], port))
      return false;
  return judged.count > 0;
}

bool destination_policy::allows_judged(const ip::address& a, std::uint16_t port) const {
  for (const auto& r : rules_) {
    if (port < r.port_min || port > r.port_max)
      continue;
    if (r.type == allow_rule::kind::any)
      return true;
    if (r.type == allow_rule::kind::network && in_network(a, r.network, r.prefix))
      return true;
  }
  return false;
}

bool destination_policy::allows_some_address(std::uint16_t port) const {
  for (const auto& r : rules_)
    if (port >= r.port_min && port <= r.port_max &&
        (r.type == allow_rule::kind::any || r.type == allow_rule::kind::network))
      return true;
  return false;
}

} // namespace warren::tunnel
