// `warren client URL -L ... -D ...`: keeps a tunnel to a warren server and
// serves ssh-style forwards through it. Arguments in, secrets read, a client
// unit out (unit/client_unit.hpp), run in the foreground (unit/foreground.hpp).
#include "cli/client_proxy.hpp"
#include "cli/common.hpp"

#include "core/secret_file.hpp"
#include "unit/client_unit.hpp"
#include "unit/foreground.hpp"

namespace warren::cli {
namespace {

using unit::client_args;

/// The options with their secrets read; throws user_error. `env`: whether
/// WARREN_TOKEN may stand in for a token file (not under the daemon).
unit::client_unit_options read_options(const client_args& a, bool env) {
  auto options = unit::client_options_from(a);
  if (!options)
    throw user_error(options.error());
  auto& o = options.value().client;
  if (env || !a.token_file.empty())
    o.dial.token = load_token(a.token_file);
  apply_proxy_args(a.proxy, o.server, o.dial);
  if (!a.socks_user.empty()) {
    auto line = read_secret_line(a.socks_password_file, "--socks-password-file");
    if (!line)
      throw user_error(line.error());
    if (line->empty())
      throw user_error("--socks-user needs --socks-password-file with the password on its first line");
    o.socks_password = std::move(*line);
  }
  // SIGHUP: the token is read again (--token-file, or WARREN_TOKEN) for the
  // next dials; tunnels up keep going. A file that cannot be read keeps
  // the old token.
  options.value().read_token = [file = a.token_file, env]() -> expected<std::string> {
    if (!env && file.empty())
      return std::string();
    try {
      return load_token(file);
    } catch (const user_error& e) {
      return expected<std::string>::failure(e.what());
    }
  };
  if (!env && a.token_file.empty())
    options.value().token_origin = "(none: no token_file)";
  return std::move(options).value();
}

int run(const client_args& a) {
  init_logging(a.log_level);
  auto options = read_options(a, true);
  auto code = unit::run_foreground([&](boost::asio::any_io_executor ex) {
    return std::make_unique<unit::client_unit>(std::move(ex), std::move(options));
  });
  if (!code)
    throw user_error(code.error());
  return *code;
}

} // namespace

std::function<int()> add_client_command(CLI::App& app, std::function<std::string()>* check, unit_builder* build) {
  auto a = std::make_shared<client_args>();
  if (build)
    *build = [a](boost::asio::any_io_executor ex, const unit_context&) -> expected<std::unique_ptr<unit::unit>> {
      try {
        return std::unique_ptr<unit::unit>(std::make_unique<unit::client_unit>(std::move(ex), read_options(*a, false)));
      } catch (const user_error& e) {
        return expected<std::unique_ptr<unit::unit>>::failure(e.what());
      }
    };
  if (check)
    *check = [a] {
      auto o = unit::client_options_from(*a);
      return o ? std::string() : o.error();
    };
  auto* cmd = app.add_subcommand("client", "Connect to a warren server and forward ports through it");
  cmd->add_option("URL", a->url, "wss://HOST[:PORT][/path], ws://, tls:// or tcp://")->required();
  cmd->add_option("-L,--local", a->local, "[udp/][bind:]port:host:port  forward a local port through the tunnel")
      ->allow_extra_args(false);
  cmd->add_option("-D,--dynamic", a->dynamic, "[bind:]port  SOCKS5 server (names resolved by the server)")
      ->allow_extra_args(false);
  cmd->add_option("--token-file", a->token_file, "File holding the token (or WARREN_TOKEN)");
  cmd->add_option("--pin", a->pin, "Trust a self-signed server by its certificate's sha256:... fingerprint");
  cmd->add_option("--ca", a->ca, "Verify the server against this CA file instead of the system store");
  cmd->add_option("--cert", a->cert, "Client certificate (mTLS)");
  cmd->add_option("--key", a->key, "Client key (mTLS)");
  cmd->add_flag("--insecure-token", a->insecure_token, "Allow sending the token over ws:// or tcp:// to non-loopback");
  cmd->add_option("--log-level", a->log_level)->capture_default_str();
  cmd->add_option("--family", a->family, "auto, prefer-ipv4, ipv4, ipv6")->capture_default_str();
  cmd->add_option("--connect-timeout", a->connect_timeout)->capture_default_str();
  cmd->add_option("--ping-interval", a->ping_interval)->capture_default_str();
  cmd->add_option("--wait-tunnel", a->wait_tunnel, "How long a new local connection waits for the tunnel")
      ->capture_default_str();
  cmd->add_option("--udp-idle-timeout", a->udp_idle_timeout)->capture_default_str();
  cmd->add_option("--socks-handshake-timeout", a->socks_handshake_timeout,
                  "How long a SOCKS5 client may take to send its greeting, authentication and request")
      ->capture_default_str();
  cmd->add_option("--socks-user", a->socks_user, "Require SOCKS5 username/password (RFC 1929)");
  cmd->add_option("--socks-password-file", a->socks_password_file);
  cmd->add_option("--proxy", a->proxy.proxy,
                  "http://HOST[:PORT], socks5:// or socks5h:// proxy to go through, or none (ignores "
                  "HTTPS_PROXY, ALL_PROXY, ...)");
  cmd->add_option("--proxy-user", a->proxy.user, "User name for the proxy (Basic or SOCKS5 username/password)");
  cmd->add_option("--proxy-password-file", a->proxy.password_file, "File whose first line is the proxy password");
  cmd->add_option("--server-name", a->proxy.server_name,
                  "TLS SNI, certificate name and Host header when the URL has an address (or another name)");
  refuse_negative_numbers(*cmd);
  return [a] { return run(*a); };
}

} // namespace warren::cli
