// The tunnel client unit: `warren client URL -L … -D …` — keeps a tunnel to
// a warren server and serves ssh-style forwards through it
// (tunnel/client.hpp does the work).
//
// client_options_from() checks the flags (pure: no file is read). The
// secrets — the token, the SOCKS5 and proxy passwords — are read by the
// caller into the options, and the caller gives the unit how to read the
// token again: reload() (SIGHUP) re-reads it for new tunnels, and a token
// that cannot be read keeps the old one.
#pragma once

#include "tunnel/client.hpp"
#include "unit/unit.hpp"

#include <memory>
#include <string>
#include <vector>

namespace warren::unit {

/// The client's proxy flags as written (cli/client_proxy.hpp applies them).
struct proxy_args {
  std::string proxy;         // URL, "none", or empty (the environment decides)
  std::string user;          // --proxy-user
  std::string password_file; // --proxy-password-file
  std::string server_name;   // --server-name
};

/// `warren client` as written: the flags' strings, defaults as the CLI's.
struct client_args {
  std::string url;
  std::vector<std::string> local, dynamic;
  std::string token_file, pin, ca, cert, key;
  bool insecure_token = false;
  bool no_forwards = false; // a tunnel only (warren tun's upstream): no -L/-D needed
  std::string log_level = "info"; // applied by the caller (process-wide), not checked here
  std::string family = "auto";
  std::string connect_timeout = "10s";
  std::string ping_interval = "15s";
  std::string wait_tunnel = "10s";
  std::string udp_idle_timeout = "60s";
  std::string socks_handshake_timeout = "10s";
  std::string socks_user, socks_password_file;
  proxy_args proxy;
};

struct client_unit_options {
  tunnel::client_options client; // dial.token, socks_password and the proxy
                                 // filled in by the caller
  /// Reads the token again (reload); an error keeps the old one. Unset: a
  /// reload has nothing to read.
  std::function<expected<std::string>()> read_token;
  std::string token_origin; // "file PATH" or "from WARREN_TOKEN", for the reload line
};

/// The options `a` describes (secrets not read yet), or the first mistake
/// in one line naming the flag.
expected<client_unit_options> client_options_from(const client_args& a);

/// Lifetime and threads: see unit.hpp. status().peer is the server's
/// address while a tunnel is up.
class client_unit final : public unit {
 public:
  client_unit(boost::asio::any_io_executor ex, client_unit_options options);
  ~client_unit() override;

  std::string_view kind() const override { return "client"; }
  expected<bool> start() override;
  void stop(std::chrono::milliseconds drain, std::function<void()> done) override;
  void abandon() override;
  reload_result reload(std::string_view cause) override;
  /// The token file: the new one is read now (for new tunnels; tunnels up
  /// keep going); one that cannot be read keeps the running settings.
  reload_result reconfigure(unit& replacement, std::string_view cause) override;
  /// About a second for the tunnel to close politely (WebSocket close, TLS
  /// close_notify), as `warren client` always gave it.
  std::chrono::milliseconds drain_bound() const override { return std::chrono::milliseconds(1200); }
  std::string stop_announcement() const override { return ", shutting down"; }
  unit_counters counters() const override;

 private:
  void wait_idle(std::chrono::steady_clock::time_point deadline, std::function<void()> done);
  /// reload() and reconfigure(): reads `from`'s token for new tunnels (and
  /// keeps `from`'s way of reading it), or keeps the old one; logs, emits.
  reload_result take_token(const client_unit_options& from, std::string_view done, std::string_view cause);

  client_unit_options options_;
  std::shared_ptr<net::system_resolver> resolver_;
  std::shared_ptr<tunnel::client> client_;
  std::shared_ptr<boost::asio::steady_timer> timer_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

} // namespace warren::unit
