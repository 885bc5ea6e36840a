// SOCKS5 codec: see socks5.hpp. Each parser walks its message with a cursor
// and checks every field the moment its byte is available, so a hostile or
// confused client is answered at once instead of being waited on.
#include "proxy/socks5.hpp"
#include "core/text.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace warren::proxy::socks5 {
namespace {

constexpr std::array<std::uint8_t, 12> k_v4_mapped_prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
constexpr std::size_t k_min_address_size = 1 + 4 + 2; // IPv4
constexpr std::size_t k_min_request_size = 3 + k_min_address_size;
constexpr std::size_t k_min_userpass_size = 1 + 1 + 1 + 1 + 1;

std::string hex_byte(std::uint8_t b) {
  static constexpr char k_digits[] = "0123456789abcdef";
  std::string out = "0x";
  out += k_digits[b >> 4];
  out += k_digits[b & 0x0f];
  return out;
}

std::string quoted(std::string_view text) {
  return quote_untrusted(text);
}

bool is_name_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

// Letters, digits, '-', '_', '.' (the tunnel protocol's name alphabet), or an
// IPv6 literal. Rejecting everything else keeps NUL bytes, spaces and control
// characters away from the resolver, policy matching and log lines.
bool is_acceptable_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 255)
    return false;
  if (std::all_of(name.begin(), name.end(), is_name_char))
    return true;
  // net::is_ipv6_literal stops at a NUL ("::1\0x" would pass), so rule it out first.
  return name.find('\0') == std::string_view::npos && net::is_ipv6_literal(name);
}

// A cursor over the bytes received so far.
class reader {
 public:
  explicit reader(std::span<const std::uint8_t> in) noexcept : in_(in) {}
  bool has(std::size_t n) const noexcept { return in_.size() - pos_ >= n; }
  std::size_t pos() const noexcept { return pos_; }
  std::uint8_t u8() noexcept { return in_[pos_++]; }
  std::uint16_t u16() noexcept {
    const auto v = static_cast<std::uint16_t>((in_[pos_] << 8) | in_[pos_ + 1]);
    pos_ += 2;
    return v;
  }
  std::span<const std::uint8_t> bytes(std::size_t n) noexcept {
    auto out = in_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  std::string text(std::size_t n) {
    const auto b = bytes(n);
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }

 private:
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
};

// What went wrong while reading an address; `what` names the message
// ("request", "reply", "UDP datagram") for the sentence.
struct address_error {
  bool need_more = false;
  std::size_t needed = 0; // total, counted from the reader's start
  std::string message;
  reply_code reply = reply_code::general_failure;

