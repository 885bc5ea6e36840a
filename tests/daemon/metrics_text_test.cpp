// The metrics formatter (src/daemon/metrics_text.*): Prometheus text 0.0.4
// and the metrics.get JSON from one snapshot. A real Prometheus parser reads
// the same text in tests/integration/test_metrics.py; here the exact lines.
#include "daemon/metrics_text.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <sstream>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::daemon;

namespace {

unit::wall_time at(std::int64_t ms) {
  return unit::wall_time{} + std::chrono::milliseconds(ms);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const auto& l : lines(text))
    if (l == line)
      return true;
  return false;
}

unit_snapshot client_unit() {
  unit_snapshot u;
  u.name = "office";
  u.kind = "client";
  u.status.state = unit::unit_state::running;
  u.status.since = at(1'700'000'000'000);
  u.status.peer = "127.0.0.1:8443";
  u.status.connected_since = at(1'700'000'001'250);
  u.counters.bytes_up = 1234;
  u.counters.bytes_down = 98765;
  u.counters.connections_open = 1;
  u.counters.connections_total = 3;
  u.counters.streams_open = 2;
  u.counters.streams_total = 40;
  u.counters.reconnects = 2;
  u.counters.tunnel_rtt_us = 1500;
  u.counters.tunnel_rtt_last_us = 250;
  return u;
}

unit_snapshot failed_relay() {
  unit_snapshot u;
  u.name = "web";
  u.kind = "relay";
  u.status.state = unit::unit_state::failed;
  u.status.since = at(1'700'000'002'000);
  u.status.last_error = "target unreachable";
  u.status.last_error_at = at(1'700'000'002'005);
  return u;
}

const daemon_info info{"0.1.0", at(1'699'999'999'500)};

TEST(metrics_text, daemon_series_with_no_units) {
  const auto text = metrics_text({}, info);
  EXPECT_TRUE(has_line(text, "# HELP warren_build_info The running warren's version, as a label; always 1."));
  EXPECT_TRUE(has_line(text, "# TYPE warren_build_info gauge"));
  EXPECT_TRUE(has_line(text, "warren_build_info{version=\"0.1.0\"} 1"));
  EXPECT_TRUE(has_line(text, "warren_daemon_start_time_seconds 1699999999.5"));
  EXPECT_TRUE(has_line(text, "warren_units 0"));
  // Every family is announced even without series, and ends with a newline.
  EXPECT_TRUE(has_line(text, "# TYPE warren_unit_bytes_total counter"));
  EXPECT_EQ(text.back(), '\n');
  for (const auto& l : lines(text))
    EXPECT_FALSE(l.starts_with("warren_unit_")) << l;
}

TEST(metrics_text, a_client_unit_s_series) {
  const auto text = metrics_text({client_unit()}, info);
  const std::string u = "unit=\"office\",kind=\"client\"";
  for (const auto& want : {
           std::string("warren_units 1"),
           "warren_unit_up{" + u + "} 1",
           "warren_unit_state{" + u + ",state=\"running\"} 1",
           "warren_unit_state{" + u + ",state=\"failed\"} 0",
           "warren_unit_state{" + u + ",state=\"starting\"} 0",
           "warren_unit_state_since_timestamp_seconds{" + u + "} 1700000000",
           "warren_unit_bytes_total{" + u + ",direction=\"up\"} 1234",
           "warren_unit_bytes_total{" + u + ",direction=\"down\"} 98765",
           "warren_unit_connections_open{" + u + "} 1",
           "warren_unit_connections_total{" + u + "} 3",
           "warren_unit_streams_open{" + u + "} 2",
           "warren_unit_streams_total{" + u + "} 40",
           "warren_unit_reconnects_total{" + u + "} 2",
           "warren_unit_tunnel_rtt_seconds{" + u + "} 0.0015",
           "warren_unit_tunnel_rtt_last_seconds{" + u + "} 0.00025",
           "warren_unit_connected_since_timestamp_seconds{" + u + "} 1700000001.25",
       })
    EXPECT_TRUE(has_line(text, want)) << want << "\n" << text;
  // No error yet: no series (0 would read as 1970).
  for (const auto& l : lines(text))
    EXPECT_FALSE(l.starts_with("warren_unit_last_error_timestamp_seconds{")) << l;
}

TEST(metrics_text, unknown_values_are_left_out_not_zero) {
  const auto text = metrics_text({failed_relay()}, info);
  const std::string u = "unit=\"web\",kind=\"relay\"";
  EXPECT_TRUE(has_line(text, "warren_unit_up{" + u + "} 0"));
  EXPECT_TRUE(has_line(text, "warren_unit_state{" + u + ",state=\"failed\"} 1"));
  EXPECT_TRUE(has_line(text, "warren_unit_last_error_timestamp_seconds{" + u + "} 1700000002.005"));
  for (const auto& l : lines(text)) {
    EXPECT_FALSE(l.starts_with("warren_unit_tunnel_rtt_seconds{")) << l;
    EXPECT_FALSE(l.starts_with("warren_unit_connected_since_timestamp_seconds{")) << l;
  }
}

