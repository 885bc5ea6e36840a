#include "tunnel/server_access.hpp"

#include "tunnel/users.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace warren::tunnel {

namespace {

constexpr std::size_t k_max_file = 1u << 20; // users and allow files: 1 MiB is thousands of entries

expected<std::string> read_file(const std::string& path, std::string_view what) {
  using result = expected<std::string>;
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return result::failure("cannot read " + std::string(what) + " " + path);
  std::string text(k_max_file + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > k_max_file)
    return result::failure(std::string(what) + " " + path + " is larger than 1 MiB");
  return text;
}

/// The mode bits others have on `path`, or 0.
unsigned others_mode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<unsigned>(st.st_mode & 0777) : 0;
}

std::string octal(unsigned mode) {
  std::ostringstream o;
  o << '0' << std::oct << mode;
  return o.str();
}

/// A token file's first line, trimmed (as the client reads its --token-file).
expected<std::string> read_token_file(const std::string& path, std::vector<std::string>& warnings) {
  using result = expected<std::string>;
  auto text = read_file(path, "token file");
  if (!text)
    return result::failure(text.error());
  std::string token = text->substr(0, text->find('\n'));
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ' || token.back() == '\t'))
    token.pop_back();
  if (token.empty())
    return result::failure("token file " + path + " is empty");
  if ((others_mode(path) & 077) != 0)
    warnings.push_back("token file " + path + " is readable by other users; chmod 600 it");
  return token;
}

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names)
    out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::vector<std::string> rule_texts(const destination_policy& p) {
  std::vector<std::string> out;
  for (const auto& r : p.rules())
    out.push_back(r.text);
  return out;
}

} // namespace

std::shared_ptr<const destination_policy> server_access::policy_for(std::string_view user) const {
  if (auto it = user_policies.find(user); it != user_policies.end())
    return it->second;
  return policy;
}

expected<server_access> load_access(const access_sources& s, std::vector<std::string>& warnings) {
  using result = expected<server_access>;
  server_access out;
  auto users = std::make_shared<transport::user_table>();
  std::set<transport::user_table::digest> digests;
  auto add_user = [&](const std::string& name, const transport::user_table::digest& d,
                      const std::string& where) -> std::string {
    if (users->find(name))
      return where + "user " + name + " is defined twice";
    if (!digests.insert(d).second)
      return where + "user " + name + " has the same token as another user; each user needs a token of their own";
    users->add(name, d);
    return {};
  };

  if (!s.users_file.empty()) {
    auto text = read_file(s.users_file, "users file");
    if (!text)
      return result::failure(text.error());
    auto parsed = parse_users_file(*text, s.users_file);
    if (!parsed)
      return result::failure(parsed.error());
    if (const auto mode = others_mode(s.users_file); parsed->holds_tokens && (mode & 077) != 0)
      return result::failure("users file " + s.users_file + " holds tokens and is readable by other users (mode " +
                             octal(mode) + "): chmod 600 it, or store token_sha256 instead of token");
    for (const auto& u : parsed->users) {
      const std::string where = s.users_file + ":" + std::to_string(u.line) + ": ";
      transport::user_table::digest d{};
      switch (u.kind) {
      case user_entry::credential::token:
        d = transport::user_table::hash(u.secret);
        break;
      case user_entry::credential::sha256:
        d = *transport::user_table::parse_digest(u.secret);
        break;
      case user_entry::credential::file: {
        const std::string path = u.secret.starts_with('/') ? u.secret : directory_of(s.users_file) + u.secret;
        auto token = read_token_file(path, warnings);
        if (!token)
          return result::failure(where + "user " + u.name + ": " + token.error());
        d = transport::user_table::hash(*token);
        break;
      }
      }
      if (auto why = add_user(u.name, d, where); !why.empty())
        return result::failure(why);
      if (u.allow) {
        auto p = std::make_shared<destination_policy>();
        for (const auto& r : *u.allow)
          p->add(r);
        out.user_policies.emplace(u.name, std::move(p));
      }
    }
  }
  std::string token;
  if (!s.token_file.empty()) {
    auto t = read_token_file(s.token_file, warnings);
    if (!t)
      return result::failure(t.error());
    token = *t;
  } else {
    token = s.token_env;
  }
  if (!token.empty()) {
    const std::string where = s.token_file.empty() ? "WARREN_TOKEN: " : "--token-file " + s.token_file + ": ";
    if (auto why = add_user(k_default_user, transport::user_table::hash(token), where); !why.empty())
      return result::failure(why);
  }
  if (users->users().empty())
    return result::failure(
        "no users: pass --users-file FILE or --token-file FILE, or set WARREN_TOKEN (clients must present a token)");
  out.users = std::move(users);

  auto policy = std::make_shared<destination_policy>();
  for (const auto& rule : s.allow) {
    auto r = parse_allow_rule(rule);
    if (!r)
      return result::failure(r.error());
    policy->add(*r);
  }
  if (!s.allow_file.empty()) {
    auto text = read_file(s.allow_file, "allow file");
    if (!text)
      return result::failure(text.error());
    auto rules = parse_allow_file(*text, s.allow_file);
    if (!rules)
      return result::failure(rules.error());
    for (auto& r : *rules)
      policy->add(std::move(r));
  }
  out.policy = std::move(policy);

  if (s.uses_tls) {
    auto fp = transport::certificate_fingerprint_file(s.tls.cert_file);
    if (!fp)
      return result::failure(fp.error());
    auto ctx = transport::make_server_context(s.tls);
    if (!ctx)
      return result::failure(ctx.error());
    out.tls = *ctx;
    out.fingerprint = *fp;
  }
  return out;
}

