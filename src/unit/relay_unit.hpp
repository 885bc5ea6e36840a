// The relay unit: a local TCP/UDP (or Unix stream) port forwarder — the job
// of `socat TCP-LISTEN:…,fork TCP:…` — on the multi-bind listeners and the
// Happy Eyeballs connector. The TCP data path is splice(2), so the kernel
// does the copying.
//
// Two steps, kept apart so the CLI and the config check share the first:
// relay_options_from() turns the strings a user wrote (relay_args) into
// checked options, pure, with one sentence per mistake; relay_unit serves
// them. A relay has nothing to reload: its listen address and target are
// all it is.
#pragma once

#include "net/address.hpp"
#include "net/connector.hpp"
#include "net/stream_relay.hpp"
#include "net/udp_forwarder.hpp"
#include "unit/unit.hpp"

#include <cstddef>
#include <memory>
#include <string>

namespace warren::unit {

/// `warren relay` as written: the flags' strings, defaults as the CLI's.
struct relay_args {
  bool udp = false;
  std::string listen;
  std::string target;
  std::string log_level = "info"; // applied by the caller (process-wide), not checked here
  std::string family = "auto";
  std::string connect_timeout = "10s";
  std::string attempt_delay = "250ms";
  std::string source;
  std::string interface;
  std::string udp_idle_timeout = "60s";
  std::size_t max_udp_sessions = 4096;
  std::size_t max_connections = 10000;
  bool no_target_check = false;
  bool no_splice = false;
};

/// Everything a relay needs, checked.
struct relay_options {
  bool udp = false;
  net::listen_address listen;
  net::host_port target;
  net::connect_options connect;
  net::udp_forwarder_options udp_options;
  std::size_t max_connections = 10000;
  std::string max_connections_why = "--max-connections"; // what bounds it, for the refusal line
  net::relay_mode mode = net::relay_mode::automatic;
  bool check_target = true; // connect (TCP) or resolve (UDP) the target before serving
};

/// The options `a` describes, or the first mistake in one line naming the flag.
expected<relay_options> relay_options_from(const relay_args& a);

class relay_server; // the accept loop and its connections (relay_unit.cpp)

/// Lifetime and threads: see unit.hpp. start() also raises the open-file
/// limit (process-wide, idempotent) and fits the tables under it.
class relay_unit final : public unit {
 public:
  relay_unit(boost::asio::any_io_executor ex, relay_options options);
  ~relay_unit() override;

  std::string_view kind() const override { return "relay"; }
  expected<bool> start() override;
  void stop(std::chrono::milliseconds drain, std::function<void()> done) override;
  void abandon() override;
  reload_result reload(std::string_view cause) override;
  /// Zero: on SIGTERM a relay closes its connections at once, as it always
  /// has (its peers see a reset, never a clean end of a cut transfer).
  std::chrono::milliseconds drain_bound() const override { return std::chrono::milliseconds(0); }
  std::string stop_announcement() const override { return ", shutting down"; }
  unit_counters counters() const override;

 private:
  void check_target();
  void serve();
  void close_listeners();
  void finish_stop();

  std::shared_ptr<const relay_options> options_;
  std::shared_ptr<relay_server> server_;
  std::shared_ptr<net::udp_forwarder> forwarder_;
  std::vector<std::string> notes_; // logged once serving: a start-up error stays the only line
  std::string listening_;
  std::function<void()> stop_done_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0); // weak copies guard posted callbacks
};

} // namespace warren::unit