TEST(metrics_text, each_family_has_help_and_type_once_before_its_series) {
  const auto text = metrics_text({client_unit(), failed_relay()}, info);
  std::map<std::string, int> helps, types;
  std::string current;
  for (const auto& l : lines(text)) {
    ASSERT_FALSE(l.empty());
    if (l.starts_with("# HELP ")) {
      current = l.substr(7, l.find(' ', 7) - 7);
      ++helps[current];
    } else if (l.starts_with("# TYPE ")) {
      const auto name = l.substr(7, l.find(' ', 7) - 7);
      EXPECT_EQ(name, current) << "TYPE right after its HELP";
      ++types[name];
      const auto type = l.substr(l.rfind(' ') + 1);
      EXPECT_TRUE(type == "gauge" || type == "counter") << l;
      EXPECT_EQ(type == "counter", name.ends_with("_total")) << l;
    } else {
      const auto name = l.substr(0, l.find_first_of("{ "));
      EXPECT_EQ(name, current) << "series under its own family: " << l;
    }
  }
  for (const auto& [name, n] : helps) {
    EXPECT_EQ(n, 1) << name;
    EXPECT_EQ(types[name], 1) << name;
  }
  EXPECT_GE(helps.size(), 15u);
}

TEST(metrics_text, label_values_are_escaped) {
  EXPECT_EQ(escape_label_value("plain-name_1"), "plain-name_1");
  EXPECT_EQ(escape_label_value("a\\b"), "a\\\\b");
  EXPECT_EQ(escape_label_value("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(escape_label_value("two\nlines"), "two\\nlines");
  EXPECT_EQ(escape_label_value("\\\"\n"), "\\\\\\\"\\n");
  // A name that tries to close the label and add its own series.
  auto u = failed_relay();
  u.name = "x\"} 1\nwarren_unit_up{unit=\"y";
  const auto text = metrics_text({u}, info);
  EXPECT_TRUE(has_line(text, "warren_unit_up{unit=\"x\\\"} 1\\nwarren_unit_up{unit=\\\"y\",kind=\"relay\"} 0")) << text;
  for (const auto& l : lines(text))
    EXPECT_FALSE(l.starts_with("warren_unit_up{unit=\"y")) << l;
}

TEST(metrics_text, bytes_that_are_not_utf8_become_replacement_characters) {
  EXPECT_EQ(escape_label_value("a\xff"
                               "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(escape_label_value("\xC3"), "\xEF\xBF\xBD");                                 // truncated sequence
  EXPECT_EQ(escape_label_value("caf\xC3\xA9"), "caf\xC3\xA9");                           // valid: kept
  EXPECT_EQ(escape_label_value("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); // a surrogate
}

TEST(metrics_text, seconds_are_exact_decimals) {
  EXPECT_EQ(format_seconds(at(0)), "0");
  EXPECT_EQ(format_seconds(at(1'700'000'000'000)), "1700000000");
  EXPECT_EQ(format_seconds(at(1'700'000'000'001)), "1700000000.001");
  EXPECT_EQ(format_seconds(at(1'700'000'000'100)), "1700000000.1");
  EXPECT_EQ(format_seconds(at(1'700'000'000'120)), "1700000000.12");
  EXPECT_EQ(format_seconds(at(1'700'000'000'999) + 999us), "1700000000.999"); // milliseconds
}

TEST(metrics_json, the_same_snapshot_as_json) {
  auto odd = failed_relay();
  odd.name = "bad\xff\"name";
  const auto j = metrics_json({client_unit(), odd}, info);
  EXPECT_EQ(j["daemon"]["version"], "0.1.0");
  EXPECT_DOUBLE_EQ(j["daemon"]["started"].get<double>(), 1699999999.5);
  ASSERT_EQ(j["units"].size(), 2u);
  const auto& c = j["units"][0];
  EXPECT_EQ(c["name"], "office");
  EXPECT_EQ(c["kind"], "client");
  EXPECT_EQ(c["state"], "running");
  EXPECT_EQ(c["peer"], "127.0.0.1:8443");
  EXPECT_DOUBLE_EQ(c["connected_since"].get<double>(), 1700000001.25);
  EXPECT_EQ(c["bytes"], (nlohmann::json{{"up", 1234}, {"down", 98765}}));
  EXPECT_EQ(c["connections"], (nlohmann::json{{"open", 1}, {"total", 3}}));
  EXPECT_EQ(c["streams"], (nlohmann::json{{"open", 2}, {"total", 40}}));
  EXPECT_EQ(c["reconnects"], 2);
  EXPECT_EQ(c["tunnel_rtt"], (nlohmann::json{{"smoothed_us", 1500}, {"last_us", 250}}));
  EXPECT_TRUE(c["last_error"].is_null());
  const auto& r = j["units"][1];
  EXPECT_EQ(r["name"], "bad\xEF\xBF\xBD\"name");
  EXPECT_EQ(r["state"], "failed");
  EXPECT_TRUE(r["peer"].is_null());
  EXPECT_TRUE(r["connected_since"].is_null());
  EXPECT_TRUE(r["tunnel_rtt"].is_null());
  EXPECT_EQ(r["last_error"]["message"], "target unreachable");
  EXPECT_DOUBLE_EQ(r["last_error"]["at"].get<double>(), 1700000002.005);
  EXPECT_NO_THROW((void)j.dump()); // valid UTF-8 throughout
}

} // namespace
