// `warren daemon`: the long-running service of issue 12. The control plane
// (the Unix control socket, optional tcp:// / tls:// listeners, signals,
// sd_notify) on its own loop, and the supervisor (daemon/supervisor.hpp)
// running the units of the config file and of the drop-ins on --threads
// loops, and the optional --metrics endpoint. The unit methods are in
// cli/daemon_methods.cpp.
#include "cli/command.hpp"
#include "cli/common.hpp"
#include "cli/config_schema.hpp"
#include "cli/daemon_methods.hpp"
#include "cli/daemon_units.hpp"
#include "core/secret_file.hpp"
#include "daemon/control_server.hpp"
#include "daemon/control_socket.hpp"
#include "daemon/metrics_http.hpp"
#include "daemon/metrics_text.hpp"
#include "daemon/sd_notify.hpp"
#include "daemon/watchdog.hpp"
#include "net/address.hpp"
#include "transport/tls.hpp"
#include "tunnel/server_access.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <optional>

namespace warren::cli {
namespace {

namespace asio = boost::asio;

struct daemon_args {
  std::string config, token_file, readonly_token_file, group, state_dir, log_level = "info";
  std::size_t threads = 1;
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

/// The config file's path: --config, or the default one when it exists. Empty: none.
std::string config_file(const daemon_args& a) {
  if (!a.config.empty()) // absolute: the daemon reports it and reads it again on reload
    return std::filesystem::absolute(a.config).lexically_normal().string();
  const auto path = default_config_path();
  std::error_code ec;
  return std::filesystem::exists(path, ec) ? path : std::string();
}

/// The units to run at start: every error printed, then the daemon refuses to start.
std::vector<daemon::unit_spec> boot_units(const daemon_paths& paths) {
  auto loaded = load_units(paths);
  if (!loaded.errors.empty()) {
    for (const auto& e : loaded.errors)
      std::fprintf(stderr, "warren: error: %s\n", tunnel::printable(e).c_str());
    throw user_error(std::to_string(loaded.errors.size()) + " error" + (loaded.errors.size() == 1 ? "" : "s") +
                     " in the config" + (paths.config.empty() ? std::string() : " " + paths.config) +
                     " or its drop-ins; the daemon did not start");
  }
  return loaded.units;
}

/// Two daemons sharing a state directory would share units.d: one's `ctl
/// rm` would delete the other's drop-in, one's reload start the other's
/// units. An exclusive flock on STATE/daemon.lock (the pid in it), held for
/// the process's life and never unlinked (unlinking races a new daemon),
/// refuses the second. Returns the descriptor, kept open.
int lock_state_dir(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec)
      throw user_error("cannot create the state directory " + dir + ": " + ec.message());
    ::chmod(dir.c_str(), 0700);
  }
  const std::string path = dir + "/daemon.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    throw user_error("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    const auto n = ::pread(fd, buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' '))
      pid.pop_back();
    ::close(fd);
    const bool digits = !pid.empty() && pid.size() < 12 && std::all_of(pid.begin(), pid.end(), ::isdigit);
    throw user_error("another warren daemon" + (digits ? " (pid " + pid + ")" : std::string()) +
                     " uses the state directory " + dir + "; give each daemon its own --state-dir");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0)
    spdlog::warn("daemon: cannot write the pid into {}: {}", path, std::strerror(errno));
  return fd;
}

