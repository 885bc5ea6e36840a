#include "tunnel/forward.hpp"

#include <vector>

namespace warren::tunnel {

namespace {

/// Splits on ':' outside brackets.
std::vector<std::string_view> split_colons(std::string_view s) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  int depth = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[')
      ++depth;
    else if (s[i] == ']')
      --depth;
    else if (s[i] == ':' && depth == 0) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(s.substr(start));
  return parts;
}

expected<net::listen_address> listen_part(std::string_view bind, std::string_view port, const std::string& shown) {
  const std::string text = (bind.empty() ? std::string("localhost") : std::string(bind)) + ":" + std::string(port);
  auto l = net::parse_listen_address(bind == "*" ? "*:" + std::string(port) : text);
  if (!l)
    return expected<net::listen_address>::failure(shown + ": " + l.error());
  return l;
}

} // namespace

expected<forward_spec> parse_local_forward(std::string_view text) {
  using result = expected<forward_spec>;
  const std::string shown = "-L '" + std::string(text.substr(0, 100)) + "'";
  forward_spec f;
  f.text = std::string(text);
  auto rest = text;
  if (rest.starts_with("udp/")) {
    f.type = forward_spec::kind::udp;
    rest.remove_prefix(4);
  } else if (rest.starts_with("tcp/")) {
    rest.remove_prefix(4);
  }
  const auto parts = split_colons(rest);
  std::string_view bind;
  std::size_t i = 0;
  if (parts.size() == 4) {
    bind = parts[0];
    i = 1;
  } else if (parts.size() != 3) {
    return result::failure(shown + ": expected [udp/][bind:]port:host:port, e.g. -L 8080:app.internal:80");
  }
  auto listen = listen_part(bind, parts[i], shown);
  if (!listen)
    return result::failure(listen.error());
  f.listen = *listen;
  auto target = net::parse_host_port(std::string(parts[i + 1]) + ":" + std::string(parts[i + 2]));
  if (!target)
    return result::failure(shown + ": target " + target.error());
  f.target = *target;
  return f;
}

expected<forward_spec> parse_dynamic_forward(std::string_view text) {
  using result = expected<forward_spec>;
  const std::string shown = "-D '" + std::string(text.substr(0, 100)) + "'";
  forward_spec f;
  f.type = forward_spec::kind::socks;
  f.text = std::string(text);
  const auto parts = split_colons(text);
  if (parts.size() > 2)
    return result::failure(shown + ": expected [bind:]port, e.g. -D 1080");
  auto listen = listen_part(parts.size() == 2 ? parts[0] : std::string_view{}, parts.back(), shown);
  if (!listen)
    return result::failure(listen.error());
  f.listen = *listen;
  return f;
}

} // namespace warren::tunnel