  static address_error more(std::size_t needed) { return {true, needed, {}, reply_code::general_failure}; }
  static address_error bad(std::string message, reply_code reply = reply_code::general_failure) {
    return {false, 0, std::move(message), reply};
  }
};

std::optional<address_error> read_address(reader& r, std::string_view what, address& out) {
  if (!r.has(1))
    return address_error::more(r.pos() + k_min_address_size);
  const std::uint8_t atyp = r.u8();
  std::size_t length = 0;
  switch (atyp) {
  case static_cast<std::uint8_t>(address::type::ipv4):
    length = 4;
    break;
  case static_cast<std::uint8_t>(address::type::ipv6):
    length = 16;
    break;
  case static_cast<std::uint8_t>(address::type::domain):
    if (!r.has(1))
      return address_error::more(r.pos() + 1 + 1 + 2); // length, at least one byte, port
    length = r.u8();
    if (length == 0)
      return address_error::bad("SOCKS5 " + std::string(what) + " has an empty domain name");
    break;
  default:
    return address_error::bad("SOCKS5 " + std::string(what) + " uses address type " + hex_byte(atyp) +
                                  ", which is not supported (IPv4 0x01, domain name 0x03 and IPv6 0x04 are)",
                              reply_code::address_type_not_supported);
  }
  if (!r.has(length + 2))
    return address_error::more(r.pos() + length + 2);
  address a;
  a.kind = static_cast<address::type>(atyp);
  if (a.kind == address::type::domain) {
    a.domain = r.text(length);
    if (!is_acceptable_name(a.domain))
      return address_error::bad("SOCKS5 " + std::string(what) + " names " + quoted(a.domain) +
                                    ", which is not a valid host name",
                                reply_code::host_unreachable);
  } else {
    const auto b = r.bytes(length);
    std::copy(b.begin(), b.end(), a.ip.begin());
  }
  a.port = r.u16();
  out = std::move(a);
  return std::nullopt;
}

template <class T>
parse_result<T> from_address_error(address_error e) {
  if (e.need_more)
    return parse_result<T>::incomplete(e.needed);
  return parse_result<T>::failure(std::move(e.message), e.reply);
}

bool starts_like_http(std::span<const std::uint8_t> in) noexcept {
  // Compare what has arrived with each method token and its trailing space.
  static constexpr std::array<std::string_view, 9> k_methods = {"GET ",     "POST ",    "HEAD ",  "PUT ",  "DELETE ",
                                                                "CONNECT ", "OPTIONS ", "PATCH ", "TRACE "};
  const std::string_view text(reinterpret_cast<const char*>(in.data()), in.size());
  return std::any_of(k_methods.begin(), k_methods.end(), [&](std::string_view m) {
    const auto n = std::min(m.size(), text.size());
    return n > 0 && text.substr(0, n) == m.substr(0, n);
  });
}

std::string not_socks5_message(std::span<const std::uint8_t> in) {
  const std::uint8_t v = in[0];
  if (v == 0x04)
    return "not SOCKS5: the client speaks SOCKS4 (version byte 0x04); configure it for SOCKS5";
  if (starts_like_http(in))
    return "not SOCKS5: looks like an HTTP request; configure the client for a SOCKS5 proxy, not an HTTP proxy";
  if (v == 0x16)
    return "not SOCKS5: looks like a TLS handshake; configure the client for a plain SOCKS5 proxy";
  return "not SOCKS5: the first byte is " + hex_byte(v) + " (expected the SOCKS version 0x05)";
}

} // namespace

// ---- names ----

std::string_view to_string(command cmd) noexcept {
  switch (cmd) {
  case command::connect:
    return "CONNECT";
  case command::bind:
    return "BIND";
  case command::udp_associate:
    return "UDP ASSOCIATE";
  }
  return "unknown command";
}

std::string_view to_string(reply_code code) noexcept {
  switch (code) {
  case reply_code::succeeded:
    return "succeeded";
  case reply_code::general_failure:
    return "general SOCKS server failure";
  case reply_code::not_allowed:
    return "connection not allowed by ruleset";
  case reply_code::network_unreachable:
    return "network unreachable";
  case reply_code::host_unreachable:
    return "host unreachable";
  case reply_code::connection_refused:
    return "connection refused";
  case reply_code::ttl_expired:
    return "TTL expired";
  case reply_code::command_not_supported:
    return "command not supported";
  case reply_code::address_type_not_supported:
    return "address type not supported";
  }
  return "unknown reply code";
}

// ---- address ----

address address::from_ipv4(const std::array<std::uint8_t, 4>& bytes, std::uint16_t port) {
  address a;
  a.kind = type::ipv4;
  std::copy(bytes.begin(), bytes.end(), a.ip.begin());
  a.port = port;
  return a;
}

address address::from_ipv6(const std::array<std::uint8_t, 16>& bytes, std::uint16_t port) {
  address a;
  a.kind = type::ipv6;
  a.ip = bytes;
  a.port = port;
  return a;
}

std::optional<address> address::from_ip_bytes(std::span<const std::uint8_t> bytes, std::uint16_t port) {
  if (bytes.size() == 4) {
    std::array<std::uint8_t, 4> v4{};
    std::copy(bytes.begin(), bytes.end(), v4.begin());
    return from_ipv4(v4, port);
  }
  if (bytes.size() != 16)
    return std::nullopt;
  if (std::equal(k_v4_mapped_prefix.begin(), k_v4_mapped_prefix.end(), bytes.begin()))
    return from_ip_bytes(bytes.subspan(12), port);
  std::array<std::uint8_t, 16> v6{};
  std::copy(bytes.begin(), bytes.end(), v6.begin());
  return from_ipv6(v6, port);
}

expected<address> address::from_domain(std::string_view name, std::uint16_t port) {
  if (name.empty())
    return expected<address>::failure("empty host name");
  if (name.size() > 255)
    return expected<address>::failure("host name " + quoted(name) + " is longer than 255 bytes");
  if (!is_acceptable_name(name))
    return expected<address>::failure("host name " + quoted(name) + " is not a valid host name");
  address a;
  a.kind = type::domain;
  a.domain = std::string(name);
  a.port = port;
  return a;
}

