// Which proxy the client goes through, as pure functions (no Asio; fuzzed by
// tests/fuzz/fuzz_http_connect.cpp): the proxy URL, the choice between
// --proxy and the environment variables curl honours, and NO_PROXY.
//
//   --proxy URL            used for every server (NO_PROXY does not apply)
//   --proxy none           no proxy, whatever the environment says
//   wss:// tls://          https_proxy, then HTTPS_PROXY
//   ws://  tcp://          http_proxy (lowercase only: HTTP_PROXY may be set
//                          by a CGI request's "Proxy:" header)
//   then                   all_proxy, then ALL_PROXY
//   no_proxy / NO_PROXY    bypass for the hosts listed (see no_proxy_matches)
//
// Proxy URLs: http://[user[:pass]@]host[:port], socks5://, socks5h://; no
// scheme means http://, and the default port is 1080 as in curl. socks5://
// resolves the server's name here and sends the proxy an address; socks5h://
// and http:// send the name and let the proxy resolve it. Credentials may be
// %-encoded. Errors never repeat a password.
#pragma once

#include "core/expected.hpp"
#include "net/address.hpp"
#include "transport/url.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace warren::transport {

enum class proxy_kind { http, socks5, socks5h };

struct proxy_url {
  proxy_kind kind = proxy_kind::http;
  net::host_port endpoint;
  std::string user;
  std::string password;         // never logged
  bool password_in_url = false; // the URL held user:pass@ (a secret on a command line)
};

inline constexpr std::uint16_t k_default_proxy_port = 1080;

/// Refused, never echoed past the host: a URL whose part after the scheme
/// does not parse as HOST:PORT (it may be a password without its '@'), a
/// scheme without "//" (http:/h:1), a host written as a number or any
/// IPv4 spelling but a.b.c.d (3128, 127.1, 0x7f000001: net::
/// is_noncanonical_ipv4).
expected<proxy_url> parse_proxy_url(std::string_view text);
/// Why the credentials cannot be used, or nullopt: a control character in
/// the user name or password (a log line could be forged), a ':' in an
/// HTTP Basic user name, SOCKS5 fields over 255 bytes. Never repeats them.
std::optional<std::string> check_credentials(const proxy_url& p);
/// "http://proxy.example:3128" — never the credentials.
std::string to_string(const proxy_url& p);
std::string_view to_string(proxy_kind k);

/// curl's no_proxy rules, for `host` (a name, or an IP literal without
/// brackets) and `port`: `*` alone matches everything; otherwise a list
/// separated by commas (spaces around entries ignored) where a name matches
/// itself and its subdomains (a leading dot is ignored: ".example.com" and
/// "example.com" both match example.com and a.example.com), an IP address
/// matches that address, a CIDR range (10.0.0.0/8, fd00::/8) its addresses,
/// and an entry with a port (name:443, [::1]:443) only that port. Names are
/// compared without case and without a trailing dot.
bool no_proxy_matches(std::string_view no_proxy, std::string_view host, std::uint16_t port);

/// What the client will use, and why (for the start-up log line).
struct proxy_choice {
  std::optional<proxy_url> proxy; // none: connect directly
  std::string source;             // "--proxy", "HTTPS_PROXY", "no_proxy", "" (nothing set)
};

/// Returns the value of an environment variable, nullopt when unset.
using env_lookup = std::function<std::optional<std::string>(const char* name)>;

/// `flag` is --proxy's value (empty: not given; "none": no proxy). An empty
/// variable counts as unset. Errors name the variable or flag the bad URL
/// came from.
expected<proxy_choice> choose_proxy(const url& server, std::string_view flag, const env_lookup& env);

} // namespace warren::transport
