// The one outbound TCP connector of warren: Happy Eyeballs v2 (RFC 8305)
// over the system resolver, with a family policy, one overall timeout, an
// optional source address, interface or socket mark, and a debug log line for every step
// with its timing, so a user can see why a connect was slow.
//
// The algorithm lives in happy_eyeballs.hpp (pure, tested on a manual clock);
// this file only carries out its actions with real sockets and timers.
// Cancellation: per-operation, through the completion handler's cancellation
// slot (e.g. `co_await (async_connect(...) || timer)`); every attempt socket
// is closed before the handler runs, whether it won, lost or was cancelled.
#pragma once

#include "core/fd_limit.hpp"
#include "net/address.hpp"
#include "net/happy_eyeballs.hpp"
#include "net/resolver.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace warren::net {

struct connect_options {
  he_config he;
  std::optional<boost::asio::ip::address> source; // bind before connect; restricts the family
  std::string interface;                          // SO_BINDTODEVICE when not empty
  /// SO_MARK on every attempt socket, set before bind() and connect() (the
  /// policy routing of `warren tun --default-route` keeps marked traffic off
  /// the TUN). Failing to set it (EPERM without CAP_NET_ADMIN) fails the
  /// attempt, and the result's detail says why.
  std::optional<std::uint32_t> mark;
  std::string log_label = "connect";              // prefix of debug lines, e.g. "conn#12"
  /// When set, only resolved addresses it accepts are tried (destination
  /// policy: checked after resolution, so DNS cannot smuggle in a denied
  /// address). When it rejects every address the result is errc::denied.
  std::function<bool(const boost::asio::ip::address&)> allow;
  /// When set, every attempt socket beyond the first open at once takes a
  /// ticket from this budget (the caller's own ticket covers the first), and
  /// an attempt for which none is left does not start (as if socket() had
  /// failed with EMFILE): racing sockets stay within the descriptors the
  /// caller budgets for, instead of taking those its accept() needs.
  std::optional<fd_budget> racing_sockets;
};

struct connect_result {
  error_code ec;
  std::string detail; // on failure: what was tried and how each attempt ended
  std::optional<boost::asio::ip::tcp::socket> socket;
  boost::asio::ip::tcp::endpoint peer;
  std::chrono::milliseconds elapsed{0};
};

/// Type-erased start; prefer async_connect below. `done` runs on `ex`, never inline.
void start_connect(boost::asio::any_io_executor ex, resolver& r, host_port target, connect_options options,
                   std::function<void(connect_result)> done, boost::asio::cancellation_slot slot);

/// Connects to target; completion signature void(connect_result).
template <class CompletionToken>
auto async_connect(boost::asio::any_io_executor ex, resolver& r, host_port target, connect_options options,
                   CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(connect_result)>(
      [ex, &r](auto handler, host_port t, connect_options o) {
        auto slot = boost::asio::get_associated_cancellation_slot(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        start_connect(
            ex, r, std::move(t), std::move(o), [shared](connect_result result) { (*shared)(std::move(result)); }, slot);
      },
      token, std::move(target), std::move(options));
}

/// Short human description of an error code ("connection refused").
std::string describe(const error_code& ec);

} // namespace warren::net
