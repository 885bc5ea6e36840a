// What the server reads from a WebSocket upgrade request before it trusts
// anything: the token of the `Authorization` header and the request target
// as a log line may show it. Pure functions over untrusted bytes (fuzzed by
// tests/fuzz/fuzz_http_auth.cpp); the HTTP parsing itself is Beast's.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace warren::transport {

/// The token of an `Authorization` header value, `Bearer <token>`: the
/// scheme is case-insensitive (RFC 7235 2.1), one or more spaces or tabs
/// follow it, and surrounding whitespace is ignored. Nothing for any other
/// scheme.
std::optional<std::string_view> bearer_token(std::string_view header);

/// A request target as a log line may show it: the path only, quoted
/// (quote_untrusted). The query, a fragment and ;parameters are left out —
/// clients that cannot set headers put tokens there — and an absolute-form
/// target (http://user:pass@host/path) is not shown at all.
std::string shown_target(std::string_view target);

/// A 429's `Retry-After` value the client reads: delay-seconds (RFC 9110
/// 10.2.3; surrounding whitespace ignored), at most 3600; an HTTP date,
/// garbage or nothing gives 0 (not said).
std::chrono::seconds parse_retry_after(std::string_view value);

} // namespace warren::transport
