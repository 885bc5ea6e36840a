// Relays bytes between two connected stream sockets (TCP or Unix) until both
// directions have ended. On Linux the data moves socket -> pipe -> socket with
// splice(2), never entering user space; where a pipe cannot be had it falls
// back to a buffered copy.
//
// Half-close is carried through: EOF from one side becomes shutdown(SHUT_WR)
// on the other, and the other direction keeps flowing. A reset or error on
// either side ends both directions, and the other side is reset too (SO_LINGER
// 0), so a peer sees the failure instead of a clean EOF.
//
// Lifetime: owned by its own pending operations (shared_from_this); `done`
// runs once, on the executor, after both sockets are closed. Single-threaded.
#pragma once

#include "core/error.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <memory>

namespace warren::net {

struct relay_stats {
  std::uint64_t a_to_b = 0;
  std::uint64_t b_to_a = 0;
  bool spliced = false;
};

enum class relay_mode { automatic, copy }; // copy: never splice (benchmarks, odd fds)

/// A running relay as its owner sees it: the bytes moved so far, and a way
/// to cut it. Touch it only on the relay's executor. Holding it keeps the
/// relay's memory, not the relay, alive: once `done` has run, progress()
/// stays at the final counts and cut() does nothing.
class relay_handle {
 public:
  virtual ~relay_handle() = default;
  /// Bytes moved so far each way (a_to_b, b_to_a) and whether spliced.
  virtual relay_stats progress() const = 0;
  /// Ends the relay now: both peers see a reset (not a clean EOF, so a cut
  /// transfer never looks complete). `done` still runs once, later, with
  /// operation_aborted.
  virtual void cut() = 0;
};

/// Takes ownership of two connected, open stream socket descriptors.
std::shared_ptr<relay_handle> start_relay(boost::asio::any_io_executor ex, int fd_a, int fd_b,
                                          std::function<void(relay_stats, error_code)> done,
                                          relay_mode mode = relay_mode::automatic);

} // namespace warren::net
