// `warren client URL -L ... -D ...`: keeps a tunnel to a warren server and
// serves ssh-style forwards through it.
#include "cli/client_proxy.hpp"
#include "cli/common.hpp"

#include "core/fd_limit.hpp"
#include "core/secret_file.hpp"
#include "tunnel/client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <limits>

namespace warren::cli {
namespace {

namespace asio = boost::asio;

struct client_args {
  std::string url;
  std::vector<std::string> local, dynamic;
  std::string token_file, pin, ca, cert, key;
  bool insecure_token = false;
  std::string log_level = "info";
  std::string family = "auto";
  std::string connect_timeout = "10s";
  std::string ping_interval = "15s";
  std::string wait_tunnel = "10s";
  std::string udp_idle_timeout = "60s";
  std::string socks_handshake_timeout = "10s";
  std::string socks_user, socks_password_file;
  proxy_args proxy;
};

int run(const client_args& a) {
  std::signal(SIGHUP, SIG_IGN); // until the handler below re-reads the token on it
  init_logging(a.log_level);
  tunnel::client_options o;
  auto url = transport::parse_url(a.url);
  if (!url)
    throw user_error(url.error());
  o.server = *url;
  if (a.local.empty() && a.dynamic.empty())
    throw user_error("nothing to forward: give at least one -L or -D");
  for (const auto& l : a.local) {
    auto f = tunnel::parse_local_forward(l);
    if (!f)
      throw user_error(f.error());
    o.forwards.push_back(*f);
  }
  for (const auto& d : a.dynamic) {
    auto f = tunnel::parse_dynamic_forward(d);
    if (!f)
      throw user_error(f.error());
    o.forwards.push_back(*f);
  }
  o.dial.token = load_token(a.token_file);
  o.dial.insecure_token = a.insecure_token;
  o.dial.tls = {a.ca, a.pin, a.cert, a.key};
  apply_proxy_args(a.proxy, o.server, o.dial);
  if (!a.pin.empty()) {
    auto p = transport::parse_pin(a.pin);
    if (!p)
      throw user_error("--pin: " + p.error());
  }
  auto policy = net::parse_family_policy(a.family);
  if (!policy)
    throw user_error("--family '" + a.family + "' is not one of auto, prefer-ipv4, ipv4, ipv6");
  o.dial.connect.he.policy = *policy;
  o.dial.connect.he.timeout = duration_arg(a.connect_timeout, "--connect-timeout");
  o.dial.connect.log_label = "tunnel connect";
  o.session.ping_interval = duration_arg(a.ping_interval, "--ping-interval");
  o.wait_for_tunnel = duration_arg(a.wait_tunnel, "--wait-tunnel");
  o.udp_idle_timeout = duration_arg(a.udp_idle_timeout, "--udp-idle-timeout");
  o.socks_handshake_timeout = duration_arg(a.socks_handshake_timeout, "--socks-handshake-timeout");
  if (o.socks_handshake_timeout < std::chrono::milliseconds(100))
    throw user_error("--socks-handshake-timeout must be at least 100ms");
  if (!a.socks_user.empty()) {
    if (a.socks_password_file.empty())
      throw user_error("--socks-user needs --socks-password-file with the password on its first line");
    auto line = read_secret_line(a.socks_password_file, "--socks-password-file");
    if (!line)
      throw user_error(line.error());
    if (line->empty())
      throw user_error("--socks-user needs --socks-password-file with the password on its first line");
    o.socks_password = std::move(*line);
    o.socks_user = a.socks_user;
  }

  // Each local connection holds a socket (a SOCKS5 UDP association two).
  // Past what the open-file limit leaves, new ones are closed at once, so
  // that the tunnel can always redial.
  const auto fds = raise_fd_limit();
  o.max_local_descriptors = fit_in_descriptors(fds.now, 1, std::numeric_limits<std::size_t>::max());
  if (fds.now != 0)
    spdlog::debug("client: at most {} descriptors for local connections (open-file limit {})",
                  o.max_local_descriptors, fds.now);

  asio::io_context io(1);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  net::system_resolver resolver;
  auto c = std::make_shared<tunnel::client>(io.get_executor(), resolver, o);
  auto bound = c->bind();
  if (!bound)
    throw user_error(bound.error());
  if (fds.now != fds.before) // logged once started: a start-up error stays the only line
    spdlog::info("client: open-file limit raised from {} to {}", fds.before, fds.now);
  for (const auto& line : *bound)
    spdlog::info("forward: {}", line);
  std::string fatal;
  asio::signal_set hangups(io);
  c->start([&](const std::string& why) {
    fatal = why;
    c->stop();
    io.stop();
  });
  signals.async_wait([&](error_code ec, int signo) {
    if (ec)
      return;
    spdlog::info("client: {} received, shutting down", signo == SIGINT ? "SIGINT" : "SIGTERM");
    c->stop();
    hangups.cancel();
    // Give the tunnel up to ~1 s to close politely (WebSocket close, TLS close_notify).
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          asio::steady_timer t(io);
          for (int i = 0; i < 24 && !c->idle(); ++i) {
            t.expires_after(std::chrono::milliseconds(50));
            co_await t.async_wait(asio::use_awaitable);
          }
          io.stop();
        },
        asio::detached);
  });
  // SIGHUP: the token is read again (--token-file, or WARREN_TOKEN) for the
  // next dials; tunnels up keep going. A file that cannot be read keeps
  // the old token.
  hangups.add(SIGHUP);
  std::function<void()> on_hangup = [&] {
    hangups.async_wait([&](error_code ec, int) {
      if (ec)
        return;
      try {
        c->set_token(load_token(a.token_file));
        spdlog::info("client: SIGHUP received; the token {} is read again for new tunnels",
                     a.token_file.empty() ? std::string("from WARREN_TOKEN") : "file " + a.token_file);
      } catch (const user_error& e) {
        spdlog::warn("client: SIGHUP received; keeping the old token: {}", e.what());
      }
      on_hangup();
    });
  };
  on_hangup();
  io.run();
  if (!fatal.empty())
    throw user_error("cannot connect to " + transport::to_string(o.server) + ": " + fatal);
  spdlog::info("client: stopped");
  return 0;
}

} // namespace

std::function<int()> add_client_command(CLI::App& app) {
  auto a = std::make_shared<client_args>();
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
