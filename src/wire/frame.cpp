// Frame codec of the wire protocol v1: the byte layouts of docs/PROTOCOL.md,
// big-endian throughout. Parsers read through a bounds-checked cursor and
// return a sentence on the first problem; they never throw and never echo
// received bytes other than as numbers. Encoders grow the output vector once
// per frame and write in place.
#include "wire/frame.hpp"
#include "core/text.hpp"

#include <arpa/inet.h>

#include <cassert>
#include <cstring>
#include <string>
#include <utility>

namespace warren::wire {
namespace {

constexpr std::uint8_t k_atyp_ipv4 = 0x01;
constexpr std::uint8_t k_atyp_domain = 0x03;
constexpr std::uint8_t k_atyp_ipv6 = 0x04;
constexpr std::size_t k_setting_size = 6; // id u16, value u32

// Bounds-checked big-endian reader over a payload.
class reader {
 public:
  explicit reader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}

  std::size_t remaining() const noexcept { return bytes_.size() - pos_; }
  bool has(std::size_t n) const noexcept { return remaining() >= n; }

  // Callers check has() first.
  std::uint8_t u8() noexcept { return bytes_[pos_++]; }
  std::uint16_t u16() noexcept {
    const auto v = static_cast<std::uint16_t>((bytes_[pos_] << 8) | bytes_[pos_ + 1]);
    pos_ += 2;
    return v;
  }
  std::uint32_t u32() noexcept {
    const auto v = (std::uint32_t{bytes_[pos_]} << 24) | (std::uint32_t{bytes_[pos_ + 1]} << 16) |
                   (std::uint32_t{bytes_[pos_ + 2]} << 8) | std::uint32_t{bytes_[pos_ + 3]};
    pos_ += 4;
    return v;
  }
  std::span<const std::uint8_t> take(std::size_t n) noexcept {
    auto s = bytes_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::string take_string(std::size_t n) {
    auto s = take(n);
    return std::string(reinterpret_cast<const char*>(s.data()), s.size());
  }

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t pos_ = 0;
};

// Appends n bytes to out (geometric growth) and returns where to write them.
std::uint8_t* grow(std::vector<std::uint8_t>& out, std::size_t n) {
  const auto old = out.size();
  out.resize(old + n);
  return out.data() + old;
}

std::uint8_t* put_u16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
  return p + 2;
}

std::uint8_t* put_u32(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
  return p + 4;
}

std::uint8_t* put_bytes(std::uint8_t* p, const void* src, std::size_t n) noexcept {
  if (n != 0)
    std::memcpy(p, src, n);
  return p + n;
}

std::uint8_t* put_header(std::uint8_t* p, frame_type type, std::uint8_t flags, std::uint32_t stream,
                         std::uint32_t length) noexcept {
  assert(length <= k_max_length);
  length &= k_max_length;
  p[0] = static_cast<std::uint8_t>(type);
  p[1] = flags;
  p = put_u32(p + 2, stream);
  p[0] = static_cast<std::uint8_t>(length >> 16);
  p[1] = static_cast<std::uint8_t>(length >> 8);
  p[2] = static_cast<std::uint8_t>(length);
  return p + 3;
}

std::string n_bytes(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " byte" : " bytes");
}

bool is_domain_char(std::uint8_t c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

std::string quoted(std::string_view text) {
  return quote_untrusted(text);
}

std::string hex_byte(std::uint8_t c) {
  constexpr char k_digits[] = "0123456789abcdef";
  return std::string("0x") + k_digits[c >> 4] + k_digits[c & 0x0f];
}

// A code, then a reason of at most k_max_reason bytes; shared by RESET and GOAWAY.
expected<std::string> read_reason(reader& r, std::string_view frame) {
  if (r.remaining() > k_max_reason)
    return expected<std::string>::failure(std::string(frame) + " reason is " + n_bytes(r.remaining()) + " (limit " +
                                          std::to_string(k_max_reason) + ")");
  return r.take_string(r.remaining());
}

} // namespace

// ---- names ----------------------------------------------------------------

