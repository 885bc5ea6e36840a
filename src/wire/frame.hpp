// The frame codec of the warren wire protocol v1 (docs/PROTOCOL.md, "Frame"):
// pure functions from bytes to frames and back, with no I/O, no Asio and no
// exceptions on hostile input (fuzzed by tests/fuzz/fuzz_frame.cpp).
//
// Design: decoding is incremental and zero-copy. decode() looks at whatever
// bytes have arrived and answers "need N more", "one frame" (a header plus a
// span into the caller's buffer) or "connection error"; the caller drops
// `consumed` bytes and calls again. Payloads are parsed by separate
// per-type functions so DATA and DATAGRAM bytes are never touched, and
// unknown frame types reach the caller intact (to be skipped). Encoders
// append to a caller-owned vector and write only headers for DATA and
// DATAGRAM, so payload bytes can be scattered straight from their source.
// Rules that need connection state (stream id parity, HELLO first, windows)
// belong to the session, not here.
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
#include <variant>
#include <vector>

namespace warren::wire {

// ---- constants ------------------------------------------------------------

inline constexpr std::size_t k_header_size = 9;
inline constexpr std::uint32_t k_max_length = 0xFFFFFF;       // the length field is 24 bits
inline constexpr std::uint32_t k_default_max_payload = 65536; // also the minimum a peer may announce
inline constexpr std::uint32_t k_default_initial_window = 262144;
inline constexpr std::uint32_t k_min_initial_window = 65536;
inline constexpr std::uint32_t k_default_max_streams = 1024;
inline constexpr std::size_t k_max_reason = 256; // RESET and GOAWAY reasons, in bytes
inline constexpr std::uint8_t k_version = 1;
inline constexpr std::string_view k_magic = "WRN";

inline constexpr std::uint8_t k_flag_fin = 0x01; // DATA: the sender sends no more data
inline constexpr std::uint8_t k_flag_ack = 0x01; // PING: this is the reply

// ---- enumerations ---------------------------------------------------------

/// Frame types. The enum has a fixed underlying type, so a frame_type may hold
/// any byte: unknown types from later versions are kept, see is_known().
enum class frame_type : std::uint8_t {
  hello = 0,
  open = 1,
  open_ok = 2,
  data = 3,
  window = 4,
  reset = 5,
  datagram = 6,
  ping = 7,
  goaway = 8,
};

constexpr bool is_known(frame_type t) noexcept {
  return static_cast<std::uint8_t>(t) <= 8;
}

/// "HELLO", "DATA", ... or "UNKNOWN" (for logs).
std::string_view frame_type_name(frame_type t) noexcept;

/// RESET and GOAWAY codes. Unknown codes from a later version are kept as is.
enum class reset_code : std::uint8_t {
  closed = 0,
  refused = 1,
  denied = 2,
  unresolvable = 3,
  timed_out = 4,
  unreachable = 5,
  protocol_error = 6,
  limit_reached = 7,
  internal_error = 8,
  frame_too_large = 9,
  flow_control_error = 10,
};

/// "closed", "refused", "denied by policy", ... or "unknown error".
std::string_view reset_code_name(reset_code c) noexcept;

enum class stream_kind : std::uint8_t { tcp = 1, udp = 2 };

/// HELLO setting identifiers.
enum class setting_id : std::uint16_t {
  initial_window = 0x0001,
  max_payload = 0x0002,
  max_streams = 0x0003,
  ping_interval_ms = 0x0004,
};

// ---- header and decoding --------------------------------------------------

struct frame_header {
  frame_type type = frame_type::hello; // may be an unknown value
  std::uint8_t flags = 0;              // unknown bits are kept and ignored
  std::uint32_t stream = 0;
  std::uint32_t length = 0; // payload length, at most k_max_length
  bool known() const noexcept { return is_known(type); }
  friend bool operator==(const frame_header&, const frame_header&) = default;
};

/// Not enough input yet: at least `missing` more bytes must arrive.
struct need_more {
  std::size_t missing = 0;
};

/// One complete frame at the start of the input.
struct decoded_frame {
  frame_header header;
  std::span<const std::uint8_t> payload; // points into the decoder's input
  std::size_t consumed = 0;              // k_header_size + header.length
};

/// A connection error: send GOAWAY with `code` and close.
struct decode_error {
  reset_code code = reset_code::protocol_error;
  std::string message;
};

using decode_result = std::variant<need_more, decoded_frame, decode_error>;

/// Decodes the frame at the start of `input`. A frame longer than
/// `max_payload` is an error (frame_too_large) as soon as its header is in,
/// without waiting for the payload.
decode_result decode(std::span<const std::uint8_t> input, std::uint32_t max_payload = k_default_max_payload);

/// Reads a header from exactly k_header_size bytes (no checks).
frame_header decode_header(std::span<const std::uint8_t, k_header_size> bytes) noexcept;

// ---- payloads -------------------------------------------------------------

/// A target in SOCKS5 address form. For ipv4 only ip[0..3] are used; unused
/// bytes of `ip` are zero and `domain` is empty unless kind is domain.
struct target_address {
  enum class type : std::uint8_t { ipv4, domain, ipv6 };
  type kind = type::ipv4;
  std::array<std::uint8_t, 16> ip{};
  std::string domain;
  std::uint16_t port = 0;

