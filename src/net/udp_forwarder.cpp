#include "net/udp_forwarder.hpp"

#include "core/log.hpp"
#include "net/connector.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <array>

namespace warren::net {

namespace asio = boost::asio;
using asio::ip::udp;

namespace {
constexpr std::size_t k_max_datagram = 65536;
constexpr std::size_t k_pending_per_session = 16;

std::string show(const udp::endpoint& ep) {
  return format_host_port(ep.address().to_string(), ep.port());
}
} // namespace

struct udp_forwarder::session {
  udp_session_key key;
  std::optional<udp::socket> upstream;    // connected to the target once resolved
  std::vector<std::vector<char>> pending; // datagrams waiting for resolution
  bool closed = false;
};

udp_forwarder::udp_forwarder(asio::any_io_executor ex, resolver& r, std::vector<udp::socket> listeners,
                             host_port target, udp_forwarder_options options)
    : ex_(ex), resolver_(r), listeners_(std::move(listeners)), receive_buffers_(listeners_.size()),
      senders_(listeners_.size()), target_(std::move(target)), options_(options), table_(options.max_sessions),
      sweep_timer_(ex) {}

udp_forwarder::~udp_forwarder() = default;

void udp_forwarder::start() {
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    error_code ec;
    listeners_[i].non_blocking(true, ec);
    receive_buffers_[i].resize(k_max_datagram);
    receive(i);
  }
  sweep();
}

void udp_forwarder::stop() {
  stopped_ = true;
  error_code ignored;
  for (auto& l : listeners_)
    l.close(ignored);
  sweep_timer_.cancel();
  for (auto& s : table_.expire(time_point::max(), duration::zero()))
    close_session(s, "stopping");
}

void udp_forwarder::receive(std::size_t listener) {
  listeners_[listener].async_receive_from(asio::buffer(receive_buffers_[listener]), senders_[listener],
                                          [self = shared_from_this(), listener](error_code ec, std::size_t n) {
                                            if (self->stopped_ || ec == asio::error::operation_aborted)
                                              return;
                                            if (!ec)
                                              self->on_datagram(listener, n);
                                            else
                                              spdlog::debug("udp: receive on listener {} failed: {}", listener,
                                                            describe(ec));
                                            self->receive(listener);
                                          });
}

void udp_forwarder::on_datagram(std::size_t listener, std::size_t size) {
  const udp_session_key key{listener, senders_[listener]};
  const auto& data = receive_buffers_[listener];
  ++counters_.datagrams_up;
  if (auto* found = table_.find(key, steady_clock::now())) {
    auto& s = *found;
    if (s->upstream) {
      error_code ec;
      s->upstream->send(asio::buffer(data.data(), size), 0, ec);
      if (ec)
        ++counters_.dropped; // would block or ICMP error: UDP may drop
    } else if (s->pending.size() < k_pending_per_session) {
      s->pending.emplace_back(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(size));
    } else {
      ++counters_.dropped;
    }
    return;
  }
  open_session(key, std::vector<char>(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(size)));
}

void udp_forwarder::open_session(const udp_session_key& key, std::vector<char> first) {
  auto s = std::make_shared<session>();
  s->key = key;
  s->pending.push_back(std::move(first));
  if (auto evicted = table_.insert(key, s, steady_clock::now())) {
    ++counters_.sessions_evicted;
    close_session(*evicted, "evicted: session table full");
  }
  ++counters_.sessions_opened;
  spdlog::debug("udp: new session {} via listener {} ({} open)", show(key.client), key.listener, table_.size());

  if (auto literal = parse_ip(target_.host)) {
    connect_session(s, *literal);
    return;
  }
  // Resolve the preferred family first, then the other if allowed.
  const bool v4_first = options_.policy == family_policy::prefer_ipv4 || options_.policy == family_policy::ipv4_only;
  std::vector<ip_family> order;
  for (auto f : v4_first ? std::array{ip_family::v4, ip_family::v6} : std::array{ip_family::v6, ip_family::v4}) {
    const bool allowed = (f == ip_family::v4 && options_.policy != family_policy::ipv6_only) ||
                         (f == ip_family::v6 && options_.policy != family_policy::ipv4_only);
    if (allowed && (!options_.source || family_of(*options_.source) == f))
      order.push_back(f);
  }
  resolve_session(s, std::move(order), 0);
}

