// SOCKS5 (RFC 1928) and its username/password sub-negotiation (RFC 1929) as
// pure functions over bytes, for the `-D` SOCKS server and its tests (fuzzed
// by tests/fuzz/fuzz_socks5.cpp). Nothing here reads, writes or resolves.
//
// Design choice: every stream parser is incremental and stateless. It takes
// all bytes received so far and answers "need more" (with the total it needs
// at least), a value plus the bytes it consumed (anything after belongs to the
// next message: clients often pipeline greeting, credentials and request, and
// may send data right after the request), or an error sentence. Errors are
// reported as soon as the offending byte arrives, never after waiting for
// bytes that may not come. A request error also carries the reply code to
// send before closing. The session therefore owns only a buffer (at most
// k_max_userpass_size bytes) and the order of the handshake:
//
//   client → greeting (VER 5, methods)       parse_greeting
//   server → method choice                   encode_method_choice
//   [client → VER 1, user, password          parse_userpass
//    server → status]                        encode_userpass_status
//   client → request (cmd, DST.ADDR:PORT)    parse_request
//   server → reply (code, BND.ADDR:PORT)     encode_reply
//
// UDP ASSOCIATE datagrams are whole messages, so parse_udp_datagram reports a
// short datagram as an error rather than asking for more. Client-side
// encoders and parsers exist for tests and the fuzzer's round trips.
// Passwords never appear in error messages; hostile names are echoed only
// after validation or sanitising.
#pragma once

#include "core/expected.hpp"
#include "net/address.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace warren::proxy::socks5 {

inline constexpr std::uint8_t k_version = 0x05;
inline constexpr std::uint8_t k_userpass_version = 0x01;
/// The longest each handshake message can be; a buffer of
/// k_max_userpass_size bytes holds any one of them.
inline constexpr std::size_t k_max_greeting_size = 2 + 255;
inline constexpr std::size_t k_max_userpass_size = 1 + 1 + 255 + 1 + 255;
inline constexpr std::size_t k_max_request_size = 4 + 1 + 255 + 2;
/// RSV(2) FRAG(1) ATYP(1) + the longest address (domain: 1 + 255) + port.
inline constexpr std::size_t k_max_udp_header_size = 4 + 1 + 255 + 2;

/// Authentication methods (RFC 1928 §3). Greetings carry raw bytes, since a
/// client may offer values this enum does not name.
enum class method : std::uint8_t { no_auth = 0x00, gssapi = 0x01, userpass = 0x02, none_acceptable = 0xff };

enum class command : std::uint8_t { connect = 0x01, bind = 0x02, udp_associate = 0x03 };

/// REP values (RFC 1928 §6). parse_reply accepts any byte, so a reply_code
/// may hold an unnamed value.
enum class reply_code : std::uint8_t {
  succeeded = 0x00,
  general_failure = 0x01,
  not_allowed = 0x02,
  network_unreachable = 0x03,
  host_unreachable = 0x04,
  connection_refused = 0x05,
  ttl_expired = 0x06,
  command_not_supported = 0x07,
  address_type_not_supported = 0x08,
};

/// "CONNECT", "BIND", "UDP ASSOCIATE".
std::string_view to_string(command cmd) noexcept;
/// "succeeded", "connection refused", ...; "unknown reply code" otherwise.
std::string_view to_string(reply_code code) noexcept;

/// ATYP + address + port, as in requests, replies and UDP headers (§5, §7).
/// Invariants kept by every parser and factory: `ip` is all zeros past the
/// first 4 bytes for ipv4 and entirely zero for domain; `domain` is empty
/// unless kind is domain, and then holds 1-255 bytes of letters, digits, '-',
/// '_', '.' or an IPv6 literal (some clients send literals as names). A value
/// default-constructed is 0.0.0.0:0, the bound address of failure replies.
/// Port 0 is kept as received: it is meaningful only for UDP ASSOCIATE (the
/// client does not know its port yet), so the session, not the parser,
/// rejects it for CONNECT and BIND.
struct address {
  enum class type : std::uint8_t { ipv4 = 0x01, domain = 0x03, ipv6 = 0x04 };

  type kind = type::ipv4;
  std::array<std::uint8_t, 16> ip{}; // network order; ipv4 uses ip[0..3]
  std::string domain;
  std::uint16_t port = 0;