expected<address> address::from_host_port(const net::host_port& hp) {
  if (hp.host.size() <= 45 && hp.host.find('\0') == std::string::npos) {
    in6_addr v6{};
    in_addr v4{};
    if (inet_pton(AF_INET, hp.host.c_str(), &v4) == 1) {
      std::array<std::uint8_t, 4> b{};
      std::memcpy(b.data(), &v4, b.size());
      return from_ipv4(b, hp.port);
    }
    if (inet_pton(AF_INET6, hp.host.c_str(), &v6) == 1) {
      std::array<std::uint8_t, 16> b{};
      std::memcpy(b.data(), &v6, b.size());
      return from_ipv6(b, hp.port);
    }
  }
  return from_domain(hp.host, hp.port);
}

std::span<const std::uint8_t> address::ip_bytes() const noexcept {
  switch (kind) {
  case type::ipv4:
    return std::span<const std::uint8_t>(ip).first(4);
  case type::ipv6:
    return std::span<const std::uint8_t>(ip);
  case type::domain:
    break;
  }
  return {};
}

net::host_port address::to_host_port() const {
  if (kind == type::domain)
    return net::host_port{domain, port};
  std::array<char, INET6_ADDRSTRLEN> buf{};
  const int family = kind == type::ipv4 ? AF_INET : AF_INET6;
  if (inet_ntop(family, ip.data(), buf.data(), buf.size()) == nullptr)
    return net::host_port{{}, port}; // cannot happen: the buffer fits any address
  return net::host_port{std::string(buf.data()), port};
}

std::string address::to_string() const {
  const auto hp = to_host_port();
  return net::format_host_port(hp.host, hp.port);
}

std::size_t address::encoded_size() const noexcept {
  switch (kind) {
  case type::ipv4:
    return 1 + 4 + 2;
  case type::ipv6:
    return 1 + 16 + 2;
  case type::domain:
    break;
  }
  return 1 + 1 + std::min<std::size_t>(domain.size(), 255) + 2;
}

void address::encode_to(std::vector<std::uint8_t>& out) const {
  out.push_back(static_cast<std::uint8_t>(kind));
  if (kind == type::domain) {
    const auto n = std::min<std::size_t>(domain.size(), 255);
    out.push_back(static_cast<std::uint8_t>(n));
    out.insert(out.end(), domain.begin(), domain.begin() + static_cast<std::ptrdiff_t>(n));
  } else {
    const auto b = ip_bytes();
    out.insert(out.end(), b.begin(), b.end());
  }
  out.push_back(static_cast<std::uint8_t>(port >> 8));
  out.push_back(static_cast<std::uint8_t>(port & 0xff));
}

bool operator==(const address& a, const address& b) noexcept {
  if (a.kind != b.kind || a.port != b.port)
    return false;
  if (a.kind == address::type::domain)
    return a.domain == b.domain;
  const auto x = a.ip_bytes();
  const auto y = b.ip_bytes();
  return std::equal(x.begin(), x.end(), y.begin(), y.end());
}

parse_result<address> parse_address(std::span<const std::uint8_t> in) {
  reader r(in);
  address a;
  if (auto e = read_address(r, "address", a))
    return from_address_error<address>(std::move(*e));
  return parse_result<address>::done(std::move(a), r.pos());
}

// ---- method negotiation ----

bool greeting::offers(method m) const noexcept {
  return std::find(methods.begin(), methods.end(), static_cast<std::uint8_t>(m)) != methods.end();
}

parse_result<greeting> parse_greeting(std::span<const std::uint8_t> in) {
  using result = parse_result<greeting>;
  reader r(in);
  if (!r.has(1))
    return result::incomplete(3);
  if (r.u8() != k_version)
    return result::failure(not_socks5_message(in));
  if (!r.has(1))
    return result::incomplete(3);
  const std::size_t n = r.u8();
  if (n == 0)
    return result::failure("SOCKS5 greeting offers no authentication methods");
  if (!r.has(n))
    return result::incomplete(2 + n);
  const auto m = r.bytes(n);
  return result::done(greeting{{m.begin(), m.end()}}, r.pos());
}

