#include "tunnel/server_access.hpp"

#include "tunnel/users.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace warren::tunnel {

namespace {

constexpr std::size_t k_max_file = 1u << 20; // users and allow files: 1 MiB is thousands of entries

std::string octal(unsigned mode) {
  std::ostringstream o;
  o << '0' << std::oct << mode;
  return o.str();
}

/// A token as a header carries it: printable ASCII, no spaces (as `token =`).
bool valid_token(std::string_view t) {
  return !t.empty() && t.size() <= 4096 && std::all_of(t.begin(), t.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

/// A token file's first line, trimmed (as the client reads its --token-file).
expected<std::string> read_token_file(const std::string& path, std::vector<std::string>& warnings) {
  using result = expected<std::string>;
  auto file = read_access_file(path, "token file", 64 * 1024, warnings);
  if (!file)
    return result::failure(file.error());
  std::string_view text = file->text;
  if (text.starts_with("\xEF\xBB\xBF"))
    return result::failure("token file " + printable(path) + " starts with a byte order mark; save it as plain ASCII");
  std::string token(text.substr(0, text.find('\n')));
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ' || token.back() == '\t'))
    token.pop_back();
  if (token.empty())
    return result::failure("token file " + printable(path) + " is empty");
  if (!valid_token(token))
    return result::failure("token file " + printable(path) +
                           ": the token must be 1-4096 printable characters without spaces");
  if ((file->mode & 077) != 0)
    warnings.push_back("token file " + printable(path) + " is readable by other users; chmod 600 it");
  return token;
}

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

/// At most k_listed names, then "and N more".
std::string join(const std::vector<std::string>& names) {
  constexpr std::size_t k_listed = 10;
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < k_listed; ++i)
    out += (out.empty() ? "" : ", ") + names[i];
  if (names.size() > k_listed)
    out += " and " + std::to_string(names.size() - k_listed) + " more";
  return out;
}

std::vector<std::string> rule_texts(const destination_policy& p) {
  std::vector<std::string> out;
  for (const auto& r : p.rules())
    out.push_back(r.text);
  return out;
}

} // namespace

std::string printable(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || (u >= 0x80 && u < 0xa0)) {
      // C1 controls are matched as single bytes too: a terminal may take
      // a lone 0x9b as CSI, whatever the encoding.
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}

expected<access_file> read_access_file(const std::string& path, std::string_view what, std::size_t max,
                                       std::vector<std::string>& warnings) {
  using result = expected<access_file>;
  const std::string named = std::string(what) + " " + printable(path);
  // O_NONBLOCK: opening a FIFO must not wait for a writer; symlinks are
  // followed (certbot's live/ paths are symlinks).
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return result::failure("cannot read " + named + ": " + std::strerror(errno));
  struct closer {
    int handle;
    ~closer() { ::close(handle); }
  } close_it{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return result::failure("cannot read " + named + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode))
    return result::failure(named + " is a directory");
  if (!S_ISREG(st.st_mode))
    return result::failure(named + " is not a regular file (a FIFO, device or socket)");
  access_file out;
  out.mode = static_cast<unsigned>(st.st_mode & 0777);
  if ((out.mode & 002) != 0)
    return result::failure(named + " is writable by every user (mode " + octal(out.mode) + "): chmod o-w it");
  if ((out.mode & 020) != 0)
    warnings.push_back(named + " is writable by its group (mode " + octal(out.mode) + "); chmod g-w it");
  out.text.resize(max + 1);
  std::size_t got = 0;
  while (got < out.text.size()) {
    const auto n = ::read(fd, out.text.data() + got, out.text.size() - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return result::failure("cannot read " + named + ": " + std::strerror(errno));
    if (n == 0)
      break;
    got += static_cast<std::size_t>(n);
  }
  if (got > max)
    return result::failure(named + " is larger than " + std::to_string(max / 1024) + " KiB");
  out.text.resize(got);
  return out;
}

std::shared_ptr<const destination_policy> server_access::policy_for(std::string_view user) const {
  if (auto it = user_policies.find(user); it != user_policies.end())
    return it->second;
  return policy;
}

expected<server_access> load_access(const access_sources& s, std::vector<std::string>& warnings) {
  std::vector<std::string> errors;
  auto out = load_access(s, warnings, errors);
  warnings.insert(warnings.end(), errors.begin(), errors.end());
  return out;
}

expected<server_access> load_access(const access_sources& s, std::vector<std::string>& warnings,
                                    std::vector<std::string>& errors) {
  using result = expected<server_access>;
  server_access out;
  auto users = std::make_shared<transport::user_table>();
  std::unordered_set<std::string> names;
  std::set<transport::user_table::digest> digests;
  auto add_user = [&](const std::string& name, const transport::user_table::digest& d,
                      const std::string& where) -> std::string {
    if (names.contains(name))
      return where + "user " + name + " is defined twice";
    if (!digests.insert(d).second)
      return where + "user " + name + " has the same token as another user; each user needs a token of their own";
    names.insert(name);
    users->add(name, d);
    return {};
  };

  if (!s.users_file.empty()) {
    auto file = read_access_file(s.users_file, "users file", k_max_file, warnings);
    if (!file)
      return result::failure(file.error());
    auto parsed = parse_users_file(file->text, s.users_file);
    if (!parsed)
      return result::failure(printable(parsed.error()));
    if (parsed->holds_tokens && (file->mode & 077) != 0)
      return result::failure("users file " + printable(s.users_file) +
                             " holds tokens and is readable by other users (mode " + octal(file->mode) +
                             "): chmod 600 it, or store token_sha256 instead of token");
    for (const auto& u : parsed->users) {
      const std::string where = printable(s.users_file) + ":" + std::to_string(u.line) + ": ";
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
        if (!token) {
          // Not the whole load: the rest (an admin's revocation among it)
          // must not wait on one user's file.
          errors.push_back(where + "user " + u.name + ": " + token.error() + ": revoked until it can be read");
          continue;
        }
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
    const std::string where =
        s.token_file.empty() ? "WARREN_TOKEN: " : "--token-file " + printable(s.token_file) + ": ";
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
    auto file = read_access_file(s.allow_file, "allow file", k_max_file, warnings);
    if (!file)
      return result::failure(file.error());
    auto rules = parse_allow_file(file->text, s.allow_file);
    if (!rules)
      return result::failure(printable(rules.error()));
    for (auto& r : *rules)
      policy->add(std::move(r));
  }
  out.policy = std::move(policy);

  if (s.uses_tls) {
    // OpenSSL opens these itself (and would block on a FIFO): check first.
    for (const auto* f : {&s.tls.cert_file, &s.tls.key_file, &s.tls.client_ca_file}) {
      if (f->empty())
        continue;
      if (auto file = read_access_file(*f, "TLS file", k_max_file, warnings); !file)
        return result::failure(file.error());
    }
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
  std::unordered_map<std::string_view, const transport::user_table::user*> old_users;
  old_users.reserve(before.users->users().size());
  for (const auto& u : before.users->users())
    old_users.emplace(u.name, &u);
  std::unordered_set<std::string_view> kept;
  for (const auto& u : after.users->users()) {
    const auto found = old_users.find(u.name);
    if (found == old_users.end()) {
      c.added.push_back(u.name);
      continue;
    }
    kept.insert(u.name);
    if (found->second->token_sha256 != u.token_sha256)
      c.revoked.push_back(u.name);
    const auto a = before.user_policies.find(u.name);
    const auto b = after.user_policies.find(u.name);
    const bool had = a != before.user_policies.end();
    const bool has = b != after.user_policies.end();
    if (had != has || (had && rule_texts(*a->second) != rule_texts(*b->second)))
      c.rules_changed.push_back(u.name);
  }
  for (const auto& u : before.users->users())
    if (!kept.contains(u.name))
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
