// `warren relay [--udp] LISTEN TARGET`: a local TCP/UDP port forwarder (the
// job of `socat TCP-LISTEN:...,fork TCP:...`). Arguments in, a relay unit
// out (unit/relay_unit.hpp), run in the foreground (unit/foreground.hpp).
#include "cli/command.hpp"
#include "cli/common.hpp"

#include "unit/foreground.hpp"
#include "unit/relay_unit.hpp"

namespace warren::cli {
namespace {

using unit::relay_args;

int run(const relay_args& args) {
  init_logging(args.log_level);
  auto options = unit::relay_options_from(args);
  if (!options)
    throw user_error(options.error());
  auto code = unit::run_foreground([&](boost::asio::any_io_executor ex) {
    return std::make_unique<unit::relay_unit>(std::move(ex), std::move(options).value());
  });
  if (!code)
    throw user_error(code.error());
  return *code;
}

} // namespace

std::function<int()> add_relay_command(CLI::App& app, std::function<std::string()>* check, unit_builder* build) {
  auto args = std::make_shared<relay_args>();
  if (build)
    *build = [args](boost::asio::any_io_executor ex, const unit_context&) -> expected<std::unique_ptr<unit::unit>> {
      auto options = unit::relay_options_from(*args);
      if (!options)
        return expected<std::unique_ptr<unit::unit>>::failure(options.error());
      return std::unique_ptr<unit::unit>(std::make_unique<unit::relay_unit>(std::move(ex), std::move(options).value()));
    };
  if (check)
    *check = [args] {
      auto o = unit::relay_options_from(*args);
      return o ? std::string() : o.error();
    };
  auto* cmd = app.add_subcommand("relay", "Forward a local TCP or UDP port to a target (like socat, dual-stack)");
  cmd->add_flag("--udp", args->udp, "Forward UDP instead of TCP");
  cmd->add_option("LISTEN", args->listen,
                  "host:port, [v6]:port, *:port or a Unix socket path; localhost binds 127.0.0.1 and ::1")
      ->required();
  cmd->add_option("TARGET", args->target, "host:port or [v6]:port to forward to")->required();
  cmd->add_option("--log-level", args->log_level, "trace, debug, info, warn, error, off")->capture_default_str();
  cmd->add_option("--family", args->family, "Address family policy: auto (RFC 8305), prefer-ipv4, ipv4, ipv6")
      ->capture_default_str();
  cmd->add_option("--connect-timeout", args->connect_timeout, "Overall connect timeout, e.g. 10s")
      ->capture_default_str();
  cmd->add_option("--attempt-delay", args->attempt_delay, "Happy Eyeballs attempt delay, 100ms-2s")
      ->capture_default_str();
  cmd->add_option("--source", args->source, "Source IP address for outbound connections");
  cmd->add_option("--interface", args->interface, "Outbound interface (SO_BINDTODEVICE)");
  cmd->add_option("--udp-idle-timeout", args->udp_idle_timeout, "Close idle UDP sessions after this long")
      ->capture_default_str();
  cmd->add_option("--max-udp-sessions", args->max_udp_sessions, "UDP sessions kept at once (LRU eviction)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--max-connections", args->max_connections, "TCP connections open at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_flag("--no-target-check", args->no_target_check,
                "Start even if the target is unreachable now (it is checked at start-up by default)");
  cmd->add_flag("--no-splice", args->no_splice, "Copy through user space instead of splice(2)");
  refuse_negative_numbers(*cmd);
  return [args] { return run(*args); };
}

} // namespace warren::cli
