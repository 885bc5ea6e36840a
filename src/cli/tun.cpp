// `warren tun --upstream URL …`: route a machine's or a namespace's traffic
// through SOCKS5 (or a warren tunnel). Arguments in, a tun unit out
// (unit/tun_unit.hpp), run in the foreground (unit/foreground.hpp).
#include "cli/command.hpp"
#include "cli/common.hpp"

#include "unit/foreground.hpp"
#include "unit/tun_unit.hpp"

namespace warren::cli {
namespace {

using unit::tun_args;

int run(const tun_args& args) {
  init_logging(args.log_level);
  auto options = unit::tun_options_from(args);
  if (!options)
    throw user_error(options.error());
  auto code = unit::run_foreground([&](boost::asio::any_io_executor ex) {
    return std::make_unique<unit::tun_unit>(std::move(ex), std::move(options).value());
  });
  if (!code)
    throw user_error(code.error());
  return *code;
}

} // namespace

std::function<int()> add_tun_command(CLI::App& app, std::function<std::string()>* check, unit_builder* build) {
  auto args = std::make_shared<tun_args>();
  if (build)
    *build = [args](boost::asio::any_io_executor ex, const unit_context&) -> expected<std::unique_ptr<unit::unit>> {
      auto options = unit::tun_options_from(*args);
      if (!options)
        return expected<std::unique_ptr<unit::unit>>::failure(options.error());
      return std::unique_ptr<unit::unit>(std::make_unique<unit::tun_unit>(std::move(ex), std::move(options).value()));
    };
  if (check)
    *check = [args] {
      auto o = unit::tun_options_from(*args);
      return o ? std::string() : o.error();
    };
  auto* cmd = app.add_subcommand("tun", "Send a machine's or a namespace's traffic through SOCKS5 or a warren tunnel "
                                        "(a TUN device; needs CAP_NET_ADMIN)");
  cmd->add_option("--upstream", args->upstream,
                  "socks5://[user:pass@]host:port (TCP by CONNECT, UDP by UDP ASSOCIATE), or a warren server URL")
      ->required();
  cmd->add_option("--name", args->name, "TUN device name")->capture_default_str();
  cmd->add_option("--address", args->address, "The device's IPv4 address and prefix (NAT addresses follow it)")
      ->capture_default_str();
  cmd->add_option("--address6", args->address6, "The device's IPv6 address and prefix, or none")->capture_default_str();
  cmd->add_option("--mtu", args->mtu, "Device MTU")->capture_default_str();
  cmd->add_option("--route", args->routes, "Send this CIDR through the device (repeatable)");
  cmd->add_flag("--default-route", args->default_route,
                "Send all traffic through the device; warren's own upstream traffic keeps its path (policy routing "
                "on --mark)");
  cmd->add_option("--exclude", args->excludes, "With --default-route: keep this CIDR off the device (repeatable)");
  cmd->add_option("--fd", args->fd, "Use this TUN descriptor, opened and set up by the parent process");
  cmd->add_flag("--no-icmp-reply", args->no_icmp_reply, "Do not answer ICMP echo requests on the device");
  cmd->add_flag("--no-offload", args->no_offload, "No virtio-net header: no checksum or segmentation offload");
  cmd->add_option("--mark", args->mark, "SO_MARK on warren's upstream sockets (policy routing)")->capture_default_str();
  cmd->add_option("--table", args->table, "Routing table of --default-route")->capture_default_str();
  cmd->add_option("--lock-dir", args->lock_dir, "Where each running device's lock and record live")
      ->capture_default_str();
  cmd->add_option("--max-tcp-sessions", args->max_tcp_sessions, "TCP connections tracked at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--max-udp-flows", args->max_udp_flows, "UDP flows tracked at once (LRU eviction)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--connect-timeout", args->connect_timeout, "Upstream connect timeout, e.g. 10s")
      ->capture_default_str();
  cmd->add_option("--token-file", args->token_file, "A warren upstream's token file");
  cmd->add_option("--pin", args->pin, "A warren upstream's certificate SHA-256 pin");
  cmd->add_option("--ca", args->ca, "A warren upstream's CA bundle");
  cmd->add_flag("--insecure-token", args->insecure_token,
                "Allow sending the token over ws:// or tcp:// to a non-loopback warren upstream");
  cmd->add_option("--log-level", args->log_level, "trace, debug, info, warn, error, off")->capture_default_str();
  refuse_negative_numbers(*cmd);
  return [args] { return run(*args); };
}

} // namespace warren::cli
