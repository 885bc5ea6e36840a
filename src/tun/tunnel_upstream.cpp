// tunnel_upstream: see tunnel_upstream.hpp. connect() is one tunnel stream
// (tunnel::client::open_stream under a deadline); an association is a map
// of per-destination datagram flows whose readers feed one reply queue.
#include "tun/tunnel_upstream.hpp"

#include "core/duration.hpp"
#include "stream/event.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <deque>
#include <map>
#include <utility>
#include <vector>

namespace warren::tun {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
asio::ip::address unmapped(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

wire::target_address to_wire(const asio::ip::address& a, std::uint16_t port) {
  if (a.is_v4())
    return wire::target_address::ipv4(a.to_v4().to_bytes(), port);
  return wire::target_address::ipv6(a.to_v6().to_bytes(), port);
}

upstream_failure failed(upstream_error kind, std::string message) {
  return upstream_failure{kind, std::move(message)};
}

// ---- the association ----

struct flow {
  std::unique_ptr<wire::mux_stream> stream;
  bool ended = false; // its reader saw the end (a reset, the tunnel lost)
};

} // namespace

/// Shared by the association and its flows' readers (which end when their
/// streams do: close() resets them all).
struct detail::tunnel_association_state {
  std::shared_ptr<tunnel::client> client;
  std::size_t max_destinations = 0;
  std::size_t max_queued = 0;
  std::map<udp::endpoint, std::shared_ptr<flow>> flows;
  std::deque<std::pair<udp::endpoint, std::vector<std::uint8_t>>> queue;
  stream::async_event changed; // a reply queued, or closed
  bool closed = false;
  std::uint64_t replies_dropped = 0;

  void close() {
    if (closed)
      return;
    closed = true;
    for (auto& [ep, f] : flows)
      f->stream->close();
    flows.clear();
    queue.clear();
    changed.notify();
  }
};

namespace {

using association_state = detail::tunnel_association_state;

asio::awaitable<void> read_flow(std::shared_ptr<association_state> st, std::shared_ptr<flow> f, udp::endpoint from) {
  for (;;) {
    auto d = co_await f->stream->receive_datagram();
    if (!d || st->closed)
      break;
    if (st->queue.size() >= st->max_queued) {
      ++st->replies_dropped; // the engine is not keeping up: UDP may lose
      continue;
    }
    st->queue.emplace_back(from, std::move(*d));
    st->changed.notify();
  }
  f->ended = true;
}

class tunnel_association final : public udp_association {
 public:
  tunnel_association(asio::any_io_executor ex, std::shared_ptr<association_state> st)
      : ex_(std::move(ex)), st_(std::move(st)) {}
  ~tunnel_association() override { st_->close(); }

  error_code try_send(const udp::endpoint& destination, std::span<const std::uint8_t> payload) override {
    if (st_->closed)
      return asio::error::operation_aborted;
    const udp::endpoint to(unmapped(destination.address()), destination.port());
    auto it = st_->flows.find(to);
    if (it != st_->flows.end() && (it->second->ended || it->second->stream->reset_reason())) {
      st_->flows.erase(it); // idle on the server, or its tunnel ended: reopened below
      it = st_->flows.end();
    }
    if (it == st_->flows.end()) {
      if (to.port() == 0)
        return asio::error::invalid_argument;
      if (st_->flows.size() >= st_->max_destinations)
        std::erase_if(st_->flows, [](const auto& e) { return e.second->ended || e.second->stream->reset_reason(); });
      if (st_->flows.size() >= st_->max_destinations)
        return asio::error::no_buffer_space;
      auto stream = st_->client->open_datagram_flow(to_wire(to.address(), to.port()));
      if (!stream)
        return asio::error::network_down; // no tunnel now: the client dials
      auto f = std::make_shared<flow>();
      f->stream = std::move(stream);
      it = st_->flows.emplace(to, f).first;
      asio::co_spawn(ex_, read_flow(st_, f, to), asio::detached);
    }
    if (!it->second->stream->send_datagram(payload))
      return asio::error::no_buffer_space; // congested or closed: dropped
    return {};
  }

  asio::awaitable<received> receive() override {
    auto st = st_;
    for (;;) {
      if (st->closed)
        co_return received{asio::error::operation_aborted, {}, {}};
      if (!st->queue.empty()) {
        auto& [from, bytes] = st->queue.front();
        current_ = std::move(bytes);
        const auto source = from;
        st->queue.pop_front();
        co_return received{{}, source, std::span<const std::uint8_t>(current_)};
      }
      co_await st->changed.wait();
    }
  }

