#include "tunnel/users.hpp"

#include "core/toml.hpp"

#include <algorithm>
#include <map>

// The users file is read by core/toml (a reader of our own, bounded and
// fuzzed): toml++ 3.3 (Debian 12) reaches undefined behaviour on some
// malformed input (an assertion in parse_key after "[:", an unreachable
// branch for U+FDFF), which fuzz_users found at once.

namespace warren::tunnel {

namespace {

constexpr std::size_t k_max_string = 4096;

/// Errors as "SOURCE:LINE:COLUMN: what".
struct locator {
  std::string_view source;
  std::string error(toml::position p, const std::string& what) const { return toml::located(source, p, what); }
};

bool hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/// A token as a header carries it: printable ASCII, no spaces.
bool valid_token(std::string_view t) {
  return !t.empty() && t.size() <= 4096 && std::all_of(t.begin(), t.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

using failure = expected<users_file>;

/// One [[user]] table into `out`; an error sentence (with its position) or empty.
std::string parse_user(const toml::value& t, const locator& lx, user_entry& out) {
  out.line = t.at.line;
  const toml::entry* credential = nullptr;
  for (const auto& e : t.entries) {
    const auto* s = e.v.is_string() ? &e.v : nullptr;
    const auto at = [&](const std::string& what) { return lx.error(e.at, what); };
    if (s && s->text.size() > k_max_string)
      return lx.error(e.v.at, "a string longer than 4096 bytes");
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
      if (!e.v.is_array() || !std::all_of(e.v.items.begin(), e.v.items.end(),
                                          [](const toml::value& v) { return v.is_string(); }))
        return at("allow must be a list of rules, e.g. allow = [\"10.0.0.0/8:22\"]");
      std::vector<allow_rule> rules;
      for (const auto& item : e.v.items) {
        auto rule = parse_allow_rule(item.text);
        if (!rule)
          return lx.error(item.at, rule.error());
        rules.push_back(std::move(rule).value());
      }
      out.allow = std::move(rules);
    } else {
      return at("unknown key '" + toml::shown_key(e.key) + "' (a user has name, token / token_sha256 / token_file, allow)");
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
  auto doc = toml::parse(text, source);
  if (!doc)
    return failure::failure(doc.error());
  const locator lx{source};
  // The file holds [[user]] tables and nothing else.
  const toml::value* user_tables = nullptr;
  for (const auto& e : doc->entries) {
    if (e.key == "user" && e.v.table_array)
      user_tables = &e.v;
    else if (e.v.is_table() || e.v.table_array)
      return failure::failure(lx.error(e.at, "expected [[user]] (the file holds [[user]] tables)"));
    else
      return failure::failure(lx.error(e.at, "'" + toml::shown_key(e.key) + "' outside a [[user]] table"));
  }
  static const std::vector<toml::value> none;
  const auto& tables = user_tables ? user_tables->items : none;
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
