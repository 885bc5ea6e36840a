#include "cli/ctl_units.hpp"

#include "cli/command.hpp"
#include "core/toml.hpp"
#include "tunnel/server_access.hpp"

#include <algorithm>
#include <ctime>
#include <cstdio>
#include <vector>

namespace warren::cli {

namespace {

using json = nlohmann::json;

std::string str(const json& v, const char* key) {
  const auto it = v.find(key);
  if (it == v.end() || it->is_null())
    return "";
  if (it->is_string())
    return tunnel::printable(it->get<std::string>());
  return tunnel::printable(it->dump());
}

std::int64_t num(const json& v, const char* key) {
  const auto it = v.find(key);
  return it != v.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
}

std::string joined(const json& v, const char* key, const char* sep) {
  std::string out;
  if (const auto it = v.find(key); it != v.end() && it->is_array())
    for (const auto& item : *it)
      out += (out.empty() ? "" : sep) + tunnel::printable(item.is_string() ? item.get<std::string>() : item.dump());
  return out;
}

std::string coloured(const std::string& state, bool colour) {
  if (!colour)
    return state;
  const char* code = state == "running" ? "32" : state == "failed" ? "31" : "33";
  return std::string("\033[") + code + "m" + state + "\033[0m";
}

json toml_to_json(const toml::value& v) {
  switch (v.type) {
  case toml::value::kind::string:
    return v.text;
  case toml::value::kind::integer:
    return v.integer;
  case toml::value::kind::boolean:
    return v.boolean;
  case toml::value::kind::array: {
    json a = json::array();
    for (const auto& item : v.items)
      a.push_back(toml_to_json(item));
    return a;
  }
  case toml::value::kind::table: {
    json o = json::object();
    for (const auto& e : v.entries)
      o[e.key] = toml_to_json(e.v);
    return o;
  }
  }
  return nullptr;
}

} // namespace

std::string ago(std::int64_t then, std::int64_t now) {
  if (then <= 0)
    return "-";
  const auto d = std::max<std::int64_t>(0, now - then);
  char buf[32];
  if (d < 60)
    std::snprintf(buf, sizeof buf, "%llds ago", static_cast<long long>(d));
  else if (d < 3600)
    std::snprintf(buf, sizeof buf, "%lldm ago", static_cast<long long>(d / 60));
  else if (d < 86400)
    std::snprintf(buf, sizeof buf, "%lldh ago", static_cast<long long>(d / 3600));
  else
    std::snprintf(buf, sizeof buf, "%lldd ago", static_cast<long long>(d / 86400));
  return buf;
}

std::string human_bytes(std::uint64_t n) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (n < 1024)
    return std::to_string(n) + " B";
  double v = static_cast<double>(n);
  std::size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

std::string units_table(const json& units, std::int64_t now, bool colour) {
  const std::vector<std::string> head = {"NAME", "KIND", "STATE", "SINCE", "LISTENING", "PEER", "UP", "DOWN",
                                         "LAST ERROR"};
  std::vector<std::vector<std::string>> rows;
  if (units.is_array())
    for (const auto& u : units) {
      if (!u.is_object())
        continue;
      const auto c = u.value("counters", json::object());
      rows.push_back({str(u, "name"), str(u, "kind"), str(u, "state"), ago(num(u, "since"), now),
                      joined(u, "listening", ", "), str(u, "peer"),
                      human_bytes(static_cast<std::uint64_t>(num(c, "bytes_up"))),
                      human_bytes(static_cast<std::uint64_t>(num(c, "bytes_down"))), str(u, "last_error")});
    }
  if (rows.empty())
    return "no units\n";
  std::vector<std::size_t> width(head.size());
  for (std::size_t i = 0; i < head.size(); ++i) {
    width[i] = head[i].size();
    for (const auto& r : rows)
      width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r, bool is_head) {
    std::string out;
    for (std::size_t i = 0; i < r.size(); ++i) {
      const bool last = i + 1 == r.size();
      std::string cell = !is_head && i == 2 ? coloured(r[i], colour) : r[i];
      out += cell;
      if (!last)
        out += std::string(width[i] - r[i].size() + 2, ' ');
    }
    while (!out.empty() && out.back() == ' ')
      out.pop_back();
    return out + "\n";
  };
  std::string out = line(head, true);
  for (const auto& r : rows)
    out += line(r, false);
  return out;
}

std::string unit_details(const json& u, std::int64_t now, bool colour) {
  const auto c = u.value("counters", json::object());
  std::vector<std::pair<std::string, std::string>> rows = {
      {"name", str(u, "name")},
      {"kind", str(u, "kind")},
      {"origin", str(u, "origin")},
      {"state", coloured(str(u, "state"), colour) + " (" + ago(num(u, "since"), now) + ")"},
      {"loop", str(u, "loop")},
      {"listening", joined(u, "listening", "\n           ")},
      {"peer", str(u, "peer")},
      {"bytes", human_bytes(static_cast<std::uint64_t>(num(c, "bytes_up"))) + " up, " +
                    human_bytes(static_cast<std::uint64_t>(num(c, "bytes_down"))) + " down"},
      {"conns", std::to_string(num(c, "connections_open")) + " open, " + std::to_string(num(c, "connections_total")) +
                    " total"},
      {"streams", std::to_string(num(c, "streams_open")) + " open, " + std::to_string(num(c, "streams_total")) +
                      " total"},
      {"reconnects", std::to_string(num(c, "reconnects"))},
      {"last error", str(u, "last_error").empty() ? "-" : str(u, "last_error") + " (" + ago(num(u, "last_error_at"), now) + ")"},
  };
  std::string out;
  for (const auto& [k, v] : rows) {
    char key[16];
    std::snprintf(key, sizeof key, "%-11s", k.c_str());
    out += key + (v.empty() ? std::string("-") : v) + "\n";
  }
  return out;
}

std::string event_line(std::string_view method, const json& params, bool colour) {
  std::string when = "-";
  if (const auto at = params.find("at"); at != params.end() && at->is_number_integer()) {
    const std::time_t t = at->get<std::int64_t>();
    std::tm local{};
    char buf[32];
    if (::localtime_r(&t, &local) != nullptr && std::strftime(buf, sizeof buf, "%H:%M:%S", &local) > 0)
      when = buf;
  }
  if (method == "events.lost")
    return when + "  (" + std::to_string(num(params, "count")) + " events lost: this client read too slowly)\n";
  std::string name = str(params, "event");
  if (name.empty())
    name = tunnel::printable(method.starts_with("events.") ? method.substr(7) : method);
  std::string unit = str(params, "unit");
  std::string out = when + "  " + name + "  " + (unit.empty() ? "-" : unit);
  for (const auto& [key, value] : params.items()) {
    if (key == "event" || key == "unit" || key == "at" || key == "seq" ||
        ((value.is_array() || value.is_object()) && value.empty()))
      continue;
    std::string v = value.is_string() ? tunnel::printable(value.get<std::string>()) : tunnel::printable(value.dump());
    if (key == "state")
      v = coloured(v, colour);
    out += "  " + tunnel::printable(key) + "=" + v;
  }
  return out + "\n";
}

std::string reload_summary(const json& r) {
  std::string out = str(r, "summary");
  if (out.empty())
    out = "reloaded";
  return out + "\n";
}

expected<json> section_json(const std::string& path) {
  using result = expected<json>;
  std::string text;
  if (auto why = read_config(path, text); !why.empty())
    return result::failure(why);
  auto doc = toml::parse(text, path);
  if (!doc)
    return result::failure(doc.error());
  json out;
  std::size_t sections = 0;
  for (const auto& e : doc->entries) {
    if (!e.v.table_array || (e.key != "relay" && e.key != "server" && e.key != "client"))
      return result::failure(path + ": holds '" + toml::shown_key(e.key) +
                             "'; give exactly one [[relay]], [[server]] or [[client]] section");
    for (const auto& t : e.v.items) {
      ++sections;
      out = toml_to_json(t);
      out["kind"] = e.key;
    }
  }
  if (sections != 1)
    return result::failure(path + ": holds " + std::to_string(sections) +
                           " sections; ctl add takes a file with exactly one");
  return out;
}

} // namespace warren::cli
