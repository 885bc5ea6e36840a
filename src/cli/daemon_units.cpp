#include "cli/daemon_units.hpp"

#include "cli/common.hpp"
#include "cli/config_schema.hpp"
#include "daemon/dropin.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>

namespace warren::cli {

namespace {

std::string folded(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

daemon::unit_spec to_spec(const unit_section& s, std::string origin) {
  return {s.kind, s.name, s.args, std::move(origin)};
}

/// The value of each file key in `args` ("--token-file=/x" -> "/x").
std::vector<std::pair<std::string, std::string>> files_named(const std::vector<std::string>& args) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& a : args) {
    if (a == "--")
      break;
    const auto eq = a.find('=');
    if (!a.starts_with("--") || eq == std::string::npos)
      continue;
    std::string key = a.substr(2, eq - 2);
    std::replace(key.begin(), key.end(), '-', '_');
    if (file_key(key))
      out.emplace_back(key, a.substr(eq + 1));
  }
  return out;
}

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (const unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789ABCDEF";
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

expected<std::string> toml_value(const std::string& key, const nlohmann::json& v, bool in_array) {
  using result = expected<std::string>;
  if (v.is_string())
    return toml_string(v.get<std::string>());
  if (v.is_boolean())
    return std::string(v.get<bool>() ? "true" : "false");
  if (v.is_number_integer())
    return v.is_number_unsigned() ? std::to_string(v.get<std::uint64_t>()) : std::to_string(v.get<std::int64_t>());
  if (v.is_array() && !in_array) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
      auto item = toml_value(key, v[i], true);
      if (!item)
        return item;
      out += (i ? ", " : "") + *item;
    }
    return out + "]";
  }
  return result::failure(key + ": a string, an integer, true/false or a list of them");
}

} // namespace

std::vector<std::string> daemon_paths::allowed_dirs() const {
  std::vector<std::string> out;
  if (!config.empty())
    out.push_back(std::filesystem::absolute(config).parent_path().string());
  else
    out.push_back(std::filesystem::path(default_config_path()).parent_path().string());
  out.push_back(state_dir);
  return out;
}

std::string daemon_paths::dropins() const { return daemon::dropin_dir(state_dir); }

bool file_key(std::string_view key) {
  return key.ends_with("_file") || key == "cert" || key == "key" || key == "ca" || key == "client_ca" ||
         key == "state_dir";
}

expected<daemon::unit_spec> check_one_section(const std::string& text, const std::string& source,
                                              const daemon_paths& paths, std::vector<std::string>& errors) {
  using result = expected<daemon::unit_spec>;
  const auto before = errors.size();
  auto checked = check_config(text, source);
  errors.insert(errors.end(), checked.errors.begin(), checked.errors.end());
  if (errors.size() != before)
    return result::failure(source + ": " + std::to_string(errors.size() - before) + " error(s)");
  if (checked.units.size() != 1) {
    errors.push_back(source + ": holds " + std::to_string(checked.units.size()) +
                     " sections; a drop-in or an added unit is exactly one");
    return result::failure(errors.back());
  }
  auto spec = to_spec(checked.units.front(), "drop-in");
  const auto dirs = paths.allowed_dirs();
  for (const auto& [key, file] : files_named(spec.args))
    if (auto ok = daemon::path_allowed(file, dirs); !ok)
      errors.push_back(toml::located(source, checked.units.front().at, key + ": " + ok.error()));
  if (errors.size() != before)
    return result::failure(errors.back());
  return spec;
}

loaded_units load_units(const daemon_paths& paths) {
  loaded_units out;
  std::map<std::string, std::string> names; // folded -> where
  if (!paths.config.empty()) {
    std::string text;
    if (auto why = read_config(paths.config, text); !why.empty()) {
      out.errors.push_back(why);
      return out;
    }
    auto checked = check_config(text, paths.config);
    out.errors = checked.errors;
    for (const auto& u : checked.units) {
      names.emplace(folded(u.name), paths.config);
      out.units.push_back(to_spec(u, "file"));
    }
  }
  std::vector<std::string> errors;
  for (const auto& f : daemon::read_dropins(paths.dropins(), out.errors)) {
    auto spec = check_one_section(f.text, f.path, paths, out.errors);
    if (!spec)
      continue;
    if (spec->name != f.name) {
      out.errors.push_back(f.path + ": the unit is named " + spec->name + "; a drop-in is named after its unit");
      continue;
    }
    if (auto [it, fresh] = names.emplace(folded(spec->name), f.path); !fresh) {
      out.errors.push_back(f.path + ": the name " + spec->name + " is taken by " + it->second +
                           "; rename or remove one of them");
      continue;
    }
    out.units.push_back(std::move(spec).value());
  }
  return out;
}

expected<std::string> section_toml(const nlohmann::json& section) {
  using result = expected<std::string>;
  if (!section.is_object())
    return result::failure("give the unit as an object: {\"kind\": \"relay\", \"name\": \"web\", …}");
  const auto kind = section.find("kind");
  if (kind == section.end() || !kind->is_string() ||
      (*kind != "relay" && *kind != "server" && *kind != "client" && *kind != "tun"))
    return result::failure("kind must be \"relay\", \"server\", \"client\" or \"tun\"");
  std::string text = "[[" + kind->get<std::string>() + "]]\n";
  for (const auto& [key, value] : section.items()) {
    if (key == "kind")
      continue;
    if (key.empty() || key.size() > 64 || !std::all_of(key.begin(), key.end(), [](unsigned char c) {
          return std::isalnum(c) || c == '_' || c == '-';
        }))
      return result::failure("a key is not a name of letters, digits, '_' and '-'");
    auto v = toml_value(key, value, false);
    if (!v)
      return v;
    text += key + " = " + *v + "\n";
  }
  return text;
}

daemon::unit_maker unit_factory(unit_context ctx) {
  return [ctx](const daemon::unit_spec& spec,
               boost::asio::any_io_executor ex) -> expected<std::unique_ptr<unit::unit>> {
    using result = expected<std::unique_ptr<unit::unit>>;
    CLI::App app;
    unit_builder build;
    const auto keep = add_unit_command(app, spec.kind, nullptr, &build); // owns what the options write into
    std::vector<std::string> argv{"warren", spec.kind};
    argv.insert(argv.end(), spec.args.begin(), spec.args.end());
    std::vector<const char*> ptrs;
    for (const auto& a : argv)
      ptrs.push_back(a.c_str());
    try {
      app.parse(static_cast<int>(ptrs.size()), ptrs.data());
    } catch (const CLI::ParseError&) {
      return result::failure("the section no longer parses (run warren config check)"); // checked before: a bug
    }
    return build(std::move(ex), ctx);
  };
}

} // namespace warren::cli
