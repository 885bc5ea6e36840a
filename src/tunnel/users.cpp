#include "tunnel/users.hpp"

// Header-only, exceptions off: toml::parse returns a parse_result (no throw
// on bad input). Only this file includes toml++.
#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
#define TOML_ENABLE_FORMATTERS 0
#include <toml++/toml.h>

#include <algorithm>
#include <map>

namespace warren::tunnel {

namespace {

std::string where(std::string_view source, const toml::source_region& r) {
  return std::string(source) + ":" + std::to_string(r.begin.line) + ":" + std::to_string(r.begin.column) + ": ";
}

bool hex_digit(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/// A token as a header carries it: printable ASCII, no spaces.
bool valid_token(std::string_view t) {
  return !t.empty() && t.size() <= 4096 && std::all_of(t.begin(), t.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

using failure = expected<users_file>;

/// One [[user]] table into `out`; an error sentence (with its position) or empty.
std::string parse_user(const toml::table& t, std::string_view source, user_entry& out) {
  out.line = static_cast<int>(t.source().begin.line);
  const toml::node* credential = nullptr;
  std::string credential_key;
  for (auto&& [key, value] : t) {
    const std::string k(key.str());
    const auto at = where(source, key.source());
    if (k == "name") {
      const auto* s = value.as_string();
      if (!s)
        return at + "name must be a string";
      if (!valid_user_name(s->get()))
        return at + "user name '" + s->get() + "' is not 1-64 of letters, digits, '.', '_', '-', '@'";
      out.name = s->get();
    } else if (k == "token" || k == "token_sha256" || k == "token_file") {
      if (credential)
        return at + "a user has one of token, token_sha256, token_file (" + credential_key + " given already)";
      credential = &value;
      credential_key = k;
      const auto* s = value.as_string();
      if (!s)
        return at + k + " must be a string";
      const std::string& v = s->get();
      if (k == "token") {
        if (!valid_token(v))
          return at + "token must be 1-4096 printable characters without spaces";
        out.kind = user_entry::credential::token;
        out.secret = v;
      } else if (k == "token_sha256") {
        if (v.size() != 64 || !std::all_of(v.begin(), v.end(), hex_digit))
          return at + "token_sha256 must be 64 hex digits (the output of: printf %s TOKEN | sha256sum)";
        out.kind = user_entry::credential::sha256;
        out.secret = v;
        std::transform(out.secret.begin(), out.secret.end(), out.secret.begin(),
                       [](char c) { return c >= 'A' && c <= 'F' ? static_cast<char>(c - 'A' + 'a') : c; });
      } else {
        if (v.empty() || v.find('\0') != std::string::npos)
          return at + "token_file must be a path";
        out.kind = user_entry::credential::file;
        out.secret = v;
      }
    } else if (k == "allow") {
      const auto* list = value.as_array();
      if (!list)
        return at + "allow must be a list of rules, e.g. allow = [\"10.0.0.0/8:22\"]";
      std::vector<allow_rule> rules;
      for (const auto& item : *list) {
        const auto* s = item.as_string();
        const auto item_at = where(source, item.source());
        if (!s)
          return item_at + "an allow rule must be a string";
        auto rule = parse_allow_rule(s->get());
        if (!rule)
          return item_at + rule.error();
        rules.push_back(std::move(rule).value());
      }
      out.allow = std::move(rules);
    } else {
      return at + "unknown key '" + k + "' (a user has name, token / token_sha256 / token_file, allow)";
    }
  }
  const auto at = where(source, t.source());
  if (out.name.empty())
    return at + "a [[user]] without a name";
  if (!credential)
    return at + "user " + out.name + " has no token, token_sha256 or token_file";
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
  const std::string path(source);
  auto parsed = toml::parse(text, path);
  if (!parsed) {
    const auto& e = parsed.error();
    return failure::failure(where(source, e.source()) + std::string(e.description()));
  }
  const toml::table& root = parsed.table();
  users_file out;
  std::map<std::string, int> names;                                  // name -> line
  std::map<std::pair<user_entry::credential, std::string>, std::string> secrets; // -> name
  for (auto&& [key, value] : root) {
    const auto at = where(source, key.source());
    if (key.str() != "user")
      return failure::failure(at + "unknown key '" + std::string(key.str()) + "' (the file holds [[user]] tables)");
    const auto* list = value.as_array();
    if (!list || !list->is_array_of_tables())
      return failure::failure(at + "'user' must be [[user]] tables");
    for (const auto& node : *list) {
      user_entry u;
      if (auto why = parse_user(*node.as_table(), source, u); !why.empty())
        return failure::failure(why);
      const auto uat = where(source, node.source());
      if (auto [it, fresh] = names.emplace(u.name, u.line); !fresh)
        return failure::failure(uat + "user " + u.name + " is defined twice (also on line " +
                                std::to_string(it->second) + ")");
      if (auto [it, fresh] = secrets.emplace(std::pair{u.kind, u.secret}, u.name); !fresh)
        return failure::failure(uat + "user " + u.name + " has the same " +
                                (u.kind == user_entry::credential::file ? "token_file" : "token") + " as user " +
                                it->second + "; each user needs a token of their own");
      out.holds_tokens = out.holds_tokens || u.kind == user_entry::credential::token;
      out.users.push_back(std::move(u));
    }
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
      return result::failure(std::string(source) + ":" + std::to_string(line_no) +
                             ": one rule per line ('" + std::string(line.substr(0, 80)) + "' holds a space)");
    auto rule = parse_allow_rule(line);
    if (!rule)
      return result::failure(std::string(source) + ":" + std::to_string(line_no) + ": " + rule.error());
    rules.push_back(std::move(rule).value());
  }
  return rules;
}

} // namespace warren::tunnel
