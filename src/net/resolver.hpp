// Name resolution through the system resolver (getaddrinfo, so /etc/hosts,
// nsswitch, VPN split DNS and MagicDNS all behave as they do for curl), run
// off the event loop on a small thread pool. One family per request, so AAAA
// and A are asked separately and can race (RFC 8305 §3).
//
// `localhost` and `*.localhost` never reach the resolver: they are loopback
// by definition (RFC 6761 §6.3), whatever /etc/hosts says.
#pragma once

#include "core/error.hpp"
#include "net/happy_eyeballs.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/thread_pool.hpp>

#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace warren::net {

/// Interface so tests can inject answers and delays.
class resolver {
 public:
  using handler = std::function<void(error_code, std::vector<boost::asio::ip::address>)>;
  virtual ~resolver() = default;
  /// Resolves `host` for one family; `h` runs on `ex`. Must not call `h` inline.
  /// A terminal or partial cancellation emitted on `slot` makes `h` run at
  /// once with operation_aborted, and a lookup that has not started yet is
  /// skipped: lookups nobody waits for must not queue up in front of
  /// everyone else's (a client that opens and resets streams to slow names).
  /// A total cancellation (only) is honoured only by a lookup not started
  /// yet: one that runs answers when it ends (bounded_resolver counts on it).
  virtual void async_resolve(boost::asio::any_io_executor ex, std::string host, ip_family family, handler h,
                             boost::asio::cancellation_slot slot) = 0;
};

/// Blocking lookup of one family (start-up paths only).
error_code resolve_blocking(const std::string& host, ip_family family, std::vector<boost::asio::ip::address>& out);

/// getaddrinfo on a thread pool. Thread-safe. Destruction waits for lookups in progress.
/// A cancelled lookup still queued is skipped; one in progress runs to its end
/// (getaddrinfo cannot be interrupted) and its answer is dropped, or, for a
/// total cancellation, delivered as usual.
class system_resolver final : public resolver {
 public:
  /// What runs on the pool for each lookup; tests pass one that blocks.
  using lookup_function =
      std::function<error_code(const std::string& host, ip_family, std::vector<boost::asio::ip::address>&)>;

  explicit system_resolver(std::size_t threads = 2, lookup_function lookup = resolve_blocking);
  ~system_resolver() override;
  void async_resolve(boost::asio::any_io_executor ex, std::string host, ip_family family, handler h,
                     boost::asio::cancellation_slot slot) override;

 private:
  lookup_function lookup_;
  boost::asio::thread_pool pool_;
};

/// A resolver in front of another that lets at most `limit` of its lookups
/// into the other one at a time; the rest wait here, in order. The server
/// gives each client one, so that one client's lookups (many streams, slow
/// names) can neither take every thread of the shared pool nor queue in
/// front of everyone else's.
///
/// A lookup cancelled while it waits here ends at once and never reaches the
/// other resolver. One cancelled after it went on ends at once too, and the
/// other resolver gets a `total` cancellation: honoured only by a lookup that
/// has not started (system_resolver skips it, freeing the place at once); one
/// that runs keeps its place until getaddrinfo returns, since the thread is
/// busy until then, so resetting streams cannot free places early.
/// Single-threaded: call it, and let it answer, on one executor.
class bounded_resolver final : public resolver, public std::enable_shared_from_this<bounded_resolver> {
 public:
  static std::shared_ptr<bounded_resolver> create(resolver& inner, std::size_t limit);
  void async_resolve(boost::asio::any_io_executor ex, std::string host, ip_family family, handler h,
                     boost::asio::cancellation_slot slot) override;

  /// Lookups the other resolver has from us (cancelled ones included).
  std::size_t running() const { return running_; }
  /// Lookups waiting here for a place.
  std::size_t waiting() const { return waiting_.size(); }

  struct request; // one lookup, shared with its cancellation handler

 private:
  bounded_resolver(resolver& inner, std::size_t limit) : inner_(inner), limit_(limit) {}
  void run(std::shared_ptr<request> r);

  resolver& inner_;
  std::size_t limit_;
  std::size_t running_ = 0;
  std::list<std::shared_ptr<request>> waiting_; // a cancelled one leaves from where it is
};

/// Awaitable form of resolver::async_resolve; completion void(error_code, std::vector<address>).
/// Cancellable through the handler's cancellation slot (e.g. the losing side of `||`).
template <class CompletionToken>
auto async_resolve(resolver& r, boost::asio::any_io_executor ex, std::string host, ip_family family,
                   CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(error_code, std::vector<boost::asio::ip::address>)>(
      [&r, ex](auto handler, std::string h, ip_family f) {
        auto slot = boost::asio::get_associated_cancellation_slot(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        r.async_resolve(
            ex, std::move(h), f,
            [shared](error_code ec, std::vector<boost::asio::ip::address> a) { (*shared)(ec, std::move(a)); }, slot);
      },
      token, std::move(host), family);
}

/// The fixed answer for localhost names (RFC 6761), or nullopt for other names.
std::optional<std::vector<boost::asio::ip::address>> localhost_addresses(std::string_view host, ip_family family);

/// A literal IP address, parsed; nullopt for names.
std::optional<boost::asio::ip::address> parse_ip(std::string_view text);

} // namespace warren::net