void udp_forwarder::resolve_session(const std::shared_ptr<session>& s, std::vector<ip_family> order, std::size_t i) {
  if (s->closed)
    return;
  if (i >= order.size()) {
    log_within_budget(failures_log_, spdlog::level::warn, "failed sessions",
                "udp: no usable address for " + target_.host + "; dropping session " + show(s->key.client));
    table_.erase(s->key);
    close_session(s, "unresolvable");
    return;
  }
  const ip_family f = order[i];
  resolver_.async_resolve(
      ex_, target_.host, f,
      [self = shared_from_this(), s, order = std::move(order), i](error_code,
                                                                  std::vector<asio::ip::address> found) mutable {
        if (!found.empty())
          return self->connect_session(s, found.front());
        self->resolve_session(s, std::move(order), i + 1);
      },
      {});
}

void udp_forwarder::connect_session(const std::shared_ptr<session>& s, const asio::ip::address& address) {
  if (s->closed)
    return;
  const udp::endpoint target(address, target_.port);
  udp::socket socket(ex_);
  error_code ec;
  socket.open(target.protocol(), ec);
  if (!ec && options_.source)
    socket.bind(udp::endpoint(*options_.source, 0), ec);
  if (!ec)
    socket.connect(target, ec);
  if (!ec)
    socket.non_blocking(true, ec);
  if (ec) {
    log_within_budget(failures_log_, spdlog::level::warn, "failed sessions",
                "udp: cannot open a socket to " + show(target) + " for " + show(s->key.client) + ": " + describe(ec));
    table_.erase(s->key);
    close_session(s, "socket error");
    return;
  }
  s->upstream = std::move(socket);
  for (auto& d : s->pending) {
    s->upstream->send(asio::buffer(d), 0, ec);
    if (ec)
      ++counters_.dropped;
  }
  s->pending.clear();
  s->pending.shrink_to_fit();
  read_upstream(s);
}

void udp_forwarder::read_upstream(const std::shared_ptr<session>& s) {
  // Wait for readability, then read into one shared buffer: no per-session
  // 64 KiB buffer, so thousands of idle sessions cost little memory.
  s->upstream->async_wait(udp::socket::wait_read, [self = shared_from_this(), s](error_code ec) {
    if (ec || s->closed || self->stopped_)
      return;
    static thread_local std::vector<char> buffer(k_max_datagram);
    for (;;) {
      error_code rec;
      const std::size_t n = s->upstream->receive(asio::buffer(buffer), 0, rec);
      if (rec == asio::error::would_block)
        break;
      if (rec) {
        // e.g. ECONNREFUSED from an ICMP port unreachable: keep the session,
        // the client may retry; it expires when idle.
        spdlog::debug("udp: session {}: {}", show(s->key.client), describe(rec));
        break;
      }
      ++self->counters_.datagrams_down;
      self->table_.touch(s->key, steady_clock::now());
      error_code sec;
      self->listeners_[s->key.listener].send_to(asio::buffer(buffer.data(), n), s->key.client, 0, sec);
      if (sec)
        ++self->counters_.dropped;
    }
    self->read_upstream(s);
  });
}

void udp_forwarder::close_session(const std::shared_ptr<session>& s, const char* why) {
  if (s->closed)
    return;
  s->closed = true;
  spdlog::debug("udp: session {} closed ({})", show(s->key.client), why);
  if (s->upstream) {
    error_code ignored;
    s->upstream->close(ignored);
  }
}

void udp_forwarder::sweep() {
  if (stopped_)
    return;
  const auto idle = std::chrono::duration_cast<duration>(options_.idle_timeout);
  for (auto& s : table_.expire(steady_clock::now(), idle)) {
    ++counters_.sessions_expired;
    close_session(s, "idle");
  }
  // Check four times per idle period: a session lives at most 1.25x the timeout.
  sweep_timer_.expires_after(std::max<duration>(idle / 4, std::chrono::milliseconds(100)));
  sweep_timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec)
      self->sweep();
  });
}

} // namespace warren::net
