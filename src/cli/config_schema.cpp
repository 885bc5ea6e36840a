#include "cli/config_schema.hpp"

#include "cli/command.hpp"

#include "core/duration.hpp"
#include "core/log.hpp"
#include "net/address.hpp"
#include "net/happy_eyeballs.hpp"
#include "net/resolver.hpp"
#include "transport/forwarded.hpp"
#include "transport/proxy_config.hpp"
#include "transport/tls.hpp"
#include "transport/url.hpp"
#include "tunnel/forward.hpp"
#include "tunnel/policy.hpp"

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <optional>

namespace warren::cli {
namespace {

using toml::position;
using toml::value;

constexpr std::string_view k_kinds[] = {"relay", "client", "server", "tun"};

/// One key a section accepts, read from the subcommand's CLI11 options.
struct key_spec {
  std::string key;  // underscore form: token_file, url
  std::string flag; // --token-file; empty for a positional
  bool is_flag = false;
  bool multi = false;
  bool integer = false;
  bool size = false; // an integer, or a string with a unit ("64M")
};

std::string underscored(std::string s) {
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
}

} // namespace

std::function<int()> add_unit_command(CLI::App& app, std::string_view kind, std::function<std::string()>* check,
                                      unit_builder* build) {
  if (kind == "relay")
    return add_relay_command(app, check, build);
  if (kind == "client")
    return add_client_command(app, check, build);
  if (kind == "tun")
    return add_tun_command(app, check, build);
  return add_server_command(app, check, build);
}

namespace {

std::function<int()> add_command(CLI::App& app, std::string_view kind,
                                std::function<std::string()>* check = nullptr) {
  return add_unit_command(app, kind, check, nullptr);
}

/// The keys of `kind`, in the order the subcommand registers its options.
std::vector<key_spec> schema(std::string_view kind) {
  CLI::App app;
  const auto keep = add_command(app, kind); // holds what the options write into
  auto* sub = app.get_subcommand(std::string(kind));
  std::vector<key_spec> out;
  for (const CLI::Option* opt : sub->get_options()) {
    key_spec k;
    k.is_flag = opt->get_expected_max() == 0;
    k.multi = opt->get_items_expected_max() > 1;
    const auto type = opt->get_type_name();
    k.integer = type.starts_with("INT") || type.starts_with("UINT"); // "UINT:INT in [1 - 100000]" with a check
    k.size = type.find("SIZE") != std::string::npos;                 // "UINT:SIZE [b, kb(=1000b), ...]"
    if (opt->get_positional() && opt->get_lnames().empty() && opt->get_snames().empty()) {
      auto name = opt->get_name(true);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      k.key = underscored(name);
      out.push_back(k);
      continue;
    }
    for (const auto& l : opt->get_lnames()) {
      if (l == "help")
        continue;
      k.key = underscored(l);
      k.flag = "--" + l;
      out.push_back(k);
    }
  }
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

/// "; did you mean `token_file`?" or empty.
std::string did_you_mean(std::string_view key, const std::vector<std::string>& known, std::string_view quote = "`") {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, key.size() / 3) + 1;
  for (const auto& k : known) {
    std::size_t d = edit_distance(key, k);
    if (k.size() > key.size() + 2 && k.starts_with(key) && key.size() >= 3)
      d = std::min<std::size_t>(d, 1);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  if (best.empty())
    return {};
  return "; did you mean " + std::string(quote) + best + std::string(quote == "[[" ? "]]" : quote) + "?";
}

bool secret_key(std::string_view key) {
  for (std::string_view word : {"token", "password", "secret", "passphrase"})
    if (key == word || key.ends_with("_" + std::string(word)))
      return true;
  return false;
}

bool alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/// A name that is safe as a path component, an argument and an id: it
/// starts with a letter or digit (never ".", ".." or "-rf").
bool safe_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && alnum(name.front()) &&
         std::all_of(name.begin(), name.end(), [](char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; });
}

/// A value a check may report: its text and where it stands.
struct given {
  std::string text;
  position at;
};

/// One section being checked.
class section_check {
 public:
  section_check(std::string_view kind, const value& table, std::string_view source, std::vector<std::string>& errors)
      : kind_(kind), table_(table), source_(source), errors_(errors), specs_(schema(kind)) {
    for (const auto& s : specs_)
      known_.push_back(s.key);
  }

