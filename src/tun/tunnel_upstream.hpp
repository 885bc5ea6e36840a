// The warren-tunnel upstream of `warren tun` (--upstream wss://...): TCP as
// tunnel streams, UDP as tunnel datagram flows, through a tunnel::client
// with no forwards that this upstream owns (it dials at start() and keeps
// its tunnel up, reconnecting as `warren client` does).
//
// What the TUN engine needs from it, and the choices made for that:
//  - connect(target) waits up to the client's wait_for_tunnel for a tunnel,
//    opens a stream and waits for the server's answer (it connects first);
//    the stream (not a socket: nothing to splice) is handed back. The
//    server's RESET becomes the engine's kind: refused → refused,
//    unreachable / timed out / unresolvable → unreachable / timeout,
//    denied by policy and the rest → other; no tunnel → proxy_down.
//  - open_udp() is an association over per-destination flows: the wire
//    protocol's UDP stream names one target and the server connects a
//    socket to it, so replies come from that destination only (port-
//    restricted cone per application socket, not full cone). A datagram to
//    a new destination opens a flow on the tunnel up now, without waiting;
//    with no tunnel it is dropped (the client dials at once). Flows that
//    ended (the server's idle timeout, a lost tunnel) reopen on the next
//    datagram, so an association outlives tunnel reconnects; it ends only
//    by close() or stop().
//  - The mark (SO_MARK) goes on every transport socket the client dials,
//    the proxy's included (transport::dial passes connect options through);
//    names in the URL are resolved by the resolver given (an ares_resolver
//    with the mark in production).
// Lifetime: single-threaded; the engine, the upstream and the client share
// one executor. The upstream must outlive the operations it starts; its
// associations may outlive it (they hold the client).
#pragma once

#include "tun/upstream.hpp"
#include "tunnel/client.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace warren::tun {

namespace detail {
struct tunnel_association_state; // shared by an association and its flows' readers
}

struct tunnel_upstream_options {
  /// The server URL, token, TLS, proxy, session... `forwards` must be empty
  /// (the constructor clears it); wait_for_tunnel bounds a connect() and an
  /// open_udp() without a tunnel.
  tunnel::client_options client;
  std::optional<std::uint32_t> mark; // SO_MARK on the transport sockets (sets client.dial.connect.mark)
  /// Bounds the server's answer to an open (it connects first), once a tunnel is up.
  std::chrono::milliseconds connect_timeout{10'000};
  std::size_t max_udp_destinations = 256; // per association; a datagram to one more is dropped
  std::size_t max_udp_queued = 256;       // replies waiting for receive(), per association
};

/// The engine's view of a warren tunnel (tun/upstream.hpp).
class tunnel_upstream final : public upstream {
 public:
  /// `resolver` (for the server's name) must outlive the upstream.
  tunnel_upstream(boost::asio::any_io_executor ex, net::resolver& resolver, tunnel_upstream_options options);
  /// The same, owning its resolver (what `warren tun` uses).
  tunnel_upstream(boost::asio::any_io_executor ex, std::unique_ptr<net::resolver> resolver,
                  tunnel_upstream_options options)
      : tunnel_upstream(ex, *resolver, std::move(options)) {
    owned_resolver_ = std::move(resolver);
  }
  ~tunnel_upstream() override; // stops the client
  tunnel_upstream(const tunnel_upstream&) = delete;
  tunnel_upstream& operator=(const tunnel_upstream&) = delete;

  /// Starts dialling; `fatal` as tunnel::client::start (a refused token on
  /// the first dial, ...).
  void start(std::function<void(const std::string&)> fatal);
  /// Stops the client: its tunnel closes politely, associations end.
  void stop() override;

  boost::asio::awaitable<tcp_connection> connect(boost::asio::ip::tcp::endpoint target) override;
  boost::asio::awaitable<udp_association_result> open_udp() override;
  std::string describe() const override; // the server URL

  tunnel::client& client() { return *client_; }

 private:
  std::unique_ptr<net::resolver> owned_resolver_; // before client_: destroyed after it
  boost::asio::any_io_executor ex_;
  tunnel_upstream_options options_;
  std::shared_ptr<tunnel::client> client_;
  std::string shown_;
  std::vector<std::weak_ptr<detail::tunnel_association_state>> associations_; // stop() ends them
};

/// The engine's kind for a server's RESET of an open.
upstream_error upstream_error_for(const wire::reset_info& r) noexcept;

} // namespace warren::tun
