// The packet engine of `warren tun`: reads IP packets from the TUN and
// turns them into upstream connections, without a userspace TCP stack.
//
// TCP (the design of sing-box's "system" stack): an application's SYN
// A:a → D:d is held while the upstream connects to D:d; on success it is
// rewritten to N:n → L:l (N:n a NAT endpoint from the pool, L:l the engine's
// listener on the TUN's own address) and written back to the TUN, so the
// kernel's own TCP stack accepts the connection; the kernel's packets
// L:l → N:n are rewritten back to D:d → A:a. The accepted socket (peer N:n)
// is joined to the upstream connection (spliced when both are sockets). A
// refused target answers the held SYN with a RST, no route or a timeout
// with ICMP unreachable quoting it — the application never sees a
// connection accepted and then dropped.
//
// UDP: one upstream association per application socket (full cone),
// replies written back as packets from their source. An upstream without
// UDP (ssh -D) carries DNS queries as DNS over TCP; other UDP is dropped.
// ICMP echo requests to any destination are answered here.
//
// Single-threaded: everything runs on the executor given; the engine owns
// its descriptors. Bad packets are counted by reason and dropped.
#pragma once
#include "core/expected.hpp"
#include "tun/nat_key.hpp"
#include "tun/packet.hpp"
#include "tun/tcp_nat.hpp"
#include "tun/udp_flows.hpp"
#include "tun/upstream.hpp"
#include "tun/vnet_hdr.hpp"
#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <memory>
#include <optional>

namespace warren::tun {

struct engine_options {
  bool vnet_hdr = false;         // the TUN was opened with IFF_VNET_HDR
  bool icmp_reply = true;        // answer echo requests to any destination
  bool verify_checksums = false; // the kernel built what we read; verification costs a pass over the payload
  std::optional<ip_addr> listen4, listen6; // the TUN's own addresses: the listeners bind there
  tcp_nat_options tcp;                     // its pools: NAT addresses from the TUN's prefixes
  udp_flow_options udp;
  std::size_t max_dns_over_tcp = 256; // DNS queries carried over TCP at once (no UDP upstream)
};

struct engine_counters {
  std::uint64_t packets_in = 0, bytes_in = 0;   // read from the TUN
  std::uint64_t packets_out = 0, bytes_out = 0; // written to the TUN
  std::array<std::uint64_t, k_reject_reason_count> rejected{};
  std::uint64_t bad_vnet = 0;          // a vnet header that does not match its packet
  std::uint64_t tcp_no_session = 0;    // a non-SYN segment with no session
  std::uint64_t tcp_rst_sent = 0;      // refused targets, full tables
  std::uint64_t tcp_unreachable = 0;   // ICMP unreachable for a held SYN
  std::uint64_t tcp_connected = 0;     // upstream connections made
  std::uint64_t udp_datagrams_up = 0;  // sent upstream
  std::uint64_t udp_datagrams_down = 0;
  std::uint64_t udp_dropped = 0;       // no association, no UDP upstream, send failures
  std::uint64_t udp_not_unicast = 0;   // multicast, broadcast, unspecified or port 0: never sent upstream
  std::uint64_t dns_over_tcp = 0;      // queries carried over TCP
  std::uint64_t icmp_echo_replies = 0;
  std::uint64_t icmp_dropped = 0;      // other ICMP, or echo with replies off
  std::uint64_t write_errors = 0;      // the TUN refused a packet
  std::uint64_t relay_bytes_up = 0, relay_bytes_down = 0; // TCP payload, of ended connections
  tcp_nat_counters tcp;
  udp_flow_counters udp;
};

class engine {
 public:
  /// `tun_fd` is a non-blocking TUN descriptor; the engine takes it (and
  /// closes it). The upstream lives while any operation on it runs.
  engine(boost::asio::any_io_executor ex, int tun_fd, std::shared_ptr<upstream> up, engine_options options);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Binds the listeners and starts reading the TUN.
  expected<bool> start();
  /// Stops reading, closes every connection and association, cancels
  /// every upstream operation in flight.
  void stop();
  engine_counters counters() const;
  /// The listeners' ports (after start()), for tests and log lines.
  std::uint16_t listen_port4() const;
  std::uint16_t listen_port6() const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace warren::tun