  /// IP literals become ipv4/ipv6, valid host names become domain; port 0 and
  /// anything else are errors.
  static expected<target_address> from_host_port(const net::host_port& hp);
  static target_address ipv4(std::array<std::uint8_t, 4> addr, std::uint16_t port);
  static target_address ipv6(const std::array<std::uint8_t, 16>& addr, std::uint16_t port);

  net::host_port to_host_port() const;
  std::string to_string() const; // "host:port", "[v6]:port"

  friend bool operator==(const target_address&, const target_address&) = default;
};

struct open_request {
  stream_kind kind = stream_kind::tcp;
  target_address target;
  friend bool operator==(const open_request&, const open_request&) = default;
};

/// HELLO: the settings the sender announced; absent ones take the defaults
/// (k_default_initial_window, k_default_max_payload, k_default_max_streams).
struct hello {
  std::uint8_t version = k_version;
  std::optional<std::uint32_t> initial_window;   // >= k_min_initial_window
  std::optional<std::uint32_t> max_payload;      // >= k_default_max_payload
  std::optional<std::uint32_t> max_streams;      // streams the sender accepts
  std::optional<std::uint32_t> ping_interval_ms; // informational
  friend bool operator==(const hello&, const hello&) = default;
};

struct reset_info {
  reset_code code = reset_code::closed;
  std::string reason; // raw bytes as received (UTF-8 by contract, not checked)
  friend bool operator==(const reset_info&, const reset_info&) = default;
};

struct goaway_info {
  std::uint32_t last_stream = 0;
  reset_code code = reset_code::closed;
  std::string reason;
  friend bool operator==(const goaway_info&, const goaway_info&) = default;
};

using ping_payload = std::array<std::uint8_t, 8>;

// Payload parsers: a value, or a sentence naming the frame and what is wrong
// (hostile bytes are never echoed). Any failure is a protocol error.
expected<hello> parse_hello(std::span<const std::uint8_t> payload);
expected<open_request> parse_open(std::span<const std::uint8_t> payload);
expected<std::uint32_t> parse_window(std::span<const std::uint8_t> payload);
expected<reset_info> parse_reset(std::span<const std::uint8_t> payload);
expected<ping_payload> parse_ping(std::span<const std::uint8_t> payload);
expected<goaway_info> parse_goaway(std::span<const std::uint8_t> payload);

// ---- encoding -------------------------------------------------------------
// Each encoder appends one frame (or one header) to `out`. Reasons longer than
// k_max_reason bytes are cut at a UTF-8 boundary at or below that size.

/// Precondition: h.length <= k_max_length (asserted; masked to 24 bits).
void encode_header(std::vector<std::uint8_t>& out, const frame_header& h);
void encode_hello(std::vector<std::uint8_t>& out, const hello& h);
/// Precondition: a domain target has 1-255 bytes (longer names are cut to 255).
void encode_open(std::vector<std::uint8_t>& out, std::uint32_t stream, stream_kind kind, const target_address& target);
void encode_open_ok(std::vector<std::uint8_t>& out, std::uint32_t stream);
/// DATA header only; the caller appends (or scatters) `length` payload bytes.
void encode_data_header(std::vector<std::uint8_t>& out, std::uint32_t stream, std::uint32_t length, bool fin);
/// The same header written in place, into space the caller set aside in
/// front of the payload (zero-copy framing).
void write_data_header(std::span<std::uint8_t, k_header_size> out, std::uint32_t stream, std::uint32_t length,
                       bool fin);
void encode_window(std::vector<std::uint8_t>& out, std::uint32_t stream, std::uint32_t increment);
void encode_reset(std::vector<std::uint8_t>& out, std::uint32_t stream, reset_code code, std::string_view reason);
/// DATAGRAM header only; the caller appends the datagram's `length` bytes.
void encode_datagram_header(std::vector<std::uint8_t>& out, std::uint32_t stream, std::uint32_t length);
void encode_ping(std::vector<std::uint8_t>& out, const ping_payload& bytes, bool ack);
void encode_goaway(std::vector<std::uint8_t>& out, std::uint32_t last_stream, reset_code code, std::string_view reason);

/// The prefix of `reason` that encoders send (at most k_max_reason bytes,
/// never splitting a UTF-8 sequence).
std::string_view truncate_reason(std::string_view reason) noexcept;

} // namespace warren::wire
