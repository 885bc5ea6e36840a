#include "daemon/control_server.hpp"

#include "daemon/control_socket.hpp"
#include "stream/tcp_stream.hpp"
#include "stream/unix_stream.hpp"
#include "transport/auth.hpp"
#include "transport/tls_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>

namespace warren::daemon {

namespace asio = boost::asio;
using asio::ip::tcp;
using unix_proto = asio::local::stream_protocol;
using sys_error = ::warren::error_code;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

expected<control_listen> parse_control_listen(const std::string& url) {
  using result = expected<control_listen>;
  control_listen out;
  out.display = url;
  std::string_view rest(url);
  if (rest.starts_with("tcp://")) {
    rest.remove_prefix(6);
  } else if (rest.starts_with("tls://")) {
    out.tls = true;
    rest.remove_prefix(6);
  } else {
    return result::failure("--control-listen '" + url + "': use tcp://HOST:PORT (loopback only) or tls://HOST:PORT");
  }
  auto address = net::parse_listen_address(rest);
  if (!address || address->kind == net::listen_kind::unix_path)
    return result::failure("--control-listen '" + url +
                           "': " + (address ? std::string("a Unix path is --control") : address.error()));
  auto plan = net::plan_listen(*address);
  if (!plan)
    return result::failure("--control-listen '" + url + "': " + plan.error());
  if (!out.tls &&
      (address->kind == net::listen_kind::wildcard ||
       std::any_of(plan->addresses.begin(), plan->addresses.end(), [](const auto& a) { return !a.is_loopback(); })))
    return result::failure("--control-listen '" + url +
                           "': plain tcp:// is allowed on loopback only (tokens and replies would cross the network "
                           "in clear text); use tls:// for remote control");
  out.plan = std::move(*plan);
  return out;
}

namespace {

/// The largest frame before `auth`: a token line and its JSON-RPC envelope.
constexpr std::uint32_t k_max_auth_frame = 8192;

/// tls_stream as a byte_stream, on the server side (the handshake is the
/// connection handler's first step, under the auth deadline).
class tls_control_stream final : public stream::byte_stream {
 public:
  tls_control_stream(std::shared_ptr<asio::ssl::context> ctx, tcp::socket socket, std::string description)
      : ctx_(std::move(ctx)), s_(std::move(socket), *ctx_, transport::tls_stream::server),
        description_(std::move(description)) {}

  asio::awaitable<void> handshake(sys_error& ec) {
    auto [e] = co_await s_.async_handshake(use_tuple);
    ec = e;
  }
  asio::any_io_executor get_executor() override { return s_.get_executor(); }
  asio::awaitable<std::size_t> read_some(asio::mutable_buffer b, sys_error& ec) override {
    auto [e, n] = co_await s_.async_read_some(b, use_tuple);
    ec = e == asio::ssl::error::stream_truncated ? sys_error(asio::error::eof) : e;
    co_return n;
  }
  asio::awaitable<void> write(std::span<const asio::const_buffer> b, sys_error& ec) override {
    auto [e, n] = co_await asio::async_write(s_, b, use_tuple);
    ec = e;
  }
  asio::awaitable<void> shutdown(sys_error& ec) override {
    auto [e] = co_await s_.async_shutdown(use_tuple);
    ec = e;
  }
  void close() override {
    sys_error ignored;
    s_.lowest_layer().close(ignored);
  }
  std::string description() const override { return description_; }

 private:
  std::shared_ptr<asio::ssl::context> ctx_; // must outlive s_
  transport::tls_stream s_;
  std::string description_;
};

struct budget {
  std::string name;
  std::size_t max = 0;
  std::size_t open = 0;
};

struct connection {
  connection(asio::any_io_executor ex, stream::byte_stream_ptr s, connection_state st)
      : stream(std::move(s)), state(st), timer(std::move(ex)) {}
  stream::byte_stream_ptr stream;
  connection_state state;
  std::optional<asio::ip::address> source; // TCP/TLS
  asio::steady_timer timer;
  time_point deadline{};
  bool reading = false;
  bool timed_out = false;
  budget* slots = nullptr;
};

} // namespace

struct control_server::impl : std::enable_shared_from_this<impl> {
  impl(asio::any_io_executor e, method_table t, control_options o)
      : ex(std::move(e)), table(std::move(t)), options(std::move(o)), drain_timer(ex) {}

  asio::any_io_executor ex;
  method_table table;
  control_options options;
  std::optional<unix_proto::acceptor> unix_acceptor;
  budget unix_budget;
  struct network_listener {
    std::vector<tcp::acceptor> acceptors;
    budget slots;
    bool tls = false;
  };
  std::list<network_listener> network; // stable addresses: connections point at their budget
  std::list<std::shared_ptr<connection>> connections;
  transport::auth_limiter limiter;
  bool stopping = false;
  std::function<void()> on_drained;
  asio::steady_timer drain_timer;
  std::vector<std::string> descriptions;

