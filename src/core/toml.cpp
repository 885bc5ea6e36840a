#include "core/toml.hpp"

#include <algorithm>
#include <cstdio>

// A recursive-descent reader over the text, one cursor (byte offset, line,
// column). Errors are thrown as `failure` inside and returned as the one
// sentence at the boundary (parse()). Every loop advances the cursor or
// ends, and every recursion is bounded by limits::max_depth, so any input
// costs time linear in its size (the key lookups are bounded by
// k_max_entries per table).

namespace warren::toml {

namespace {

constexpr std::size_t k_max_entries = 4096; // keys in one table (each is looked up), items in one array

struct failure {
  position at;
  std::string what;
};

bool bare_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hex_value(char c) {
  return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// The length of the valid UTF-8 sequence at text[i], or 0.
std::size_t utf8_length(std::string_view text, std::size_t i) {
  const auto b = [&](std::size_t k) { return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0u; };
  const unsigned c = b(0);
  const auto cont = [&](std::size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) { return b(k) >= lo && b(k) <= hi; };
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    return cont(1) ? 2 : 0;
  if (c == 0xE0)
    return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if (c == 0xED)
    return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c >= 0xE1 && c <= 0xEF)
    return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xF0)
    return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3)
    return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4)
    return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

entry* find_mut(value& t, std::string_view key) {
  for (auto& e : t.entries)
    if (e.key == key)
      return &e;
  return nullptr;
}

struct key_part {
  std::string text;
  position at;
};

std::string joined(const std::vector<key_part>& path, std::size_t n) {
  std::string out;
  for (std::size_t k = 0; k < n && k < path.size(); ++k)
    out += (k ? "." : "") + shown_key(path[k].text);
  return out;
}

class parser {
 public:
  parser(std::string_view text, const limits& bounds) : text_(text), bounds_(bounds) {}

  value run() {
    check_utf8();
    root_.type = value::kind::table;
    current_ = &root_;
    for (;;) {
      skip_blanks();
      if (done())
        break;
      if (at_newline()) {
        newline();
        continue;
      }
      if (peek() == '[')
        header();
      else
        key_value(*current_, current_depth_);
      end_of_line();
    }
    return std::move(root_);
  }

 private:
  // ---- the cursor ----
  bool done() const { return i_ >= text_.size(); }
  char peek(std::size_t k = 0) const { return i_ + k < text_.size() ? text_[i_ + k] : '\0'; }
  bool looking_at(std::string_view s) const { return text_.substr(i_).starts_with(s); }
  void next() {
    if (done())
      return;
    const char c = text_[i_++];
    if (c == '\n') {
      ++pos_.line;
      pos_.column = 1;
    } else if (done() || (static_cast<unsigned char>(text_[i_]) & 0xC0) != 0x80) {
      ++pos_.column;
    }
  }
  bool at_newline() const { return peek() == '\n' || (peek() == '\r' && peek(1) == '\n'); }
  void newline() {
    if (peek() == '\r')
      next();
    next();
  }

  [[noreturn]] void fail(position at, std::string what) const { throw failure{at, std::move(what)}; }