method choose_method(const greeting& g, bool require_userpass) noexcept {
  const method wanted = require_userpass ? method::userpass : method::no_auth;
  return g.offers(wanted) ? wanted : method::none_acceptable;
}

std::array<std::uint8_t, 2> encode_method_choice(method m) noexcept {
  return {k_version, static_cast<std::uint8_t>(m)};
}

// ---- username/password ----

parse_result<credentials> parse_userpass(std::span<const std::uint8_t> in) {
  using result = parse_result<credentials>;
  reader r(in);
  if (!r.has(1))
    return result::incomplete(k_min_userpass_size);
  if (const auto v = r.u8(); v != k_userpass_version)
    return result::failure("SOCKS5 username/password request has version " + hex_byte(v) +
                           " (expected 0x01, RFC 1929)");
  if (!r.has(1))
    return result::incomplete(k_min_userpass_size);
  const std::size_t ulen = r.u8();
  if (ulen == 0)
    return result::failure("SOCKS5 username/password request has an empty username");
  if (!r.has(ulen + 1))
    return result::incomplete(r.pos() + ulen + 2); // user, PLEN, at least one password byte
  credentials c;
  c.user = r.text(ulen);
  const std::size_t plen = r.u8();
  if (plen == 0)
    return result::failure("SOCKS5 username/password request has an empty password");
  if (!r.has(plen))
    return result::incomplete(r.pos() + plen);
  c.password = r.text(plen);
  return result::done(std::move(c), r.pos());
}

std::array<std::uint8_t, 2> encode_userpass_status(bool ok) noexcept {
  return {k_userpass_version, static_cast<std::uint8_t>(ok ? 0x00 : 0x01)};
}

// ---- request and reply ----

parse_result<request> parse_request(std::span<const std::uint8_t> in) {
  using result = parse_result<request>;
  reader r(in);
  if (!r.has(1))
    return result::incomplete(k_min_request_size);
  if (const auto v = r.u8(); v != k_version)
    return result::failure("SOCKS5 request has version " + hex_byte(v) + " (expected 0x05)");
  if (!r.has(1))
    return result::incomplete(k_min_request_size);
  request req;
  const std::uint8_t cmd = r.u8();
  if (cmd < 0x01 || cmd > 0x03)
    return result::failure("SOCKS5 command " + hex_byte(cmd) +
                               " is not supported (CONNECT 0x01, BIND 0x02 and UDP ASSOCIATE 0x03 are)",
                           reply_code::command_not_supported);
  req.cmd = static_cast<command>(cmd);
  if (!r.has(1))
    return result::incomplete(k_min_request_size);
  if (const auto rsv = r.u8(); rsv != 0)
    return result::failure("SOCKS5 request has a non-zero reserved byte (" + hex_byte(rsv) + ")");
  if (auto e = read_address(r, "request", req.destination))
    return from_address_error<request>(std::move(*e));
  return result::done(std::move(req), r.pos());
}

std::vector<std::uint8_t> encode_reply(reply_code code, const address& bound) {
  std::vector<std::uint8_t> out;
  out.reserve(3 + bound.encoded_size());
  out.push_back(k_version);
  out.push_back(static_cast<std::uint8_t>(code));
  out.push_back(0x00);
  bound.encode_to(out);
  return out;
}

// ---- UDP ----

expected<udp_datagram> parse_udp_datagram(std::span<const std::uint8_t> in) {
  using result = expected<udp_datagram>;
  reader r(in);
  if (!r.has(4))
    return result::failure("SOCKS5 UDP datagram is too short for its header (" + std::to_string(in.size()) + " bytes)");
  const std::uint8_t rsv0 = r.u8();
  const std::uint8_t rsv1 = r.u8();
  if (rsv0 != 0 || rsv1 != 0)
    return result::failure("SOCKS5 UDP datagram has non-zero reserved bytes (" + hex_byte(rsv0) + " " + hex_byte(rsv1) +
                           ")");
  if (r.u8() != 0)
    return result::failure("fragmented SOCKS5 UDP datagrams are not supported");
  udp_datagram d;
  if (auto e = read_address(r, "UDP datagram", d.destination)) {
    if (e->need_more)
      return result::failure("SOCKS5 UDP datagram is too short for its address (" + std::to_string(in.size()) +
                             " bytes)");
    return result::failure(std::move(e->message));
  }
  d.header_size = r.pos();
  d.payload = in.subspan(r.pos());
  return d;
}