  static address from_ipv4(const std::array<std::uint8_t, 4>& bytes, std::uint16_t port);
  static address from_ipv6(const std::array<std::uint8_t, 16>& bytes, std::uint16_t port);
  /// From raw IP bytes in network order (e.g. asio's `address_v6::to_bytes()`):
  /// 4 bytes are IPv4, 16 bytes IPv6, except that an IPv4-mapped IPv6 address
  /// (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4 peer)
  /// becomes IPv4, so clients see the address they would expect. nullopt for
  /// any other length.
  static std::optional<address> from_ip_bytes(std::span<const std::uint8_t> bytes, std::uint16_t port);
  /// A domain name (validated as described above).
  static expected<address> from_domain(std::string_view name, std::uint16_t port);
  /// IP literals become ipv4/ipv6, anything else a validated domain.
  static expected<address> from_host_port(const net::host_port& hp);

  /// The IP bytes (4 or 16); empty for a domain.
  std::span<const std::uint8_t> ip_bytes() const noexcept;
  /// Host as net::host_port expects it: dotted quad, IPv6 without brackets
  /// (inet_ntop's form, e.g. "2001:db8::1"), or the name as received.
  net::host_port to_host_port() const;
  /// "1.2.3.4:80", "[2001:db8::1]:80", "example.com:80" (for log lines).
  std::string to_string() const;
  /// Bytes encode_to appends: 1 + (4 | 1 + name | 16) + 2.
  std::size_t encoded_size() const noexcept;
  /// Appends ATYP, the address and the port. A domain longer than 255 bytes
  /// (only possible by setting the field by hand) is cut at 255.
  void encode_to(std::vector<std::uint8_t>& out) const;

  /// Compares the meaningful parts only (kind, the kind's bytes, port).
  friend bool operator==(const address& a, const address& b) noexcept;
};

enum class parse_status { need_more, done, failed };

/// The outcome of feeding a parser the bytes received so far.
///   need_more: read more and call again with the whole buffer; needed() is
///              a lower bound on the total message size (> bytes given).
///   done:      value() is the message; consumed() bytes were used.
///   failed:    error() is a sentence for the log (never a password);
///              reply() is the code to send (meaningful for parse_request;
///              general_failure elsewhere). The connection should be closed.
template <class T>
class parse_result {
 public:
  static parse_result incomplete(std::size_t needed) {
    parse_result r;
    r.status_ = parse_status::need_more;
    r.needed_ = needed;
    return r;
  }
  static parse_result done(T value, std::size_t consumed) {
    parse_result r;
    r.status_ = parse_status::done;
    r.value_ = std::move(value);
    r.consumed_ = consumed;
    return r;
  }
  static parse_result failure(std::string message, reply_code reply = reply_code::general_failure) {
    parse_result r;
    r.status_ = parse_status::failed;
    r.error_ = std::move(message);
    r.reply_ = reply;
    return r;
  }

  parse_status status() const noexcept { return status_; }
  bool need_more() const noexcept { return status_ == parse_status::need_more; }
  bool failed() const noexcept { return status_ == parse_status::failed; }
  explicit operator bool() const noexcept { return status_ == parse_status::done; }