  /// The unit, or nothing (its errors added).
  std::optional<unit_section> run() {
    const auto before = errors_.size();
    unit_section u;
    u.kind = kind_;
    u.at = table_.at;
    std::map<std::string, position> seen; // normalised key -> where
    std::vector<std::string> options, positionals;
    std::map<std::string, std::vector<std::string>> positional_values; // key -> its values, file order
    std::map<std::string, std::vector<given>> values;                  // key -> its values, for the checks below
    for (const auto& e : table_.entries) {
      const auto key = underscored(e.key);
      const auto shown = toml::shown_key(e.key);
      if (auto [it, fresh] = seen.emplace(key, e.at); !fresh) {
        error(e.at, shown + " given twice (also on line " + std::to_string(it->second.line) + ")");
        continue;
      }
      if (key == "name") {
        if (!e.v.is_string())
          error(e.v.at, "name must be a \"string\" of letters, digits, '.', '_', '-'");
        else if (!safe_name(e.v.text))
          error(e.v.at, "name must be 1-64 letters, digits, '.', '_', '-', starting with a letter or digit");
        else
          u.name = e.v.text;
        continue;
      }
      const auto spec = std::find_if(specs_.begin(), specs_.end(), [&](const key_spec& s) { return s.key == key; });
      if (spec == specs_.end()) {
        if (secret_key(key)) {
          const auto file_key = std::find(known_.begin(), known_.end(), key + "_file") != known_.end()
                                    ? key + "_file"
                                    : std::string("token_file");
          error(e.at, shown + ": secrets are not written in the config; put it in a file and use " + file_key);
        } else {
          error(e.at, "unknown key '" + shown + "' in [[" + kind_ + "]]" + did_you_mean(key, known_));
        }
        continue;
      }
      add_value(*spec, e, spec->flag.empty() ? positional_values[key] : options, values[key]);
    }
    // Positionals go in the command's order, whatever the file's: a relay
    // with `target` written before `listen` must not listen on its target.
    std::string missing; // a positional left out before one that is given
    for (const auto& spec : specs_) {
      if (!spec.flag.empty())
        continue;
      const auto given = positional_values.find(spec.key);
      if (given == positional_values.end()) {
        if (missing.empty())
          missing = spec.key;
        continue;
      }
      if (!missing.empty()) {
        error(table_.at, "[[" + kind_ + "]] has " + spec.key + " but no " + missing + "; " + missing + " is required");
        break;
      }
      positionals.insert(positionals.end(), given->second.begin(), given->second.end());
    }
    if (u.name.empty() && !seen.contains("name"))
      error(table_.at, "[[" + kind_ + "]] without a name (name = \"...\": letters, digits, '.', '_', '-')");
    if (errors_.size() != before) {
      validate(values); // the values' own errors too: every error at once
      return std::nullopt;
    }

    u.args = options;
    if (!positionals.empty()) {
      u.args.push_back("--");
      u.args.insert(u.args.end(), positionals.begin(), positionals.end());
    }
    parse_args(u, values);
    if (errors_.size() == before)
      validate(values);
    // What no single key shows (--source against --family, --cert without
    // --key): the subcommand's own options step, as `warren KIND` runs it.
    if (errors_.size() == before && parsed_ && options_check_)
      if (auto why = options_check_(); !why.empty())
        error(table_.at, why);
    if (errors_.size() != before)
      return std::nullopt;
    return u;
  }

 private:
  void error(position at, const std::string& what) { errors_.push_back(toml::located(source_, at, what)); }

  std::string allowed(const key_spec& s) const {
    if (s.is_flag)
      return s.key + " is a flag: true or false";
    const std::string one = s.size      ? "an integer or a size in a \"string\" (\"64M\")"
                            : s.integer ? "an integer"
                                        : "a \"string\"";
    return s.key + " must be " + one + (s.multi ? std::string(" or a list of them [...]") : std::string());
  }

  void add_value(const key_spec& s, const toml::entry& e, std::vector<std::string>& out, std::vector<given>& vals) {
    const auto scalar = [&](const value& v) -> std::optional<std::string> {
      if (s.integer && v.type == value::kind::integer)
        return std::to_string(v.integer);
      if ((!s.integer || s.size) && v.is_string())
        return v.text;
      return std::nullopt;
    };
    if (s.is_flag) {
      if (e.v.type != value::kind::boolean)
        return error(e.v.at, allowed(s) + ", not " + toml::describe(e.v.type));
      if (e.v.boolean)
        out.push_back(s.flag);
      return;
    }
    std::vector<const value*> items;
    if (e.v.is_array() && s.multi) {
      for (const auto& item : e.v.items)
        items.push_back(&item);
    } else {
      items.push_back(&e.v);
    }
    for (const value* v : items) {
      auto text = scalar(*v);
      if (!text)
        return error(v->at, allowed(s) + ", not " + toml::describe(v->type));
      if (text->find('\0') != std::string::npos)
        return error(v->at, s.key + " holds a NUL character");
      vals.push_back({*text, v->at});
      out.push_back(s.flag.empty() ? *text : s.flag + "=" + *text);
    }
  }

