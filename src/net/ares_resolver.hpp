// Name resolution through c-ares, for the lookups whose packets must carry a
// socket mark: `warren tun --default-route` routes everything that is not
// marked into the TUN, and getaddrinfo's sockets are not warren's to mark,
// so the upstream's own name would be looked up through the tunnel it is
// about to build. c-ares lets us mark its sockets before they send.
//
// Design choice: one c-ares channel per lookup, driven on the caller's
// executor (ARES_OPT_SOCK_STATE_CB → a non-owning posix::stream_descriptor
// wait per socket, ares_timeout → a steady_timer, both → ares_process_fd).
// No thread and no state shared between lookups, so the resolver is
// thread-safe without a lock, a lookup is cancelled by destroying its
// channel, and each lookup reads /etc/resolv.conf and /etc/hosts afresh
// (the servers follow a network change; the cost is a small file read per
// lookup, and warren looks up only its upstream's name this way).
// `localhost` and IP literals never reach c-ares, as in system_resolver.
#pragma once

#include "net/resolver.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace warren::net {

struct ares_resolver_options {
  /// SO_MARK on every DNS socket (UDP and TCP), set before connect().
  std::optional<std::uint32_t> mark;
  /// SO_BINDTODEVICE for every DNS socket when not empty.
  std::string interface;
  /// "host:port,host:port" overriding resolv.conf's name servers (tests);
  /// empty: the system's /etc/resolv.conf.
  std::string servers;
  /// c-ares' per-try timeout (ARES_OPT_TIMEOUTMS; it doubles at each round
  /// through the servers) and tries per server (ARES_OPT_TRIES).
  std::chrono::milliseconds try_timeout{2000};
  int tries = 2;
  /// The bound of one lookup, whatever c-ares' own schedule: past it the
  /// lookup ends with timed_out().
  std::chrono::milliseconds deadline{5000};
  /// Called with each DNS socket after it was marked, before connect (tests
  /// read the mark back here).
  std::function<void(int fd)> on_socket;
};

/// A `resolver` on c-ares. Thread-safe: holds only its options; each lookup
/// lives on the executor it was given. Every cancellation type ends a lookup
/// at once (destroying a channel is cheap and leaves nothing running), so a
/// bounded_resolver in front of it frees its place at once, too.
///
/// Errors: host_not_found (NXDOMAIN), no_data (the name has no address of
/// this family), timed_out() (no answer within the bound), mark_failed()
/// (SO_MARK refused: needs CAP_NET_ADMIN), others in ares_category() with
/// c-ares' own sentence.
class ares_resolver final : public resolver {
 public:
  explicit ares_resolver(ares_resolver_options options = {});
  void async_resolve(boost::asio::any_io_executor ex, std::string host, ip_family family, handler h,
                     boost::asio::cancellation_slot slot) override;

  const ares_resolver_options& options() const { return options_; }

 private:
  ares_resolver_options options_;
};

/// c-ares status codes (ARES_E*) plus warren's own, below.
const boost::system::error_category& ares_category() noexcept;
/// "the DNS servers did not answer in time" (ARES_ETIMEOUT or our deadline).
error_code ares_timed_out() noexcept;
/// The DNS socket could not be marked (SO_MARK needs CAP_NET_ADMIN).
error_code ares_mark_failed() noexcept;
/// c-ares' status as an error_code: ARES_ENOTFOUND → host_not_found,
/// ARES_ENODATA → no_data, cancelled/destroyed → operation_aborted, the rest
/// in ares_category().
error_code from_ares_status(int status) noexcept;

} // namespace warren::net
