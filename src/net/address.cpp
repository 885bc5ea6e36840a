#include "net/address.hpp"

#include "core/text.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>

namespace warren::net {
namespace {

std::string quoted(std::string_view text) {
  return quote_untrusted(text);
}

} // namespace

bool is_ipv4_literal(std::string_view host) {
  if (host.empty() || host.size() > 15 || host.find('\0') != std::string_view::npos)
    return false;
  std::array<char, 16> buf{};
  host.copy(buf.data(), host.size());
  in_addr a{};
  return inet_pton(AF_INET, buf.data(), &a) == 1;
}

bool is_ipv6_literal(std::string_view host) {
  if (host.empty() || host.size() > 45 || host.find('\0') != std::string_view::npos)
    return false;
  std::array<char, 46> buf{};
  host.copy(buf.data(), host.size());
  in6_addr a{};
  return inet_pton(AF_INET6, buf.data(), &a) == 1;
}

bool is_noncanonical_ipv4(std::string_view host) {
  if (is_ipv4_literal(host) || host.find(':') != std::string_view::npos) // an IPv6 literal (::ffff:1.2.3.4)
    return false;
  if (host.ends_with('.'))
    host.remove_suffix(1);
  const auto dot = host.rfind('.');
  std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  if (last.empty())
    return false;
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (std::all_of(last.begin(), last.end(), digit))
    return true;
  if (last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X'))
    return std::all_of(last.begin() + 2, last.end(),
                       [&](char c) { return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); });
  return false;
}

bool is_valid_hostname(std::string_view host) {
  if (host.empty() || host.size() > 253)
    return false;
  std::size_t label = 0;
  for (char c : host) {
    if (c == '.') {
      if (label == 0)
        return false;
      label = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63)
      return false;
  }
  return true;
}

expected<std::uint16_t> parse_port(std::string_view text, bool allow_zero) {
  using result = expected<std::uint16_t>;
  if (text.empty())
    return result::failure("missing port number");
  std::uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return result::failure("port " + quoted(text) + " is not a number");
    value = value * 10 + static_cast<std::uint32_t>(c - '0');
    if (value > 65535)
      return result::failure("port " + quoted(text) + " is out of range (1-65535)");
  }
  if (value == 0 && !allow_zero)
    return result::failure("port 0 is not a valid destination port (1-65535)");
  return static_cast<std::uint16_t>(value);
}

expected<host_port> parse_host_port(std::string_view text, bool allow_port_zero) {
  using result = expected<host_port>;
  if (text.empty())
    return result::failure("empty address; expected host:port");
  std::string_view host;
  std::string_view port_text;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos)
      return result::failure("address " + quoted(text) + " has '[' without ']'");
    host = text.substr(1, close - 1);
    if (!is_ipv6_literal(host))
      return result::failure("address " + quoted(text) + ": " + quoted(host) + " is not an IPv6 address");
    const auto rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':')
      return result::failure("address " + quoted(text) + " has no port; expected [v6]:port");
    port_text = rest.substr(1);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return result::failure("address " + quoted(text) + " has no port; expected host:port");
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return result::failure("address " + quoted(text) + ": put IPv6 addresses in brackets, e.g. [::1]:80");
    if (host.empty())
      return result::failure("address " + quoted(text) + " has no host; expected host:port");
    if (!is_ipv4_literal(host) && !is_valid_hostname(host))
      return result::failure("address " + quoted(text) + ": " + quoted(host) + " is not a valid host name");
  }
  auto port = parse_port(port_text, allow_port_zero);
  if (!port)
    return result::failure("address " + quoted(text) + ": " + port.error());
  return host_port{std::string(host), *port};
}

expected<listen_address> parse_listen_address(std::string_view text) {
  using result = expected<listen_address>;
  std::string_view path;
  if (text.starts_with("unix:"))
    path = text.substr(5);
  else if (text.starts_with("/") || text.starts_with("./"))
    path = text;
  if (!path.empty() || text.starts_with("unix:")) {
    if (path.empty())
      return result::failure("listen address " + quoted(text) + " has an empty Unix socket path");
    if (path.size() > 107) // sizeof(sockaddr_un::sun_path) - 1
      return result::failure("Unix socket path " + quoted(path) + " is too long (at most 107 bytes)");
    if (path.find('\0') != std::string_view::npos)
      return result::failure("Unix socket path contains a NUL byte");
    return listen_address{listen_kind::unix_path, {}, std::string(path)};
  }
  if (text.starts_with("*:")) {
    auto port = parse_port(text.substr(2), true);
    if (!port)
      return result::failure("listen address " + quoted(text) + ": " + port.error());
    return listen_address{listen_kind::wildcard, {"*", *port}, {}};
  }
  if (text.starts_with(":") && text.find(':', 1) == std::string_view::npos) {
    const auto port = parse_port(text.substr(1), true);
    if (!port)
      return result::failure("listen address " + quoted(text) + ": " + port.error());
    const auto p = std::to_string(*port);
    return result::failure("listen address " + quoted(text) + " has no host; use localhost:" + p + " (or *:" + p +
                           " for every interface)");
  }
  auto hp = parse_host_port(text, true);
  if (!hp)
    return result::failure("listen " + hp.error());
  return listen_address{listen_kind::host, std::move(hp).value(), {}};
}

std::string format_host_port(std::string_view host, std::uint16_t port) {
  if (host.find(':') != std::string_view::npos)
    return "[" + std::string(host) + "]:" + std::to_string(port);
  return std::string(host) + ":" + std::to_string(port);
}

} // namespace warren::net