std::string_view frame_type_name(frame_type t) noexcept {
  switch (t) {
  case frame_type::hello:
    return "HELLO";
  case frame_type::open:
    return "OPEN";
  case frame_type::open_ok:
    return "OPEN_OK";
  case frame_type::data:
    return "DATA";
  case frame_type::window:
    return "WINDOW";
  case frame_type::reset:
    return "RESET";
  case frame_type::datagram:
    return "DATAGRAM";
  case frame_type::ping:
    return "PING";
  case frame_type::goaway:
    return "GOAWAY";
  }
  return "UNKNOWN";
}

std::string_view reset_code_name(reset_code c) noexcept {
  switch (c) {
  case reset_code::closed:
    return "closed";
  case reset_code::refused:
    return "refused";
  case reset_code::denied:
    return "denied by policy";
  case reset_code::unresolvable:
    return "unresolvable";
  case reset_code::timed_out:
    return "timed out";
  case reset_code::unreachable:
    return "unreachable";
  case reset_code::protocol_error:
    return "protocol error";
  case reset_code::limit_reached:
    return "limit reached";
  case reset_code::internal_error:
    return "internal error";
  case reset_code::frame_too_large:
    return "frame too large";
  case reset_code::flow_control_error:
    return "flow-control error";
  }
  return "unknown error";
}

// ---- decoding -------------------------------------------------------------

frame_header decode_header(std::span<const std::uint8_t, k_header_size> b) noexcept {
  frame_header h;
  h.type = static_cast<frame_type>(b[0]);
  h.flags = b[1];
  h.stream = (std::uint32_t{b[2]} << 24) | (std::uint32_t{b[3]} << 16) | (std::uint32_t{b[4]} << 8) | b[5];
  h.length = (std::uint32_t{b[6]} << 16) | (std::uint32_t{b[7]} << 8) | b[8];
  return h;
}

decode_result decode(std::span<const std::uint8_t> input, std::uint32_t max_payload) {
  if (input.size() < k_header_size)
    return need_more{k_header_size - input.size()};
  const auto h = decode_header(input.first<k_header_size>());
  if (h.length > max_payload)
    return decode_error{reset_code::frame_too_large, "frame too large: " + std::to_string(h.length) + " bytes (limit " +
                                                         std::to_string(max_payload) + ")"};
  const std::size_t total = k_header_size + h.length;
  if (input.size() < total)
    return need_more{total - input.size()};
  return decoded_frame{h, input.subspan(k_header_size, h.length), total};
}

// ---- target addresses -----------------------------------------------------

target_address target_address::ipv4(std::array<std::uint8_t, 4> addr, std::uint16_t port) {
  target_address t;
  t.kind = type::ipv4;
  std::memcpy(t.ip.data(), addr.data(), addr.size());
  t.port = port;
  return t;
}

target_address target_address::ipv6(const std::array<std::uint8_t, 16>& addr, std::uint16_t port) {
  target_address t;
  t.kind = type::ipv6;
  t.ip = addr;
  t.port = port;
  return t;
}

expected<target_address> target_address::from_host_port(const net::host_port& hp) {
  using result = expected<target_address>;
  if (hp.port == 0)
    return result::failure("port 0 is not a valid destination port (1-65535)");
  const std::string& host = hp.host;
  if (host.size() <= 45 && host.find('\0') == std::string::npos) {
    target_address t;
    t.port = hp.port;
    if (inet_pton(AF_INET, host.c_str(), t.ip.data()) == 1) {
      t.kind = type::ipv4;
      return t;
    }
    if (inet_pton(AF_INET6, host.c_str(), t.ip.data()) == 1) {
      t.kind = type::ipv6;
      return t;
    }
    t.ip = {};
  }
  if (!net::is_valid_hostname(host))
    return result::failure("target host " + quoted(host) + " is not a host name, an IPv4 or an IPv6 address");
  target_address t;
  t.kind = type::domain;
  t.domain = host;
  t.port = hp.port;
  return t;
}

net::host_port target_address::to_host_port() const {
  if (kind == type::domain)
    return net::host_port{domain, port};
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(kind == type::ipv4 ? AF_INET : AF_INET6, ip.data(), buf, sizeof buf);
  return net::host_port{buf, port};
}