  /// What is at the cursor, for "found ..." in errors.
  std::string found() const {
    if (done())
      return "the end of the file";
    if (at_newline())
      return "the end of the line";
    const auto c = static_cast<unsigned char>(peek());
    if (c >= 0x20 && c < 0x7f)
      return std::string("'") + static_cast<char>(c) + "'";
    std::uint32_t cp = c;
    const auto n = utf8_length(text_, i_);
    if (n > 1) {
      cp = c & (0xFF >> (n + 1));
      for (std::size_t k = 1; k < n; ++k)
        cp = (cp << 6) | (static_cast<unsigned char>(text_[i_ + k]) & 0x3F);
    }
    char buf[16];
    std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp));
    return buf;
  }

  /// Control characters other than tab are refused in comments and strings.
  static bool control(char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  }

  void check_utf8() {
    for (std::size_t k = 0; k < text_.size();) {
      const auto n = utf8_length(text_, k);
      if (n == 0) {
        while (i_ < k)
          next();
        fail(pos_, "invalid UTF-8 (the file must be UTF-8 text)");
      }
      k += n;
    }
  }

  void skip_blanks() {
    while (peek() == ' ' || peek() == '\t')
      next();
    if (peek() == '#')
      comment();
  }
  void comment() {
    while (!done() && !at_newline()) {
      if (control(peek()))
        fail(pos_, "a control character in a comment");
      next();
    }
  }
  /// Blanks, comments and newlines (inside an array).
  void skip_blanks_and_newlines() {
    for (;;) {
      skip_blanks();
      if (!at_newline())
        return;
      newline();
    }
  }
  void end_of_line() {
    skip_blanks();
    if (done())
      return;
    if (!at_newline())
      fail(pos_, "expected the end of the line, found " + found());
    newline();
  }

  // ---- keys ----
  std::vector<key_part> key_path(int depth) {
    std::vector<key_part> path;
    for (;;) {
      skip_blanks_no_comment();
      key_part part;
      part.at = pos_;
      if (peek() == '"' || peek() == '\'') {
        if (looking_at("\"\"\"") || looking_at("'''"))
          fail(pos_, "a key cannot be a multi-line string");
        part.text = peek() == '"' ? basic_string(bounds_.max_key) : literal_string(bounds_.max_key);
      } else {
        while (bare_key_char(peek())) {
          if (part.text.size() >= bounds_.max_key)
            fail(part.at, "a key longer than " + std::to_string(bounds_.max_key) + " bytes");
          part.text += peek();
          next();
        }
        if (part.text.empty())
          fail(pos_, "expected a key, found " + found());
      }
      if (depth + static_cast<int>(path.size()) >= bounds_.max_depth)
        fail(part.at, "tables nested more than " + std::to_string(bounds_.max_depth) + " deep");
      path.push_back(std::move(part));
      skip_blanks_no_comment();
      if (peek() != '.')
        return path;
      next();
    }
  }
  void skip_blanks_no_comment() {
    while (peek() == ' ' || peek() == '\t')
      next();
  }

  // ---- tables ----
  void header() {
    const auto at = pos_;
    next();
    const bool array = peek() == '[';
    if (array)
      next();
    auto path = key_path(0);
    if (peek() != ']' || (array && peek(1) != ']'))
      fail(pos_, std::string("expected '") + (array ? "]]" : "]") + "' to close the table header, found " + found());
    next();
    if (array)
      next();
    value* t = &root_;
    for (std::size_t k = 0; k + 1 < path.size(); ++k) {
      entry* e = find_mut(*t, path[k].text);
      if (!e) {
        e = add(*t, path[k], at);
        e->v.type = value::kind::table;
        e->v.implicit = true;
        e->v.at = at;
      } else if (e->v.is_table() && e->v.sealed) {
        fail(path[k].at, joined(path, k + 1) + " is an inline table (line " + std::to_string(e->at.line) +
                             "); it cannot be extended");
      } else if (e->v.is_table()) {
      } else if (e->v.table_array) {
        t = &e->v.items.back();
        continue;
      } else {
        fail(path[k].at, joined(path, k + 1) + " is already " + describe(e->v.type) + " (line " +
                             std::to_string(e->at.line) + "), not a table");
      }
      t = &e->v;
    }
    const auto& last = path.back();
    entry* e = find_mut(*t, last.text);
    value fresh;
    fresh.type = value::kind::table;
    fresh.header = true;
    fresh.at = at;
    if (array) {
      if (!e) {
        e = add(*t, last, at);
        e->v.type = value::kind::array;
        e->v.table_array = true;
        e->v.at = at;
      } else if (!e->v.table_array) {
        fail(at, "[[" + joined(path, path.size()) + "]]: " + joined(path, path.size()) + " is already " +
                     describe(e->v.type) + " (line " + std::to_string(e->at.line) + ")");
      }
      // No bound but the size: appending looks nothing up (a users file
      // of 1 MiB holds some 26000 [[user]] tables).
      e->v.items.push_back(std::move(fresh));
      current_ = &e->v.items.back();
    } else {
      if (!e) {
        e = add(*t, last, at);
        e->v = std::move(fresh);
      } else if (e->v.is_table() && e->v.implicit) {
        e->v.implicit = false;
        e->v.header = true;
      } else if (!e->v.is_table()) {
        fail(last.at, joined(path, path.size()) + " is already " + describe(e->v.type) + " (line " +
                          std::to_string(e->at.line) + "), not a table");
      } else {
        fail(at, "table [" + joined(path, path.size()) + "] is defined twice (also on line " +
                     std::to_string(e->at.line) + ")");
      }
      current_ = &e->v;
    }
    current_depth_ = static_cast<int>(path.size());
  }

  entry* add(value& t, const key_part& key, position at) {
    if (t.entries.size() >= k_max_entries)
      fail(key.at, "a table of more than " + std::to_string(k_max_entries) + " keys");
    t.entries.push_back(entry{key.text, at, {}});
    return &t.entries.back();
  }

  /// A bare word that is no number: never quoted back (it may be a secret).
  static constexpr const char* k_not_a_value =
      "a bare value that is neither an integer nor true/false (a string is written in quotes: \"...\")";

  /// KEY = VALUE into `t` (dotted keys make tables inside it).
  void key_value(value& t, int depth) {
    const auto at = pos_;
    auto path = key_path(depth);
    if (peek() != '=')
      // The key is not quoted: a stray line may be a secret (a token pasted
      // alone), and errors reach terminals and logs.
      fail(pos_, "expected '=' after the key, found " + found());
    next();
    skip_blanks_no_comment();
    value* into = &t;
    for (std::size_t k = 0; k + 1 < path.size(); ++k) {
      entry* e = find_mut(*into, path[k].text);
      if (!e) {
        e = add(*into, path[k], path[k].at);
        e->v.type = value::kind::table;
        e->v.dotted = true;
        e->v.sealed = t.sealed;
        e->v.at = path[k].at;
      } else if (!e->v.is_table() || !e->v.dotted) {
        fail(path[k].at, joined(path, k + 1) + " is already defined (line " + std::to_string(e->at.line) +
                             "); a dotted key cannot add to it");
      }
      into = &e->v;
    }
    const auto& last = path.back();
    if (const entry* e = find_mut(*into, last.text))
      fail(at, joined(path, path.size()) + " given twice (also on line " + std::to_string(e->at.line) + ")");
    value v;
    parse_value(v, depth + static_cast<int>(path.size()));
    add(*into, last, last.at)->v = std::move(v);
  }

  // ---- values ----
  void parse_value(value& out, int depth) {
    out.at = pos_;
    if (depth > bounds_.max_depth)
      fail(pos_, "values nested more than " + std::to_string(bounds_.max_depth) + " deep");
    const char c = peek();
    if (c == '"' || c == '\'') {
      out.type = value::kind::string;
      if (looking_at("\"\"\""))
        out.text = multi_line_string('"');
      else if (looking_at("'''"))
        out.text = multi_line_string('\'');
      else
        out.text = c == '"' ? basic_string(bounds_.max_string) : literal_string(bounds_.max_string);
    } else if (c == '[') {
      array(out, depth);
    } else if (c == '{') {
      inline_table(out, depth);
    } else if (looking_at("true") && !bare_key_char(peek(4))) {
      out.type = value::kind::boolean;
      out.boolean = true;
      for (int k = 0; k < 4; ++k)
        next();
    } else if (looking_at("false") && !bare_key_char(peek(5))) {
      out.type = value::kind::boolean;
      for (int k = 0; k < 5; ++k)
        next();
    } else if ((c >= '0' && c <= '9') || c == '+' || c == '-' || looking_at("inf") || looking_at("nan")) {
      number(out);
    } else {
      fail(pos_, "expected a value (a \"string\", an integer, true, false, [an array] or {a table}), found " + found());
    }
  }

  void number(value& out) {
    const auto at = pos_;
    std::string token;
    while (bare_key_char(peek()) || peek() == '+' || peek() == '.' || peek() == ':') {
      if (token.size() > 64)
        fail(at, "a number longer than 64 characters");
      token += peek();
      next();
    }
    std::string_view s = token;
    bool negative = false;
    const bool signed_ = !s.empty() && (s[0] == '+' || s[0] == '-');
    if (signed_) {
      negative = s[0] == '-';
      s.remove_prefix(1);
    }
    unsigned base = 10;
    if (s.size() > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b')) {
      if (signed_)
        fail(at, "a hexadecimal, octal or binary integer cannot have a sign");
      base = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 2;
      s.remove_prefix(2);
    } else if (s == "inf" || s == "nan" ||
               (s.find_first_of(".eE") != std::string_view::npos &&
                s.find_first_not_of("0123456789_.eE+-") == std::string_view::npos)) {
      fail(at, "a floating-point number: not supported here (write an integer)");
    } else if (s.find_first_of("-:T") != std::string_view::npos) {
      fail(at, "a date or time: not supported here (write it as a \"string\")");
    }
    if (base == 10 && s.size() > 1 && s[0] == '0')
      fail(at, "an integer with a leading zero");
    std::uint64_t v = 0;
    bool digit_before = false;
    for (std::size_t k = 0; k < s.size(); ++k) {
      const char c = s[k];
      if (c == '_') {
        if (!digit_before || k + 1 == s.size() || s[k + 1] == '_')
          fail(at, "'_' in an integer must stand between digits");
        continue;
      }
      unsigned d = 99;
      if (hex_digit(c))
        d = static_cast<unsigned>(hex_value(c));
      if (d >= base)
        fail(at, k_not_a_value);
      if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v))
        fail(at, "an integer out of range (a signed 64-bit integer)");
      digit_before = true;
    }
    if (!digit_before)
      fail(at, k_not_a_value);
    const std::uint64_t max = negative ? (std::uint64_t{1} << 63) : (std::uint64_t{1} << 63) - 1;
    if (v > max)
      fail(at, "an integer out of range (a signed 64-bit integer)");
    out.type = value::kind::integer;
    out.integer = negative ? static_cast<std::int64_t>(0 - v) : static_cast<std::int64_t>(v);
  }

  void append(std::string& s, char c, position start, std::size_t max) {
    if (s.size() >= max)
      fail(start, "a string longer than " + std::to_string(max) + " bytes");
    s += c;
  }

  /// At a backslash in a basic string: the escape, appended to `s`.
  void escape(std::string& s, position start, std::size_t max) {
    const auto at = pos_;
    next();
    const char c = peek();
    const char* simple = nullptr;
    switch (c) {
    case 'b':
      simple = "\b";
      break;
    case 't':
      simple = "\t";
      break;
    case 'n':
      simple = "\n";
      break;
    case 'f':
      simple = "\f";
      break;
    case 'r':
      simple = "\r";
      break;
    case '"':
      simple = "\"";
      break;
    case '\\':
      simple = "\\";
      break;
    default:
      break;
    }
    if (simple) {
      append(s, *simple, start, max);
      next();
      return;
    }
    if (c != 'u' && c != 'U')
      fail(at, "unsupported escape in a string (use 'single quotes' for text with backslashes)");
    const int digits = c == 'u' ? 4 : 8;
    next();
    std::uint32_t cp = 0;
    for (int k = 0; k < digits; ++k) {
      if (!hex_digit(peek()))
        fail(at, std::string("\\") + c + " needs " + std::to_string(digits) + " hex digits");
      cp = (cp << 4) | static_cast<std::uint32_t>(hex_value(peek()));
      next();
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      fail(at, std::string("\\") + c + " escape that is not a Unicode scalar value");
    if (s.size() + 4 > max)
      fail(start, "a string longer than " + std::to_string(max) + " bytes");
    append_utf8(s, cp);
  }

  std::string basic_string(std::size_t max) {
    const auto start = pos_;
    next();
    std::string s;
    for (;;) {
      if (done() || at_newline() || peek() == '\n')
        fail(start, "a string that does not end on its line");
      const char c = peek();
      if (c == '"') {
        next();
        return s;
      }
      if (c == '\\') {
        escape(s, start, max);
        continue;
      }
      if (control(c))
        fail(pos_, "a control character in a string");
      append(s, c, start, max);
      next();
    }
  }

  std::string literal_string(std::size_t max) {
    const auto start = pos_;
    next();
    std::string s;
    for (;;) {
      if (done() || at_newline() || peek() == '\n')
        fail(start, "a string that does not end on its line");
      const char c = peek();
      if (c == '\'') {
        next();
        return s;
      }
      if (control(c))
        fail(pos_, "a control character in a string");
      append(s, c, start, max);
      next();
    }
  }

  /// """...""" or '''...''' (a newline right after the opening is dropped).
  std::string multi_line_string(char quote) {
    const auto start = pos_;
    for (int k = 0; k < 3; ++k)
      next();
    if (at_newline())
      newline();
    std::string s;
    for (;;) {
      if (done())
        fail(start, "a multi-line string without its closing " + std::string(3, quote));
      const char c = peek();
      if (c == quote && peek(1) == quote && peek(2) == quote) {
        int n = 0;
        while (peek() == quote && n < 6) {
          next();
          ++n;
        }
        if (n > 5)
          fail(start, "too many quotes at the end of a multi-line string");
        for (int k = 3; k < n; ++k)
          append(s, quote, start, bounds_.max_string);
        return s;
      }
      if (at_newline()) {
        newline();
        append(s, '\n', start, bounds_.max_string);
        continue;
      }
      if (c == '\\' && quote == '"') {
        // A line-ending backslash drops the newline and the blanks after it.
        std::size_t k = 1;
        while (peek(k) == ' ' || peek(k) == '\t')
          ++k;
        if (peek(k) == '\n' || (peek(k) == '\r' && peek(k + 1) == '\n')) {
          next();
          while (peek() == ' ' || peek() == '\t' || at_newline())
            at_newline() ? newline() : next();
          continue;
        }
        escape(s, start, bounds_.max_string);
        continue;
      }
      if (control(c))
        fail(pos_, "a control character in a string");
      append(s, c, start, bounds_.max_string);
      next();
    }
  }

  void array(value& out, int depth) {
    const auto start = pos_;
    out.type = value::kind::array;
    out.sealed = true;
    next();
    for (;;) {
      skip_blanks_and_newlines();
      if (done())
        fail(start, "a list without its closing ']'");
      if (peek() == ']') {
        next();
        return;
      }
      if (out.items.size() >= k_max_entries)
        fail(start, "a list of more than " + std::to_string(k_max_entries) + " items");
      value item;
      parse_value(item, depth + 1);
      out.items.push_back(std::move(item));
      skip_blanks_and_newlines();
      if (done())
        fail(start, "a list without its closing ']'");
      if (peek() == ',')
        next();
      else if (peek() != ']')
        fail(pos_, "expected ',' or ']' in the list, found " + found());
    }
  }

  void inline_table(value& out, int depth) {
    const auto start = pos_;
    out.type = value::kind::table;
    out.sealed = true;
    next();
    skip_blanks_no_comment();
    if (peek() == '}') {
      next();
      return;
    }
    for (;;) {
      if (done() || at_newline())
        fail(start, "an inline table { ... } must end on its line");
      key_value(out, depth + 1);
      skip_blanks_no_comment();
      if (peek() == '}') {
        next();
        return;
      }
      if (peek() != ',')
        fail(pos_, "expected ',' or '}' in the inline table, found " + found());
      next();
      skip_blanks_no_comment();
    }
  }

  std::string_view text_;
  limits bounds_;
  std::size_t i_ = 0;
  position pos_;
  value root_;
  value* current_ = nullptr; // the table keys go into: root_ or the last header's
  int current_depth_ = 0;
};

} // namespace