int run(const daemon_args& a) {
  std::signal(SIGHUP, SIG_IGN); // until the handler below takes it: a reload, never the end
  init_logging(a.log_level);
  if (a.threads < 1 || a.threads > 256)
    throw user_error("--threads must be 1 to 256");
  daemon_paths paths{config_file(a), a.state_dir.empty() ? default_state_dir() : a.state_dir};
  const auto config_path = paths.config;
  auto boot = boot_units(paths);

  daemon::control_options options;
  // A reload or units.remove waits for units to drain (a server: up to its
  // drain_timeout, 10 s by default) before it answers.
  options.call_timeout = std::chrono::minutes(2);
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
  const int state_lock = lock_state_dir(paths.state_dir); // held until exit
  (void)state_lock;

  asio::io_context io(1);
  const auto started = steady_clock::now();
  const daemon::daemon_info info{WARREN_VERSION, std::chrono::system_clock::now()};
  // The units' snapshot, read on each unit's executor; `done` runs on the
  // control executor. Defined once the supervisor exists (below).
  std::function<void(std::function<void(std::vector<daemon::unit_snapshot>)>)> collect_units;
  std::function<void()> stop_daemon;

  auto guard = asio::make_work_guard(io); // the loops answer by posting here: run() must wait for them
  // Every event (the units' and the supervisor's) to the events.subscribe
  // connections, as the notification "events.<event>" (events.unit.state,
  // events.reload.done, …); set once the control server exists.
  std::function<void(const nlohmann::json&)> publish;
  daemon::supervisor supervisor(io.get_executor(), a.threads, unit_factory(unit_context{paths.state_dir}),
                                [&publish](nlohmann::json event) {
                                  spdlog::debug("daemon: event {}", daemon::dump(event)); // never throws on bad UTF-8
                                  if (publish)
                                    publish(event);
                                });
  collect_units = [&supervisor](std::function<void(std::vector<daemon::unit_snapshot>)> done) {
    supervisor.snapshot(std::move(done));
  };
  std::vector<std::string> listeners;
  daemon_context ctx{paths, supervisor, started, listeners, [&] { stop_daemon(); }};
  daemon::method_table table = daemon_methods(ctx);
  // metrics.get: the same snapshot as --metrics, as JSON (docs/CONTROL.md).
  table.add_async(
      "metrics.get",
      [&](const nlohmann::json& params, const daemon::connection_state&, daemon::method_reply reply) {
        if (!params.is_null() && !params.empty())
          return reply(daemon::method_result::invalid_params("metrics.get takes no params"));
        collect_units([&info, reply = std::move(reply)](std::vector<daemon::unit_snapshot> units) {
          reply(daemon::metrics_json(units, info));
        });
      },
      true);

  daemon::control_server server(io.get_executor(), std::move(table), options);
  if (auto started_ok = server.start(); !started_ok)
    throw user_error(started_ok.error());
  listeners = server.listeners();
  publish = [&server](const nlohmann::json& event) {
    server.publish("events." + event.value("event", std::string("unit")), event);
  };
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
    hangups.cancel(ignored);
    if (metrics)
      metrics->stop();
    // Subscribers hear it before their connections close (the control
    // server sends what is queued first).
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::system_clock::now().time_since_epoch());
    server.publish("events.daemon.stopping", nlohmann::json{{"event", "daemon.stopping"}, {"at", now.count()}});
    auto both = std::make_shared<int>(2);
    const auto one = [&guard, &signals, both] {
      if (--*both == 0) {
        guard.reset();
        error_code none;
        signals.cancel(none); // a second signal is awaited only while stopping
      }
    };
    server.stop(one);
    supervisor.stop_all([one] {
      spdlog::info("daemon: every unit stopped");
      one();
    });
  };
  // The first SIGTERM/SIGINT stops gracefully (units drain); a second one
  // while that drain runs ends the process at once: connections reset, the
  // socket file left for the next daemon's stale-socket takeover.
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](error_code ec, int sig) {
      if (ec)
        return;
      const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
      if (stopping) {
        spdlog::warn("daemon: second {} received: exiting now (open connections reset)", name);
        std::fflush(stderr);
        std::_Exit(0);
      }
      spdlog::info("daemon: {} received", name);
      wait_signal(); // before the stop: a stop that completes at once cancels this wait, not one made after it
      stop_daemon();
    });
  };
  wait_signal();
  // SIGHUP: config.reload. Never the default action, which would end the
  // daemon without removing its socket and lock.
  std::function<void()> wait_hangup = [&] {
    hangups.async_wait([&](error_code ec, int) {
      if (ec || stopping)
        return;
      spdlog::info("daemon: SIGHUP received; reloading the config");
      reload_config(ctx, "SIGHUP", [](daemon::method_result) {});
      wait_hangup();
    });
  };
  wait_hangup();
  // Every event loop the daemon runs (its own and the units'); the
  // watchdog pings each (WATCHDOG_USEC) and stops petting if one is stuck.
  std::vector<asio::any_io_executor> loops{io.get_executor()};
  for (auto& e : supervisor.executors())
    loops.push_back(e);
  const auto watchdog = daemon::start_watchdog_from_env(std::move(loops));
  // READY=1 once every unit of the config has started. A unit that cannot
  // start at boot ends the daemon with exit 1 (systemd shows the failure);
  // on a reload or through the API the others run and it is reported.
  int exit_code = 0;
  supervisor.apply(std::move(boot), "start", [&](const daemon::apply_report& report) {
    if (!report.failed.empty()) {
      for (const auto& [name, error] : report.failed)
        spdlog::error("daemon: unit {} did not start: {}", name, error);
      spdlog::error("daemon: {} unit{} of the config did not start; stopping (exit 1)", report.failed.size(),
                    report.failed.size() == 1 ? "" : "s");
      exit_code = 1;
      stop_daemon();
      return;
    }
    spdlog::info("daemon: pid {} ready ({} units on {} loop{})", ::getpid(), report.started.size(), a.threads,
                 a.threads == 1 ? "" : "s");
    if (auto why = daemon::sd_notify("READY=1"); !why.empty())
      spdlog::warn("daemon: sd_notify: {}", why);
  });
  io.run();
  spdlog::info("daemon: stopped");
  return exit_code;
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
  cmd->add_option("--state-dir", a->state_dir,
                  "Generated certificates and units.d/ (units added with warren ctl add) (default: "
                  "$XDG_STATE_HOME/warren)");
  cmd->add_option("--threads", a->threads, "Event loops the units are spread over")->capture_default_str();
  cmd->add_option("--metrics", a->metrics,
                  "Serve Prometheus metrics at http://ADDR/metrics (a bare port: localhost, 127.0.0.1 and ::1; "
                  "off by default)");
  cmd->add_option("--log-level", a->log_level, "trace, debug, info, warn, error or off")->capture_default_str();
  return [a] { return run(*a); };
}

} // namespace warren::cli
