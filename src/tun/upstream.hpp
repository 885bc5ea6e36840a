// What `warren tun`'s engine needs from an upstream: a TCP connection to a
// destination (refused, unreachable and timed out told apart, because the
// application hears them differently) and UDP associations. Two kinds
// implement it: a SOCKS5 server (socks5_upstream) and a warren tunnel
// (tunnel_upstream). The engine uses one upstream on its own executor.
#pragma once
#include "stream/byte_stream.hpp"
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace warren::tun {

/// What the engine does about a failure.
enum class upstream_error {
  none,
  refused,           // the target refused → RST to the application
  unreachable,       // no route to the target → ICMP unreachable
  timeout,           // no answer in time → ICMP unreachable
  proxy_down,        // the upstream itself cannot be reached → ICMP unreachable
  auth_failed,       // the upstream refused our credentials
  udp_not_supported, // the upstream carries no UDP (ssh -D): DNS goes over TCP
  other,             // not allowed by the upstream's rules, protocol errors, ...
};
std::string_view to_string(upstream_error e) noexcept;

struct upstream_failure {
  upstream_error kind = upstream_error::none;
  std::string message; // one sentence naming the upstream and the target
  explicit operator bool() const noexcept { return kind != upstream_error::none; }
};

/// A connected TCP path to the destination: a raw socket when the upstream
/// is a plain TCP connection (spliced), or a stream (a tunnel's mux stream).
struct tcp_connection {
  upstream_failure failure;
  std::optional<boost::asio::ip::tcp::socket> socket;
  stream::byte_stream_ptr stream;
};

/// One UDP association: datagrams to any destination, replies from any
/// source (full cone per application socket). Single-threaded.
class udp_association {
 public:
  struct received {
    error_code ec; // set once the association ended
    boost::asio::ip::udp::endpoint source;
    std::span<const std::uint8_t> payload; // valid until the caller next waits (co_await)
  };
  virtual ~udp_association() = default;
  /// Sends now or drops (UDP): never waits. The error says why it dropped.
  virtual error_code try_send(const boost::asio::ip::udp::endpoint& destination,
                              std::span<const std::uint8_t> payload) = 0;
  virtual boost::asio::awaitable<received> receive() = 0;
  /// Completes when the upstream ended the association (then a pending
  /// receive() ends too) or close() was called. Run it beside receive().
  virtual boost::asio::awaitable<error_code> wait_closed() = 0;
  virtual void close() = 0;
};

struct udp_association_result {
  upstream_failure failure;
  std::unique_ptr<udp_association> association;
};

class upstream {
 public:
  virtual ~upstream() = default;
  virtual boost::asio::awaitable<tcp_connection> connect(boost::asio::ip::tcp::endpoint target) = 0;
  virtual boost::asio::awaitable<udp_association_result> open_udp() = 0;
  /// "socks5://10.0.0.2:1080", for log lines.
  virtual std::string describe() const = 0;
  /// Ends what the upstream runs on its own (a tunnel's connection and its
  /// reconnects); operations in flight end with a failure.
  virtual void stop() {}
};

} // namespace warren::tun