  asio::awaitable<error_code> wait_closed() override {
    auto st = st_;
    while (!st->closed)
      co_await st->changed.wait();
    co_return asio::error::operation_aborted;
  }

  void close() override { st_->close(); }

 private:
  asio::any_io_executor ex_;
  std::shared_ptr<association_state> st_;
  std::vector<std::uint8_t> current_; // the payload receive() returned last
};

} // namespace

upstream_error upstream_error_for(const wire::reset_info& r) noexcept {
  switch (r.code) {
  case wire::reset_code::refused:
    return upstream_error::refused;
  case wire::reset_code::unreachable:
  case wire::reset_code::unresolvable:
    return upstream_error::unreachable;
  case wire::reset_code::timed_out:
    return upstream_error::timeout;
  default:
    return upstream_error::other; // denied by policy, limits, protocol errors
  }
}

// ---- the upstream ----

tunnel_upstream::tunnel_upstream(asio::any_io_executor ex, net::resolver& resolver, tunnel_upstream_options options)
    : ex_(ex), options_(std::move(options)) {
  options_.client.forwards.clear();
  if (options_.mark)
    options_.client.dial.connect.mark = options_.mark;
  if (options_.client.dial.connect.log_label == "connect")
    options_.client.dial.connect.log_label = "tun upstream";
  shown_ = transport::to_string(options_.client.server);
  client_ = std::make_shared<tunnel::client>(ex_, resolver, options_.client);
}

tunnel_upstream::~tunnel_upstream() {
  stop();
}

void tunnel_upstream::start(std::function<void(const std::string&)> fatal) {
  client_->start(std::move(fatal));
}

void tunnel_upstream::stop() {
  if (!client_->stopped())
    client_->stop();
  for (auto& weak : associations_)
    if (auto st = weak.lock())
      st->close();
  associations_.clear();
}

asio::awaitable<tcp_connection> tunnel_upstream::connect(tcp::endpoint target) {
  tcp_connection out;
  const auto to = to_wire(unmapped(target.address()), target.port());
  const std::string what = to.to_string();
  if (client_->stopped()) {
    out.failure = failed(upstream_error::proxy_down, "the tunnel to " + shown_ + " is stopped");
    co_return out;
  }
  // The client's wait for a tunnel (its own bound), then the server's answer.
  if (!co_await client_->wait_for_tunnel()) {
    out.failure = failed(upstream_error::proxy_down, "no tunnel to " + shown_ + " within " +
                                                         format_duration(options_.client.wait_for_tunnel) + " (for " +
                                                         what + ")");
    co_return out;
  }
  asio::steady_timer timer(ex_, options_.connect_timeout);
  auto raced = co_await (client_->open_stream(to) || timer.async_wait(use_tuple));
  if (raced.index() == 1) {
    out.failure = failed(upstream_error::timeout, "the tunnel server " + shown_ + " did not answer the open of " +
                                                      what + " within " + format_duration(options_.connect_timeout));
    co_return out;
  }
  auto r = std::get<0>(std::move(raced));
  if (r.stream) {
    out.stream = std::move(r.stream);
    co_return out;
  }
  if (r.refused) {
    out.failure = failed(upstream_error_for(*r.refused), "through " + shown_ + ": " + r.error);
    co_return out;
  }
  out.failure = failed(upstream_error::proxy_down, r.error + " (for " + what + ")");
  co_return out;
}

asio::awaitable<udp_association_result> tunnel_upstream::open_udp() {
  udp_association_result out;
  std::erase_if(associations_, [](const auto& w) { return w.expired(); });
  if (client_->stopped() || !co_await client_->wait_for_tunnel()) {
    out.failure = failed(upstream_error::proxy_down,
                         "no tunnel to " + shown_ + " within " + format_duration(options_.client.wait_for_tunnel));
    co_return out;
  }
  auto st = std::make_shared<association_state>();
  st->client = client_;
  st->max_destinations = options_.max_udp_destinations;
  st->max_queued = options_.max_udp_queued;
  associations_.push_back(st);
  out.association = std::make_unique<tunnel_association>(ex_, std::move(st));
  co_return out;
}

std::string tunnel_upstream::describe() const {
  return shown_;
}

} // namespace warren::tun
