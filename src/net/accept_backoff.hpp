// What an accept loop does when accept() fails. The failures that matter
// (EMFILE and ENFILE: out of descriptors; ENOBUFS, ENOMEM) last until
// something else closes, and the listening socket stays readable meanwhile,
// so accepting again at once spins a core and writes a line per spin. Every
// accept loop (the server's, the client's forwards, the relay's) instead
// waits k_delay before the next accept and logs within a budget: 3 lines per
// 10 s, then a count. Connections wait in the kernel's backlog meanwhile and
// are served once descriptors free up.
// Lifetime: owned beside the acceptors it serves; single-threaded.
#pragma once

#include "core/error.hpp"
#include "core/log_limiter.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace warren::net {

class accept_backoff {
 public:
  static constexpr std::chrono::milliseconds k_delay{100};

  /// `who` starts each log line ("server", "relay", "forward 1080").
  explicit accept_backoff(std::string who) : who_(std::move(who)) {}

  /// After a failed accept: logs it (within the budget) and calls `retry`
  /// k_delay later. `retry` should hold what it needs alive (the owner's
  /// shared_ptr) and check that the acceptor is still wanted.
  void failed(const boost::asio::any_io_executor& ex, const error_code& ec, std::function<void()> retry);

 private:
  std::string who_;
  line_limiter log_{3, std::chrono::seconds(10)};
};

} // namespace warren::net
