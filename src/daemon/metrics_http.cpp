#include "daemon/metrics_http.hpp"

#include "net/address.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <list>
#include <optional>

namespace warren::daemon {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr const char* k_content_type = "text/plain; version=0.0.4; charset=utf-8";
} // namespace

expected<metrics_listen> parse_metrics_listen(std::string_view text) {
  using result = expected<metrics_listen>;
  const std::string shown(text);
  net::listen_address address;
  if (auto port = net::parse_port(text, false)) {
    address.endpoint = {"localhost", *port};
  } else {
    auto parsed = net::parse_listen_address(text);
    if (!parsed)
      return result::failure("--metrics '" + shown + "': " + parsed.error() + " (or give only a port: 9100)");
    if (parsed->kind == net::listen_kind::unix_path)
      return result::failure("--metrics '" + shown + "': give a port or HOST:PORT (Prometheus scrapes over TCP)");
    address = std::move(parsed).value();
  }
  auto plan = net::plan_listen(address);
  if (!plan)
    return result::failure("--metrics '" + shown + "': " + plan.error());
  metrics_listen out;
  out.loopback_only = address.kind != net::listen_kind::wildcard &&
                      std::all_of(plan->addresses.begin(), plan->addresses.end(),
                                  [](const asio::ip::address& a) { return a.is_loopback(); });
  out.plan = std::move(plan).value();
  return out;
}

struct metrics_http::impl : std::enable_shared_from_this<impl> {
  struct connection {
    explicit connection(tcp::socket s)
        : socket(std::move(s)), watchdog(socket.get_executor()), wake(socket.get_executor()) {}
    tcp::socket socket;
    asio::steady_timer watchdog; // at the deadline: closes the socket (ends a read or write)
    asio::steady_timer wake;     // while collecting: the reply, or the deadline
  };
  using slot = std::list<std::shared_ptr<connection>>::iterator;

  impl(asio::any_io_executor e, metrics_source s, metrics_http_options o)
      : ex(std::move(e)), source(std::move(s)), options(std::move(o)) {}

  asio::any_io_executor ex;
  metrics_source source;
  metrics_http_options options;
  std::vector<tcp::acceptor> acceptors;
  std::list<std::shared_ptr<connection>> open; // closed by stop()
  bool stopping = false;

