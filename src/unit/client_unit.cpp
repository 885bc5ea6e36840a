#include "unit/client_unit.hpp"

#include "core/duration.hpp"
#include "core/fd_limit.hpp"
#include "net/resolver.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <limits>

namespace warren::unit {

namespace asio = boost::asio;

expected<client_unit_options> client_options_from(const client_args& a) {
  using result = expected<client_unit_options>;
  client_unit_options u;
  auto& o = u.client;
  auto url = transport::parse_url(a.url);
  if (!url)
    return result::failure(url.error());
  o.server = *url;
  if (a.local.empty() && a.dynamic.empty() && !a.no_forwards)
    return result::failure("nothing to forward: give at least one -L or -D");
  for (const auto& l : a.local) {
    auto f = tunnel::parse_local_forward(l);
    if (!f)
      return result::failure(f.error());
    o.forwards.push_back(*f);
  }
  for (const auto& d : a.dynamic) {
    auto f = tunnel::parse_dynamic_forward(d);
    if (!f)
      return result::failure(f.error());
    o.forwards.push_back(*f);
  }
  o.dial.insecure_token = a.insecure_token;
  o.dial.tls = {a.ca, a.pin, a.cert, a.key};
  if (!a.pin.empty()) {
    auto p = transport::parse_pin(a.pin);
    if (!p)
      return result::failure("--pin: " + p.error());
  }
  auto policy = net::parse_family_policy(a.family);
  if (!policy)
    return result::failure("--family '" + a.family + "' is not one of auto, prefer-ipv4, ipv4, ipv6");
  o.dial.connect.he.policy = *policy;
  const std::pair<const std::string*, const char*> durations[] = {
      {&a.connect_timeout, "--connect-timeout"},
      {&a.ping_interval, "--ping-interval"},
      {&a.wait_tunnel, "--wait-tunnel"},
      {&a.udp_idle_timeout, "--udp-idle-timeout"},
      {&a.socks_handshake_timeout, "--socks-handshake-timeout"}};
  std::chrono::milliseconds parsed[5];
  for (std::size_t i = 0; i < 5; ++i) {
    auto d = parse_duration(*durations[i].first);
    if (!d)
      return result::failure(std::string(durations[i].second) + ": " + d.error());
    parsed[i] = *d;
  }
  o.dial.connect.he.timeout = parsed[0];
  o.dial.connect.log_label = "tunnel connect";
  o.session.ping_interval = parsed[1];
  o.wait_for_tunnel = parsed[2];
  o.udp_idle_timeout = parsed[3];
  o.socks_handshake_timeout = parsed[4];
  if (o.socks_handshake_timeout < std::chrono::milliseconds(100))
    return result::failure("--socks-handshake-timeout must be at least 100ms");
  if (!a.socks_user.empty() && a.socks_password_file.empty())
    return result::failure("--socks-user needs --socks-password-file with the "
                           "password on its first line");
  o.socks_user = a.socks_user;
  u.token_origin = a.token_file.empty() ? std::string("from WARREN_TOKEN") : "file " + a.token_file;
  return u;
}

client_unit::client_unit(asio::any_io_executor ex, client_unit_options options)
    : unit(std::move(ex)), options_(std::move(options)) {}

client_unit::~client_unit() {
  alive_.reset();
  if (timer_)
    timer_->cancel();
  if (client_)
    client_->stop();
}

expected<bool> client_unit::start() {
  // Each local connection holds a socket (a SOCKS5 UDP association two).
  // Past what the open-file limit leaves, new ones are closed at once, so
  // that the tunnel can always redial.
  auto& o = options_.client;
  const auto fds = raise_fd_limit();
  o.max_local_descriptors = fit_in_descriptors(fds.now, 1, std::numeric_limits<std::size_t>::max());
  if (fds.now != 0)
    spdlog::debug("client: at most {} descriptors for local connections "
                  "(open-file limit {})",
                  o.max_local_descriptors, fds.now);
  resolver_ = std::make_shared<net::system_resolver>();
  client_ = std::make_shared<tunnel::client>(executor(), *resolver_, o);
  auto bound = client_->bind();
  if (!bound) {
    client_.reset();
    fail(bound.error());
    return expected<bool>::failure(bound.error());
  }
  if (fds.now != fds.before) // logged once started: a start-up error stays the only line
    spdlog::info("client: open-file limit raised from {} to {}", fds.before, fds.now);
  for (const auto& line : *bound)
    spdlog::info("forward: {}", line);
  mutable_status().listening = *bound;
  const auto alive = std::weak_ptr<int>(alive_);
  client_->set_observer({[this, alive](const std::string& peer) {
                           if (alive.expired())
                             return;
                           mutable_status().peer = peer;
                           mutable_status().connected_since = std::chrono::system_clock::now();
                           emit(unit_event::kind::tunnel_connected, peer);
                         },
                         [this, alive](const std::string& why) {
                           if (alive.expired())
                             return;
                           mutable_status().peer.clear();
                           mutable_status().connected_since = {};
                           emit(unit_event::kind::tunnel_disconnected, why);
                         }});
  client_->start([this, alive](const std::string& why) {
    if (alive.expired())
      return;
    client_->stop();
    fail("cannot connect to " + transport::to_string(options_.client.server) + ": " + why);
  });
  set_state(unit_state::running);
  return true;
}

void client_unit::stop(std::chrono::milliseconds drain, std::function<void()> done) {
  auto finish = [this, done = std::move(done)] {
    if (status().state != unit_state::failed) {
      set_state(unit_state::stopped);
      spdlog::info("client: stopped");
    }
    if (done)
      done();
  };
  if (!client_ || status().state == unit_state::stopped || status().state == unit_state::failed) {
    asio::post(executor(), [finish = std::move(finish), alive = std::weak_ptr<int>(alive_)] {
      if (!alive.expired())
        finish();
    });
    return;
  }
  set_state(unit_state::draining);
  client_->stop();
  wait_idle(std::chrono::steady_clock::now() + drain, std::move(finish));
}

/// Polls, every 50 ms, for the tunnel's polite close to finish (the client
/// has no completion to wait on), until the deadline.
void client_unit::wait_idle(std::chrono::steady_clock::time_point deadline, std::function<void()> done) {
  if (client_->idle() || std::chrono::steady_clock::now() >= deadline)
    return done();
  if (!timer_)
    timer_ = std::make_shared<asio::steady_timer>(executor());
  timer_->expires_after(std::chrono::milliseconds(50));
  timer_->async_wait([this, deadline, done = std::move(done), alive = std::weak_ptr<int>(alive_)](error_code ec) {
    if (ec || alive.expired() || status().state != unit_state::draining)
      return;
    wait_idle(deadline, done);
  });
}

void client_unit::abandon() {
  if (timer_)
    timer_->cancel();
  if (client_)
    client_->stop();
  if (status().state != unit_state::failed)
    set_state(unit_state::stopped);
}

reload_result client_unit::take_token(const client_unit_options& from, std::string_view done,
                                      std::string_view cause) {
  reload_result r;
  if (auto token = from.read_token()) {
    client_->set_token(std::move(token).value());
    if (&from != &options_) {
      options_.read_token = from.read_token;
      options_.token_origin = from.token_origin;
    }
    r = {true, "the token " + options_.token_origin + " " + std::string(done)};
    spdlog::info("client: {}; {}", cause, r.summary);
  } else {
    r = {false, "keeping the old token: " + token.error()};
    spdlog::warn("client: {}; {}", cause, r.summary);
  }
  emit(r.ok ? unit_event::kind::reloaded : unit_event::kind::reload_failed, r.summary);
  return r;
}

reload_result client_unit::reload(std::string_view cause) {
  if (!options_.read_token || !client_) {
    reload_result r{false, "nothing to read the token from"};
    emit(unit_event::kind::reload_failed, r.summary);
    return r;
  }
  return take_token(options_, "is read again for new tunnels", cause);
}

reload_result client_unit::reconfigure(unit& replacement, std::string_view cause) {
  auto* fresh = dynamic_cast<client_unit*>(&replacement);
  if (!client_ || !fresh || !fresh->options_.read_token) {
    reload_result r{false, !client_ ? "the client is not running" : "nothing to read the token from"};
    emit(unit_event::kind::reload_failed, r.summary);
    return r;
  }
  return take_token(fresh->options_, "is used for new tunnels", cause);
}

unit_counters client_unit::counters() const {
  unit_counters c;
  if (!client_)
    return c;
  const auto t = client_->counters();
  c.bytes_up = t.bytes_out; // toward the server
  c.bytes_down = t.bytes_in;
  c.connections_open = status().peer.empty() ? 0 : 1;
  c.connections_total = t.tunnels_total;
  c.streams_open = t.streams_open;
  c.streams_total = t.streams_total;
  c.reconnects = t.redials;
  c.tunnel_rtt_us = static_cast<std::uint64_t>(t.srtt.count());
  c.tunnel_rtt_last_us = static_cast<std::uint64_t>(t.rtt_last.count());
  return c;
}

} // namespace warren::unit
