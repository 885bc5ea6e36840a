#include "transport/proxy_dial.hpp"

#include "core/text.hpp"
#include "net/connector.hpp"
#include "proxy/http_connect.hpp"
#include "proxy/socks5.hpp"
#include "proxy/socks5_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <vector>

namespace warren::transport {

namespace asio = boost::asio;
namespace ip = asio::ip;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::chrono::milliseconds since(steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t);
}

template <class Token>
auto async_lookup(asio::any_io_executor ex, net::resolver& r, std::string host, net::ip_family family, Token&& token) {
  return asio::async_initiate<Token, void(error_code, std::vector<ip::address>)>(
      [ex, &r](auto handler, std::string h, net::ip_family f) {
        auto slot = asio::get_associated_cancellation_slot(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        r.async_resolve(
            ex, std::move(h), f, [shared](error_code ec, std::vector<ip::address> a) { (*shared)(ec, std::move(a)); },
            slot);
      },
      token, std::move(host), family);
}

proxy_failure proxy_said(const std::string& shown, const error_code& ec) {
  if (ec == asio::error::eof)
    return {"the proxy " + shown + " closed the connection during its handshake"};
  return {"the proxy handshake with " + shown + " failed: " + net::describe(ec)};
}

asio::awaitable<proxy_failure> http_connect(tcp::socket& socket, const proxy_url& proxy, const net::host_port& target,
                                            const std::string& where) {
  namespace hc = proxy::http_connect;
  const std::string shown = to_string(proxy);
  std::optional<hc::credentials> auth;
  if (!proxy.user.empty())
    auth = hc::credentials{proxy.user, proxy.password};
  const auto started = steady_clock::now();
  const std::string request = hc::encode_request(target, auth);
  auto [we, wn] = co_await asio::async_write(socket, asio::buffer(request), use_tuple);
  if (we)
    co_return proxy_said(shown, we);
  std::vector<std::uint8_t> buf;
  buf.reserve(4096);
  std::array<std::uint8_t, 4096> chunk{};
  for (;;) {
    auto parsed = hc::parse_reply(buf);
    if (parsed.status == hc::parse_status::failed)
      co_return proxy_failure{"the proxy " + shown + " answered the CONNECT badly: " + parsed.error};
    if (parsed.status == hc::parse_status::done) {
      const auto& r = parsed.value;
      spdlog::debug("{}: proxy {} answered CONNECT {} with {} {} in {} ms", where, shown,
                    net::format_host_port(target.host, target.port), r.status, r.reason, since(started).count());
      if (!r.success())
        co_return proxy_failure{hc::describe_failure(r, shown, target, auth.has_value()), hc::permanent_refusal(r)};
      if (r.consumed != buf.size())
        co_return proxy_failure{"the proxy " + shown + " sent data after its " + std::to_string(r.status) +
                                " reply, before the server could have spoken"};
      co_return proxy_failure{};
    }
    // Reads stop where the parser's bound does: a reply can never fill memory.
    const std::size_t limit = hc::k_max_head + hc::k_max_error_body + 4;
    if (buf.size() >= limit)
      co_return proxy_failure{"the proxy " + shown + " sent a reply longer than " + std::to_string(limit / 1024) +
                              " KiB"};
    const std::size_t room = limit - buf.size();
    auto [re, rn] =
        co_await socket.async_read_some(asio::buffer(chunk.data(), std::min(chunk.size(), room)), use_tuple);
    if (re)
      co_return proxy_said(shown, re);
    buf.insert(buf.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(rn));
  }
}

proxy_failure socks_refusal(proxy::socks5::reply_code code, const std::string& proxy, const std::string& where) {
  using proxy::socks5::reply_code;
  const std::string what = std::string(to_string(code));
  switch (code) {
  case reply_code::not_allowed:
    return {"the proxy " + proxy + " refused to connect to " + where + " (SOCKS5: " + what +
                "): its rules do not allow this destination or port",
            true};
  case reply_code::network_unreachable:
  case reply_code::host_unreachable:
  case reply_code::connection_refused:
  case reply_code::ttl_expired:
  case reply_code::general_failure:
    return {"the proxy " + proxy + " could not reach " + where + " (SOCKS5: " + what + ")"};
  default:
    return {"the proxy " + proxy + " refused to connect to " + where + " (SOCKS5: " + what + ")"};
  }
}

asio::awaitable<proxy_failure> socks5_connect(tcp::socket& socket, const proxy_url& proxy, const net::host_port& target,
                                              const std::string& where) {
  namespace s5 = proxy::socks5;
  using outcome = s5::client_result::outcome;
  const std::string shown = to_string(proxy);
  const std::string dest = net::format_host_port(target.host, target.port);
  const auto started = steady_clock::now();
  auto address = s5::address::from_host_port(target);
  if (!address)
    co_return proxy_failure{"cannot ask the proxy " + shown + " for " + dest + ": " + address.error(), true};
  std::optional<s5::credentials> creds;
  if (!proxy.user.empty())
    creds = s5::credentials{proxy.user, proxy.password};
  const s5::request req{s5::command::connect, *address}; // named: GCC 12 and braced temporaries in co_await
  const auto r = co_await s5::client_handshake(socket, req, creds);
  switch (r.what) {
  case outcome::ok:
  case outcome::refused:
    break;
  case outcome::io_error:
    co_return proxy_said(shown, r.ec);
  case outcome::bad_credentials:
    co_return proxy_failure{"cannot log in to the proxy " + shown + ": " + r.detail, true};
  case outcome::not_socks5:
    co_return proxy_failure{"the proxy " + shown + " is not a SOCKS5 proxy (" + r.detail + ")"};
  case outcome::malformed:
    co_return proxy_failure{"the proxy " + shown + ": " + r.detail};
  case outcome::auth_refused:
    co_return proxy_failure{"the proxy " + shown +
                                " refused the user name or password (SOCKS5 Proxy Authentication Required): " +
                                "check --proxy-user and --proxy-password-file",
                            true};
  case outcome::no_acceptable_method:
    co_return proxy_failure{"the proxy " + shown + " accepted none of the authentication methods offered (no " +
                                "authentication, user name and password): it may want a method warren lacks " +
                                "(e.g. GSSAPI), or refuse this client",
                            true};
  case outcome::wants_credentials:
    co_return proxy_failure{"the proxy " + shown + " wants credentials (SOCKS5 Proxy Authentication Required): " +
                                "pass --proxy-user and --proxy-password-file",
                            true};
  case outcome::unexpected_method:
    co_return proxy_failure{"the proxy " + shown + " chose an authentication method warren did not offer"};
  }
  spdlog::debug("{}: proxy {} answered SOCKS5 CONNECT {}: {} in {} ms", where, shown, dest, to_string(r.code),
                since(started).count());
  if (r.what == outcome::refused)
    co_return socks_refusal(r.code, shown, dest);
  // Like the HTTP path: bytes already here came from the proxy, not from
  // the server, which has not been spoken to yet.
  error_code ae;
  if (socket.available(ae) > 0 && !ae)
    co_return proxy_failure{"the proxy " + shown + " sent data after its SOCKS5 reply, before the server could " +
                            "have spoken"};
  co_return proxy_failure{};
}

} // namespace

