#include "transport/forwarded.hpp"

#include "core/error.hpp"
#include "core/text.hpp"
#include "net/address.hpp"

#include <algorithm>
#include <optional>

namespace warren::transport {

namespace ip = boost::asio::ip;

namespace {

constexpr std::size_t k_max_hops = 64; // a longer chain is not read (the header limit bounds it anyway)

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t'; };
  while (!s.empty() && space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && space(s.back()))
    s.remove_suffix(1);
  return s;
}

std::optional<ip::address> parse_address(std::string_view text) {
  if (!net::is_ip_literal(text))
    return std::nullopt;
  error_code ec;
  auto a = ip::make_address(std::string(text), ec);
  if (ec)
    return std::nullopt;
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return ip::address(a.to_v6().to_v4());
  return a;
}

/// One element of X-Forwarded-For: an address, `[v6]`, `[v6]:port` or `v4:port`.
std::optional<ip::address> parse_hop(std::string_view hop) {
  if (hop.starts_with('[')) {
    const auto close = hop.find(']');
    if (close == std::string_view::npos)
      return std::nullopt;
    const auto rest = hop.substr(close + 1);
    if (!rest.empty() && !(rest.front() == ':' && net::parse_port(rest.substr(1), true)))
      return std::nullopt;
    return parse_address(hop.substr(1, close - 1));
  }
  if (auto a = parse_address(hop))
    return a;
  const auto colon = hop.find(':');
  if (colon != std::string_view::npos && hop.find(':', colon + 1) == std::string_view::npos &&
      net::is_ipv4_literal(hop.substr(0, colon)) && net::parse_port(hop.substr(colon + 1), true))
    return parse_address(hop.substr(0, colon));
  return std::nullopt;
}

} // namespace

namespace {

/// `a` with every bit after the first `prefix` zeroed.
ip::address masked(const ip::address& a, unsigned prefix) {
  auto zero_host = [prefix](auto bytes) {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      const unsigned bits = i * 8 >= prefix ? 0 : std::min(8u, prefix - static_cast<unsigned>(i * 8));
      bytes[i] &= static_cast<unsigned char>(0xff00u >> bits);
    }
    return bytes;
  };
  if (a.is_v4())
    return ip::address_v4(zero_host(a.to_v4().to_bytes()));
  return ip::address_v6(zero_host(a.to_v6().to_bytes()));
}

} // namespace

bool ip_network::contains(const ip::address& a) const {
  ip::address x = a;
  if (x.is_v6() && x.to_v6().is_v4_mapped())
    x = x.to_v6().to_v4();
  return x.is_v4() == base.is_v4() && masked(x, prefix) == base;
}

expected<ip_network> parse_ip_network(std::string_view text) {
  using result = expected<ip_network>;
  const std::string shown = quote_untrusted(text.substr(0, 80));
  const auto slash = text.find('/');
  std::string_view host = text.substr(0, slash);
  if (host.starts_with('[') && host.ends_with(']'))
    host = host.substr(1, host.size() - 2);
  auto a = parse_address(host);
  if (!a)
    return result::failure(shown + " is not an address or CIDR block (e.g. 127.0.0.1/32, 10.0.0.0/8, ::1/128)");
  const unsigned width = a->is_v4() ? 32 : 128;
  unsigned prefix = width;
  if (slash != std::string_view::npos) {
    const auto bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string_view::npos)
      return result::failure(shown + ": the prefix length after '/' is not a number");
    if (bits.size() > 1 && bits.front() == '0')
      return result::failure(shown + ": the prefix length after '/' has a leading zero (write /" +
                             std::to_string(std::stoul(std::string(bits))) + " if that is what you mean)");
    prefix = static_cast<unsigned>(std::stoul(std::string(bits)));
    if (prefix > width)
      return result::failure(shown + ": a prefix length of " + std::string(bits) + " is longer than the address (" +
                             std::to_string(width) + " bits)");
  }
  const auto base = masked(*a, prefix);
  if (base != *a) {
    const std::string block =
        (base.is_v6() ? "[" + base.to_string() + "]" : base.to_string()) + "/" + std::to_string(prefix);
    return result::failure(shown + " has bits set after the first " + std::to_string(prefix) + ": it would mean " +
                           block + "; write " + block + " (or the address alone for just that host)");
  }
  return ip_network{base, prefix};
}

expected<std::string> trust_proxy_warning(const ip_network& n) {
  using result = expected<std::string>;
  const std::string block =
      (n.base.is_v6() ? "[" + n.base.to_string() + "]" : n.base.to_string()) + "/" + std::to_string(n.prefix);
  if (n.prefix == 0)
    return result::failure(block + " would trust every peer to name the client: anyone could then pose as any "
                                   "address (unlimited token guesses, or lock a chosen client out); give the "
                                   "reverse proxy's own address, e.g. 127.0.0.1/32");
  const unsigned wide = n.base.is_v4() ? 8 : 32;
  if (n.prefix < wide)
    return block + " is a very wide block: every peer in it may name any client address in X-Forwarded-For "
                   "(and so get around the failed-login limit and the per-source handshake limit); give the "
                   "reverse proxy's own addresses if you can";
  return std::string();
}

bool is_trusted(const std::vector<ip_network>& trusted, const ip::address& a) {
  for (const auto& n : trusted)
    if (n.contains(a))
      return true;
  return false;
}

forwarded_client real_client(std::string_view x_forwarded_for, const ip::address& peer,
                             const std::vector<ip_network>& trusted) {
  forwarded_client out{peer, false, {}};
  if (!is_trusted(trusted, peer) || trim(x_forwarded_for).empty())
    return out;
  // Right to left: the first hop that is not a trusted proxy is the client;
  // if every hop is trusted, the left-most is (a proxy talking for itself).
  std::optional<ip::address> client;
  std::size_t hops = 0;
  std::string_view rest = x_forwarded_for;
  while (true) {
    const auto comma = rest.rfind(',');
    const auto hop_text = trim(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
    if (++hops > k_max_hops) {
      out.error = "X-Forwarded-For has more than " + std::to_string(k_max_hops) + " addresses";
      return out;
    }
    auto hop = parse_hop(hop_text);
    if (!hop) {
      out.error = "X-Forwarded-For holds " + quote_untrusted(hop_text.substr(0, 64)) + ", which is not an address";
      return out;
    }
    client = hop;
    if (!is_trusted(trusted, *hop) || comma == std::string_view::npos)
      break;
    rest = rest.substr(0, comma);
  }
  out.address = *client;
  out.forwarded = true;
  return out;
}

} // namespace warren::transport
