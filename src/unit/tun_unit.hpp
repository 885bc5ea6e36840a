// `warren tun` as a unit: a TUN device, its addresses and routes (policy
// routing for --default-route), and the packet engine sending the device's
// traffic through an upstream (SOCKS5, or a warren tunnel). docs/TUN.md.
#pragma once
#include "core/expected.hpp"
#include "net/resolver.hpp"
#include "tun/device.hpp"
#include "tun/engine.hpp"
#include "tun/ownership.hpp"
#include "tun/routing.hpp"
#include "tun/socks5_upstream.hpp"
#include "unit/client_unit.hpp"
#include "unit/unit.hpp"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace warren::unit {

/// The command line's values, unchecked.
struct tun_args {
  std::string upstream;
  std::string name = "wt0";
  std::string address = "198.18.0.1/15";
  std::string address6 = "fd00:77::1/64"; // "none": no IPv6
  unsigned mtu = 1500;
  std::vector<std::string> routes;
  bool default_route = false;
  std::vector<std::string> excludes;
  int fd = -1;
  bool no_icmp_reply = false;
  bool no_offload = false;
  std::uint32_t mark = tun::k_default_fwmark;
  std::uint32_t table = tun::k_default_table;
  std::string lock_dir = tun::k_default_lock_dir;
  std::size_t max_tcp_sessions = 65536;
  std::size_t max_udp_flows = 16384;
  std::string connect_timeout = "10s";
  std::string log_level = "info";
  // A warren tunnel upstream (wss:// ws:// tls:// tcp://).
  std::string token_file;
  std::string pin;
  std::string ca;
  bool insecure_token = false;
};

/// What start() needs, checked: no file and no device is touched here.
struct tun_options {
  std::string upstream_url;
  std::optional<tun::socks5_upstream_options> socks5; // socks5://
  std::optional<client_unit_options> tunnel;          // a warren server URL (token read at start)
  tun::routing_options routing;
  std::optional<tun::ip_prefix> address4, address6;
  int fd = -1;
  bool offload = true;
  bool icmp_reply = true;
  std::uint32_t mark = tun::k_default_fwmark;
  std::string lock_dir;
  std::size_t max_tcp_sessions = 65536;
  std::size_t max_udp_flows = 16384;
  std::string token_file, pin, ca;
  std::chrono::milliseconds connect_timeout{10'000};
};

expected<tun_options> tun_options_from(const tun_args& args);

/// The engine's table bounds under an open-file limit (0: unknown, then as
/// asked): a TCP session holds two sockets and two splice pipes (6), a UDP
/// flow a control connection and a UDP socket (2); TCP gets three quarters
/// of the descriptors, UDP the rest, and pending SYNs at most the sessions.
struct tun_tables {
  std::size_t max_tcp_sessions = 0;
  std::size_t max_pending = 0;
  std::size_t max_udp_flows = 0;
};
tun_tables fit_tun_tables(std::uint64_t fd_limit, std::size_t tcp_sessions, std::size_t pending, std::size_t udp_flows);

/// The NAT addresses: the 8 addresses after the TUN's own in its prefix.
expected<std::vector<tun::ip_addr>> nat_pool(const tun::ip_prefix& address);

class tun_unit final : public unit {
 public:
  tun_unit(boost::asio::any_io_executor ex, tun_options options);
  ~tun_unit() override;
  std::string_view kind() const override { return "tun"; }
  expected<bool> start() override;
  void stop(std::chrono::milliseconds drain, std::function<void()> done) override;
  void abandon() override;
  reload_result reload(std::string_view cause) override;
  std::chrono::milliseconds drain_bound() const override { return std::chrono::milliseconds(0); }
  std::string stop_announcement() const override { return ", removing its device, routes and rules"; }
  unit_counters counters() const override;
  tun::engine_counters engine_counters() const;

 private:
  void teardown();

  tun_options options_;
  std::optional<tun::device> device_;
  std::optional<tun::routing_session> routing_;
  std::shared_ptr<tun::upstream> upstream_;
  std::unique_ptr<tun::engine> engine_;
};

} // namespace warren::unit
