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
#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/thread_pool.hpp>

#include <functional>
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
  virtual void async_resolve(boost::asio::any_io_executor ex, std::string host, ip_family family, handler h) = 0;
};

/// getaddrinfo on a thread pool. Thread-safe. Destruction waits for lookups in progress.
class system_resolver final : public resolver {
 public:
  explicit system_resolver(std::size_t threads = 2);
  ~system_resolver() override;
  void async_resolve(boost::asio::any_io_executor ex, std::string host, ip_family family, handler h) override;

 private:
  boost::asio::thread_pool pool_;
};

/// Awaitable form of resolver::async_resolve; completion void(error_code, std::vector<address>).
template <class CompletionToken>
auto async_resolve(resolver& r, boost::asio::any_io_executor ex, std::string host, ip_family family,
                   CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(error_code, std::vector<boost::asio::ip::address>)>(
      [&r, ex](auto handler, std::string h, ip_family f) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        r.async_resolve(ex, std::move(h), f, [shared](error_code ec, std::vector<boost::asio::ip::address> a) {
          (*shared)(ec, std::move(a));
        });
      },
      token, std::move(host), family);
}

/// Blocking lookup of one family (start-up paths only).
error_code resolve_blocking(const std::string& host, ip_family family, std::vector<boost::asio::ip::address>& out);

/// The fixed answer for localhost names (RFC 6761), or nullopt for other names.
std::optional<std::vector<boost::asio::ip::address>> localhost_addresses(std::string_view host, ip_family family);

/// A literal IP address, parsed; nullopt for names.
std::optional<boost::asio::ip::address> parse_ip(std::string_view text);

} // namespace warren::net
