#include "tunnel/users.hpp"

#include <algorithm>
#include <map>
#include <variant>

// The users file is read by a parser of its own for the TOML subset it
// needs ([[user]] tables of strings and lists of strings, comments), not by
// toml++: toml++ 3.3 (Debian 12) reaches undefined behaviour on some
// malformed input (an assertion in parse_key after "[:", an unreachable
// branch for U+FDFF), which fuzz_users found at once.

namespace warren::tunnel {

namespace {

struct position {
  int line = 1;
  int column = 1;
};

struct string_value {
  std::string text;
  position at;
};
using value = std::variant<string_value, std::vector<string_value>>;

struct entry {
  std::string key;
  position at;
  value v;
};

struct table {
  position at;
  std::vector<entry> entries;
};

/// A cursor over the file: knows its line and column, skips blanks and comments.
class lexer {
 public:
  lexer(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  bool done() const { return i_ >= text_.size(); }
  char peek() const { return done() ? '\0' : text_[i_]; }
  position at() const { return pos_; }
  void next() {
    if (done())
      return;
    if (text_[i_] == '\n') {
      ++pos_.line;
      pos_.column = 1;
    } else {
      ++pos_.column;
    }
    ++i_;
  }
  /// Spaces, tabs and a comment up to (not including) the end of the line.
  void skip_blanks() {
    while (peek() == ' ' || peek() == '\t')
      next();
    if (peek() == '#')
      while (!done() && peek() != '\n')
        next();
  }
  /// Blanks, comments and newlines (inside a list, between tables).
  void skip_blanks_and_newlines() {
    for (;;) {
      skip_blanks();
      if (peek() == '\n' || (peek() == '\r' && i_ + 1 < text_.size() && text_[i_ + 1] == '\n'))
        next();
      else
        return;
    }
  }
  /// The end of a line: only blanks and a comment may come before it.
  std::string end_of_line() {
    skip_blanks();
    if (peek() == '\r')
      next();
    if (done())
      return {};
    if (peek() != '\n')
      return error(at(), "expected the end of the line, found '" + shown(peek()) + "'");
    next();
    return {};
  }
  std::string error(position p, const std::string& what) const {
    return std::string(source_) + ":" + std::to_string(p.line) + ":" + std::to_string(p.column) + ": " + what;
  }
  static std::string shown(char c) {
    if (c >= 0x20 && c < 0x7f)
      return std::string(1, c);
    static constexpr char hex[] = "0123456789abcdef";
    const auto u = static_cast<unsigned char>(c);
    return std::string("\\x") + hex[u >> 4] + hex[u & 15];
  }

 private:
  std::string_view text_;
  std::string_view source_;
  std::size_t i_ = 0;
  position pos_;
};

bool bare_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

constexpr std::size_t k_max_string = 4096;

/// A "basic" (escapes \" \\ \t \n \r) or 'literal' string on one line.
std::string parse_string(lexer& lx, string_value& out) {
  out.at = lx.at();
  const char quote = lx.peek();
  lx.next();
  for (;;) {
    if (lx.done() || lx.peek() == '\n' || lx.peek() == '\r')
      return lx.error(out.at, "a string that does not end on its line");
    const char c = lx.peek();
    if (c == quote) {
      lx.next();
      return {};
    }
    if (static_cast<unsigned char>(c) < 0x20 && c != '\t')
      return lx.error(lx.at(), "a control character in a string");
    if (out.text.size() >= k_max_string)
      return lx.error(out.at, "a string longer than 4096 bytes");
    if (c == '\\' && quote == '"') {
      const auto esc_at = lx.at();
      lx.next();
      switch (lx.peek()) {
      case '"':
        out.text += '"';
        break;
      case '\\':
        out.text += '\\';
        break;
      case 't':
        out.text += '\t';
        break;
      case 'n':
        out.text += '\n';
        break;
      case 'r':
        out.text += '\r';
        break;
      default:
        return lx.error(esc_at, "unsupported escape in a string (use 'single quotes' for text with backslashes)");
      }
      lx.next();
      continue;
    }
    out.text += c;
    lx.next();
  }
}

std::string parse_value(lexer& lx, value& out) {
  const char c = lx.peek();
  if (c == '"' || c == '\'') {
    string_value s;
    auto why = parse_string(lx, s);
    out = std::move(s);
    return why;
  }
  if (c != '[')
    return lx.error(lx.at(), "expected a \"string\" or a list of strings [\"...\", ...]");
  const auto list_at = lx.at();
  lx.next();
  std::vector<string_value> items;
  for (;;) {
    lx.skip_blanks_and_newlines();
    if (lx.peek() == ']') {
      lx.next();
      break;
    }
    if (lx.peek() != '"' && lx.peek() != '\'')
      return lx.done() ? lx.error(list_at, "a list without its closing ']'")
                       : lx.error(lx.at(), "expected a \"string\" in the list");
    if (items.size() >= 4096)
      return lx.error(list_at, "a list of more than 4096 items");
    string_value s;
    if (auto why = parse_string(lx, s); !why.empty())
      return why;
    items.push_back(std::move(s));
    lx.skip_blanks_and_newlines();
    if (lx.peek() == ',') {
      lx.next();
    } else if (lx.peek() != ']') {
      return lx.done() ? lx.error(list_at, "a list without its closing ']'")
                       : lx.error(lx.at(), "expected ',' or ']' in the list");
    }
  }
  out = std::move(items);
  return {};
}

/// The file as [[user]] tables; an error sentence with its position, or empty.
std::string parse_tables(std::string_view text, std::string_view source, std::vector<table>& out) {
  if (text.starts_with("\xEF\xBB\xBF"))
    text.remove_prefix(3);
  lexer lx(text, source);
  for (;;) {
    lx.skip_blanks_and_newlines();
    if (lx.done())
      return {};
    const auto at = lx.at();
    if (lx.peek() == '[') {
      lx.next();
      const bool array = lx.peek() == '[';
      if (array)
        lx.next();
      lx.skip_blanks();
      std::string name;
      while (bare_key_char(lx.peek())) {
        name += lx.peek();
        lx.next();
      }
      lx.skip_blanks();
      const bool closed = array ? (lx.peek() == ']' && (lx.next(), lx.peek() == ']')) : lx.peek() == ']';
      if (!array || name != "user" || !closed)
        return lx.error(at, "expected [[user]] (the file holds [[user]] tables)");
      lx.next();
      out.push_back({at, {}});
      if (auto why = lx.end_of_line(); !why.empty())
        return why;
      continue;
    }
    if (!bare_key_char(lx.peek()))
      return lx.error(at, "expected a key or [[user]], found '" + lexer::shown(lx.peek()) + "'");
    entry e;
    e.at = at;
    while (bare_key_char(lx.peek()) && e.key.size() < 64) {
      e.key += lx.peek();
      lx.next();
    }
    lx.skip_blanks();
    if (lx.peek() != '=')
      return lx.error(lx.at(), "expected '=' after " + e.key);
    lx.next();
    lx.skip_blanks();
    if (auto why = parse_value(lx, e.v); !why.empty())
      return why;
    if (auto why = lx.end_of_line(); !why.empty())
      return why;
    if (out.empty())
      return lx.error(at, "'" + e.key + "' outside a [[user]] table");
    for (const auto& other : out.back().entries)
      if (other.key == e.key)
        return lx.error(at, e.key + " given twice (also on line " + std::to_string(other.at.line) + ")");
    out.back().entries.push_back(std::move(e));
  }
}

bool hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/// A token as a header carries it: printable ASCII, no spaces.
bool valid_token(std::string_view t) {
  return !t.empty() && t.size() <= 4096 && std::all_of(t.begin(), t.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

using failure = expected<users_file>;

/// One [[user]] table into `out`; an error sentence (with its position) or empty.
std::string parse_user(const table& t, const lexer& lx, user_entry& out) {
  out.line = t.at.line;
  const entry* credential = nullptr;
  for (const auto& e : t.entries) {
    const auto* s = std::get_if<string_value>(&e.v);
    const auto at = [&](const std::string& what) { return lx.error(e.at, what); };
    if (e.key == "name") {
      if (!s)
        return at("name must be a string");
      if (!valid_user_name(s->text))
        return at("user name '" + s->text.substr(0, 64) + "' is not 1-64 of letters, digits, '.', '_', '-', '@'");
      out.name = s->text;
    } else if (e.key == "token" || e.key == "token_sha256" || e.key == "token_file") {
      if (credential)
        return at("a user has one of token, token_sha256, token_file (" + credential->key + " given already)");
      credential = &e;
      if (!s)
        return at(e.key + " must be a string");
      const std::string& v = s->text;
      if (e.key == "token") {
        if (!valid_token(v))
          return at("token must be 1-4096 printable characters without spaces");
        out.kind = user_entry::credential::token;
        out.secret = v;
      } else if (e.key == "token_sha256") {
        if (v.size() != 64 || !std::all_of(v.begin(), v.end(), hex_digit))
          return at("token_sha256 must be 64 hex digits (the output of: printf %s TOKEN | sha256sum)");
        out.kind = user_entry::credential::sha256;
        out.secret = v;
        std::transform(out.secret.begin(), out.secret.end(), out.secret.begin(),
                       [](char c) { return c >= 'A' && c <= 'F' ? static_cast<char>(c - 'A' + 'a') : c; });
      } else {
        if (v.empty() || v.find('\0') != std::string::npos)
          return at("token_file must be a path");
        out.kind = user_entry::credential::file;
        out.secret = v;
      }
    } else if (e.key == "allow") {
      const auto* list = std::get_if<std::vector<string_value>>(&e.v);
      if (!list)
        return at("allow must be a list of rules, e.g. allow = [\"10.0.0.0/8:22\"]");
      std::vector<allow_rule> rules;
      for (const auto& item : *list) {
        auto rule = parse_allow_rule(item.text);
        if (!rule)
          return lx.error(item.at, rule.error());
        rules.push_back(std::move(rule).value());
      }
      out.allow = std::move(rules);
    } else {
      return at("unknown key '" + e.key + "' (a user has name, token / token_sha256 / token_file, allow)");
    }
  }
  if (out.name.empty())
    return lx.error(t.at, "a [[user]] without a name");
  if (!credential)
    return lx.error(t.at, "user " + out.name + " has no token, token_sha256 or token_file");
  return {};
}

} // namespace

bool valid_user_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == '@';
  });
}

expected<users_file> parse_users_file(std::string_view text, std::string_view source) {
  std::vector<table> tables;
  if (auto why = parse_tables(text, source, tables); !why.empty())
    return failure::failure(why);
  const lexer lx(text, source); // for error positions
  users_file out;
  std::map<std::string, int> names;                                              // name -> line
  std::map<std::pair<user_entry::credential, std::string>, std::string> secrets; // -> name
  for (const auto& t : tables) {
    user_entry u;
    if (auto why = parse_user(t, lx, u); !why.empty())
      return failure::failure(why);
    if (auto [it, fresh] = names.emplace(u.name, u.line); !fresh)
      return failure::failure(
          lx.error(t.at, "user " + u.name + " is defined twice (also on line " + std::to_string(it->second) + ")"));
    if (auto [it, fresh] = secrets.emplace(std::pair{u.kind, u.secret}, u.name); !fresh)
      return failure::failure(lx.error(t.at, "user " + u.name + " has the same " +
                                                 (u.kind == user_entry::credential::file ? "token_file" : "token") +
                                                 " as user " + it->second + "; each user needs a token of their own"));
    out.holds_tokens = out.holds_tokens || u.kind == user_entry::credential::token;
    out.users.push_back(std::move(u));
  }
  if (out.users.empty())
    return failure::failure(std::string(source) + ": no [[user]] in the file");
  return out;
}

expected<std::vector<allow_rule>> parse_allow_file(std::string_view text, std::string_view source) {
  using result = expected<std::vector<allow_rule>>;
  std::vector<allow_rule> rules;
  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (const auto hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
      line.remove_prefix(1);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r'))
      line.remove_suffix(1);
    if (line.empty())
      continue;
    if (line.find_first_of(" \t") != std::string_view::npos)
      return result::failure(std::string(source) + ":" + std::to_string(line_no) + ": one rule per line ('" +
                             std::string(line.substr(0, 80)) + "' holds a space)");
    auto rule = parse_allow_rule(line);
    if (!rule)
      return result::failure(std::string(source) + ":" + std::to_string(line_no) + ": " + rule.error());
    rules.push_back(std::move(rule).value());
  }
  return rules;
}

} // namespace warren::tunnel
