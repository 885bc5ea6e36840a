// The client side of an HTTP proxy's CONNECT (RFC 9110 §9.3.6) as pure
// functions over bytes (fuzzed by tests/fuzz/fuzz_http_connect.cpp):
//
//   client → CONNECT host:port HTTP/1.1, Host, [Proxy-Authorization: Basic]
//   proxy  → HTTP/1.x NNN reason, headers, [body on an error reply]
//
// parse_reply takes every byte received so far and answers, as the SOCKS5
// parsers do, "need more", a reply plus the bytes it used, or an error. The
// head is bounded (k_max_head, 16 KiB, interim 1xx replies included: they
// are skipped); a folded header line is joined to the one before; an error reply's Content-Length body
// is read too (up to k_max_error_body), so the connection is closed after a
// complete reply. A 2xx ends at its head: what follows is the tunnel (RFC
// 9110: a client ignores Content-Length and Transfer-Encoding in a 2xx to
// CONNECT). describe_failure turns a refusal into one sentence for the user;
// neither function ever returns the password or the Authorization header.
#pragma once

#include "net/address.hpp"

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace warren::proxy::http_connect {

inline constexpr std::size_t k_max_head = 16 * 1024;
inline constexpr std::size_t k_max_error_body = 16 * 1024;

struct credentials {
  std::string user;
  std::string password; // never log it
};

/// "CONNECT host:port HTTP/1.1\r\nHost: host:port\r\n...\r\n\r\n" (IPv6 in brackets).
std::string encode_request(const net::host_port& target, const std::optional<credentials>& auth);

/// "Basic " + base64(user:password).
std::string basic_authorization(const credentials& c);

struct reply {
  int status = 0;
  std::string reason;             // printable ASCII, at most 80 characters
  std::string proxy_authenticate; // the schemes offered on a 407 ("Basic realm=..."), sanitised, bounded
  std::size_t consumed = 0;       // head (+ body for an error reply)
  bool success() const { return status >= 200 && status < 300; }
  bool interim() const { return status >= 100 && status < 200 && status != 101; }
};

enum class parse_status { need_more, done, failed };

struct parse_result {
  parse_status status = parse_status::need_more;
  reply value;       // when done
  std::string error; // when failed: "its answer is not HTTP ...", "it sent a malformed ..." (of the proxy)
};

parse_result parse_reply(std::span<const std::uint8_t> in);

/// One sentence for a refused CONNECT, naming the proxy (`proxy_shown`) and
/// the destination; `sent_credentials` tells a wrong password from none.
/// Credentials (401, 407) name --proxy-password-file, 403 says "its rules
/// do not allow", 400/405/501 "does not allow CONNECT".
std::string describe_failure(const reply& r, std::string_view proxy_shown, const net::host_port& target,
                             bool sent_credentials);

/// Whether retrying cannot fix the refusal: credentials (401, 407), the
/// proxy's rules (403), no CONNECT at all (400, 405, 501). Decided by the
/// status code alone: the reason phrase, the proxy's own text, never counts.
bool permanent_refusal(const reply& r);

} // namespace warren::proxy::http_connect
