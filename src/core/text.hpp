// Echoing untrusted text back in error messages: at most 80 characters,
// printable ASCII only (others become '?'), in single quotes, so hostile
// input can neither flood a log nor smuggle terminal escapes into it.
#pragma once

#include <string>
#include <string_view>

namespace warren {

inline std::string quote_untrusted(std::string_view text) {
  constexpr std::size_t k_max = 80;
  std::string out = "'";
  for (std::size_t i = 0; i < text.size() && i < k_max; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (text.size() > k_max)
    out += "...";
  return out + "'";
}

} // namespace warren