  // ---- the one connection handler --------------------------------------

  void watch(const std::shared_ptr<connection>& c) {
    c->timer.expires_at(c->deadline);
    c->timer.async_wait([this, self = shared_from_this(), c](sys_error ec) {
      if (ec)
        return;
      if (steady_clock::now() < c->deadline)
        return watch(c);
      c->timed_out = true;
      c->stream->close();
    });
  }

  void touch(const std::shared_ptr<connection>& c) {
    const auto auth = c->state.auth_deadline();
    const auto deadline = auth ? *auth : steady_clock::now() + options.idle_timeout;
    const bool rearm = deadline < c->deadline;
    c->deadline = deadline;
    if (rearm)
      watch(c);
  }

  auth_verdict check_token(const connection& c, std::string_view token) {
    const auto now = steady_clock::now();
    if (c.source && !limiter.allowed(*c.source, now))
      return auth_verdict::rate_limited;
    const bool admin = !options.admin_token.empty() && transport::token_equal(token, options.admin_token);
    const bool read_only = !options.read_only_token.empty() && transport::token_equal(token, options.read_only_token);
    if (admin)
      return auth_verdict::admin;
    if (read_only)
      return auth_verdict::read_only;
    if (c.source)
      limiter.record_failure(*c.source, now);
    return auth_verdict::wrong_token;
  }

  asio::awaitable<void> serve(std::shared_ptr<connection> c) {
    auto self = shared_from_this();
    c->deadline = steady_clock::time_point::max();
    touch(c);
    if (auto* tls = dynamic_cast<tls_control_stream*>(c->stream.get())) {
      sys_error ec;
      co_await tls->handshake(ec);
      if (ec) {
        spdlog::debug("control: {}: TLS handshake failed: {}", c->stream->description(),
                      c->timed_out ? "timed out" : ec.message());
        finish(c);
        co_return;
      }
    }
    // Before `auth`, a frame is at most k_max_auth_frame: a stranger
    // cannot make the daemon buffer and parse a MiB per connection.
    frame_decoder decoder(c->state.awaiting_auth() ? k_max_auth_frame : options.max_frame);
    dispatch_options dopts;
    dopts.max_response = options.max_frame;
    const token_check check = [this, &c](std::string_view token) { return check_token(*c, token); };
    std::vector<char> buffer(16384);
    bool open = !c->timed_out;
    while (open && !stopping) {
      sys_error ec;
      c->reading = true;
      const auto n = co_await c->stream->read_some(asio::buffer(buffer), ec);
      c->reading = false;
      if (ec) {
        if (ec == asio::error::eof && decoder.finish() == eof_status::truncated)
          spdlog::debug("control: {}: end of stream inside a frame", c->stream->description());
        else if (c->timed_out)
          spdlog::debug("control: {}: {}", c->stream->description(),
                        c->state.awaiting_auth() ? "no auth before the deadline" : "idle timeout");
        break;
      }
      std::string_view input(buffer.data(), n);
      std::string out;
      bool close = false;
      while (!input.empty() && !close) {
        const auto status = decoder.decode(input);
        if (status == frame_status::need_more)
          break;
        if (status != frame_status::frame) {
          out += frame_error_reply(status, decoder.announced_length(), decoder.max_frame());
          close = true;
          break;
        }
        const bool was_awaiting_auth = c->state.awaiting_auth();
        auto plan = plan_dispatch(table, c->state, decoder.frame(), steady_clock::now(), check, dopts);
        // In order: an async method's reply comes back through this
        // connection's executor before the next call of the frame runs.
        for (auto& call : plan.calls) {
          if (call.method == nullptr || !call.method->async_handler) {
            run_call(call, c->state);
            continue;
          }
          co_await run_async(call, c->state);
        }
        auto outcome = assemble(plan, dopts);
        if (was_awaiting_auth && !c->state.awaiting_auth()) // between frames: nothing buffered is lost
          decoder = frame_decoder(options.max_frame);
        if (outcome.auth_failed)
          spdlog::warn("control: {}: wrong token", c->stream->description());
        out += outcome.reply;
        close = outcome.close;
      }
      touch(c);
      if (!out.empty()) {
        const asio::const_buffer b(out.data(), out.size());
        co_await c->stream->write(std::span(&b, 1), ec);
        if (ec)
          break;
      }
      if (close) {
        co_await c->stream->shutdown(ec);
        co_await linger(c, buffer);
        open = false;
      }
    }
    finish(c);
  }

