// The engine's insides, shared by engine.cpp (set-up, the read loop, ICMP),
// engine_tcp.cpp and engine_udp.cpp. Not a public header.
#pragma once
#include "net/stream_relay.hpp"
#include "tun/engine.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>

#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

namespace warren::tun {

namespace detail {
boost::asio::ip::address to_asio(const ip_addr& a);
std::optional<ip_addr> from_asio(const boost::asio::ip::address& a); // v4-mapped → v4
ip_address to_packet_address(const ip_addr& a);
} // namespace detail

/// A held SYN and, once the upstream answered, the connection waiting for
/// the kernel's accept.
struct held_syn {
  std::vector<std::uint8_t> packet; // the IP packet (no vnet header)
  vnet_header vh;                   // as read: written back with the packet
  bool released = false;            // written to the kernel (upstream connected)
  std::uint64_t connect_op = 0;     // the upstream connect, cancelled when the SYN is given up
  std::optional<boost::asio::ip::tcp::socket> socket;
  stream::byte_stream_ptr stream;
};

/// A joined connection: spliced sockets or two pumped streams.
struct tcp_relay {
  std::shared_ptr<net::relay_handle> spliced;
  std::shared_ptr<std::pair<stream::byte_stream_ptr, stream::byte_stream_ptr>> pumped;
  void cut() {
    if (spliced)
      spliced->cut();
    if (pumped) {
      pumped->first->reset();
      pumped->second->reset();
    }
  }
};

struct engine::impl : std::enable_shared_from_this<engine::impl> {
  impl(boost::asio::any_io_executor ex, int tun_fd, std::shared_ptr<upstream> up, engine_options options);

  expected<bool> start();
  void stop();
  engine_counters counters() const;

  // engine.cpp
  void arm_read();
  void drain();
  void on_frame(std::span<std::uint8_t> frame);
  void write_packet(std::span<const std::uint8_t> packet, const vnet_header& vh);
  void arm_tick();
  void expire(time_point now);
  void on_icmp(std::span<std::uint8_t> packet, const packet_view& view);
  /// Runs `op` on the executor, cancelled by stop() or cancel(key).
  template <class Op>
  std::uint64_t spawn(Op op) {
    const auto key = next_op++;
    auto& signal = cancels[key];
    boost::asio::co_spawn(ex, std::move(op),
                          boost::asio::bind_cancellation_slot(
                              signal.slot(), [self = shared_from_this(), key](const std::exception_ptr&) {
                                self->cancels.erase(key);
                              }));
    return key;
  }
  void cancel(std::uint64_t key) {
    if (auto it = cancels.find(key); it != cancels.end())
      it->second.emit(boost::asio::cancellation_type::terminal);
  }

  // engine_tcp.cpp
  void on_tcp(std::span<std::uint8_t> packet, packet_view& view, const vnet_header& vh, csum_form form);
  std::uint64_t start_connect(std::uint64_t id, endpoint dst);
  /// Forgets a held SYN: its connect is cancelled (a descriptor freed now,
  /// not at the connect timeout), its connection closed.
  void drop_held(std::unordered_map<std::uint64_t, held_syn>::iterator h);
  void connected(std::uint64_t id, tcp_connection conn);
  /// Answers a held SYN: RST for a refusal, ICMP unreachable otherwise.
  void answer_syn(const held_syn& h, upstream_error why);
  void accept_loop(boost::asio::ip::tcp::acceptor& acceptor);
  void accepted(boost::asio::ip::tcp::socket socket);

  // engine_udp.cpp
  void on_udp(std::span<std::uint8_t> packet, const packet_view& view, const vnet_header& vh);
  void on_datagram(const endpoint& app, const endpoint& dst, std::span<const std::uint8_t> payload);
  void open_association(std::uint64_t id);
  void send_up(std::uint64_t id, const endpoint& dst, std::span<const std::uint8_t> payload);
  void close_association(std::uint64_t id);
  void no_udp_upstream(const udp_flow& flow);
  void dns_over_tcp(const endpoint& app, const endpoint& dst, std::span<const std::uint8_t> query);
  void reply_datagram(const endpoint& from, const endpoint& to, std::span<const std::uint8_t> payload);

  boost::asio::any_io_executor ex;
  boost::asio::posix::stream_descriptor tun;
  std::shared_ptr<upstream> upstream_holder;
  upstream& up;
  engine_options options;
  tcp_nat nat;
  udp_flows flows;
  boost::asio::steady_timer tick;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor4, acceptor6;
  std::uint16_t port4 = 0, port6 = 0;
  std::vector<std::uint8_t> rx, tx;
  std::unordered_map<std::uint64_t, held_syn> held;
  std::unordered_map<std::uint64_t, tcp_relay> relays;
  std::unordered_map<std::uint64_t, std::shared_ptr<udp_association>> associations;
  bool udp_unsupported = false; // the upstream refused UDP: DNS over TCP, the rest dropped
  std::size_t dns_in_flight = 0;
  std::map<std::uint64_t, boost::asio::cancellation_signal> cancels; // one per operation in flight
  std::uint64_t next_op = 1; // 0: none
  bool stopped = false;
  engine_counters c;
};

} // namespace warren::tun
