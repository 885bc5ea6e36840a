// The daemon's control server (docs/CONTROL.md): listeners on a Unix socket
// and on optional tcp:// and tls:// addresses, and ONE connection handler
// over stream::byte_stream for all of them: read -> frame_decoder ->
// dispatch() -> write, close when the codec says so. Nothing above the
// accept loops knows which transport a connection came on; the only
// difference is the connection_state built at accept (a Unix peer judged by
// SO_PEERCRED is authenticated from the start; a TCP/TLS one must send
// `auth` first, within the auth deadline).
//
// Bounds: connections per listener (the Unix socket has its own budget, so
// strangers on TCP cannot lock the owner out; over budget: closed at
// accept), an idle timeout per connection, a frame limit (over it: -32005,
// then close), failed `auth`s limited per source address
// (transport::auth_limiter). Single-threaded: everything runs on the
// executor given at construction.
//
// Per connection a reader (read → decode → dispatch, one frame at a time,
// an asynchronous method awaited before the next call, so replies keep
// request order) and a writer (the queue of replies and, after
// `events.subscribe`, notifications). A subscriber has no idle timeout.
// Unix slots: --control-group members may hold all but k_admin_reserve (4)
// of them, so the daemon's owner can always get in. While stopping, calls
// get -32007; a TCP/TLS connection that sends no `auth` in time is told so
// (-32000) before it is closed.
#pragma once

#include "core/clock.hpp"
#include "core/expected.hpp"
#include "daemon/dispatch.hpp"
#include "net/listen.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace warren::daemon {

/// One --control-listen: tcp://HOST:PORT or tls://HOST:PORT.
struct control_listen {
  bool tls = false;
  std::string display; // as given
  net::listen_plan plan;
};

/// Parses and plans a --control-listen URL. Plain tcp:// must resolve to
/// loopback addresses only (a TCP port on another interface would carry
/// tokens and replies in clear text): anything else is refused here.
expected<control_listen> parse_control_listen(const std::string& url);

struct control_options {
  std::string unix_path;              // empty: no Unix socket
  std::optional<gid_t> read_only_gid; // --control-group: its members are read-only callers
  std::vector<control_listen> network;
  std::string admin_token;                        // for tcp/tls: required when `network` is not empty
  std::string read_only_token;                    // optional
  std::shared_ptr<boost::asio::ssl::context> tls; // required when a listener is tls
  std::size_t max_unix_connections = 32;          // the Unix socket's own budget
  std::size_t max_network_connections = 32;       // per --control-listen
  duration idle_timeout = std::chrono::minutes(5);
  duration auth_timeout = std::chrono::seconds(5);
  duration drain_timeout = std::chrono::seconds(2);
  duration call_timeout = std::chrono::seconds(10); // an asynchronous method that has not answered gets -32603
  std::uint32_t max_frame = k_default_max_frame;
};

class control_server {
 public:
  control_server(boost::asio::any_io_executor ex, method_table table, control_options options);
  ~control_server();
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;

  /// Binds every listener (the Unix socket path must be free: see
  /// control_socket.hpp) and starts accepting. On failure nothing listens.
  expected<bool> start();

  /// "unix /run/warren/control.sock", "tcp 127.0.0.1:7070, [::1]:7070", ...
  std::vector<std::string> listeners() const;

  /// Stops accepting, closes idle connections, lets a connection finish the
  /// reply it is writing (bounded by drain_timeout), then calls `done` (on
  /// the executor). Safe to call from a method handler.
  void stop(std::function<void()> done);

  std::size_t connections() const;

  /// Sends the notification {"jsonrpc":"2.0","method":METHOD,"params":…} to
  /// every connection that called events.subscribe. Each subscriber has a
  /// bounded queue (1024 notifications, 4 MiB with its replies): one that
  /// does not read loses notifications, counted, and is told
  /// {"method":"events.lost","params":{"count":N}} once there is room.
  /// Call on the executor.
  /// An object's params get "seq": N, numbering the notifications of this
  /// daemon run; the last 256 are kept, so events.subscribe with
  /// {"recent": N} or {"after": SEQ} replays them after its reply (a
  /// follower that reconnects misses nothing the history still holds).
  void publish(std::string_view method, nlohmann::json params);
  std::size_t subscribers() const;
  std::uint64_t events_lost() const; // notifications dropped, all subscribers

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

} // namespace warren::daemon