  /// Calls an async method and waits (without blocking the executor) for
  /// its reply, which may come from any thread.
  asio::awaitable<void> run_async(planned_call& call, const connection_state& caller) {
    auto done = std::make_shared<asio::steady_timer>(ex, asio::steady_timer::time_point::max());
    auto result = std::make_shared<std::optional<method_result>>();
    auto reply = [ex = this->ex, done, result](method_result r) {
      asio::post(ex, [done, result, r = std::move(r)]() mutable {
        if (result->has_value())
          return; // exactly once
        result->emplace(std::move(r));
        done->cancel();
      });
    };
    try {
      call.method->async_handler(call.req.params, caller, std::move(reply));
    } catch (const std::exception&) {
      result->emplace(rpc_error{error_code::internal_error, "internal error in " + call.req.method, std::nullopt});
    }
    while (!result->has_value()) {
      sys_error ec;
      co_await done->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (stopping && !result->has_value())
        result->emplace(rpc_error{error_code::internal_error, "the daemon is stopping", std::nullopt});
    }
    complete_call(call, **result);
  }

  /// After the last reply and our FIN: reads and drops what the peer still
  /// sends (at most k_linger_bytes, for at most k_linger_time) before the
  /// close. Closing a TCP socket with unread bytes sends a reset, and a
  /// reset can destroy the reply (-32005, -32000) before the peer reads it.
  asio::awaitable<void> linger(const std::shared_ptr<connection>& c, std::vector<char>& buffer) {
    constexpr std::size_t k_linger_bytes = 1 << 20;
    constexpr auto k_linger_time = std::chrono::seconds(1);
    c->deadline = std::min(c->deadline, steady_clock::now() + k_linger_time);
    watch(c);
    std::size_t dropped = 0;
    sys_error ec;
    while (!ec && dropped < k_linger_bytes && !stopping) {
      c->reading = true;
      dropped += co_await c->stream->read_some(asio::buffer(buffer), ec);
      c->reading = false;
    }
  }

  void finish(const std::shared_ptr<connection>& c) {
    c->stream->close();
    c->timer.cancel();
    if (c->slots)
      --c->slots->open;
    connections.remove(c);
    if (stopping && connections.empty())
      drained();
  }

  void drained() {
    drain_timer.cancel();
    if (auto done = std::exchange(on_drained, nullptr))
      asio::post(ex, std::move(done));
  }

  void spawn(std::shared_ptr<connection> c) {
    ++c->slots->open;
    connections.push_back(c);
    asio::co_spawn(ex, serve(std::move(c)), asio::detached);
  }

  // ---- accept loops ------------------------------------------------------

  asio::awaitable<void> accept_unix() {
    auto self = shared_from_this();
    asio::steady_timer pause(ex);
    while (!stopping) {
      auto [ec, socket] = co_await unix_acceptor->async_accept(use_tuple);
      if (ec) {
        if (stopping || ec == asio::error::operation_aborted)
          co_return;
        spdlog::warn("control: accept on {}: {}", options.unix_path, ec.message());
        pause.expires_after(std::chrono::milliseconds(100)); // EMFILE and friends: do not spin
        co_await pause.async_wait(use_tuple);
        continue;
      }
      ucred cred{};
      socklen_t len = sizeof(cred);
      if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        spdlog::warn("control: SO_PEERCRED failed: {}", std::strerror(errno));
        continue;
      }
      const auto access = judge_peer(cred.uid, cred.gid, options.read_only_gid);
      if (access == access_level::none) {
        spdlog::warn("control: refused a connection from uid {} (pid {}): only uid {}, root{} may control this "
                     "daemon",
                     cred.uid, cred.pid, ::geteuid(), options.read_only_gid ? " and --control-group" : "");
        continue;
      }
      if (unix_budget.open >= unix_budget.max) {
        spdlog::warn("control: {} has {} connections open, its limit; refused one", options.unix_path,
                     unix_budget.open);
        continue;
      }
      auto description = "unix uid " + std::to_string(cred.uid) + " pid " + std::to_string(cred.pid);
      auto c = std::make_shared<connection>(ex, stream::make_unix_stream(std::move(socket), std::move(description)),
                                            connection_state::unix_peer(access));
      c->slots = &unix_budget;
      spawn(std::move(c));
    }
  }

