// Fuzzes what the server takes from an upgrade request before it trusts it
// (src/transport/http_auth.*): the Bearer token of an Authorization header
// and the request target a log line may show. Properties: a token is a
// non-empty part of the header without surrounding whitespace; a shown
// target is bounded, quoted, and holds nothing from the first '?', '#' or
// ';' on (where tokens travel); a Retry-After is within [0, 3600] s.
#include "transport/http_auth.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto token = warren::transport::bearer_token(text)) {
    if (token->empty() || token->data() < text.data() || token->data() + token->size() > text.data() + text.size())
      std::abort();
    const auto space = [](char c) { return c == ' ' || c == '\t'; };
    if (space(token->front()) || space(token->back()))
      std::abort();
  }
  const auto retry = warren::transport::parse_retry_after(text);
  if (retry.count() < 0 || retry.count() > 3600)
    std::abort();
  const std::string shown = warren::transport::shown_target(text);
  if (shown.size() > 2 + 80 + 3 + 20)
    std::abort();
  if (text.starts_with('/')) {
    if (!shown.starts_with("'/"))
      std::abort();
    // Nothing after the cut: the quoted part is at most what precedes it.
    const auto cut = text.find_first_of("?#;");
    const auto quoted_end = shown.find('\'', 1);
    if (quoted_end == std::string::npos)
      std::abort();
    const std::string_view quoted(shown.data() + 1, quoted_end - 1);
    const std::size_t before = cut == std::string_view::npos ? text.size() : cut;
    const std::size_t shown_chars = quoted.ends_with("...") ? quoted.size() - 3 : quoted.size();
    if (shown_chars > before)
      std::abort();
  }
  return 0;
}