std::string target_address::to_string() const {
  const auto hp = to_host_port();
  return net::format_host_port(hp.host, hp.port);
}

// ---- payload parsers ------------------------------------------------------

expected<hello> parse_hello(std::span<const std::uint8_t> payload) {
  using result = expected<hello>;
  reader r(payload);
  if (!r.has(k_magic.size() + 1))
    return result::failure("HELLO payload is " + n_bytes(payload.size()) + "; expected at least 4 (magic and version)");
  const auto magic = r.take(k_magic.size());
  if (std::memcmp(magic.data(), k_magic.data(), k_magic.size()) != 0)
    return result::failure("HELLO does not start with the magic \"WRN\" (not a warren peer?)");
  hello h;
  h.version = r.u8();
  if (h.version != k_version)
    return result::failure("HELLO announces protocol version " + std::to_string(h.version) + "; this side speaks " +
                           std::to_string(k_version));
  if (r.remaining() % k_setting_size != 0)
    return result::failure("HELLO settings are " + n_bytes(r.remaining()) +
                           ", not a multiple of 6 (id u16, value u32)");
  while (r.has(k_setting_size)) {
    const auto id = r.u16();
    const auto value = r.u32();
    switch (static_cast<setting_id>(id)) {
    case setting_id::initial_window:
      if (value < k_min_initial_window)
        return result::failure("HELLO initial stream window " + std::to_string(value) + " is below the minimum " +
                               std::to_string(k_min_initial_window));
      h.initial_window = value;
      break;
    case setting_id::max_payload:
      if (value < k_default_max_payload)
        return result::failure("HELLO max frame payload " + std::to_string(value) + " is below the minimum " +
                               std::to_string(k_default_max_payload));
      h.max_payload = value;
      break;
    case setting_id::max_streams:
      h.max_streams = value;
      break;
    case setting_id::ping_interval_ms:
      h.ping_interval_ms = value;
      break;
    default: // unknown settings are ignored (later versions)
      break;
    }
  }
  return h;
}

expected<open_request> parse_open(std::span<const std::uint8_t> payload) {
  using result = expected<open_request>;
  reader r(payload);
  if (!r.has(2))
    return result::failure("OPEN payload is " + n_bytes(payload.size()) + "; expected a kind and an address");
  open_request o;
  const auto kind = r.u8();
  if (kind != static_cast<std::uint8_t>(stream_kind::tcp) && kind != static_cast<std::uint8_t>(stream_kind::udp))
    return result::failure("OPEN has unknown stream kind " + std::to_string(kind) + " (expected 1 = TCP or 2 = UDP)");
  o.kind = static_cast<stream_kind>(kind);
  auto& t = o.target;
  const auto atyp = r.u8();
  switch (atyp) {
  case k_atyp_ipv4:
    if (!r.has(4 + 2))
      return result::failure("OPEN IPv4 address is truncated (" + n_bytes(r.remaining()) + " left; expected 6)");
    t.kind = target_address::type::ipv4;
    std::memcpy(t.ip.data(), r.take(4).data(), 4);
    break;
  case k_atyp_ipv6:
    if (!r.has(16 + 2))
      return result::failure("OPEN IPv6 address is truncated (" + n_bytes(r.remaining()) + " left; expected 18)");
    t.kind = target_address::type::ipv6;
    std::memcpy(t.ip.data(), r.take(16).data(), 16);
    break;
  case k_atyp_domain: {
    if (!r.has(1))
      return result::failure("OPEN domain name has no length byte");
    const std::size_t n = r.u8();
    if (n == 0)
      return result::failure("OPEN domain name is empty");
    if (!r.has(n + 2))
      return result::failure("OPEN domain name of " + n_bytes(n) + " is truncated (" + n_bytes(r.remaining()) +
                             " left, including the port)");
    const auto name = r.take(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (!is_domain_char(name[i]))
        return result::failure("OPEN domain name has an invalid byte " + hex_byte(name[i]) + " at offset " +
                               std::to_string(i) + " (letters, digits, '-', '_', '.' only)");
    }
    t.kind = target_address::type::domain;
    t.domain.assign(reinterpret_cast<const char*>(name.data()), name.size());
    break;
  }
  default:
    return result::failure("OPEN has unknown address type " + std::to_string(atyp) +
                           " (expected 1 = IPv4, 3 = domain, 4 = IPv6)");
  }
  t.port = r.u16();
  if (t.port == 0)
    return result::failure("OPEN target port 0 is not valid (1-65535)");
  if (r.remaining() != 0)
    return result::failure("OPEN has " + n_bytes(r.remaining()) + " after the address");
  return o;
}

