#include "transport/proxy_config.hpp"

#include "core/text.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

namespace warren::transport {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = char(std::tolower(static_cast<unsigned char>(c)));
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size())
      return std::nullopt;
    const int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    out += char(hi * 16 + lo);
    i += 2;
  }
  return out;
}

/// An IP literal as bytes (4 or 16), brackets allowed around IPv6.
struct ip_bytes {
  std::array<unsigned char, 16> b{};
  int len = 0;
};

std::optional<ip_bytes> parse_ip(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  if (text.empty() || text.size() > 45)
    return std::nullopt;
  const std::string s(text);
  ip_bytes out;
  if (::inet_pton(AF_INET, s.c_str(), out.b.data()) == 1) {
    out.len = 4;
    return out;
  }
  if (::inet_pton(AF_INET6, s.c_str(), out.b.data()) == 1) {
    out.len = 16;
    // An IPv4-mapped address (::ffff:a.b.c.d) is compared as IPv4.
    static constexpr std::array<unsigned char, 12> mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(mapped.begin(), mapped.end(), out.b.begin())) {
      std::memmove(out.b.data(), out.b.data() + 12, 4);
      std::fill(out.b.begin() + 4, out.b.end(), 0);
      out.len = 4;
    }
    return out;
  }
  return std::nullopt;
}

bool prefix_equal(const ip_bytes& a, const ip_bytes& b, int bits) {
  if (a.len != b.len)
    return false;
  for (int i = 0; i < a.len && bits > 0; ++i, bits -= 8) {
    const unsigned mask = bits >= 8 ? 0xffu : (0xffu << (8 - bits)) & 0xffu;
    if ((a.b[std::size_t(i)] & mask) != (b.b[std::size_t(i)] & mask))
      return false;
  }
  return true;
}

/// One no_proxy entry against host and port.
bool entry_matches(std::string_view entry, std::string_view host, const std::optional<ip_bytes>& host_ip,
                   std::uint16_t port) {
  // A port: "name:443" or "[v6]:443"; a bare IPv6 address has colons too.
  std::optional<std::uint16_t> want_port;
  if (entry.starts_with('[')) {
    const auto close = entry.find(']');
    if (close == std::string_view::npos)
      return false;
    if (close + 1 < entry.size()) {
      if (entry[close + 1] != ':')
        return false;
      auto p = net::parse_port(entry.substr(close + 2), false);
      if (!p)
        return false;
      want_port = *p;
    }
    entry = entry.substr(1, close - 1);
  } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
    const auto colon = entry.find(':');
    auto p = net::parse_port(entry.substr(colon + 1), false);
    if (!p)
      return false;
    want_port = *p;
    entry = entry.substr(0, colon);
  }
  if (want_port && *want_port != port)
    return false;
  if (entry.empty())
    return false;

  const auto slash = entry.find('/');
  if (auto ip = parse_ip(entry.substr(0, slash))) {
    if (!host_ip)
      return false;
    int bits = ip->len * 8;
    if (slash != std::string_view::npos) {
      const auto text = entry.substr(slash + 1);
      if (text.empty() || text.size() > 3 ||
          !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return false;
      bits = std::stoi(std::string(text));
      if (bits > ip->len * 8)
        return false;
    }
    return prefix_equal(*ip, *host_ip, bits);
  }
  if (slash != std::string_view::npos || host_ip)
    return false;
  std::string name = lower(entry);
  while (name.starts_with('.'))
    name.erase(0, 1);
  if (name.ends_with('.'))
    name.pop_back();
  std::string h = lower(host);
  if (h.ends_with('.'))
    h.pop_back();
  if (name.empty())
    return false;
  if (h == name)
    return true;
  return h.size() > name.size() && h.ends_with(name) && h[h.size() - name.size() - 1] == '.';
}

std::optional<std::string> nonempty(const env_lookup& env, const char* name) {
  auto v = env(name);
  if (v && !trim(*v).empty())
    return v;
  return std::nullopt;
}

constexpr std::string_view k_expected =
    "proxy URL: expected http://HOST:PORT, socks5://HOST:PORT or socks5h://HOST:PORT";