access_change diff_access(const server_access& before, const server_access& after) {
  access_change c;
  for (const auto& u : after.users->users()) {
    const auto* old = before.users->find(u.name);
    if (!old)
      c.added.push_back(u.name);
    else if (old->token_sha256 != u.token_sha256)
      c.revoked.push_back(u.name);
    if (!old)
      continue;
    const auto a = before.user_policies.find(u.name);
    const auto b = after.user_policies.find(u.name);
    const bool had = a != before.user_policies.end();
    const bool has = b != after.user_policies.end();
    if (had != has || (had && rule_texts(*a->second) != rule_texts(*b->second)))
      c.rules_changed.push_back(u.name);
  }
  for (const auto& u : before.users->users())
    if (!after.users->find(u.name))
      c.revoked.push_back(u.name);
  c.policy_changed = rule_texts(*before.policy) != rule_texts(*after.policy);
  c.certificate_replaced = before.fingerprint != after.fingerprint;
  return c;
}

std::string describe_reload(const access_change& c, const server_access& after) {
  std::vector<std::string> parts;
  if (!c.added.empty())
    parts.push_back(std::to_string(c.added.size()) + " added: " + join(c.added));
  if (!c.revoked.empty())
    parts.push_back(std::to_string(c.revoked.size()) + " revoked: " + join(c.revoked));
  if (!c.rules_changed.empty())
    parts.push_back(std::to_string(c.rules_changed.size()) + " with new rules: " + join(c.rules_changed));
  std::string line = std::to_string(after.users->users().size()) + " users";
  if (!parts.empty()) {
    line += " (";
    for (std::size_t i = 0; i < parts.size(); ++i)
      line += (i ? "; " : "") + parts[i];
    line += ")";
  }
  const auto rules = after.policy->rules().size();
  line += ", " + std::to_string(rules) + (rules == 1 ? " allow rule" : " allow rules") +
          (c.policy_changed ? " (changed)" : " (unchanged)");
  if (after.tls)
    line += c.certificate_replaced ? ", certificate replaced (fingerprint " + after.fingerprint + ")"
                                   : ", certificate unchanged";
  return line;
}

} // namespace warren::tunnel
