#include "transport/url.hpp"

namespace warren::transport {

std::string_view to_string(scheme s) {
  switch (s) {
  case scheme::tcp:
    return "tcp";
  case scheme::tls:
    return "tls";
  case scheme::ws:
    return "ws";
  case scheme::wss:
    return "wss";
  }
  return "?";
}

expected<url> parse_url(std::string_view text, bool listening) {
  using result = expected<url>;
  const auto shown = std::string(text.substr(0, 120));
  const auto sep = text.find("://");
  if (sep == std::string_view::npos)
    return result::failure("'" + shown + "' is not a tunnel URL; expected e.g. wss://gateway.example:443");
  const auto name = text.substr(0, sep);
  url u;
  std::uint16_t default_port = 0;
  if (name == "tcp") {
    u.scheme = scheme::tcp;
  } else if (name == "tls") {
    u.scheme = scheme::tls;
    default_port = 443;
  } else if (name == "ws") {
    u.scheme = scheme::ws;
    default_port = 80;
  } else if (name == "wss") {
    u.scheme = scheme::wss;
    default_port = 443;
  } else {
    return result::failure("unknown URL scheme '" + std::string(name.substr(0, 16)) + "' in '" + shown +
                           "'; use wss://, ws://, tls:// or tcp://");
  }
  auto rest = text.substr(sep + 3);
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    if (!u.uses_websocket())
      return result::failure("'" + shown + "': a path is only meaningful for ws:// and wss://");
    u.path = std::string(rest.substr(slash));
    for (char c : u.path)
      if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
        return result::failure("'" + shown + "': the path contains a space or control character");
  }
  if (authority.find('@') != std::string_view::npos)
    return result::failure("credentials in the URL are not supported (and are not echoed here); use --token-file");
  const bool has_port = authority.starts_with("[") ? authority.find("]:") != std::string_view::npos
                                                   : authority.find(':') != std::string_view::npos;
  std::string with_port(authority);
  if (!has_port) {
    if (default_port == 0)
      return result::failure("'" + shown + "': tcp:// needs a port, e.g. tcp://host:7000");
    with_port += ":" + std::to_string(default_port);
  }
  if (listening && std::string_view(with_port).starts_with("*:")) {
    // A listen URL may say `*`: every interface, IPv4 and IPv6 (net/listen.hpp).
    auto port = net::parse_port(std::string_view(with_port).substr(2), true);
    if (!port)
      return result::failure("URL '" + shown + "': " + port.error());
    u.endpoint = {"*", *port};
    return u;
  }
  auto hp = net::parse_host_port(with_port, listening);
  if (!hp)
    return result::failure("URL '" + shown + "': " + hp.error());
  if (net::is_noncanonical_ipv4(hp->host))
    return result::failure("URL '" + shown + "': '" + hp->host +
                           "' is not a host name or a dotted IPv4 address; write the address as a.b.c.d, e.g. "
                           "127.0.0.1");
  u.endpoint = *hp;
  return u;
}

std::string to_string(const url& u) {
  std::string s = std::string(to_string(u.scheme)) + "://" + net::format_host_port(u.endpoint.host, u.endpoint.port);
  if (u.uses_websocket() && u.path != "/") {
    // The query is left out, as the server leaves it out of a rejected
    // request target: it may hold a credential (a proxy in front that
    // checks one there), and this string goes into the log at every retry.
    const auto query = u.path.find('?');
    s += u.path.substr(0, query);
    if (query != std::string::npos)
      s += "?(query not shown)";
  }
  return s;
}

} // namespace warren::transport
