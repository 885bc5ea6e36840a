// The tunnel client: keeps one tunnel to the server up (reconnecting with
// backoff after a drop, local listeners staying bound meanwhile) and serves
// the forwards through it: -L TCP and UDP port forwards and -D SOCKS5
// (CONNECT and UDP ASSOCIATE, names resolved by the server: socks5h).
// A new local connection waits for the tunnel up to wait_for_tunnel, then
// gets a clean refusal (a reset, or a SOCKS5 failure reply).
// Lifetime: make_shared, bind(), start(), stop(); single-threaded.
#pragma once

#include "net/listen.hpp"
#include "net/udp_sessions.hpp"
#include "stream/event.hpp"
#include "transport/transport.hpp"
#include "tunnel/backoff.hpp"
#include "tunnel/forward.hpp"
#include "wire/session.hpp"

#include <boost/asio/ip/udp.hpp>

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace warren::tunnel {

struct client_options {
  transport::url server;
  transport::dial_options dial;
  wire::session_config session;
  std::vector<forward_spec> forwards;
  std::chrono::milliseconds wait_for_tunnel{10'000};
  std::chrono::milliseconds udp_idle_timeout{60'000};
  std::size_t max_udp_flows = 4096;
  std::string socks_user; // RFC 1929 username/password required when set
  std::string socks_password;
};

class client : public std::enable_shared_from_this<client> {
 public:
  client(boost::asio::any_io_executor ex, net::resolver& r, client_options options);
  ~client();

  /// Binds every forward's listen address; the error names the forward.
  expected<std::vector<std::string>> bind();
  /// Starts the tunnel supervisor and the forwards. `fatal` is called if
  /// the very first connection fails for a reason retrying cannot fix
  /// (token refused, certificate pin mismatch).
  void start(std::function<void(const std::string&)> fatal);
  void stop();
  /// No tunnel is up (after stop(): the polite close has finished).
  bool idle() const { return !current_; }

 private:
  struct forward;
  struct udp_flow;
  boost::asio::awaitable<void> supervise();
  boost::asio::awaitable<std::shared_ptr<wire::session>> tunnel_for_new_stream();
  void accept_loop(forward& f, boost::asio::ip::tcp::acceptor& acceptor);
  boost::asio::awaitable<void> serve_tcp_forward(boost::asio::ip::tcp::socket socket, forward& f);
  boost::asio::awaitable<void> serve_socks(boost::asio::ip::tcp::socket socket);
  boost::asio::awaitable<void> socks_udp(boost::asio::ip::tcp::socket& control, std::vector<std::uint8_t> leftover);
  void udp_receive(forward& f, std::size_t listener);
  void udp_flow_reader(forward& f, std::shared_ptr<udp_flow> flow);
  void udp_sweep();

  boost::asio::any_io_executor ex_;
  net::resolver& resolver_;
  client_options options_;
  std::vector<std::unique_ptr<forward>> forwards_;
  std::shared_ptr<wire::session> current_;
  stream::async_event tunnel_changed_;
  backoff backoff_;
  std::mt19937_64 rng_;
  std::function<void(const std::string&)> fatal_;
  bool ever_connected_ = false;
  bool stopped_ = false;
  boost::asio::steady_timer sweep_timer_;
  boost::asio::steady_timer retry_timer_;
};

} // namespace warren::tunnel
