// What the server reads from a WebSocket upgrade request before it trusts
// anything: the token of the `Authorization` header and the request target
// as a log line may show it. Pure functions over untrusted bytes (fuzzed by
// tests/fuzz/fuzz_http_auth.cpp); the HTTP parsing itself is Beast's.
#pragma once

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

} // namespace warren::transport