expected<std::uint32_t> parse_window(std::span<const std::uint8_t> payload) {
  using result = expected<std::uint32_t>;
  if (payload.size() != 4)
    return result::failure("WINDOW payload is " + n_bytes(payload.size()) + "; expected 4");
  reader r(payload);
  const auto increment = r.u32();
  if (increment == 0)
    return result::failure("WINDOW increment is 0; it must be at least 1");
  return increment;
}

expected<reset_info> parse_reset(std::span<const std::uint8_t> payload) {
  using result = expected<reset_info>;
  reader r(payload);
  if (!r.has(1))
    return result::failure("RESET payload is empty; expected a code");
  reset_info info;
  info.code = static_cast<reset_code>(r.u8());
  auto reason = read_reason(r, "RESET");
  if (!reason)
    return result::failure(reason.error());
  info.reason = std::move(reason).value();
  return info;
}

expected<ping_payload> parse_ping(std::span<const std::uint8_t> payload) {
  using result = expected<ping_payload>;
  ping_payload p{};
  if (payload.size() != p.size())
    return result::failure("PING payload is " + n_bytes(payload.size()) + "; expected 8");
  std::memcpy(p.data(), payload.data(), p.size());
  return p;
}

expected<goaway_info> parse_goaway(std::span<const std::uint8_t> payload) {
  using result = expected<goaway_info>;
  reader r(payload);
  if (!r.has(5))
    return result::failure("GOAWAY payload is " + n_bytes(payload.size()) +
                           "; expected at least 5 (last stream id and code)");
  goaway_info info;
  info.last_stream = r.u32();
  info.code = static_cast<reset_code>(r.u8());
  auto reason = read_reason(r, "GOAWAY");
  if (!reason)
    return result::failure(reason.error());
  info.reason = std::move(reason).value();
  return info;
}

// ---- encoders -------------------------------------------------------------

std::string_view truncate_reason(std::string_view reason) noexcept {
  if (reason.size() <= k_max_reason)
    return reason;
  const auto continuation = [&](std::size_t i) { return (static_cast<unsigned char>(reason[i]) & 0xC0) == 0x80; };
  // reason[cut] is the first byte left out; back off past a split sequence
  // (at most 3 continuation bytes in valid UTF-8).
  std::size_t cut = k_max_reason;
  for (int i = 0; i < 3 && continuation(cut); ++i)
    --cut;
  if (continuation(cut)) // not UTF-8 anyway: plain byte cut
    cut = k_max_reason;
  return reason.substr(0, cut);
}

void write_data_header(std::span<std::uint8_t, k_header_size> out, std::uint32_t stream, std::uint32_t length,
                       bool fin) {
  put_header(out.data(), frame_type::data, fin ? k_flag_fin : 0, stream, length);
}
void encode_header(std::vector<std::uint8_t>& out, const frame_header& h) {
  put_header(grow(out, k_header_size), h.type, h.flags, h.stream, h.length);
}

