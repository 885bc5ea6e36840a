#include "daemon/metrics_text.hpp"

#include "daemon/jsonrpc.hpp"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdint>
#include <functional>

namespace warren::daemon {
namespace {

/// `text` with every byte that does not start valid UTF-8 replaced by U+FFFD.
std::string as_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    std::size_t bad = 0;
    if (valid_utf8(text, &bad)) {
      out.append(text);
      break;
    }
    out.append(text.substr(0, bad));
    out.append("\xEF\xBF\xBD");
    text.remove_prefix(bad + 1);
  }
  return out;
}

double to_seconds(unit::wall_time t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

std::string format_double(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string format_rtt(std::uint64_t us) {
  return format_double(static_cast<double>(us) / 1e6);
}

/// Writes the families in order, each with its HELP and TYPE once.
class writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help; // our own text: no backslash or line break to escape
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  /// One series: `labels` is the {…} part without braces, already escaped.
  void sample(std::string_view name, const std::string& labels, std::string_view value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }

  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string unit_labels(const unit_snapshot& u) {
  return "unit=\"" + escape_label_value(u.name) + "\",kind=\"" + escape_label_value(u.kind) + "\"";
}

struct unit_family {
  const char* name;
  const char* type;
  const char* help;
  // Appends the unit's series (none when the value is unknown).
  std::function<void(writer&, const char*, const std::string&, const unit_snapshot&)> series;
};

void plain(writer& w, const char* name, const std::string& labels, std::uint64_t v) {
  w.sample(name, labels, std::to_string(v));
}

const std::vector<unit_family>& unit_families() {
  static const std::vector<unit_family> families = {
      {"warren_unit_up", "gauge", "Whether the unit is running (1) or not (0).",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         plain(w, n, l, u.status.state == unit::unit_state::running ? 1 : 0);
       }},
      {"warren_unit_state", "gauge", "The unit's state: 1 for the state it is in, 0 for the others.",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         for (const auto s : unit::k_unit_states)
           plain(w, n, l + ",state=\"" + std::string(unit::to_string(s)) + "\"", u.status.state == s ? 1 : 0);
       }},
      {"warren_unit_state_since_timestamp_seconds", "gauge", "When the unit entered its current state (Unix time).",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         w.sample(n, l, format_seconds(u.status.since));
       }},
      {"warren_unit_bytes_total", "counter",
       "Bytes carried: up from the side that opened a connection toward its target, down back (a tunnel's are "
       "transport bytes, framing included).",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         plain(w, n, l + ",direction=\"up\"", u.counters.bytes_up);
         plain(w, n, l + ",direction=\"down\"", u.counters.bytes_down);
       }},
      {"warren_unit_connections_open", "gauge", "Connections open now (a tunnel unit's: tunnels up).",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         plain(w, n, l, u.counters.connections_open);
       }},
      {"warren_unit_connections_total", "counter",
       "Connections accepted or tunnels established since the unit started.",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         plain(w, n, l, u.counters.connections_total);
       }},
      {"warren_unit_streams_open", "gauge", "Tunnel streams open now.",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         plain(w, n, l, u.counters.streams_open);
       }},
      {"warren_unit_streams_total", "counter", "Tunnel streams opened since the unit started.",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         plain(w, n, l, u.counters.streams_total);
       }},
      {"warren_unit_reconnects_total", "counter", "A tunnel client's dials after its first.",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         plain(w, n, l, u.counters.reconnects);
       }},
      {"warren_unit_tunnel_rtt_seconds", "gauge",
       "The tunnel's PING/PONG round trip, smoothed as TCP's SRTT (a server: the mean over its tunnels).",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         if (u.counters.tunnel_rtt_us > 0)
           w.sample(n, l, format_rtt(u.counters.tunnel_rtt_us));
       }},
      {"warren_unit_tunnel_rtt_last_seconds", "gauge", "The tunnel's last PING/PONG round-trip sample.",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         if (u.counters.tunnel_rtt_last_us > 0)
           w.sample(n, l, format_rtt(u.counters.tunnel_rtt_last_us));
       }},
      {"warren_unit_connected_since_timestamp_seconds", "gauge",
       "When a client unit's tunnel up now was established (Unix time).",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         if (u.status.connected_since != unit::wall_time{})
           w.sample(n, l, format_seconds(u.status.connected_since));
       }},
      {"warren_unit_last_error_timestamp_seconds", "gauge", "When the unit's last error happened (Unix time).",
       [](writer& w, const char* n, const std::string& l, const unit_snapshot& u) {
         if (!u.status.last_error.empty())
           w.sample(n, l, format_seconds(u.status.last_error_at));
       }},
  };
  return families;
}

