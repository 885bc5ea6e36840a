#include "transport/http_auth.hpp"

#include "core/text.hpp"

#include <algorithm>

namespace warren::transport {

std::optional<std::string_view> bearer_token(std::string_view header) {
  auto space = [](char c) { return c == ' ' || c == '\t'; };
  while (!header.empty() && space(header.front()))
    header.remove_prefix(1);
  while (!header.empty() && space(header.back()))
    header.remove_suffix(1);
  constexpr std::string_view scheme = "bearer";
  if (header.size() <= scheme.size() || !space(header[scheme.size()]))
    return std::nullopt;
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    const char c = header[i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != scheme[i])
      return std::nullopt;
  }
  header.remove_prefix(scheme.size());
  while (!header.empty() && space(header.front()))
    header.remove_prefix(1);
  return header;
}

std::string shown_target(std::string_view target) {
  if (!target.starts_with('/'))
    return "a target that is not a path (not shown)";
  const auto cut = target.find_first_of("?#;");
  return quote_untrusted(target.substr(0, cut)) + (cut == std::string_view::npos ? "" : " (query not shown)");
}

std::chrono::seconds parse_retry_after(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
    value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
    value.remove_suffix(1);
  if (value.empty() || value.size() > 10)
    return std::chrono::seconds(0);
  long long n = 0;
  for (char c : value) {
    if (c < '0' || c > '9')
      return std::chrono::seconds(0);
    n = n * 10 + (c - '0');
  }
  return std::chrono::seconds(std::min(n, 3600LL));
}

} // namespace warren::transport
