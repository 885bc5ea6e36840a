// Shared helpers for the net tests: run an io_context until a condition
// holds (bounded), count open descriptors, a scriptable resolver, and a
// listener whose accept queue is full so that new connects hang unanswered
// (the unprivileged stand-in for a black-holed address).
#pragma once

#include "net/resolver.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

namespace warren::test {

/// Number of open file descriptors of this process.
int open_fd_count();

/// Runs handlers until pred() is true or `limit` passes; returns pred().
bool run_until(boost::asio::io_context& io, const std::function<bool()>& pred,
               std::chrono::milliseconds limit = std::chrono::seconds(10));

/// Answers each family after a scripted delay; a family without a script
/// never answers unless the lookup is cancelled (terminal or partial: then
/// operation_aborted at once; its lookups count as started, so a total
/// cancellation is not honoured).
class fake_resolver final : public net::resolver {
 public:
  struct answer {
    std::chrono::milliseconds delay{0};
    error_code ec;
    std::vector<boost::asio::ip::address> addresses;
  };
  std::map<net::ip_family, answer> script;
  std::map<net::ip_family, int> asked;
  std::map<net::ip_family, int> cancelled;
  int answered = 0;

  /// Lookups asked for and neither answered nor cancelled yet.
  int pending() const;
  int asked_total() const;
  /// Answers every pending lookup now (posted), with `ec` and no address.
  void answer_pending(error_code ec);

  void async_resolve(boost::asio::any_io_executor ex, std::string host, net::ip_family family, handler h,
                     boost::asio::cancellation_slot slot) override;

 private:
  std::vector<std::shared_ptr<boost::asio::steady_timer>> timers_;
  struct held {
    boost::asio::any_io_executor ex;
    std::shared_ptr<handler> h; // empty once answered or cancelled
  };
  std::vector<held> held_;
};

/// A listener on `address` whose backlog is full: connects to it get no answer.
class hanging_listener {
 public:
  hanging_listener(boost::asio::io_context& io, const boost::asio::ip::address& address);
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  boost::asio::ip::tcp::acceptor acceptor_;
  std::vector<boost::asio::ip::tcp::socket> fillers_;
};

/// A connected TCP pair on 127.0.0.1: {the connecting end, the accepted end}.
std::pair<boost::asio::ip::tcp::socket, boost::asio::ip::tcp::socket> tcp_pair(boost::asio::io_context& io);

/// n deterministic pseudo-random bytes.
std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint64_t seed);

boost::asio::ip::address v4_loopback();
boost::asio::ip::address v6_loopback();

/// Starts a coroutine on `io`; an exception escaping it is rethrown from
/// io.run() (inside run_until), so a test fails loudly instead of hanging.
template <class F>
void spawn(boost::asio::io_context& io, F&& f) {
  boost::asio::co_spawn(io, std::forward<F>(f), [](const std::exception_ptr& e) {
    if (e)
      std::rethrow_exception(e);
  });
}

} // namespace warren::test