nlohmann::json time_or_null(unit::wall_time t) {
  return t == unit::wall_time{} ? nlohmann::json(nullptr) : nlohmann::json(to_seconds(t));
}

} // namespace

std::string escape_label_value(std::string_view value) {
  const auto text = as_utf8(value);
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
    case '\\':
      out += "\\\\";
      break;
    case '"':
      out += "\\\"";
      break;
    case '\n':
      out += "\\n";
      break;
    default:
      out += c;
    }
  }
  return out;
}

std::string format_seconds(unit::wall_time t) {
  // Milliseconds are all a scrape can use; an integer part keeps the text exact.
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const auto whole = ms / 1000;
  const auto frac = ms % 1000;
  if (frac == 0)
    return std::to_string(whole);
  std::string f = std::to_string(frac < 0 ? -frac : frac);
  f.insert(0, 3 - f.size(), '0');
  while (f.back() == '0')
    f.pop_back();
  return (ms < 0 && whole == 0 ? "-0" : std::to_string(whole)) + "." + f;
}

std::string metrics_text(const std::vector<unit_snapshot>& units, const daemon_info& info) {
  writer w;
  w.family("warren_build_info", "gauge", "The running warren's version, as a label; always 1.");
  w.sample("warren_build_info", "version=\"" + escape_label_value(info.version) + "\"", "1");
  w.family("warren_daemon_start_time_seconds", "gauge", "When the daemon started (Unix time).");
  w.sample("warren_daemon_start_time_seconds", {}, format_seconds(info.started));
  w.family("warren_units", "gauge", "Units the daemon runs, in any state.");
  w.sample("warren_units", {}, std::to_string(units.size()));
  std::vector<std::string> labels;
  labels.reserve(units.size());
  for (const auto& u : units)
    labels.push_back(unit_labels(u));
  for (const auto& f : unit_families()) {
    w.family(f.name, f.type, f.help);
    for (std::size_t i = 0; i < units.size(); ++i)
      f.series(w, f.name, labels[i], units[i]);
  }
  return w.take();
}

nlohmann::json metrics_json(const std::vector<unit_snapshot>& units, const daemon_info& info) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& u : units) {
    const auto& s = u.status;
    const auto& c = u.counters;
    nlohmann::json rtt = nullptr;
    if (c.tunnel_rtt_us > 0 || c.tunnel_rtt_last_us > 0)
      rtt = {{"smoothed_us", c.tunnel_rtt_us}, {"last_us", c.tunnel_rtt_last_us}};
    nlohmann::json error = nullptr;
    if (!s.last_error.empty())
      error = {{"message", as_utf8(s.last_error)}, {"at", to_seconds(s.last_error_at)}};
    list.push_back({{"name", as_utf8(u.name)},
                    {"kind", as_utf8(u.kind)},
                    {"state", unit::to_string(s.state)},
                    {"since", to_seconds(s.since)},
                    {"peer", s.peer.empty() ? nlohmann::json(nullptr) : nlohmann::json(as_utf8(s.peer))},
                    {"connected_since", time_or_null(s.connected_since)},
                    {"bytes", {{"up", c.bytes_up}, {"down", c.bytes_down}}},
                    {"connections", {{"open", c.connections_open}, {"total", c.connections_total}}},
                    {"streams", {{"open", c.streams_open}, {"total", c.streams_total}}},
                    {"reconnects", c.reconnects},
                    {"tunnel_rtt", std::move(rtt)},
                    {"last_error", std::move(error)}});
  }
  return {{"daemon", {{"version", as_utf8(info.version)}, {"started", to_seconds(info.started)}}},
          {"units", std::move(list)}};
}

} // namespace warren::daemon