  asio::awaitable<void> accept(tcp::acceptor& acceptor) {
    auto self = shared_from_this();
    asio::steady_timer pause(ex);
    while (!stopping) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (stopping || ec == asio::error::operation_aborted)
        co_return;
      if (ec) { // out of descriptors, most likely: let some close
        spdlog::warn("metrics: accept: {}", ec.message());
        pause.expires_after(std::chrono::milliseconds(100));
        co_await pause.async_wait(use_tuple);
        continue;
      }
      if (open.size() >= options.max_connections) {
        spdlog::debug("metrics: {} connections open, its limit; closed one at accept", open.size());
        continue; // the socket closes here
      }
      auto c = std::make_shared<connection>(std::move(socket));
      open.push_back(c);
      asio::co_spawn(ex, serve(c, std::prev(open.end())), asio::detached);
    }
  }

  /// The text `source` collects, back on our executor; nullopt when the
  /// deadline passed first or the server stopped.
  asio::awaitable<std::optional<std::string>> collect(const std::shared_ptr<connection>& c, time_point until) {
    struct pending {
      std::optional<std::string> text;
      bool done = false;
    };
    auto state = std::make_shared<pending>();
    c->wake.expires_at(until);
    std::weak_ptr<connection> weak = c;
    source([state, weak, ex_copy = ex](std::string text) {
      asio::post(ex_copy, [state, weak, text = std::move(text)]() mutable {
        if (state->done)
          return; // too late: the connection has given up
        state->done = true;
        state->text = std::move(text);
        if (auto conn = weak.lock())
          conn->wake.cancel();
      });
    });
    while (!state->done) {
      auto [ec] = co_await c->wake.async_wait(use_tuple);
      if (!ec || stopping)
        break; // the deadline, or stop()
    }
    state->done = true;
    co_return std::move(state->text);
  }

  asio::awaitable<void> serve(std::shared_ptr<connection> c, slot where) {
    auto self = shared_from_this();
    const auto until = steady_clock::now() + options.deadline;
    c->watchdog.expires_at(until);
    c->watchdog.async_wait([weak = std::weak_ptr<connection>(c)](boost::system::error_code ec) {
      if (auto conn = weak.lock(); conn && !ec) {
        boost::system::error_code ignored;
        conn->socket.close(ignored);
      }
    });

    // The head only: nothing served here takes a body, so none is parsed
    // (a POST gets its 405; what it sends after the head is drained below).
    boost::beast::flat_buffer buffer(options.max_header_bytes);
    http::request_parser<http::empty_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
    auto [ec, n] = co_await http::async_read_header(c->socket, buffer, parser, use_tuple);
    (void)n;
    if (ec && (!c->socket.is_open() || ec == http::error::end_of_stream || ec == http::error::partial_message ||
               ec == asio::error::eof || ec == asio::error::connection_reset)) {
      finish(c, where); // gone, or the deadline passed: nobody to answer
      co_return;
    }
    http::response<http::string_body> res;
    res.version(11);
    res.keep_alive(false);
    res.set(http::field::server, "warren");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    if (ec) {
      res.result(ec == http::error::header_limit ? http::status::request_header_fields_too_large
                                                 : http::status::bad_request);
      res.body() = std::string(res.reason()) + "\n";
    } else if (parser.get().method() != http::verb::get) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET");
      res.body() = "only GET is served here\n";
    } else {
      const auto target = std::string_view(parser.get().target().data(), parser.get().target().size());
      if (target.substr(0, target.find('?')) != "/metrics") {
        res.result(http::status::not_found);
        res.body() = "not found; the metrics are at /metrics\n";
      } else {
        auto text = co_await collect(c, until);
        if (!text || !c->socket.is_open()) {
          finish(c, where);
          co_return;
        }
        res.result(http::status::ok);
        res.set(http::field::content_type, k_content_type);
        res.body() = std::move(*text);
      }
    }
    res.prepare_payload();
    auto [write_ec, written] = co_await http::async_write(c->socket, res, use_tuple);
    (void)written;
    if (!write_ec) {
      // Read and drop what the client still sends (an unread request
      // tail, a body) until it closes, up to 64 KiB or the deadline:
      // closing with unread bytes sends a reset, which can destroy the
      // reply before the client reads it (a 431 after a long head).
      boost::system::error_code ignored;
      c->socket.shutdown(tcp::socket::shutdown_send, ignored);
      std::array<char, 4096> scratch;
      for (std::size_t dropped = 0; dropped < 64 * 1024;) {
        auto [read_ec, got] = co_await c->socket.async_read_some(asio::buffer(scratch), use_tuple);
        if (read_ec)
          break;
        dropped += got;
      }
    }
    finish(c, where);
  }

  void finish(const std::shared_ptr<connection>& c, slot where) {
    boost::system::error_code ignored;
    c->socket.shutdown(tcp::socket::shutdown_send, ignored);
    c->socket.close(ignored);
    c->watchdog.cancel();
    c->wake.cancel();
    if (!stopping)
      open.erase(where);
  }
};

metrics_http::metrics_http(asio::any_io_executor ex, metrics_source source, metrics_http_options options)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(source), std::move(options))) {}

metrics_http::~metrics_http() {
  stop();
}

expected<bool> metrics_http::start() {
  auto bound = net::bind_tcp(impl_->ex, impl_->options.plan);
  if (!bound)
    return expected<bool>::failure("--metrics: " + bound.error());
  impl_->acceptors = std::move(bound).value();
  for (auto& a : impl_->acceptors)
    asio::co_spawn(impl_->ex, impl_->accept(a), asio::detached);
  return true;
}

std::string metrics_http::describe() const {
  std::vector<tcp::endpoint> endpoints;
  for (const auto& a : impl_->acceptors) {
    boost::system::error_code ec;
    const auto e = a.local_endpoint(ec);
    if (!ec)
      endpoints.push_back(e);
  }
  return net::describe_endpoints(endpoints);
}

void metrics_http::stop() {
  if (std::exchange(impl_->stopping, true))
    return;
  boost::system::error_code ignored;
  for (auto& a : impl_->acceptors)
    a.close(ignored);
  for (auto& c : impl_->open) {
    c->socket.close(ignored);
    c->watchdog.cancel();
    c->wake.cancel();
  }
  impl_->open.clear();
}

std::size_t metrics_http::connections() const {
  return impl_->open.size();
}

} // namespace warren::daemon
