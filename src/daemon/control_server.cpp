#include "daemon/control_server.hpp"

#include "core/duration.hpp"
#include "core/log_limiter.hpp"
#include "daemon/control_socket.hpp"
#include "stream/tcp_stream.hpp"
#include "stream/event.hpp"
#include "stream/unix_stream.hpp"
#include "transport/auth.hpp"
#include "transport/tls_byte_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
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

struct budget {
  std::string name;
  std::size_t max = 0;
  std::size_t open = 0;
  std::size_t read_only_open = 0;               // Unix: --control-group members
  line_limiter refusals{1, std::chrono::seconds(10)}; // "refused one" at most once per 10 s
};

/// Unix slots only the daemon's uid and root may take: members of
/// --control-group cannot lock the owner out by holding every slot.
constexpr std::size_t k_admin_reserve = 4;

/// How long a closing connection's queued replies may take to leave.
constexpr auto k_flush_time = std::chrono::seconds(1);

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

  // What the writer sends, in order: replies and (for subscribers)
  // notifications, each one framed message. The reader stops reading while
  // `out_bytes` is over k_max_pending_bytes (a client that pipelines
  // requests and reads no reply); notifications are dropped and counted in
  // `lost` instead of queued past k_max_pending_events or that byte bound.
  std::deque<std::string> out;
  std::size_t out_bytes = 0;
  std::size_t out_events = 0; // notifications among `out`
  std::deque<bool> out_is_event;
  std::uint64_t lost = 0;
  bool subscribed = false;
  bool closing = false;          // nothing more is queued; the writer ends once `out` is sent
  bool close_when_flushed = false; // and then closes the stream (deadlines, stop)
  bool writer_done = false;
  stream::async_event changed; // `out`, `closing` or `writer_done` changed
};