  asio::awaitable<void> accept_network(network_listener& listener, tcp::acceptor& acceptor) {
    auto self = shared_from_this();
    asio::steady_timer pause(ex);
    while (!stopping) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        if (stopping || ec == asio::error::operation_aborted)
          co_return;
        spdlog::warn("control: accept on {}: {}", listener.slots.name, ec.message());
        pause.expires_after(std::chrono::milliseconds(100));
        co_await pause.async_wait(use_tuple);
        continue;
      }
      if (listener.slots.open >= listener.slots.max) {
        spdlog::warn("control: {} has {} connections open, its limit; refused one", listener.slots.name,
                     listener.slots.open);
        continue;
      }
      sys_error ignored;
      const auto peer = socket.remote_endpoint(ignored);
      const auto description =
          std::string(listener.tls ? "tls " : "tcp ") + net::format_host_port(peer.address().to_string(), peer.port());
      stream::byte_stream_ptr s;
      if (listener.tls)
        s = std::make_unique<tls_control_stream>(options.tls, std::move(socket), description);
      else
        s = stream::make_tcp_stream(std::move(socket), description);
      auto c = std::make_shared<connection>(
          ex, std::move(s),
          connection_state::network(listener.tls ? transport_kind::tls : transport_kind::tcp, steady_clock::now(),
                                    options.auth_timeout));
      // Every loopback address is one source for the failure limit: any
      // local user can bind 127.x.y.z, and would get a fresh budget each.
      const auto a = peer.address();
      const bool loopback = a.is_loopback() || (a.is_v6() && a.to_v6().is_v4_mapped() &&
                                                asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback());
      c->source = loopback ? asio::ip::address(asio::ip::address_v4::loopback()) : a;
      c->slots = &listener.slots;
      spawn(std::move(c));
    }
  }
};

control_server::control_server(asio::any_io_executor ex, method_table table, control_options options)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(table), std::move(options))) {}

control_server::~control_server() {
  impl_->stopping = true;
  sys_error ignored;
  if (impl_->unix_acceptor)
    impl_->unix_acceptor->close(ignored);
  for (auto& l : impl_->network)
    for (auto& a : l.acceptors)
      a.close(ignored);
  for (auto& c : impl_->connections)
    c->stream->close();
}

expected<bool> control_server::start() {
  auto& m = *impl_;
  if (!m.options.unix_path.empty()) {
    auto bound = net::bind_unix(m.ex, m.options.unix_path, 64);
    if (!bound)
      return expected<bool>::failure(bound.error());
    const mode_t mode = m.options.read_only_gid ? 0660 : 0600;
    if (::chmod(m.options.unix_path.c_str(), mode) != 0)
      return expected<bool>::failure("cannot set the mode of " + m.options.unix_path + ": " + std::strerror(errno));
    if (m.options.read_only_gid &&
        ::chown(m.options.unix_path.c_str(), static_cast<uid_t>(-1), *m.options.read_only_gid) != 0)
      return expected<bool>::failure("cannot give " + m.options.unix_path +
                                     " to the --control-group group: " + std::strerror(errno));
    m.unix_acceptor.emplace(std::move(bound).value());
    m.unix_budget = {"unix " + m.options.unix_path, m.options.max_unix_connections, 0};
    m.descriptions.push_back("unix " + m.options.unix_path);
  }
  for (const auto& l : m.options.network) {
    if (l.tls && !m.options.tls)
      return expected<bool>::failure("--control-listen " + l.display + ": no TLS certificate");
    auto bound = net::bind_tcp(m.ex, l.plan);
    if (!bound)
      return expected<bool>::failure("--control-listen " + l.display + ": " + bound.error());
    std::vector<tcp::endpoint> endpoints;
    for (auto& a : *bound)
      endpoints.push_back(a.local_endpoint());
    auto& listener = m.network.emplace_back();
    listener.tls = l.tls;
    listener.acceptors = std::move(bound).value();
    listener.slots = {l.display, m.options.max_network_connections, 0};
    m.descriptions.push_back(std::string(l.tls ? "tls " : "tcp ") + net::describe_endpoints(endpoints));
  }
  if (m.unix_acceptor)
    asio::co_spawn(m.ex, m.accept_unix(), asio::detached);
  for (auto& l : m.network)
    for (auto& a : l.acceptors)
      asio::co_spawn(m.ex, m.accept_network(l, a), asio::detached);
  return true;
}

std::vector<std::string> control_server::listeners() const {
  return impl_->descriptions;
}

std::size_t control_server::connections() const {
  return impl_->connections.size();
}

void control_server::stop(std::function<void()> done) {
  auto& m = *impl_;
  if (m.stopping)
    return;
  m.stopping = true;
  m.on_drained = std::move(done);
  sys_error ignored;
  if (m.unix_acceptor)
    m.unix_acceptor->close(ignored);
  for (auto& l : m.network)
    for (auto& a : l.acceptors)
      a.close(ignored);
  // Idle connections (waiting in a read) close now; one writing a reply
  // finishes it and then sees `stopping`.
  for (auto& c : m.connections)
    if (c->reading)
      c->stream->close();
  if (m.connections.empty()) {
    m.drained();
    return;
  }
  m.drain_timer.expires_after(m.options.drain_timeout);
  m.drain_timer.async_wait([self = impl_](sys_error ec) {
    if (ec)
      return;
    for (auto& c : self->connections)
      c->stream->close();
    self->drained();
  });
}

} // namespace warren::daemon
