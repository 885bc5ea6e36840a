// UDP port forwarding over multi-bound sockets (one per listen address).
// Each client, keyed by (receiving socket, client address), gets its own
// upstream socket connected to the target; every reply leaves from the
// socket that received the request, so a client that sent to ::1 hears back
// from ::1, not from 127.0.0.1 (seeds/000, Phase 2 done properly).
//
// UDP is lossy by contract, so nothing here queues without bound: a datagram
// that cannot be sent at once is dropped and counted; at most
// k_pending_per_session datagrams wait while a new session's target resolves.
// Each session holds a socket, so the owner sizes max_sessions to the
// open-file limit (core/fd_limit.hpp): the table evicts its least recently
// active session before the descriptors run out.
//
// Lifetime: create with std::make_shared, start(), stop(); single-threaded.
#pragma once

#include "core/log_limiter.hpp"
#include "net/address.hpp"
#include "net/happy_eyeballs.hpp"
#include "net/resolver.hpp"
#include "net/udp_sessions.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

namespace warren::net {

struct udp_forwarder_options {
  std::chrono::milliseconds idle_timeout{60'000};
  std::size_t max_sessions = 4096;
  family_policy policy = family_policy::automatic;
  std::optional<boost::asio::ip::address> source;
};

struct udp_forwarder_counters {
  std::uint64_t sessions_opened = 0;
  std::uint64_t sessions_expired = 0;
  std::uint64_t sessions_evicted = 0;
  std::uint64_t datagrams_up = 0;
  std::uint64_t datagrams_down = 0;
  std::uint64_t dropped = 0;
};

class udp_forwarder : public std::enable_shared_from_this<udp_forwarder> {
 public:
  udp_forwarder(boost::asio::any_io_executor ex, resolver& r, std::vector<boost::asio::ip::udp::socket> listeners,
                host_port target, udp_forwarder_options options);
  ~udp_forwarder();
  void start();
  void stop();
  const udp_forwarder_counters& counters() const { return counters_; }
  std::size_t sessions() const { return table_.size(); }

 private:
  struct session;
  void receive(std::size_t listener);
  void on_datagram(std::size_t listener, std::size_t size);
  void open_session(const udp_session_key& key, std::vector<char> first);
  void resolve_session(const std::shared_ptr<session>& s, std::vector<ip_family> order, std::size_t i);
  void connect_session(const std::shared_ptr<session>& s, const boost::asio::ip::address& address);
  void read_upstream(const std::shared_ptr<session>& s);
  void close_session(const std::shared_ptr<session>& s, const char* why);
  void sweep();

  boost::asio::any_io_executor ex_;
  resolver& resolver_;
  std::vector<boost::asio::ip::udp::socket> listeners_;
  std::vector<std::vector<char>> receive_buffers_;
  std::vector<boost::asio::ip::udp::endpoint> senders_;
  host_port target_;
  udp_forwarder_options options_;
  udp_session_table<std::shared_ptr<session>> table_;
  boost::asio::steady_timer sweep_timer_;
  udp_forwarder_counters counters_;
  // Each client address can make a session fail: logged within a budget.
  line_limiter failures_log_{10, std::chrono::seconds(10)};
  bool stopped_ = false;
};

} // namespace warren::net