constexpr std::size_t k_max_pending_bytes = 4u << 20;
constexpr std::size_t k_max_pending_events = 1024;
constexpr std::size_t k_history = 256; // notifications kept for events.subscribe's replay

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
  std::size_t subscribers = 0;
  std::uint64_t lost_total = 0;
  std::uint64_t seq = 0;          // of the last notification published
  std::deque<std::pair<std::uint64_t, std::string>> history; // the last k_history ones, framed
  std::function<void()> on_drained;
  asio::steady_timer drain_timer;
  std::vector<std::string> descriptions;

  // ---- the one connection handler --------------------------------------
  // Two coroutines per connection: serve() reads, dispatches and queues
  // replies in request order; write_loop() sends what is queued (replies,
  // and notifications once the connection subscribed). Both run on `ex`.

  void watch(const std::shared_ptr<connection>& c) {
    c->timer.expires_at(c->deadline);
    c->timer.async_wait([this, self = shared_from_this(), c](sys_error ec) {
      if (ec)
        return;
      if (steady_clock::now() < c->deadline)
        return watch(c);
      c->timed_out = true;
      if (c->state.awaiting_auth() && !c->closing) {
        // Say why before closing: a client that sent nothing (or not a
        // whole frame) learns the rule instead of seeing a bare close.
        c->state.complete_auth(access_level::none);
        queue(c, frame_text(encode_error(nullptr, rpc_error{error_code::unauthorized,
                                                             "no auth request within " +
                                                                 format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(options.auth_timeout)) + "; closing",
                                                             std::nullopt})),
              false);
        close_after_flush(c);
        c->deadline = steady_clock::now() + std::chrono::seconds(1); // a peer that reads nothing: cut then
        return watch(c);
      }
      c->stream->close();
    });
  }

  void touch(const std::shared_ptr<connection>& c) {
    const auto auth = c->state.auth_deadline();
    // A subscriber is idle by design: no idle timeout while subscribed.
    const auto deadline = auth ? *auth
                          : c->subscribed ? steady_clock::time_point::max()
                                          : steady_clock::now() + options.idle_timeout;
    const bool rearm = deadline < c->deadline;
    c->deadline = deadline;
    if (rearm)
      watch(c);
  }

  static std::string frame_text(std::string_view message) {
    std::string out;
    append_frame(out, message, 0xFFFFFFFFU);
    return out;
  }

  void queue(const std::shared_ptr<connection>& c, std::string framed, bool event) {
    c->out_bytes += framed.size();
    c->out_events += event ? 1 : 0;
    c->out.push_back(std::move(framed));
    c->out_is_event.push_back(event);
    c->changed.notify();
  }

  /// Queues "N events lost" once there is room again.
  void report_lost(const std::shared_ptr<connection>& c) {
    if (c->lost == 0 || c->closing || c->out_events >= k_max_pending_events || c->out_bytes >= k_max_pending_bytes)
      return;
    queue(c, frame_text(encode_notification("events.lost", nlohmann::json{{"count", c->lost}})), true);
    c->lost = 0;
  }

  void close_after_flush(const std::shared_ptr<connection>& c) {
    c->closing = true;
    c->close_when_flushed = true;
    c->changed.notify();
  }

  asio::awaitable<void> write_loop(std::shared_ptr<connection> c) {
    auto self = shared_from_this();
    std::vector<asio::const_buffer> buffers;
    for (;;) {
      while (c->out.empty() && !c->closing)
        co_await c->changed.wait();
      if (c->out.empty())
        break;
      // Everything queued in one write: the deque does not move its strings.
      const std::size_t n = std::min<std::size_t>(c->out.size(), 64);
      buffers.clear();
      for (std::size_t i = 0; i < n; ++i)
        buffers.emplace_back(c->out[i].data(), c->out[i].size());
      sys_error ec;
      co_await c->stream->write(std::span(buffers.data(), buffers.size()), ec);
      for (std::size_t i = 0; i < n; ++i) {
        c->out_bytes -= c->out.front().size();
        c->out_events -= c->out_is_event.front() ? 1 : 0;
        c->out.pop_front();
        c->out_is_event.pop_front();
      }
      if (ec) {
        c->stream->close(); // the reader sees it too
        c->out.clear();
        c->out_is_event.clear();
        c->out_bytes = c->out_events = 0;
        break;
      }
      report_lost(c);
      c->changed.notify(); // a reader waiting for room
    }
    if (c->close_when_flushed)
      c->stream->close();
    c->writer_done = true;
    c->changed.notify();
  }

  /// Runs one planned call whose handler may answer later; bounded by
  /// call_timeout (a unit's loop that never answers costs a reply, not
  /// the connection).
  asio::awaitable<void> run_async(const std::shared_ptr<connection>& c, planned_call& call) {
    struct pending {
      explicit pending(asio::any_io_executor e) : timer(std::move(e)) {}
      asio::steady_timer timer;
      std::optional<method_result> result;
    };
    auto p = std::make_shared<pending>(ex);
    p->timer.expires_after(options.call_timeout);
    method_reply reply = [p, e = ex](method_result r) {
      asio::post(e, [p, r = std::move(r)]() mutable {
        if (p->result)
          return;
        p->result.emplace(std::move(r));
        p->timer.cancel();
      });
    };
    try {
      call.method->async_handler(call.req.params, c->state, std::move(reply));
    } catch (const std::exception&) {
      p->result.emplace(rpc_error{error_code::internal_error, "internal error in " + call.req.method, std::nullopt});
    }
    if (!p->result)
      co_await p->timer.async_wait(use_tuple);
    if (!p->result) {
      spdlog::warn("control: {} did not answer within {}", call.req.method, format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(options.call_timeout)));
      p->result.emplace(rpc_error{error_code::internal_error,
                                  call.req.method + " did not answer within " + format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(options.call_timeout)),
                                  std::nullopt});
    }
    complete_call(call, *p->result);
  }

  /// Answers one frame: the calls in order (an asynchronous one is awaited
  /// before the next starts), then the assembled reply is queued.
  asio::awaitable<bool> answer(const std::shared_ptr<connection>& c, std::string_view frame, const token_check& check,
                               const dispatch_options& dopts) {
    auto plan = plan_dispatch(table, c->state, frame, steady_clock::now(), check, dopts);
    std::optional<std::uint64_t> replay; // events.subscribe: resend the history after this seq
    if (plan.outcome && plan.outcome->auth_failed)
      spdlog::warn("control: {}: wrong token", c->stream->description());
    for (auto& call : plan.calls) {
      if (call.method == nullptr)
        continue;
      if (stopping) {
        complete_call(call, rpc_error{error_code::shutting_down, "the daemon is stopping", std::nullopt});
        continue;
      }
      if (call.method->async_handler)
        co_await run_async(c, call);
      else
        run_call(call, c->state);
      if (call.req.method == k_subscribe_method && call.reply && call.reply->contains("result")) {
        if (!c->subscribed)
          ++subscribers;
        c->subscribed = true;
        replay = replay_from(call.req.params);
      }
    }
    auto outcome = assemble(plan, dopts);
    if (!outcome.reply.empty())
      queue(c, std::move(outcome.reply), false);
    // What the subscriber asked to see again, after the reply and before
    // anything published later: the history it missed, in order.
    if (replay)
      for (const auto& [n, framed] : history)
        if (n > *replay)
          queue(c, framed, true);
    co_return outcome.close;
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
    if (auto* tls = dynamic_cast<transport::tls_byte_stream*>(c->stream.get())) {
      sys_error ec;
      co_await tls->handshake(ec);
      if (ec) {
        spdlog::debug("control: {}: TLS handshake failed: {}", c->stream->description(),
                      c->timed_out ? "timed out" : ec.message());
        c->closing = true;
        c->writer_done = true;
        finish(c);
        co_return;
      }
    }
    asio::co_spawn(ex, write_loop(c), asio::detached);
    // Before `auth`, a frame is at most k_max_auth_frame: a stranger
    // cannot make the daemon buffer and parse a MiB per connection.
    frame_decoder decoder(c->state.awaiting_auth() ? k_max_auth_frame : options.max_frame);
    dispatch_options dopts;
    dopts.max_response = options.max_frame;
    const token_check check = [this, &c](std::string_view token) { return check_token(*c, token); };
    std::vector<char> buffer(16384);
    bool close = false;
    while (!close && !c->closing && !stopping) {
      sys_error ec;
      c->reading = true;
      const auto n = co_await c->stream->read_some(asio::buffer(buffer), ec);
      c->reading = false;
      if (ec) {
        if (ec == asio::error::eof && decoder.finish() == eof_status::truncated)
          spdlog::debug("control: {}: end of stream inside a frame", c->stream->description());
        else if (c->timed_out)
          spdlog::debug("control: {}: {}", c->stream->description(),
                        c->close_when_flushed ? "no auth before the deadline" : "idle timeout");
        break;
      }
      std::string_view input(buffer.data(), n);
      while (!input.empty() && !close) {
        const auto status = decoder.decode(input);
        if (status == frame_status::need_more)
          break;
        if (status != frame_status::frame) {
          queue(c, frame_error_reply(status, decoder.announced_length(), decoder.max_frame()), false);
          close = true;
          break;
        }
        const bool was_awaiting_auth = c->state.awaiting_auth();
        close = co_await answer(c, decoder.frame(), check, dopts);
        if (was_awaiting_auth && !c->state.awaiting_auth()) // between frames: nothing buffered is lost
          decoder = frame_decoder(options.max_frame);
      }
      touch(c);
      while (c->out_bytes > k_max_pending_bytes && !c->writer_done)
        co_await c->changed.wait(); // the client reads no replies: stop reading its requests
    }
    // Let the writer send what is queued (a protocol error's reply, the
    // last replies before EOF), bounded: a peer that reads nothing is cut.
    c->closing = true;
    c->changed.notify();
    c->deadline = std::min(c->deadline, steady_clock::now() + k_flush_time);
    watch(c);
    while (!c->writer_done)
      co_await c->changed.wait();
    if (close) {
      sys_error ec;
      co_await c->stream->shutdown(ec);
      co_await linger(c, buffer);
    }
    finish(c);
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
    if (c->subscribed)
      --subscribers;
    if (c->slots) {
      --c->slots->open;
      if (c->state.read_only())
        --c->slots->read_only_open;
    }
    connections.remove(c);
    if (stopping && connections.empty())
      drained();
  }

  /// events.subscribe's {"after": SEQ} or {"recent": N}: the seq after
  /// which history is replayed; none without either.
  std::optional<std::uint64_t> replay_from(const nlohmann::json& params) const {
    if (!params.is_object())
      return std::nullopt;
    if (const auto after = params.find("after"); after != params.end() && after->is_number_unsigned())
      return std::min(after->get<std::uint64_t>(), seq);
    if (const auto recent = params.find("recent"); recent != params.end() && recent->is_number_unsigned())
      return seq - std::min<std::uint64_t>({recent->get<std::uint64_t>(), seq, k_history});
    return std::nullopt;
  }

  void publish(std::string_view method, nlohmann::json params) {
    ++seq;
    if (params.is_object())
      params["seq"] = seq;
    std::string framed = frame_text(encode_notification(method, params));
    history.emplace_back(seq, framed);
    if (history.size() > k_history)
      history.pop_front();
    for (const auto& c : connections) {
      if (!c->subscribed || c->closing)
        continue;
      report_lost(c);
      if (c->out_events >= k_max_pending_events || c->out_bytes + framed.size() > k_max_pending_bytes) {
        ++c->lost;
        ++lost_total;
        continue;
      }
      queue(c, framed, true);
    }
  }

  void drained() {
    drain_timer.cancel();
    if (auto done = std::exchange(on_drained, nullptr))
      asio::post(ex, std::move(done));
  }

  void refused(budget& b, const std::string& why) {
    if (!b.refusals.allow(steady_clock::now()))
      return;
    const auto earlier = b.refusals.take_left_out();
    spdlog::warn("control: {} has {} {}; refused one{}", b.name, b.open, why,
                 earlier ? " (and " + std::to_string(earlier) + " more since the last line)" : "");
  }

  void spawn(std::shared_ptr<connection> c) {
    ++c->slots->open;
    if (c->state.read_only())
      ++c->slots->read_only_open;
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
      const std::size_t limit =
          access == access_level::admin ? unix_budget.max : unix_budget.max - std::min(unix_budget.max, k_admin_reserve);
      const std::size_t held = access == access_level::admin ? unix_budget.open : unix_budget.read_only_open;
      if (unix_budget.open >= unix_budget.max || held >= limit) {
        refused(unix_budget, access == access_level::admin
                                 ? "connections open, its limit"
                                 : "connections open (--control-group members may hold " + std::to_string(limit) + ")");
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
        refused(listener.slots, "connections open, its limit");
        continue;
      }
      sys_error ignored;
      const auto peer = socket.remote_endpoint(ignored);
      const auto description =
          std::string(listener.tls ? "tls " : "tcp ") + net::format_host_port(peer.address().to_string(), peer.port());
      stream::byte_stream_ptr s;
      if (listener.tls)
        s = std::make_unique<transport::tls_byte_stream>(
            options.tls, transport::tls_stream(std::move(socket), *options.tls, transport::tls_stream::server),
            description);
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
    : impl_(std::make_shared<impl>(std::move(ex), std::move(table), std::move(options))) {
  // The control server does the subscribing itself (the connection becomes
  // a subscriber once this answers); the table may replace it with a
  // handler that checks params further.
  impl_->table.add(
      std::string(k_subscribe_method),
      [m = impl_.get()](const nlohmann::json& params, const connection_state&) -> method_result {
        const auto count = [&](const char* key) {
          const auto it = params.find(key);
          return it == params.end() || it->is_number_unsigned() || (it->is_number_integer() && it->get<long long>() >= 0);
        };
        const bool ok = params.is_null() || (params.is_array() && params.empty()) ||
                        (params.is_object() && params.size() <= 1 && count("after") && count("recent") &&
                         (params.empty() || params.contains("after") || params.contains("recent")));
        if (!ok)
          return method_result::invalid_params(
              "events.subscribe takes no params, {\"recent\": N} (the last N events again, at most 256) or "
              "{\"after\": SEQ} (the events after that seq)");
        return nlohmann::json{{"seq", m->seq}, {"pid", ::getpid()}};
      },
      true);
}

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

void control_server::publish(std::string_view method, nlohmann::json params) {
  impl_->publish(method, std::move(params));
}

std::size_t control_server::subscribers() const {
  return impl_->subscribers;
}

std::uint64_t control_server::events_lost() const {
  return impl_->lost_total;
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
  // Idle connections (waiting in a read) close once what is queued for
  // them (a subscriber's last events) is sent; one in a call finishes it,
  // answers, and then sees `stopping`. The drain timer bounds both.
  for (auto& c : m.connections)
    if (c->reading)
      m.close_after_flush(c);
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