std::vector<std::uint8_t> encode_udp_header(const address& a) {
  std::vector<std::uint8_t> out;
  out.reserve(3 + a.encoded_size());
  out.insert(out.end(), {0x00, 0x00, 0x00});
  a.encode_to(out);
  return out;
}

// ---- client side ----

parse_result<method> parse_method_choice(std::span<const std::uint8_t> in) {
  using result = parse_result<method>;
  if (!in.empty() && in[0] != k_version)
    return result::failure("SOCKS5 method choice has version " + hex_byte(in[0]) + " (expected 0x05)");
  if (in.size() < 2)
    return result::incomplete(2);
  return result::done(static_cast<method>(in[1]), 2);
}

parse_result<bool> parse_userpass_status(std::span<const std::uint8_t> in) {
  using result = parse_result<bool>;
  // Some servers answer with the SOCKS version (0x05) here; curl ignores
  // the byte, warren accepts both.
  if (!in.empty() && in[0] != k_userpass_version && in[0] != k_version)
    return result::failure("SOCKS5 username/password status has version " + hex_byte(in[0]) + " (expected 0x01)");
  if (in.size() < 2)
    return result::incomplete(2);
  return result::done(in[1] == 0x00, 2);
}

parse_result<reply> parse_reply(std::span<const std::uint8_t> in) {
  using result = parse_result<reply>;
  // Asks for no byte past the reply: 4 until the address type is known, 5
  // for a domain's length (a 1-byte domain makes a 9-byte reply).
  reader r(in);
  if (!r.has(1))
    return result::incomplete(4);
  if (const auto v = r.u8(); v != k_version)
    return result::failure("SOCKS5 reply has version " + hex_byte(v) + " (expected 0x05)");
  if (!r.has(1))
    return result::incomplete(4);
  reply rep;
  rep.code = static_cast<reply_code>(r.u8());
  if (!r.has(1))
    return result::incomplete(4);
  if (const auto rsv = r.u8(); rsv != 0)
    return result::failure("SOCKS5 reply has a non-zero reserved byte (" + hex_byte(rsv) + ")");
  if (!r.has(1))
    return result::incomplete(4);
  if (in[3] == static_cast<std::uint8_t>(address::type::domain) && !r.has(2))
    return result::incomplete(5);
  if (auto e = read_address(r, "reply", rep.bound))
    return from_address_error<reply>(std::move(*e));
  return result::done(std::move(rep), r.pos());
}

expected<std::vector<std::uint8_t>> encode_greeting(std::span<const std::uint8_t> methods) {
  using result = expected<std::vector<std::uint8_t>>;
  if (methods.empty() || methods.size() > 255)
    return result::failure("a SOCKS5 greeting offers 1-255 methods, not " + std::to_string(methods.size()));
  std::vector<std::uint8_t> out{k_version, static_cast<std::uint8_t>(methods.size())};
  out.insert(out.end(), methods.begin(), methods.end());
  return out;
}

expected<std::vector<std::uint8_t>> encode_userpass(const credentials& c) {
  using result = expected<std::vector<std::uint8_t>>;
  if (c.user.empty() || c.user.size() > 255)
    return result::failure("a SOCKS5 username must be 1-255 bytes long, not " + std::to_string(c.user.size()));
  if (c.password.empty() || c.password.size() > 255)
    return result::failure("a SOCKS5 password must be 1-255 bytes long, not " + std::to_string(c.password.size()));
  std::vector<std::uint8_t> out;
  out.reserve(3 + c.user.size() + c.password.size());
  out.push_back(k_userpass_version);
  out.push_back(static_cast<std::uint8_t>(c.user.size()));
  out.insert(out.end(), c.user.begin(), c.user.end());
  out.push_back(static_cast<std::uint8_t>(c.password.size()));
  out.insert(out.end(), c.password.begin(), c.password.end());
  return out;
}

std::vector<std::uint8_t> encode_request(const request& r) {
  std::vector<std::uint8_t> out;
  out.reserve(3 + r.destination.encoded_size());
  out.push_back(k_version);
  out.push_back(static_cast<std::uint8_t>(r.cmd));
  out.push_back(0x00);
  r.destination.encode_to(out);
  return out;
}

} // namespace warren::proxy::socks5
