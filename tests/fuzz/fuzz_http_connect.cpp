// Fuzzes what the client takes from a proxy and from its environment: the
// HTTP CONNECT reply (src/proxy/http_connect.*), proxy URLs and no_proxy
// lists (src/transport/proxy_config.*). Properties: the reply parser uses
// no more than it was given, a "need more" never follows a complete reply,
// its reason and Proxy-Authenticate are printable and bounded, no interim
// 1xx reply is final, permanence ignores the reason, and a refusal's
// sentence is bounded; a parsed proxy URL has a host and a port (never a
// number or an odd IPv4 spelling), and a URL's error never holds its
// password, with its '@' or without; check_credentials says one printable
// sentence.
#include "net/address.hpp"
#include "proxy/http_connect.hpp"
#include "transport/proxy_config.hpp"

#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

namespace {

bool printable(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)
      return false;
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace hc = warren::proxy::http_connect;
  const std::span<const std::uint8_t> in(data, size);
  const auto r = hc::parse_reply(in);
  if (r.status == hc::parse_status::done) {
    if (r.value.consumed > size || r.value.consumed == 0)
      std::abort();
    if (!printable(r.value.reason) || r.value.reason.size() > 83 || !printable(r.value.proxy_authenticate) ||
        r.value.proxy_authenticate.size() > 200 + 2 + 103)
      std::abort();
    // More bytes never turn a complete reply into an incomplete one.
    std::string more(reinterpret_cast<const char*>(data), size);
    more += "x";
    const auto again =
        hc::parse_reply(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(more.data()), more.size()));
    if (again.status != hc::parse_status::done || again.value.consumed != r.value.consumed)
      std::abort();
    // Interim replies are never final; permanence is the status code's alone.
    if (r.value.interim())
      std::abort();
    auto same_status = r.value;
    same_status.reason = "its rules do not allow, does not allow CONNECT, --proxy-password-file, token";
    if (hc::permanent_refusal(same_status) != hc::permanent_refusal(r.value))
      std::abort();
    const auto sentence = hc::describe_failure(r.value, "http://proxy:3128", {"gw.example", 443}, size % 2 == 0);
    if (sentence.size() > 600 || !printable(sentence))
      std::abort();
  } else if (r.status == hc::parse_status::failed) {
    if (r.error.empty() || r.error.size() > 300)
      std::abort();
  }

  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto p = warren::transport::parse_proxy_url(text)) {
    if (p->endpoint.host.empty() || p->endpoint.port == 0)
      std::abort();
    if (!p->password.empty() && p->user.empty())
      std::abort();
    // A host is never a number nor an odd IPv4 spelling (127.1, 0x7f.1).
    if (warren::net::is_noncanonical_ipv4(p->endpoint.host))
      std::abort();
    // The credentials' check is one printable, bounded sentence.
    if (auto bad = warren::transport::check_credentials(*p); bad && (!printable(*bad) || bad->size() > 200))
      std::abort();
  } else {
    // A password made of a marker that the rest of the input cannot hold
    // is never echoed.
    const std::string secret = "Zq9SECRETq9Z";
    const std::string with = "http://user:" + secret + "@" + std::string(text.substr(0, 200));
    // ... nor when its '@' was forgotten (the password runs into the host).
    const std::string without = "http://user:" + secret + std::string(text.substr(0, 200));
    if (text.find(secret) == std::string_view::npos) {
      for (const auto& url : {with, without}) {
        auto q = warren::transport::parse_proxy_url(url);
        if (!q && q.error().find(secret) != std::string::npos)
          std::abort();
      }
    }
  }
  const auto comma = text.find('\n');
  if (comma != std::string_view::npos) {
    const auto host = text.substr(comma + 1);
    (void)warren::transport::no_proxy_matches(text.substr(0, comma), host, static_cast<std::uint16_t>(size));
    // '*' alone matches every host.
    if (!warren::transport::no_proxy_matches("*", host, 1))
      std::abort();
  }
  return 0;
}
