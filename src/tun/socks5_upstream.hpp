// The SOCKS5 upstream of `warren tun`: TCP by CONNECT, UDP by UDP ASSOCIATE
// (RFC 1928 §7), against any SOCKS5 server (dante, ssh -D, warren's own -D).
//
// What the TUN engine needs from it, and the choices made for that:
//  - connect(target) hands back the raw tcp::socket once the server replied
//    "succeeded", so the engine can splice it to the accepted socket; a
//    failure comes with a kind the engine turns into packets (refused → RST,
//    unreachable or timeout → ICMP unreachable quoting the SYN).
//  - udp_associate() keeps the control connection open and connects one UDP
//    socket to the relay the server named (its own address when it named
//    0.0.0.0 or ::); the association ends when the control connection does.
//    A server without UDP ASSOCIATE (ssh -D) is its own kind, so the engine
//    falls back to DNS over TCP.
//  - Every socket (the control connections through the Happy Eyeballs
//    connector, the UDP socket) carries the mark when one is configured: the
//    policy routing of --default-route keeps marked packets off the TUN.
// The handshake itself is proxy/socks5_client.* (shared with the tunnel
// client's proxy step). Lifetime: the upstream is used on one executor and
// must outlive the operations it starts; a `socks5_association` lives on
// the same executor, owned by the engine.
#pragma once

#include "core/error.hpp"
#include "net/address.hpp"
#include "net/resolver.hpp"
#include "proxy/socks5.hpp"
#include "tun/upstream.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace warren::tun {

struct socks5_upstream_options {
  net::host_port server;                                 // the SOCKS5 server
  std::optional<proxy::socks5::credentials> credentials; // RFC 1929 when set
  std::optional<std::uint32_t> mark;                     // SO_MARK on every socket
  std::string interface;                                 // SO_BINDTODEVICE when not empty
  /// Bounds reaching the server and its handshake, CONNECT reply included
  /// (the server answers once the target accepted or refused).
  std::chrono::milliseconds connect_timeout{10'000};
};

/// The options of a socks5:// URL (user:pass@ taken as RFC 1929 credentials).
/// socks5h:// is refused: tun hands the proxy addresses, never names.
expected<socks5_upstream_options> socks5_upstream_options_from_url(std::string_view url);

/// One UDP ASSOCIATE. Single-threaded (its executor). At most one send and
/// one receive in flight at a time (the engine's per-association queue).
class socks5_association final : public udp_association {
 public:
  using received = udp_association::received; // ec: operation_aborted once closed

  socks5_association(boost::asio::ip::tcp::socket control, boost::asio::ip::udp::socket udp,
                     boost::asio::ip::udp::endpoint relay);
  socks5_association(const socks5_association&) = delete;
  socks5_association& operator=(const socks5_association&) = delete;

  /// One datagram to `destination` through the relay (header + payload in
  /// one gather send; no copy of the payload).
  boost::asio::awaitable<error_code> send(const boost::asio::ip::udp::endpoint& destination,
                                          std::span<const std::uint8_t> payload);
  /// The next datagram from the relay. Datagrams with FRAG ≠ 0 or a header
  /// that does not parse (or names a domain) are dropped and counted.
  boost::asio::awaitable<received> receive() override;
  /// The same without waiting: the datagram is sent now or dropped.
  error_code try_send(const boost::asio::ip::udp::endpoint& destination,
                      std::span<const std::uint8_t> payload) override;
  /// Completes when the control connection ends (eof: the server closed it)
  /// or close() is called; then the UDP socket is closed too, so a pending
  /// receive() ends. Run it beside the receive loop.
  boost::asio::awaitable<error_code> wait_closed() override;
  /// Ends the association: closes the control connection and the UDP socket.
  void close() override;

  const boost::asio::ip::udp::endpoint& relay() const { return relay_; }
  std::uint64_t fragments_dropped() const { return fragments_dropped_; }
  std::uint64_t malformed_dropped() const { return malformed_dropped_; }

 private:
  boost::asio::ip::tcp::socket control_;
  boost::asio::ip::udp::socket udp_;
  boost::asio::ip::udp::endpoint relay_;
  std::uint64_t fragments_dropped_ = 0;
  std::uint64_t malformed_dropped_ = 0;
};

class socks5_upstream {
 public:
  /// `resolver` (for the server's name; an ares_resolver with the mark in
  /// production) must outlive the upstream.
  socks5_upstream(boost::asio::any_io_executor ex, net::resolver& resolver, socks5_upstream_options options);

  struct connect_result {
    upstream_failure failure;
    std::optional<boost::asio::ip::tcp::socket> socket; // set on success
  };
  /// CONNECT to `target`; the socket is connected to the target through the
  /// server, with no byte of the target's read yet.
  boost::asio::awaitable<connect_result> connect(boost::asio::ip::tcp::endpoint target);

  struct associate_result {
    upstream_failure failure;
    std::unique_ptr<socks5_association> association; // set on success
  };
  boost::asio::awaitable<associate_result> udp_associate();

  const socks5_upstream_options& options() const { return options_; }

 private:
  boost::asio::any_io_executor ex_;
  net::resolver& resolver_;
  socks5_upstream_options options_;
  std::string shown_; // socks5://host:port for messages (never the password)
};

/// The engine's view of a SOCKS5 upstream (tun/upstream.hpp).
class socks5_tun_upstream final : public upstream {
 public:
  /// Owns its resolver: the engine keeps the upstream alive while any of
  /// its operations runs.
  socks5_tun_upstream(boost::asio::any_io_executor ex, std::unique_ptr<net::resolver> resolver,
                      socks5_upstream_options options)
      : resolver_(std::move(resolver)), socks5_(std::move(ex), *resolver_, std::move(options)) {}
  boost::asio::awaitable<tcp_connection> connect(boost::asio::ip::tcp::endpoint target) override;
  boost::asio::awaitable<udp_association_result> open_udp() override;
  std::string describe() const override;

 private:
  std::unique_ptr<net::resolver> resolver_;
  socks5_upstream socks5_;
};

} // namespace warren::tun
