// Fuzzes the TOML reader (src/core/toml.*) that the config file and the
// users file go through. Properties: parsing never crashes and stays within
// its bounds; an error is one line "t.toml:LINE:COLUMN: ..." (or the size
// bound); an accepted document has unique keys in every table, positions
// within the text, nesting within the depth bound, strings that are valid
// UTF-8 within the length bound, and [[...]] arrays holding tables only.
#include "core/toml.hpp"

#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

namespace {

using warren::toml::value;

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (n == 0 || i + n > s.size())
      return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
        return false;
    i += n;
  }
  return true;
}

void check(const value& v, int depth, int lines, const warren::toml::limits& bounds) {
  if (depth > bounds.max_depth + 1 || v.at.line < 1 || v.at.line > lines || v.at.column < 1)
    std::abort();
  if (v.is_string() && (v.text.size() > bounds.max_string || !valid_utf8(v.text)))
    std::abort();
  std::set<std::string_view> keys;
  for (const auto& e : v.entries) {
    if (!keys.insert(e.key).second || e.at.line < 1 || e.at.line > lines || e.key.size() > bounds.max_key)
      std::abort();
    check(e.v, depth + 1, lines, bounds);
  }
  for (const auto& item : v.items) {
    if (v.table_array && !item.is_table())
      std::abort();
    check(item, depth + 1, lines, bounds);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  warren::toml::limits bounds;
  bounds.max_size = 64 * 1024;
  bounds.max_string = 1024;
  auto doc = warren::toml::parse(text, "t.toml", bounds);
  if (!doc) {
    const auto& e = doc.error();
    if (!e.starts_with("t.toml:") || e.find('\n') != std::string::npos)
      std::abort();
    return 0;
  }
  int lines = 1;
  for (const char c : text)
    lines += c == '\n';
  if (!doc->is_table())
    std::abort();
  check(*doc, 0, lines, bounds);
  return 0;
}
