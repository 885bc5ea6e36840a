// `warren daemon`: the long-running service of issue 12. This step runs the
// control plane only: the Unix control socket (and optional tcp:// / tls://
// listeners), `daemon.status`, `metrics.get` and `daemon.stop`, signals,
// sd_notify and the optional --metrics endpoint. The
// config file is read and checked; its units run in a later step.
#include "cli/command.hpp"
#include "cli/common.hpp"
#include "cli/config_schema.hpp"
#include "core/secret_file.hpp"
#include "daemon/control_server.hpp"
#include "daemon/control_socket.hpp"
#include "daemon/metrics_http.hpp"
#include "daemon/metrics_text.hpp"
#include "daemon/sd_notify.hpp"
#include "net/address.hpp"
#include "transport/tls.hpp"
#include "tunnel/server_access.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <optional>

namespace warren::cli {
namespace {

namespace asio = boost::asio;

struct daemon_args {
  std::string config, token_file, readonly_token_file, group, state_dir, log_level = "info";
  std::optional<std::string> control; // given, even empty: no default path then
  std::optional<std::string> metrics; // given, even empty (refused)
  std::vector<std::string> control_listen;
};

std::string token_from(const std::string& file, const char* option) {
  auto read = read_secret_line(file, "token file");
  if (!read)
    throw user_error(std::string(option) + ": " + read.error());
  // As `warren ctl --token-file` reads it (cli::load_token): trailing
  // blanks are not part of the token.
  std::string token = *read;
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t' || token.back() == '\r'))
    token.pop_back();
  if (token.empty())
    throw user_error(std::string(option) + ": " + file + " holds no token");
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
    spdlog::warn("daemon: token file {} is readable by other users; chmod 600 it", file);
  return token;
}

std::shared_ptr<asio::ssl::context> control_certificate(const daemon_args& a,
                                                        const std::vector<daemon::control_listen>& listen) {
  const std::string dir = a.state_dir.empty() ? default_state_dir() : a.state_dir;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || !net::is_valid_hostname(host))
    host[0] = '\0';
  std::vector<std::string> hosts;
  for (const auto& l : listen)
    if (l.tls)
      for (const auto& address : l.plan.addresses)
        hosts.push_back(address.to_string());
  auto made = transport::ensure_self_signed(dir, transport::self_signed_names(host, {}, hosts));
  if (!made)
    throw user_error(made.error());
  auto ctx = transport::make_server_context({made->cert_file, made->key_file, ""});
  if (!ctx)
    throw user_error(ctx.error());
  spdlog::info("daemon: {} self-signed certificate {}", made->created ? "generated" : "using", made->cert_file);
  spdlog::info("daemon: control certificate fingerprint {}", made->fingerprint);
  return *ctx;
}

/// The config file's path to report, after checking it. Empty: none.
std::string check_config_file(const daemon_args& a) {
  std::string path = a.config;
  if (path.empty()) {
    path = default_config_path();
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
      return {};
  }
  std::string text;
  if (auto why = read_config(path, text); !why.empty())
    throw user_error(why);
  const auto result = check_config(text, path);
  if (!result.errors.empty()) {
    for (const auto& e : result.errors)
      std::fprintf(stderr, "warren: error: %s\n", tunnel::printable(e).c_str());
    throw user_error(path + ": " + std::to_string(result.errors.size()) + " error" +
                     (result.errors.size() == 1 ? "" : "s") + "; the daemon did not start");
  }
  spdlog::info("daemon: config {}: {}; units are not run by the daemon yet (the control plane comes first)", path,
               config_summary(result.units));
  return path;
}

int run(const daemon_args& a) {
  std::signal(SIGHUP, SIG_IGN); // until the handler below takes it: a reload, never the end
  init_logging(a.log_level);
  const auto config_path = check_config_file(a);

  daemon::control_options options;
  if (a.control) {
    if (a.control->empty())
      throw user_error("--control is empty; give the control socket's path (or leave --control out for the default)");
    options.unix_path = *a.control;
  } else {
    auto path = daemon::default_control_path();
    if (!path)
      throw user_error(path.error());
    options.unix_path = *path;
  }
  if (!a.group.empty()) {
    auto gid = daemon::lookup_group(a.group);
    if (!gid)
      throw user_error(gid.error());
    options.read_only_gid = *gid;
  }
  for (const auto& url : a.control_listen) {
    auto l = daemon::parse_control_listen(url);
    if (!l)
      throw user_error(l.error());
    options.network.push_back(std::move(*l));
  }
  if (!options.network.empty() && a.token_file.empty())
    throw user_error("--control-listen needs --control-token-file: every TCP or TLS control connection must "
                     "authenticate with a token (a TCP port, even on loopback, is open to every local user)");
  if (!a.readonly_token_file.empty() && options.network.empty())
    spdlog::warn("daemon: --control-readonly-token-file is unused without --control-listen");
  if (!a.token_file.empty())
    options.admin_token = token_from(a.token_file, "--control-token-file");
  if (!a.readonly_token_file.empty())
    options.read_only_token = token_from(a.readonly_token_file, "--control-readonly-token-file");
  if (!options.read_only_token.empty() && options.read_only_token == options.admin_token)
    throw user_error("--control-readonly-token-file holds the admin token; give read-only callers their own");
  if (std::any_of(options.network.begin(), options.network.end(), [](const auto& l) { return l.tls; }))
    options.tls = control_certificate(a, options.network);

  std::optional<daemon::metrics_listen> metrics_at;
  if (a.metrics) {
    if (a.metrics->empty())
      throw user_error("--metrics is empty; give a port (9100) or HOST:PORT, or leave --metrics out");
    auto m = daemon::parse_metrics_listen(*a.metrics);
    if (!m)
      throw user_error(m.error());
    metrics_at = std::move(*m);
  }

  auto lock = daemon::control_lock::acquire(options.unix_path, options.read_only_gid);
  if (!lock)
    throw user_error(lock.error());

  asio::io_context io(1);
  const auto started = steady_clock::now();
  const daemon::daemon_info info{WARREN_VERSION, std::chrono::system_clock::now()};
  // The units' snapshot, read on each unit's executor; `done` gets it on any
  // thread. No units run yet (issue 12's supervisor brings them).
  const auto collect_units = [](std::function<void(std::vector<daemon::unit_snapshot>)> done) { done({}); };
  std::function<void()> stop_daemon;

  /// The methods of this step take no params: anything but none, {} or [] is refused.
  const auto no_params = [](const nlohmann::json& params) { return params.is_null() || params.empty(); };
  daemon::method_table table;
  std::vector<std::string> listeners;
  table.add(
      "daemon.status",
      [&](const nlohmann::json& params, const daemon::connection_state&) -> daemon::method_result {
        if (!no_params(params))
          return daemon::method_result::invalid_params("daemon.status takes no params");
        const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(steady_clock::now() - started);
        return nlohmann::json{{"version", WARREN_VERSION},
                              {"pid", ::getpid()},
                              {"uptime_seconds", uptime.count()},
                              {"config", config_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(config_path)},
                              {"control", listeners},
                              {"units", {{"total", 0}}}};
      },
      true);
  table.add_async(
      "metrics.get",
      [&](const nlohmann::json& params, const daemon::connection_state&, daemon::method_reply reply) {
        if (!no_params(params))
          return reply(daemon::method_result::invalid_params("metrics.get takes no params"));
        collect_units([&info, reply = std::move(reply)](std::vector<daemon::unit_snapshot> units) {
          reply(daemon::metrics_json(units, info));
        });
      },
      true);
  table.add(
      "daemon.stop",
      [&](const nlohmann::json& params, const daemon::connection_state&) -> daemon::method_result {
        if (!no_params(params))
          return daemon::method_result::invalid_params("daemon.stop takes no params");
        asio::post(io, [&] { stop_daemon(); }); // after this reply is on its way
        return nlohmann::json::object();
      },
      false);

  daemon::control_server server(io.get_executor(), std::move(table), options);
  if (auto started_ok = server.start(); !started_ok)
    throw user_error(started_ok.error());
  listeners = server.listeners();
  for (const auto& l : listeners)
    spdlog::info("daemon: control listening on {}", l);

  std::optional<daemon::metrics_http> metrics;
  if (metrics_at) {
    metrics.emplace(
        io.get_executor(),
        [&](daemon::metrics_reply reply) {
          collect_units([&info, reply = std::move(reply)](std::vector<daemon::unit_snapshot> units) {
            reply(daemon::metrics_text(units, info));
          });
        },
        daemon::metrics_http_options{metrics_at->plan});
    if (auto ok = metrics->start(); !ok)
      throw user_error(ok.error());
    spdlog::info("daemon: metrics at /metrics on {}", metrics->describe());
    if (!metrics_at->loopback_only)
      spdlog::warn("daemon: --metrics {} is reachable beyond this host: anyone who can connect reads unit names, "
                   "peers and traffic counts (there is no authentication; firewall it or use a loopback address)",
                   *a.metrics);
  }

  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::signal_set hangups(io, SIGHUP);
  bool stopping = false;
  stop_daemon = [&] {
    if (std::exchange(stopping, true))
      return;
    spdlog::info("daemon: stopping");
    if (auto why = daemon::sd_notify("STOPPING=1"); !why.empty())
      spdlog::warn("daemon: sd_notify: {}", why);
    error_code ignored;
    signals.cancel(ignored);
    hangups.cancel(ignored);
    if (metrics)
      metrics->stop();
    server.stop([] {});
  };
  signals.async_wait([&](error_code ec, int sig) {
    if (ec)
      return;
    spdlog::info("daemon: {} received", sig == SIGINT ? "SIGINT" : "SIGTERM");
    stop_daemon();
  });
  // SIGHUP: the config is checked again (and reported); nothing else runs
  // from it yet. Never the default action, which would end the daemon
  // without removing its socket and lock.
  std::function<void()> wait_hangup = [&] {
    hangups.async_wait([&](error_code ec, int) {
      if (ec || stopping)
        return;
      spdlog::info("daemon: SIGHUP received; checking the config again");
      try {
        if (check_config_file(a).empty())
          spdlog::info("daemon: no config file; nothing to reload");
      } catch (const user_error& e) {
        spdlog::error("daemon: reload: {}; the running settings stay", e.what());
      }
      wait_hangup();
    });
  };
  wait_hangup();
  spdlog::info("daemon: pid {} ready", ::getpid()); // the signal handlers are in place
  if (auto why = daemon::sd_notify("READY=1"); !why.empty())
    spdlog::warn("daemon: sd_notify: {}", why);
  io.run();
  spdlog::info("daemon: stopped");
  return 0;
}

} // namespace