  std::size_t needed() const noexcept { return needed_; }
  std::size_t consumed() const noexcept { return consumed_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T* operator->() const { return &*value_; }
  const T& operator*() const { return *value_; }
  const std::string& error() const noexcept { return error_; }
  reply_code reply() const noexcept { return reply_; }

 private:
  parse_result() = default;
  parse_status status_ = parse_status::need_more;
  std::optional<T> value_;
  std::size_t needed_ = 0;
  std::size_t consumed_ = 0;
  std::string error_;
  reply_code reply_ = reply_code::general_failure;
};

// ---- method negotiation (RFC 1928 §3) ----

struct greeting {
  std::vector<std::uint8_t> methods; // 1-255 raw method bytes, as offered
  bool offers(method m) const noexcept;
  friend bool operator==(const greeting&, const greeting&) = default;
};

/// VER(5) NMETHODS(1-255) METHODS. A first byte that is not 5 fails at once,
/// naming what the client seems to speak instead (SOCKS4, HTTP, TLS).
parse_result<greeting> parse_greeting(std::span<const std::uint8_t> in);
/// The method the server picks: userpass when credentials are required (and
/// offered), no_auth when they are not (and offered), else none_acceptable.
method choose_method(const greeting& g, bool require_userpass) noexcept;
/// VER(5) METHOD. After none_acceptable the server closes the connection.
std::array<std::uint8_t, 2> encode_method_choice(method m) noexcept;

// ---- username/password (RFC 1929) ----

struct credentials {
  std::string user;     // 1-255 bytes, arbitrary octets
  std::string password; // 1-255 bytes; never log it
  friend bool operator==(const credentials&, const credentials&) = default;
};

/// VER(1) ULEN(1-255) UNAME PLEN(1-255) PASSWD.
parse_result<credentials> parse_userpass(std::span<const std::uint8_t> in);
/// VER(1) STATUS: 0x00 on success, 0x01 on failure (then close).
std::array<std::uint8_t, 2> encode_userpass_status(bool ok) noexcept;

// ---- request and reply (RFC 1928 §4, §6) ----

struct request {
  command cmd = command::connect;
  address destination; // DST.ADDR:DST.PORT; port 0 allowed, see address
  friend bool operator==(const request&, const request&) = default;
};

/// VER(5) CMD RSV(0) ATYP DST.ADDR DST.PORT. Failure reply codes:
/// unknown command → command_not_supported, unknown ATYP →
/// address_type_not_supported, a name that is not a host name →
/// host_unreachable, anything else malformed (version, reserved byte, empty
/// name) → general_failure.
parse_result<request> parse_request(std::span<const std::uint8_t> in);
/// VER(5) REP RSV(0) ATYP BND.ADDR BND.PORT. For failures pass address{}
/// (0.0.0.0:0).
std::vector<std::uint8_t> encode_reply(reply_code code, const address& bound = {});

// ---- UDP ASSOCIATE datagrams (RFC 1928 §7) ----

struct udp_datagram {
  address destination;                   // DST.ADDR:DST.PORT (source, in replies)
  std::span<const std::uint8_t> payload; // points into the parsed buffer
  std::size_t header_size = 0;
};

/// RSV(0,0) FRAG(0) ATYP DST.ADDR DST.PORT DATA, one whole datagram. A short
/// datagram is an error (there is nothing more to wait for), and so is a
/// non-zero FRAG: fragmentation is optional and not implemented, and the RFC
/// lets an implementation drop such datagrams. The payload may be empty.
expected<udp_datagram> parse_udp_datagram(std::span<const std::uint8_t> in);
/// RSV FRAG(0) ATYP ADDR PORT, to put in front of a payload.
std::vector<std::uint8_t> encode_udp_header(const address& a);

// ---- the address alone, and the client side (tests, fuzzing, a future client) ----

/// ATYP ADDR PORT at the start of `in` (same rules and codes as in requests).
parse_result<address> parse_address(std::span<const std::uint8_t> in);

struct reply {
  reply_code code = reply_code::succeeded;
  address bound; // BND.ADDR:BND.PORT
  friend bool operator==(const reply&, const reply&) = default;
};

/// Method choice as a client reads it.
parse_result<method> parse_method_choice(std::span<const std::uint8_t> in);
/// The server's RFC 1929 status as a client reads it: true on success. The
/// version byte may be 0x01 (RFC 1929) or 0x05 (some servers; curl ignores it).
parse_result<bool> parse_userpass_status(std::span<const std::uint8_t> in);
/// A reply as a client reads it (any REP byte is accepted). Never asks for
/// a byte past the reply's end: 4 bytes, then the address's length.
parse_result<reply> parse_reply(std::span<const std::uint8_t> in);

/// VER(5) NMETHODS METHODS; empty or more than 255 methods is an error.
expected<std::vector<std::uint8_t>> encode_greeting(std::span<const std::uint8_t> methods);
/// VER(1) ULEN UNAME PLEN PASSWD; fields must be 1-255 bytes (the error names
/// the field, never the password's content).
expected<std::vector<std::uint8_t>> encode_userpass(const credentials& c);
std::vector<std::uint8_t> encode_request(const request& r);

} // namespace warren::proxy::socks5