  /// The argv parsed by a fresh CLI::App with the subcommand's own options.
  void parse_args(const unit_section& u, const std::map<std::string, std::vector<given>>& values) {
    CLI::App app;
    // The returned run function is never called, but it owns the variables
    // the options write into: it must outlive the parse.
    const auto keep = add_command(app, kind_, &options_check_);
    std::vector<std::string> argv{"warren", kind_};
    argv.insert(argv.end(), u.args.begin(), u.args.end());
    std::vector<const char*> ptrs;
    for (const auto& a : argv)
      ptrs.push_back(a.c_str());
    try {
      app.parse(static_cast<int>(ptrs.size()), ptrs.data());
      parsed_ = true;
    } catch (const CLI::ParseError& e) {
      std::string what = e.what();
      // No value is ever quoted back (one might be a secret in the wrong key).
      std::vector<std::string> texts;
      for (const auto& [key, vs] : values)
        for (const auto& v : vs)
          if (v.text.size() >= 2 && v.text.find_first_not_of("+-0123456789") != std::string::npos)
            texts.push_back(v.text); // integers are no secrets, and "10" is inside "100000"
      std::sort(texts.begin(), texts.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
      for (const auto& t : texts)
        for (auto p = what.find(t); p != std::string::npos; p = what.find(t, p + 5))
          what.replace(p, t.size(), "(value)");
      // The key the message names (the longest that matches: the message
      // of --max-handshakes-per-source also holds --max-handshakes), or
      // the section.
      position at = table_.at;
      const key_spec* named = nullptr;
      std::size_t named_length = 0;
      for (const auto& s : specs_) {
        std::string name = s.flag;
        if (s.flag.empty()) {
          name = s.key;
          std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
        }
        if (name.size() > named_length && what.find(name) != std::string::npos) {
          named = &s;
          named_length = name.size();
        }
      }
      if (named) {
        if (auto it = values.find(named->key); it != values.end() && !it->second.empty())
          at = it->second.front().at;
        else if (named->flag.empty())
          what = named->key + " is required";
      }
      error(at, what);
    }
  }

  /// The checks the subcommand's run function makes before it starts
  /// anything, through the same pure parsers.
  void validate(const std::map<std::string, std::vector<given>>& values) {
    const auto each = [&](const std::string& key, const auto& check) {
      if (auto it = values.find(key); it != values.end())
        for (const auto& v : it->second)
          if (auto why = check(v.text); !why.empty())
            error(v.at, why);
    };
    for (const auto& [key, vs] : values) {
      if (key.ends_with("_timeout") || key.ends_with("_interval") || key.ends_with("_delay") || key == "wait_tunnel")
        each(key, [&](const std::string& t) {
          auto d = parse_duration(t);
          return d ? std::string() : key + ": " + d.error();
        });
    }
    each("family", [](const std::string& t) {
      return net::parse_family_policy(t) ? std::string() : "family must be one of auto, prefer-ipv4, ipv4, ipv6";
    });
    each("log_level", [](const std::string& t) {
      return log::parse_level(t) ? std::string() : "log_level must be one of trace, debug, info, warn, error, off";
    });
    each("pin", [](const std::string& t) {
      auto p = transport::parse_pin(t);
      return p ? std::string() : "pin: " + p.error();
    });
    each("source",
         [](const std::string& t) { return net::parse_ip(t) ? std::string() : "source must be an IP address"; });
    each("allow", [](const std::string& t) {
      auto r = tunnel::parse_allow_rule(t);
      return r ? std::string() : r.error();
    });
    each("trust_proxy", [](const std::string& t) {
      auto r = transport::parse_ip_network(t);
      return r ? std::string() : "trust_proxy: " + r.error();
    });
    if (kind_ == "client") {
      // A URL may carry a user and password: its text is never shown.
      each("url", [](const std::string& t) {
        return transport::parse_url(t) ? std::string()
                                       : std::string("url is not a tunnel URL (wss://HOST[:PORT][/path], ws://, "
                                                     "tls:// or tcp://)");
      });
      each("local", [](const std::string& t) {
        auto f = tunnel::parse_local_forward(t);
        return f ? std::string() : f.error();
      });
      each("dynamic", [](const std::string& t) {
        auto f = tunnel::parse_dynamic_forward(t);
        return f ? std::string() : f.error();
      });
      // "none" and proxy URLs; a password in one is a secret in the file.
      each("proxy", [](const std::string& t) {
        if (t == "none")
          return std::string();
        auto p = transport::parse_proxy_url(t);
        if (!p)
          return "proxy: " + p.error();
        return p->password_in_url ? std::string("proxy holds a password: secrets are not written in the config; "
                                                "put it in a file and use proxy_user and proxy_password_file")
                                  : std::string();
      });
      if (!values.contains("local") && !values.contains("dynamic"))
        error(table_.at, "[[client]] " + name_of() + "forwards nothing: give local = [...] or dynamic = [...]");
    } else if (kind_ == "server") {
      each("listen", [](const std::string& t) {
        auto u = transport::parse_url(t, true);
        return u ? std::string() : "listen: " + u.error();
      });
    } else {
      each("listen", [](const std::string& t) {
        auto l = net::parse_listen_address(t);
        return l ? std::string() : "listen: " + l.error();
      });
      each("target", [](const std::string& t) {
        auto h = net::parse_host_port(t);
        return h ? std::string() : "target " + h.error();
      });
    }
  }

  std::string name_of() const {
    const auto* n = table_.find("name");
    return n && n->v.is_string() && safe_name(n->v.text) ? n->v.text + " " : std::string();
  }

  std::string kind_;
  const value& table_;
  std::string_view source_;
  std::vector<std::string>& errors_;
  std::function<std::string()> options_check_; // set by parse_args(); owns the parsed values
  bool parsed_ = false;
  std::vector<key_spec> specs_;
  std::vector<std::string> known_;
};

} // namespace

std::vector<std::string> config_keys(std::string_view kind) {
  std::vector<std::string> out;
  for (const auto& s : schema(kind))
    out.push_back(s.key);
  return out;
}

config_check check_config(std::string_view text, std::string_view source) {
  config_check out;
  auto doc = toml::parse(text, source);
  if (!doc) {
    out.errors.push_back(doc.error());
    return out;
  }
  const std::vector<std::string> kinds(std::begin(k_kinds), std::end(k_kinds));
  std::map<std::string, position> names;
  std::size_t sections = 0;
  for (const auto& e : doc->entries) {
    if (e.v.table_array)
      sections += e.v.items.size();
  }
  if (sections > k_max_units) {
    // Each section is parsed as a command line: bounding them bounds the
    // check's time (a 1 MiB file could hold ~100,000 empty sections).
    out.errors.push_back(std::string(source) + ": " + std::to_string(sections) + " sections; a file holds at most " +
                         std::to_string(k_max_units) + " units");
    return out;
  }
  for (const auto& e : doc->entries) {
    const auto shown = toml::shown_key(e.key);
    const bool kind = std::find(kinds.begin(), kinds.end(), e.key) != kinds.end();
    if (kind && e.v.table_array) {
      for (const auto& t : e.v.items) {
        const auto* name = t.find("name");
        if (name && name->v.is_string() && safe_name(name->v.text)) {
          // Unique regardless of case: names may become file names.
          std::string folded = name->v.text;
          std::transform(folded.begin(), folded.end(), folded.begin(), [](unsigned char c) { return std::tolower(c); });
          if (auto [it, fresh] = names.emplace(folded, t.at); !fresh)
            out.errors.push_back(toml::located(source, name->v.at,
                                               "the name " + name->v.text + " is taken (line " +
                                                   std::to_string(it->second.line) +
                                                   "); unit names are unique, regardless of case"));
        }
        const auto errors = out.errors.size();
        auto unit = section_check(e.key, t, source, out.errors).run();
        if (unit && out.errors.size() == errors)
          out.units.push_back(std::move(*unit));
      }
    } else if (kind) {
      out.errors.push_back(
          toml::located(source, e.at, "write [[" + shown + "]] (each unit is one [[" + shown + "]] section)"));
    } else if (e.v.is_table() || e.v.table_array) {
      out.errors.push_back(toml::located(source, e.at,
                                         "unknown section [[" + shown +
                                             "]] (units are [[relay]], [[client]], "
                                             "[[server]], [[tun]])" +
                                             did_you_mean(e.key, kinds, "[[")));
    } else {
      out.errors.push_back(
          toml::located(source, e.at, "'" + shown + "' outside a unit section ([[relay]], [[client]], [[server]], [[tun]])"));
    }
  }
  if (out.errors.size() > k_max_errors) {
    const auto more = out.errors.size() - k_max_errors;
    out.errors.resize(k_max_errors);
    out.errors.push_back(std::string(source) + ": " + std::to_string(more) + " more error" + (more == 1 ? "" : "s") +
                         " not shown");
  }
  return out;
}

std::string config_summary(const std::vector<unit_section>& units) {
  constexpr std::size_t k_named = 10; // a log line, not a listing (`warren ctl ls` is that)
  std::string out = std::to_string(units.size()) + (units.size() == 1 ? " unit" : " units");
  for (std::size_t i = 0; i < units.size() && i < k_named; ++i)
    out += (i ? ", " : ": ") + units[i].kind + " " + units[i].name;
  if (units.size() > k_named)
    out += " and " + std::to_string(units.size() - k_named) + " more";
  return out;
}

} // namespace warren::cli
