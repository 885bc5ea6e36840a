// `warren daemon --metrics ADDR`: a tiny HTTP/1.1 server for Prometheus.
// `GET /metrics` answers the text exposition format 0.0.4; any other path
// is 404, any other method 405; one request per connection (Connection:
// close). Beast parses the request (in the .cpp only).
//
// The text comes from a callback, `source(reply)`: the daemon collects its
// units' snapshot asynchronously (posting to each unit's executor) and
// calls `reply(text)` once, from any thread; the server posts it back to
// its own executor. So this file knows nothing of the supervisor's shape.
//
// Bounds: at most max_connections open (one more is closed at accept), a
// request head of at most max_header_bytes (431 beyond; a body is never
// parsed, and at most 64 KiB more is read and dropped after the reply, so
// that closing does not reset the reply away), and one deadline from accept
// to the last byte (reading the request, collecting, writing, draining): a
// client that sends slowly or never reads only holds its own slot until
// then, and other scrapes go on meanwhile. A source that has not answered
// by the deadline: the connection is closed without a reply, and the late
// text is dropped.
// Lifetime: stop() before destruction; single-threaded on its executor.
#pragma once

#include "core/clock.hpp"
#include "core/expected.hpp"
#include "net/listen.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace warren::daemon {

using metrics_reply = std::function<void(std::string text)>;
using metrics_source = std::function<void(metrics_reply reply)>;

struct metrics_listen {
  net::listen_plan plan;
  bool loopback_only = true; // false: the caller warns (the numbers show names and peers)
};

/// `--metrics ADDR`: a bare port ("9100") is localhost:9100, which binds
/// 127.0.0.1 and ::1; HOST:PORT, [V6]:PORT and *:PORT as any listen address.
/// A Unix path is refused.
expected<metrics_listen> parse_metrics_listen(std::string_view text);

struct metrics_http_options {
  net::listen_plan plan;
  std::size_t max_connections = 16;
  std::size_t max_header_bytes = 8192;
  duration deadline = std::chrono::seconds(5);
};

class metrics_http {
 public:
  metrics_http(boost::asio::any_io_executor ex, metrics_source source, metrics_http_options options);
  ~metrics_http();
  metrics_http(const metrics_http&) = delete;
  metrics_http& operator=(const metrics_http&) = delete;

  /// Binds every address of the plan and starts accepting; on failure
  /// nothing listens.
  expected<bool> start();
  /// "127.0.0.1:9100, [::1]:9100"
  std::string describe() const;
  /// Closes the listeners and every connection.
  void stop();
  std::size_t connections() const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

} // namespace warren::daemon
