// Telling a client that it dialled a listener of another scheme (wss:// to
// a tcp:// listener, ws:// to a wss:// one, ...) instead of retrying
// forever. Pure (warren_transport_codec), fuzzed by
// tests/fuzz/fuzz_scheme_mismatch.cpp.
//
// Server: a plain listener (tcp://, ws://) that sees a TLS ClientHello, a
// tcp:// or tls:// listener that reads an HTTP request line, a ws:// or
// wss:// listener whose request does not parse, and a TLS listener whose
// handshake reads an HTTP request, answer with wrong_scheme_reply(): an
// HTTP 400 whose "Warren-Listener" header names their scheme. A TLS
// listener whose first byte is a preamble's 'W' answers with a plain TLS
// alert record (k_tls_alert_record).
// Client: a WebSocket client reads that header (listener_scheme()); a
// preamble client (tcp://, tls://) classifies the 3 bytes it reads as its
// answer (classify_preamble_answer()); a TLS client whose handshake reads
// plain bytes knows the listener is plain. Each gets a sentence naming the
// scheme to use (mismatch_hint()).
#pragma once

#include "transport/url.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace warren::transport {

inline constexpr std::string_view k_listener_header = "Warren-Listener";

/// What a TLS listener sends a tcp:// client (whose preamble starts with
/// 'W' where a ClientHello should be): a plain TLS record, a fatal alert
/// "protocol version".
inline constexpr std::string_view k_tls_alert_record{"\x15\x03\x03\x00\x02\x02\x46", 7};

/// The whole HTTP response (400, Connection: close) a listener of scheme
/// `listener` sends to a client of the wrong scheme.
std::string wrong_scheme_reply(scheme listener);

/// The scheme named by a Warren-Listener header value ("tcp", "tls", "ws",
/// "wss", case-insensitive, surrounding blanks ignored); nothing otherwise.
std::optional<scheme> listener_scheme(std::string_view header_value);

/// Whether the start of a connection (a line, or the first bytes) is an
/// HTTP/1 request line: a method token of capitals, a space, a target.
bool looks_like_http_request(std::string_view start);

/// Whether the first byte read is a TLS record's (handshake 0x16, alert 0x15).
bool looks_like_tls_record(std::string_view start);

/// What a preamble client (tcp://, tls://) read as the server's 3-byte answer.
enum class preamble_answer {
  ok,      // "OK\n"
  refused, // "NO\n": the token
  limited, // "TM\n": too many failures from this address
  http,    // the server speaks HTTP: a ws:// or wss:// listener
  tls,     // the server speaks TLS: a tls:// or wss:// listener
  other,   // anything else: not a warren server (or a later version)
};
preamble_answer classify_preamble_answer(std::string_view answer);

/// One sentence for the user: the client dialled `used`, the listener
/// speaks `listener` (or, unknown, what was observed: "plain" when a TLS
/// client got plain bytes, "tls" when a plain client got TLS, "http" when a
/// preamble client got HTTP).
std::string mismatch_hint(scheme used, std::optional<scheme> listener, std::string_view observed = {});

} // namespace warren::transport