const entry* value::find(std::string_view key) const {
  for (const auto& e : entries)
    if (e.key == key)
      return &e;
  return nullptr;
}

const char* describe(value::kind k) {
  switch (k) {
  case value::kind::string:
    return "a string";
  case value::kind::integer:
    return "an integer";
  case value::kind::boolean:
    return "a boolean";
  case value::kind::array:
    return "an array";
  case value::kind::table:
    return "a table";
  }
  return "a value";
}

std::string shown_key(std::string_view key) {
  std::string out;
  for (const char c : key.substr(0, 64)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out += c;
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += std::string("\\x") + hex[u >> 4] + hex[u & 15];
    }
  }
  if (key.size() > 64)
    out += "...";
  return out;
}

std::string located(std::string_view source, position at, std::string_view what) {
  return std::string(source) + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": " +
         std::string(what);
}

expected<value> parse(std::string_view text, std::string_view source, const limits& bounds) {
  if (text.size() > bounds.max_size)
    return expected<value>::failure(std::string(source) + ": larger than " + std::to_string(bounds.max_size) +
                                    " bytes");
  if (text.starts_with("\xEF\xBB\xBF"))
    text.remove_prefix(3);
  try {
    return parser(text, bounds).run();
  } catch (const failure& f) {
    return expected<value>::failure(located(source, f.at, f.what));
  }
}

} // namespace warren::toml
