#include "cli/daemon_methods.hpp"

#include "daemon/dropin.hpp"
#include "daemon/sd_notify.hpp"
#include "tunnel/server_access.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>

namespace warren::cli {

namespace {

using daemon::error_code;
using daemon::method_result;
using daemon::rpc_error;
using json = nlohmann::json;
using reply_fn = std::function<void(method_result)>;

method_result app_error(error_code code, std::string message, std::optional<json> data = std::nullopt) {
  return rpc_error{code, std::move(message), std::move(data)};
}

bool no_params(const json& params) { return params.is_null() || params.empty(); }

/// params {"name": "…"}: the name, or empty.
std::string name_param(const json& params) {
  if (!params.is_object() || params.size() != 1 || !params.contains("name") || !params["name"].is_string())
    return {};
  return params["name"].get<std::string>();
}

std::string folded(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

void notify(const std::string& state) {
  if (auto why = daemon::sd_notify(state); !why.empty())
    spdlog::warn("daemon: sd_notify: {}", why);
}

} // namespace

void reload_config(daemon_context& ctx, const std::string& cause, reply_fn reply) {
  // The files are read when the reload's turn comes, after the adds and
  // removes asked before it have written or deleted their drop-ins.
  auto load = [&ctx, cause, reply]() -> std::optional<std::vector<daemon::unit_spec>> {
    auto loaded = load_units(ctx.paths);
    if (!loaded.errors.empty()) {
      for (const auto& e : loaded.errors)
        spdlog::error("daemon: {}: {}", cause, tunnel::printable(e));
      const auto message = std::to_string(loaded.errors.size()) + " error" +
                           (loaded.errors.size() == 1 ? "" : "s") +
                           " in the config; nothing was changed, the running units stay";
      spdlog::error("daemon: {}: {}", cause, message);
      reply(app_error(error_code::invalid_config, message, json{{"errors", loaded.errors}}));
      return std::nullopt;
    }
    notify(daemon::reloading_state()); // RELOADING=1 with MONOTONIC_USEC (systemd 253+)
    return std::move(loaded.units);
  };
  ctx.supervisor.reload(std::move(load), cause, [reply](const daemon::apply_report& report) {
    notify("READY=1");
    json out = report.to_json();
    out["summary"] = report.summary();
    reply(out);
  });
}

daemon::method_table daemon_methods(daemon_context& ctx) {
  daemon::method_table table;
  auto& sup = ctx.supervisor;
  table.add(
      "daemon.status",
      [&ctx](const json& params, const daemon::connection_state&) -> method_result {
        if (!no_params(params))
          return method_result::invalid_params("daemon.status takes no params");
        const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(steady_clock::now() - ctx.started);
        return json{{"version", WARREN_VERSION},
                    {"pid", ::getpid()},
                    {"uptime_seconds", uptime.count()},
                    {"config", ctx.paths.config.empty() ? json(nullptr) : json(ctx.paths.config)},
                    {"state_dir", ctx.paths.state_dir},
                    {"control", ctx.listeners},
                    {"threads", ctx.supervisor.threads()},
                    {"units", ctx.supervisor.counts()}};
      },
      true);
  table.add(
      "daemon.stop",
      [&ctx](const json& params, const daemon::connection_state&) -> method_result {
        if (!no_params(params))
          return method_result::invalid_params("daemon.stop takes no params");
        ctx.stop(); // stops accepting; this reply is still written
        return json::object();
      },
      false);
  table.add_async(
      "units.list",
      [&sup](const json& params, const daemon::connection_state&, reply_fn reply) {
        if (!no_params(params))
          return reply(method_result::invalid_params("units.list takes no params"));
        sup.list([reply](json units) { reply(json{{"units", std::move(units)}}); });
      },
      true);
  table.add_async(
      "units.get",
      [&sup](const json& params, const daemon::connection_state&, reply_fn reply) {
        const auto name = name_param(params);
        if (name.empty())
          return reply(method_result::invalid_params("units.get takes {\"name\": \"UNIT\"}"));
        sup.get(name, [reply, name](json unit) {
          if (unit.is_null())
            return reply(app_error(error_code::unit_not_found, "no unit named " + name));
          reply(std::move(unit));
        });
      },
      true);
  table.add_async(
      "units.add",
      [&ctx, &sup](const json& params, const daemon::connection_state&, reply_fn reply) {
        auto text = section_toml(params);
        if (!text)
          return reply(method_result::invalid_params(text.error()));
        std::vector<std::string> errors;
        auto spec = check_one_section(*text, "units.add", ctx.paths, errors);
        if (!spec)
          return reply(app_error(error_code::invalid_config,
                                 std::to_string(errors.size()) + " error" + (errors.size() == 1 ? "" : "s") +
                                     " in the unit; it was not added",
                                 json{{"errors", errors}}));
        for (const auto& s : sup.specs())
          if (folded(s.name) == folded(spec->name))
            return reply(app_error(error_code::unit_exists,
                                   "the name " + spec->name + " is taken (by the " +
                                       (s.origin == "file" ? "config file" : "drop-in " + s.name) + ")"));
        const auto name = spec->name;
        sup.add(std::move(spec).value(), [&ctx, &sup, reply, name, text = *text](expected<json> status) {
          if (!status)
            return reply(app_error(error_code::unit_failed, "unit " + name + " did not start: " + status.error()));
          if (auto written = daemon::write_dropin(ctx.paths.dropins(), name, text); !written) {
            spdlog::error("daemon: units.add {}: {}; the unit is removed again", name, written.error());
            sup.remove(name, [reply, why = written.error()](bool) {
              reply(app_error(error_code::internal_error, "the unit was not kept: " + why));
            });
            return;
          }
          spdlog::info("daemon: unit {} added (drop-in {}/{}.toml)", name, ctx.paths.dropins(), name);
          reply(status.value());
        });
      },
      false);
  table.add_async(
      "units.remove",
      [&ctx, &sup](const json& params, const daemon::connection_state&, reply_fn reply) {
        const auto name = name_param(params);
        if (name.empty())
          return reply(method_result::invalid_params("units.remove takes {\"name\": \"UNIT\"}"));
        const auto* spec = sup.spec(name);
        if (!spec)
          return reply(app_error(error_code::unit_not_found, "no unit named " + name));
        if (spec->origin == "file")
          return reply(app_error(error_code::unit_in_config,
                                 "unit " + name + " comes from the config file " + ctx.paths.config +
                                     "; remove it there and reload"));
        sup.remove(name, [&ctx, reply, name](bool removed) {
          if (!removed)
            return reply(app_error(error_code::unit_not_found, "no unit named " + name));
          if (auto gone = daemon::remove_dropin(ctx.paths.dropins(), name); !gone) {
            spdlog::error("daemon: units.remove {}: {}", name, gone.error());
            return reply(app_error(error_code::internal_error,
                                   "unit " + name + " stopped, but its drop-in stays: " + gone.error()));
          }
          spdlog::info("daemon: unit {} removed (and its drop-in)", name);
          reply(json{{"removed", name}});
        });
      },
      false);
  table.add_async(
      "units.restart",
      [&sup](const json& params, const daemon::connection_state&, reply_fn reply) {
        const auto name = name_param(params);
        if (name.empty())
          return reply(method_result::invalid_params("units.restart takes {\"name\": \"UNIT\"}"));
        if (!sup.has(name))
          return reply(app_error(error_code::unit_not_found, "no unit named " + name));
        sup.restart(name, [reply, name](expected<json> status) {
          if (!status)
            return reply(app_error(error_code::unit_failed, "unit " + name + " did not start: " + status.error()));
          reply(status.value());
        });
      },
      false);
  table.add_async(
      "config.reload",
      [&ctx](const json& params, const daemon::connection_state&, reply_fn reply) {
        if (!no_params(params))
          return reply(method_result::invalid_params("config.reload takes no params"));
        reload_config(ctx, "config.reload", std::move(reply));
      },
      false);
  return table;
}

} // namespace warren::cli
