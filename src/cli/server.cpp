// `warren server --listen wss://HOST:PORT`: accepts tunnels (wss, ws, tls,
// tcp), authenticates them by token, and connects their streams to targets
// the destination policy allows (default: none). Arguments in, a server
// unit out (unit/server_unit.hpp), run in the foreground (unit/foreground.hpp).
#include "cli/common.hpp"

#include "unit/foreground.hpp"
#include "unit/server_unit.hpp"

namespace warren::cli {
namespace {

using unit::server_args;

int run(server_args a) {
  init_logging(a.log_level);
  if (a.token_file.empty())
    a.token_env = load_token(""); // WARREN_TOKEN
  if (a.state_dir.empty())
    a.state_dir = default_state_dir();
  auto options = unit::server_options_from(a);
  if (!options)
    throw user_error(options.error());
  auto code = unit::run_foreground([&](boost::asio::any_io_executor ex) {
    return std::make_unique<unit::server_unit>(std::move(ex), std::move(options).value());
  });
  if (!code)
    throw user_error(code.error());
  return *code;
}

} // namespace

std::function<int()> add_server_command(CLI::App& app, std::function<std::string()>* check, unit_builder* build) {
  auto a = std::make_shared<server_args>();
  if (build)
    *build = [a](boost::asio::any_io_executor ex, const unit_context& ctx) -> expected<std::unique_ptr<unit::unit>> {
      server_args args = *a; // no WARREN_TOKEN under the daemon: token_file or users_file
      if (args.state_dir.empty())
        args.state_dir = ctx.state_dir;
      auto options = unit::server_options_from(args);
      if (!options)
        return expected<std::unique_ptr<unit::unit>>::failure(options.error());
      return std::unique_ptr<unit::unit>(
          std::make_unique<unit::server_unit>(std::move(ex), std::move(options).value()));
    };
  if (check)
    *check = [a] {
      auto o = unit::server_options_from(*a);
      return o ? std::string() : o.error();
    };
  auto* cmd = app.add_subcommand("server", "Accept tunnels from warren clients");
  // allow_extra_args(false): one URL per --listen, and "[::]" is not a list.
  cmd->add_option("--listen", a->listen,
                  "wss://HOST:PORT[/PATH], ws://, tls:// or tcp://; HOST * is every interface (IPv4 and IPv6), "
                  "localhost both loopbacks; repeatable")
      ->capture_default_str()
      ->allow_extra_args(false);
  cmd->add_option("--cert", a->cert, "Certificate chain (PEM); default: a self-signed one in --state-dir");
  cmd->add_option("--cert-name", a->cert_names,
                  "A name (or address) the generated certificate is for, instead of the host name; repeatable")
      ->allow_extra_args(false);
  cmd->add_option("--trust-proxy", a->trust_proxy,
                  "A reverse proxy (CIDR) whose X-Forwarded-For names the client: its right-most address not "
                  "in a --trust-proxy block; repeatable; default none (the header is ignored)")
      ->allow_extra_args(false);
  cmd->add_option("--key", a->key, "Private key (PEM)");
  cmd->add_option("--client-ca", a->client_ca, "Require client certificates signed by this CA (mTLS)");
  cmd->add_option("--state-dir", a->state_dir, "Where the generated certificate lives");
  cmd->add_option("--token-file", a->token_file,
                  "File holding the token clients must present (or WARREN_TOKEN): the user 'default'");
  cmd->add_option("--users-file", a->users_file,
                  "Named users (TOML: [[user]] name, token_sha256 / token_file / token, allow); re-read on SIGHUP");
  // allow_extra_args(false): otherwise CLI11 reads "[::1]" as a bracketed list.
  cmd->add_option("--allow", a->allow, "Allowed destination: CIDR[:ports], host[:ports], *.domain[:ports], *")
      ->allow_extra_args(false);
  cmd->add_option("--allow-file", a->allow_file, "More --allow rules, one per line (# comments); re-read on SIGHUP");
  cmd->add_option("--log-level", a->log_level)->capture_default_str();
  cmd->add_option("--family", a->family, "Outbound family policy: auto, prefer-ipv4, ipv4, ipv6")
      ->capture_default_str();
  cmd->add_option("--connect-timeout", a->connect_timeout)->capture_default_str();
  cmd->add_option("--ping-interval", a->ping_interval)->capture_default_str();
  cmd->add_option("--drain-timeout", a->drain_timeout, "On SIGTERM, how long open streams may finish")
      ->capture_default_str();
  cmd->add_option("--udp-idle-timeout", a->udp_idle_timeout)->capture_default_str();
  cmd->add_option("--max-streams-per-client", a->max_streams)->capture_default_str()->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--max-buffer-per-client", a->max_buffer,
                  "Data a client's streams may have buffered on the server (256 KiB windows, all streams together; "
                  "a stream beyond it is refused); e.g. 64M. Default: max-streams-per-client x 256 KiB")
      ->check(k_not_negative)
      ->transform(CLI::AsSizeValue(false));
  cmd->add_option("--max-clients", a->max_clients)->capture_default_str()->check(CLI::Range(1, 100'000));
  cmd->add_option("--max-handshakes", a->max_handshakes,
                  "Connections that may be in their handshake (not authenticated yet) at a time; when all are "
                  "taken, a newcomer evicts the oldest (of the source holding the most, if that is fairer)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  cmd->add_option("--max-handshakes-per-source", a->max_handshakes_per_source,
                  "The same from one source (an IPv4 address or an IPv6 /64)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  cmd->add_option("--lookup-threads", a->lookup_threads, "Threads for outbound name lookups (getaddrinfo), all clients")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--max-lookups-per-client", a->max_lookups,
                  "Name lookups one client may have running at a time; more wait their turn")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--max-opens-per-second-per-client", a->max_opens,
                  "Streams a client may open per second (each costs a connect); faster opens pause the reading "
                  "of its tunnel until they are due, they are not refused")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--open-burst-per-client", a->open_burst,
                  "Streams a client may open at once before --max-opens-per-second-per-client paces it")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--max-connects-per-client", a->max_connects,
                  "Outbound connects a client may have in flight (until connected or refused); more wait their turn")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  refuse_negative_numbers(*cmd);
  return [a] { return run(*a); };
}

} // namespace warren::cli