/// Without "://": "http:/h:1", "http:h:1" or "user:secret:3128" rather than
/// host:port (whose part after the colon is a number). Nothing is echoed:
/// the text may hold a password.
bool looks_like_broken_scheme(std::string_view text) {
  if (text.empty() || !std::isalpha(static_cast<unsigned char>(text.front())) ||
      text.find('@') != std::string_view::npos)
    return false;
  const auto colon = text.find(':');
  if (colon == std::string_view::npos)
    return false;
  std::string_view after = text.substr(colon + 1);
  if (after.ends_with('/'))
    after.remove_suffix(1);
  return after.empty() || !std::all_of(after.begin(), after.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

} // namespace

std::optional<std::string> check_credentials(const proxy_url& p) {
  if (has_control(p.user))
    return "the proxy user name holds a control character (a %-escape such as %0a, or a line break)";
  if (has_control(p.password))
    return "the proxy password holds a control character (a %-escape such as %0a, or a line break)";
  if (p.kind == proxy_kind::http && p.user.find(':') != std::string::npos)
    return "the proxy user name holds a ':', which HTTP Basic authentication cannot carry (RFC 7617)";
  if (p.kind != proxy_kind::http && (p.user.size() > 255 || p.password.size() > 255))
    return "the SOCKS5 proxy user name and password are at most 255 bytes each (RFC 1929)";
  return std::nullopt;
}

std::string_view to_string(proxy_kind k) {
  switch (k) {
  case proxy_kind::http:
    return "http";
  case proxy_kind::socks5:
    return "socks5";
  case proxy_kind::socks5h:
    return "socks5h";
  }
  return "?";
}

expected<proxy_url> parse_proxy_url(std::string_view text) {
  using result = expected<proxy_url>;
  text = trim(text);
  proxy_url p;
  std::string_view rest = text;
  std::string scheme_name = "http";
  if (const auto sep = text.find("://"); sep != std::string_view::npos) {
    scheme_name = lower(text.substr(0, sep));
    rest = text.substr(sep + 3);
  } else if (looks_like_broken_scheme(text)) {
    return result::failure(std::string(k_expected));
  }
  // The authority ends at the first '/' after the last '@' (a password may hold '/').
  const auto at = rest.rfind('@');
  const auto slash = rest.find('/', at == std::string_view::npos ? 0 : at);
  std::string_view authority = rest.substr(0, slash);
  std::string_view userinfo;
  if (const auto a = authority.rfind('@'); a != std::string_view::npos) {
    userinfo = authority.substr(0, a);
    authority = authority.substr(a + 1);
  }
  const bool has_port = authority.starts_with("[") ? authority.find("]:") != std::string_view::npos
                                                   : authority.find(':') != std::string_view::npos;
  std::string with_port(authority);
  if (!has_port)
    with_port += ":" + std::to_string(k_default_proxy_port);
  auto hp = net::parse_host_port(with_port);
  // An authority that does not parse may hold a password whose '@' is
  // missing (alice:secret127.0.0.1:3128): nothing after its first ':' is shown.
  const std::string_view safe = hp ? authority : authority.substr(0, authority.find(':'));
  const std::string shown = scheme_name.substr(0, 16) + "://" + (userinfo.empty() ? "" : "...@") +
                            std::string(safe.substr(0, 100)) + (safe.size() < authority.size() ? ":..." : "");
  if (slash != std::string_view::npos && rest.substr(slash) != "/")
    return result::failure("proxy URL " + quote_untrusted(shown) +
                           ": a proxy URL has no path; expected e.g. http://proxy.example:3128");
  if (scheme_name == "http")
    p.kind = proxy_kind::http;
  else if (scheme_name == "socks5")
    p.kind = proxy_kind::socks5;
  else if (scheme_name == "socks5h")
    p.kind = proxy_kind::socks5h;
  else if (scheme_name == "https")
    return result::failure("proxy URL " + quote_untrusted(shown) +
                           ": TLS to the proxy itself (https://) is not supported; use http:// (the tunnel is "
                           "still TLS end to end)");
  else
    return result::failure("proxy URL " + quote_untrusted(shown) + ": unknown proxy scheme " +
                           quote_untrusted(scheme_name.substr(0, 16)) + "; use http://, socks5:// or socks5h://");
  if (!userinfo.empty()) {
    const auto colon = userinfo.find(':');
    auto user = percent_decode(userinfo.substr(0, colon));
    std::optional<std::string> password;
    if (colon != std::string_view::npos)
      password = percent_decode(userinfo.substr(colon + 1));
    if (!user || (colon != std::string_view::npos && !password))
      return result::failure("proxy URL " + quote_untrusted(shown) + ": bad %-escape in the user name or password");
    if (user->empty())
      return result::failure("proxy URL " + quote_untrusted(shown) + ": a password without a user name");
    p.user = std::move(*user);
    if (password && !password->empty()) {
      p.password = std::move(*password);
      p.password_in_url = true;
    }
  }
  if (authority.empty())
    return result::failure("proxy URL " + quote_untrusted(shown) + ": no proxy host");
  if (!hp)
    return result::failure("proxy URL " + quote_untrusted(shown) + ": " + std::string(k_expected.substr(11)) +
                           " (the port 1-65535; a user name and password go before an '@')");
  if (net::is_noncanonical_ipv4(hp->host)) {
    const bool digits = std::all_of(hp->host.begin(), hp->host.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits && !has_port && hp->host.size() <= 5)
      return result::failure("proxy URL " + quote_untrusted(shown) + ": '" + hp->host +
                             "' is not a host; did you mean " + scheme_name + "://localhost:" + hp->host + "?");
    return result::failure("proxy URL " + quote_untrusted(shown) + ": '" + hp->host +
                           "' is not a host name or a dotted IPv4 address; write the address as a.b.c.d, "
                           "e.g. 127.0.0.1");
  }
  p.endpoint = *hp;
  return p;
}

std::string to_string(const proxy_url& p) {
  return std::string(to_string(p.kind)) + "://" + net::format_host_port(p.endpoint.host, p.endpoint.port);
}

bool no_proxy_matches(std::string_view no_proxy, std::string_view host, std::uint16_t port) {
  no_proxy = trim(no_proxy);
  if (no_proxy == "*")
    return true;
  const auto host_ip = parse_ip(host);
  while (!no_proxy.empty()) {
    const auto comma = no_proxy.find(',');
    const auto entry = trim(no_proxy.substr(0, comma));
    if (!entry.empty() && entry_matches(entry, host, host_ip, port))
      return true;
    if (comma == std::string_view::npos)
      break;
    no_proxy.remove_prefix(comma + 1);
  }
  return false;
}

expected<proxy_choice> choose_proxy(const url& server, std::string_view flag, const env_lookup& env) {
  using result = expected<proxy_choice>;
  proxy_choice out;
  flag = trim(flag);
  if (lower(flag) == "none") {
    out.source = "--proxy none";
    return out;
  }
  if (!flag.empty()) {
    auto p = parse_proxy_url(flag);
    if (!p)
      return result::failure("--proxy: " + p.error());
    out.proxy = std::move(*p);
    out.source = "--proxy";
    return out;
  }
  std::optional<std::string> value;
  const char* names_tls[] = {"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
  const char* names_clear[] = {"http_proxy", "all_proxy", "ALL_PROXY"};
  const auto pick = [&](auto& names) {
    for (const char* name : names)
      if ((value = nonempty(env, name))) {
        out.source = name;
        return;
      }
  };
  if (server.uses_tls())
    pick(names_tls);
  else
    pick(names_clear);
  if (!value)
    return out;
  for (const char* name : {"no_proxy", "NO_PROXY"}) {
    if (auto np = nonempty(env, name)) {
      if (no_proxy_matches(*np, server.endpoint.host, server.endpoint.port)) {
        out.source = name;
        return out;
      }
      break; // curl reads no_proxy, and NO_PROXY only when no_proxy is unset
    }
  }
  auto p = parse_proxy_url(*value);
  if (!p)
    return result::failure(out.source + ": " + p.error());
  out.proxy = std::move(*p);
  return out;
}

} // namespace warren::transport