void encode_hello(std::vector<std::uint8_t>& out, const hello& h) {
  const std::pair<setting_id, const std::optional<std::uint32_t>*> settings[] = {
      {setting_id::initial_window, &h.initial_window},
      {setting_id::max_payload, &h.max_payload},
      {setting_id::max_streams, &h.max_streams},
      {setting_id::ping_interval_ms, &h.ping_interval_ms},
  };
  std::size_t count = 0;
  for (const auto& s : settings)
    count += s.second->has_value() ? 1 : 0;
  const auto length = static_cast<std::uint32_t>(k_magic.size() + 1 + count * k_setting_size);
  auto* p = put_header(grow(out, k_header_size + length), frame_type::hello, 0, 0, length);
  p = put_bytes(p, k_magic.data(), k_magic.size());
  *p++ = h.version;
  for (const auto& [id, value] : settings) {
    if (value->has_value()) {
      p = put_u16(p, static_cast<std::uint16_t>(id));
      p = put_u32(p, **value);
    }
  }
}

void encode_open(std::vector<std::uint8_t>& out, std::uint32_t stream, stream_kind kind, const target_address& target) {
  std::size_t addr_size = 0;
  std::uint8_t atyp = 0;
  std::string_view domain = target.domain;
  switch (target.kind) {
  case target_address::type::ipv4:
    atyp = k_atyp_ipv4;
    addr_size = 4;
    break;
  case target_address::type::ipv6:
    atyp = k_atyp_ipv6;
    addr_size = 16;
    break;
  case target_address::type::domain:
    assert(!domain.empty() && domain.size() <= 255);
    domain = domain.substr(0, 255);
    atyp = k_atyp_domain;
    addr_size = 1 + domain.size();
    break;
  }
  const auto length = static_cast<std::uint32_t>(2 + addr_size + 2);
  auto* p = put_header(grow(out, k_header_size + length), frame_type::open, 0, stream, length);
  *p++ = static_cast<std::uint8_t>(kind);
  *p++ = atyp;
  if (target.kind == target_address::type::domain) {
    *p++ = static_cast<std::uint8_t>(domain.size());
    p = put_bytes(p, domain.data(), domain.size());
  } else {
    p = put_bytes(p, target.ip.data(), addr_size);
  }
  put_u16(p, target.port);
}

void encode_open_ok(std::vector<std::uint8_t>& out, std::uint32_t stream) {
  put_header(grow(out, k_header_size), frame_type::open_ok, 0, stream, 0);
}

void encode_data_header(std::vector<std::uint8_t>& out, std::uint32_t stream, std::uint32_t length, bool fin) {
  put_header(grow(out, k_header_size), frame_type::data, fin ? k_flag_fin : 0, stream, length);
}

void encode_window(std::vector<std::uint8_t>& out, std::uint32_t stream, std::uint32_t increment) {
  auto* p = put_header(grow(out, k_header_size + 4), frame_type::window, 0, stream, 4);
  put_u32(p, increment);
}

void encode_reset(std::vector<std::uint8_t>& out, std::uint32_t stream, reset_code code, std::string_view reason) {
  reason = truncate_reason(reason);
  const auto length = static_cast<std::uint32_t>(1 + reason.size());
  auto* p = put_header(grow(out, k_header_size + length), frame_type::reset, 0, stream, length);
  *p++ = static_cast<std::uint8_t>(code);
  put_bytes(p, reason.data(), reason.size());
}

void encode_datagram_header(std::vector<std::uint8_t>& out, std::uint32_t stream, std::uint32_t length) {
  put_header(grow(out, k_header_size), frame_type::datagram, 0, stream, length);
}

void encode_ping(std::vector<std::uint8_t>& out, const ping_payload& bytes, bool ack) {
  auto* p = put_header(grow(out, k_header_size + bytes.size()), frame_type::ping, ack ? k_flag_ack : 0, 0,
                       static_cast<std::uint32_t>(bytes.size()));
  put_bytes(p, bytes.data(), bytes.size());
}

void encode_goaway(std::vector<std::uint8_t>& out, std::uint32_t last_stream, reset_code code,
                   std::string_view reason) {
  reason = truncate_reason(reason);
  const auto length = static_cast<std::uint32_t>(5 + reason.size());
  auto* p = put_header(grow(out, k_header_size + length), frame_type::goaway, 0, 0, length);
  p = put_u32(p, last_stream);
  *p++ = static_cast<std::uint8_t>(code);
  put_bytes(p, reason.data(), reason.size());
}

} // namespace warren::wire