asio::awaitable<std::string> resolve_for_proxy(const std::string& host, net::resolver& resolver,
                                               net::family_policy policy, std::chrono::milliseconds timeout,
                                               std::string& error) {
  if (net::is_ip_literal(host))
    co_return host;
  auto ex = co_await asio::this_coro::executor;
  std::vector<net::ip_family> order{net::ip_family::v4, net::ip_family::v6};
  if (policy == net::family_policy::ipv4_only)
    order = {net::ip_family::v4};
  else if (policy == net::family_policy::ipv6_only)
    order = {net::ip_family::v6};
  error_code last;
  for (auto family : order) {
    asio::steady_timer timer(ex, timeout);
    auto result = co_await (async_lookup(ex, resolver, host, family, asio::as_tuple(asio::use_awaitable)) ||
                            timer.async_wait(asio::as_tuple(asio::use_awaitable)));
    if (result.index() == 1) {
      error = "resolving " + quote_untrusted(host) + " for the SOCKS5 proxy timed out (socks5h:// lets the " +
              "proxy resolve it)";
      co_return std::string();
    }
    auto [ec, addresses] = std::get<0>(std::move(result));
    if (!ec && !addresses.empty())
      co_return addresses.front().to_string();
    last = ec;
  }
  error = "cannot resolve " + quote_untrusted(host) + " for the SOCKS5 proxy" +
          (last ? " (" + net::describe(last) + ")" : "") + " (socks5h:// lets the proxy resolve it)";
  co_return std::string();
}

asio::awaitable<proxy_failure> proxy_handshake(tcp::socket& socket, const proxy_url& proxy,
                                               const net::host_port& target, const std::string& log_where) {
  if (proxy.kind == proxy_kind::http)
    co_return co_await http_connect(socket, proxy, target, log_where);
  co_return co_await socks5_connect(socket, proxy, target, log_where);
}

} // namespace warren::transport