std::function<int()> add_daemon_command(CLI::App& app) {
  auto a = std::make_shared<daemon_args>();
  auto* cmd = app.add_subcommand("daemon", "Run warren as a service, managed over a control socket (warren ctl)");
  cmd->add_option("--config", a->config,
                  "Config file (checked; default: $XDG_CONFIG_HOME/warren/warren.toml if it exists)");
  cmd->add_option(
      "--control", a->control,
      "Unix control socket (default: $XDG_RUNTIME_DIR/warren/control.sock; /run/warren/control.sock as root)");
  cmd->add_option("--control-listen", a->control_listen,
                  "Also accept control connections on tcp://HOST:PORT (loopback only) or tls://HOST:PORT; repeatable");
  cmd->add_option("--control-token-file", a->token_file, "Admin token for --control-listen connections");
  cmd->add_option("--control-readonly-token-file", a->readonly_token_file,
                  "Read-only token for --control-listen connections");
  cmd->add_option("--control-group", a->group, "Members of this group may call read-only methods over the Unix socket");
  cmd->add_option("--metrics", a->metrics,
                  "Serve Prometheus metrics at http://ADDR/metrics (a bare port: localhost, 127.0.0.1 and ::1; "
                  "off by default)");
  cmd->add_option("--state-dir", a->state_dir, "Where the generated TLS certificate lives");
  cmd->add_option("--log-level", a->log_level, "trace, debug, info, warn, error or off")->capture_default_str();
  return [a] { return run(*a); };
}

} // namespace warren::cli
