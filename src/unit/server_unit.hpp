// The tunnel server unit: `warren server` — accepts tunnels (wss, ws, tls,
// tcp), authenticates them by token, and connects their streams to targets
// the destination policy allows (tunnel/server.hpp does the work).
//
// server_options_from() checks the flags (pure: no file is read, nothing
// is logged; what deserves a warning is returned with the options). start()
// then does what touches the system, in the order `warren server` always
// has: the open-file limit, the certificate (generated into the state
// directory when none is given), the users and allow files, then binding.
// reload() re-reads users, allow rules and certificate, all or nothing.
#pragma once

#include "tunnel/server.hpp"
#include "unit/unit.hpp"

#include <memory>
#include <string>
#include <vector>

namespace warren::unit {

/// `warren server` as written: the flags' strings, defaults as the CLI's.
struct server_args {
  std::vector<std::string> listen{"wss://localhost:8443"};
  std::vector<std::string> cert_names, trust_proxy;
  std::string cert, key, client_ca, state_dir, token_file, users_file, allow_file;
  std::vector<std::string> allow;
  std::string log_level = "info"; // applied by the caller (process-wide), not checked here
  std::string family = "auto";
  std::string connect_timeout = "10s";
  std::string ping_interval = "15s";
  std::string drain_timeout = "10s";
  std::string udp_idle_timeout = "60s";
  std::uint32_t max_streams = 1024;
  std::uint64_t max_buffer = 0; // 0: max_streams x the initial window
  std::size_t max_clients = 1024;
  std::size_t lookup_threads = 32;
  std::size_t max_lookups = 8;
  std::size_t max_handshakes = 256;
  std::size_t max_handshakes_per_source = 32;
  std::uint32_t max_opens = 256;
  std::uint32_t open_burst = 512;
  std::size_t max_connects = 64;
  /// Not a flag: the token WARREN_TOKEN gave (user "default" without
  /// --token-file), read by the caller. Empty: none.
  std::string token_env;
};

struct server_unit_options {
  tunnel::server_options server;  // all but the access settings, which start() reads
  tunnel::access_sources sources; // what start() and reload() read
  std::string cert, key, client_ca;
  std::string state_dir;               // where a generated certificate lives
  std::vector<std::string> cert_names; // checked names for a generated certificate
  std::size_t lookup_threads = 32;
  std::vector<std::string> warnings; // logged by start(), before anything else
};

/// The options `a` describes, or the first mistake in one line naming the flag.
expected<server_unit_options> server_options_from(const server_args& a);

/// Lifetime and threads: see unit.hpp.
class server_unit final : public unit {
 public:
  server_unit(boost::asio::any_io_executor ex, server_unit_options options);
  ~server_unit() override;

  std::string_view kind() const override { return "server"; }
  expected<bool> prepare() override;
  expected<bool> start() override;
  void stop(std::chrono::milliseconds drain, std::function<void()> done) override;
  void abandon() override;
  reload_result reload(std::string_view cause) override;
  /// token_file, users_file, allow, allow_file, and cert and key when both
  /// the running and the new settings give them.
  reload_result reconfigure(unit& replacement, std::string_view cause) override;
  std::chrono::milliseconds drain_bound() const override { return options_.server.drain_timeout; }
  std::string stop_announcement() const override;
  unit_counters counters() const override;

 private:
  expected<bool> read_settings(); // prepare()'s steps
  bool prepared_ = false;
  server_unit_options options_;
  std::shared_ptr<net::system_resolver> resolver_;
  std::shared_ptr<tunnel::server> server_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

} // namespace warren::unit
