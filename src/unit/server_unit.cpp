#include "unit/server_unit.hpp"

#include "core/duration.hpp"
#include "core/fd_limit.hpp"
#include "net/resolver.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>

namespace warren::unit {

namespace {

using options_result = expected<server_unit_options>;

/// load_access(), its warnings and errors (users left out) logged.
expected<tunnel::server_access> load_access_logged(const tunnel::access_sources& sources) {
  std::vector<std::string> warnings;
  std::vector<std::string> errors;
  auto access = tunnel::load_access(sources, warnings, errors);
  for (const auto& w : warnings)
    spdlog::warn("server: {}", w);
  for (const auto& e : errors)
    spdlog::error("server: {}", e);
  return access;
}

/// The server's first settings, stated at start.
void set_access(tunnel::server_options& o, const tunnel::server_access& access) {
  o.accept.users = access.users;
  o.accept.tls = access.tls;
  o.fingerprint = access.fingerprint;
  o.policy = *access.policy;
  std::string names;
  std::size_t listed = 0;
  bool some_without_rules = false;
  for (const auto& u : access.users->users()) {
    const auto own = access.user_policies.find(u.name);
    const bool listing = listed++ < 10; // then "and N more"
    if (listing)
      names += (names.empty() ? "" : ", ") + u.name;
    if (own != access.user_policies.end()) {
      o.user_policies.emplace(u.name, *own->second);
      if (listing)
        names += " (own rules: " + std::to_string(own->second->rules().size()) + ")";
    } else {
      some_without_rules = true;
    }
  }
  if (listed > 10)
    names += " and " + std::to_string(listed - 10) + " more";
  spdlog::info("server: {} users: {}", access.users->users().size(), names);
  if (access.tls)
    spdlog::info("server: certificate fingerprint {}", access.fingerprint);
  if (some_without_rules && o.policy.empty())
    spdlog::warn("server: no --allow rules: every destination is denied");
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names)
    out += (out.empty() ? "" : ", ") + n;
  return out;
}

bool any_tls(const tunnel::server_options& o) {
  return std::any_of(o.listen.begin(), o.listen.end(), [](const auto& u) { return u.uses_tls(); });
}

} // namespace

expected<server_unit_options> server_options_from(const server_args& a) {
  server_unit_options u;
  auto& o = u.server;
  // Every --listen as a URL; the same address twice is an error.
  for (const auto& text : a.listen) {
    auto url = transport::parse_url(text, true);
    if (!url)
      return options_result::failure("--listen: " + url.error());
    for (const auto& other : o.listen)
      if (other.endpoint == url->endpoint && other.endpoint.port != 0)
        return options_result::failure("--listen " + transport::to_string(*url) + " and " +
                                       transport::to_string(other) +
                                       " share an address: give each listener its own port");
    o.listen.push_back(*url);
  }
  for (const auto& text : a.trust_proxy) {
    auto n = transport::parse_ip_network(text);
    if (!n)
      return options_result::failure("--trust-proxy: " + n.error());
    auto note = transport::trust_proxy_warning(*n);
    if (!note)
      return options_result::failure("--trust-proxy " + text + ": " + note.error());
    if (!note->empty())
      u.warnings.push_back("--trust-proxy " + *note);
    o.accept.trusted_proxies.push_back(*n);
  }
  const bool any_ws = std::any_of(o.listen.begin(), o.listen.end(), [](const auto& l) { return l.uses_websocket(); });
  if (!o.accept.trusted_proxies.empty() && !any_ws)
    u.warnings.push_back("--trust-proxy has no effect: X-Forwarded-For is read only on ws:// and wss:// listeners, "
                         "and every --listen here is tcp:// or tls://");
  // What SIGHUP re-reads (tunnel/server_access.hpp).
  u.sources.users_file = a.users_file;
  u.sources.token_file = a.token_file;
  if (a.token_file.empty())
    u.sources.token_env = a.token_env;
  if (!a.users_file.empty() && !u.sources.token_env.empty())
    u.warnings.push_back("WARREN_TOKEN is set beside --users-file: it adds the user '" +
                         std::string(tunnel::k_default_user) + "' (unset it if that is a leftover)");
  u.sources.allow = a.allow;
  u.sources.allow_file = a.allow_file;
  auto policy = net::parse_family_policy(a.family);
  if (!policy)
    return options_result::failure("--family '" + a.family + "' is not one of auto, prefer-ipv4, ipv4, ipv6");
  o.connect.he.policy = *policy;
  const std::pair<const std::string*, const char*> durations[] = {{&a.connect_timeout, "--connect-timeout"},
                                                                  {&a.ping_interval, "--ping-interval"},
                                                                  {&a.drain_timeout, "--drain-timeout"},
                                                                  {&a.udp_idle_timeout, "--udp-idle-timeout"}};
  std::chrono::milliseconds parsed[4];
  for (std::size_t i = 0; i < 4; ++i) {
    auto d = parse_duration(*durations[i].first);
    if (!d)
      return options_result::failure(std::string(durations[i].second) + ": " + d.error());
    parsed[i] = *d;
  }
  o.connect.he.timeout = parsed[0];
  o.session.ping_interval = parsed[1];
  o.drain_timeout = parsed[2];
  o.udp_idle_timeout = parsed[3];
  o.session.max_streams = a.max_streams;
  o.max_clients = a.max_clients;
  if (a.max_buffer != 0 && a.max_buffer < o.session.initial_window)
    return options_result::failure("--max-buffer-per-client " + std::to_string(a.max_buffer) +
                                   " is less than one stream's window (" +
                                   std::to_string(o.session.initial_window / 1024) + " KiB)");
  o.max_buffer_per_client = a.max_buffer;
  if (a.max_lookups > a.lookup_threads)
    return options_result::failure("--max-lookups-per-client " + std::to_string(a.max_lookups) +
                                   " is more than --lookup-threads " + std::to_string(a.lookup_threads) +
                                   ": one client could take every lookup thread");
  o.max_lookups_per_client = a.max_lookups;
  o.max_handshakes = a.max_handshakes;
  o.max_handshakes_per_source = a.max_handshakes_per_source;
  o.max_opens_per_second = a.max_opens;
  o.open_burst = a.open_burst;
  o.max_connects_per_client = a.max_connects;
  o.session.label = "server";
  u.lookup_threads = a.lookup_threads;
  if (a.cert.empty() != a.key.empty())
    return options_result::failure("--cert and --key go together");
  u.cert = a.cert;
  u.key = a.key;
  u.client_ca = a.client_ca;
  u.state_dir = a.state_dir;
  for (const auto& n : a.cert_names) {
    auto name = transport::certificate_name(n);
    if (!name)
      return options_result::failure(name.error());
    u.cert_names.push_back(*name);
  }
  if (!a.cert_names.empty() && (!any_tls(o) || !a.cert.empty()))
    u.warnings.push_back(std::string("--cert-name is ignored: ") +
                         (any_tls(o) ? "it names the generated certificate, and --cert gives one"
                                     : "no --listen is wss:// or tls://, so no certificate is used"));
  return u;
}

server_unit::server_unit(boost::asio::any_io_executor ex, server_unit_options options)
    : unit(std::move(ex)), options_(std::move(options)) {}

server_unit::~server_unit() {
  alive_.reset();
  if (server_ && status().state != unit_state::stopped)
    server_->abandon();
}

std::string server_unit::stop_announcement() const {
  return "; letting open streams finish (up to " + format_duration(options_.server.drain_timeout) + ")";
}

expected<bool> server_unit::prepare() {
  if (prepared_)
    return true;
  auto r = read_settings();
  if (!r) {
    fail(r.error());
    return r;
  }
  prepared_ = true;
  return true;
}

expected<bool> server_unit::read_settings() {
  auto& o = options_.server;
  for (const auto& w : options_.warnings)
    spdlog::warn("server: {}", w);
  const auto& s = o.session;
  const std::uint64_t buffer =
      o.max_buffer_per_client != 0 ? o.max_buffer_per_client : std::uint64_t{s.max_streams} * s.initial_window;
  spdlog::info("server: per client at most {} streams and {} of data buffered for them, {} of {} name lookups "
               "at a time, {} connects in flight, {} stream opens per second in bursts of {} (faster opens pause "
               "its tunnel) (--max-streams-per-client, --max-buffer-per-client, --max-lookups-per-client, "
               "--max-connects-per-client, --max-opens-per-second-per-client, --open-burst-per-client); all tunnels of "
               "one user share them",
               s.max_streams,
               buffer % (1u << 20) == 0 ? std::to_string(buffer >> 20) + " MiB" : std::to_string(buffer >> 10) + " KiB",
               o.max_lookups_per_client, options_.lookup_threads, o.max_connects_per_client, o.max_opens_per_second,
               o.open_burst);
  // Each stream holds an outbound socket (two while Happy Eyeballs races).
  const auto fds = raise_fd_limit();
  if (fds.now != fds.before)
    spdlog::info("server: open-file limit raised from {} to {}", fds.before, fds.now);
  const auto fit = tunnel::fit_tunnels(fds.now, o.max_clients, o.max_handshakes);
  if (fit.max_clients != o.max_clients || fit.max_handshakes != o.max_handshakes) {
    spdlog::warn("server: --max-clients lowered from {} to {} and --max-handshakes from {} to {} to fit the open-file "
                 "limit ({}): each holds a descriptor, and accept() must never run out of them",
                 o.max_clients, fit.max_clients, o.max_handshakes, fit.max_handshakes, fds.now);
    o.max_clients = fit.max_clients;
    o.max_handshakes = fit.max_handshakes;
    o.max_handshakes_per_source = std::min(o.max_handshakes_per_source, o.max_handshakes);
  }
  o.max_stream_fds = tunnel::stream_descriptors(fds.now, o.max_clients, o.max_handshakes);
  if (o.max_stream_fds != 0)
    spdlog::info("server: all clients' streams together hold at most {} descriptors (open-file limit {}); more "
                 "are refused, so new tunnels can still be accepted",
                 o.max_stream_fds, fds.now);
  if (fds.now != 0 && fds.now < 2 * std::uint64_t{s.max_streams} + 64)
    spdlog::warn("server: the open-file limit ({}) is below what one client's {} streams may take (up to 2 "
                 "sockets each): a single client could use up the server's descriptors and lock everyone else out; "
                 "lower --max-streams-per-client or raise the limit (ulimit -n, LimitNOFILE=)",
                 fds.now, s.max_streams);

  if (any_tls(o)) {
    transport::tls_server_options t{options_.cert, options_.key, options_.client_ca};
    if (options_.cert.empty()) {
      char host[256] = {};
      if (::gethostname(host, sizeof host - 1) != 0 || !net::is_valid_hostname(host))
        host[0] = '\0';
      std::vector<std::string> hosts;
      for (const auto& l : o.listen)
        if (l.uses_tls())
          hosts.push_back(l.endpoint.host);
      auto made = transport::ensure_self_signed(options_.state_dir,
                                                transport::self_signed_names(host, options_.cert_names, hosts));
      if (!made)
        return expected<bool>::failure(made.error());
      if (!made->missing_names.empty())
        spdlog::warn("server: the certificate in {} does not name {}; it is kept, as clients pin its fingerprint "
                     "(to generate one with these names, remove cert.pem and key.pem there and give clients "
                     "the new fingerprint)",
                     made->cert_file, join(made->missing_names));
      t.cert_file = made->cert_file;
      t.key_file = made->key_file;
      spdlog::info("server: {} self-signed certificate {}", made->created ? "generated" : "using", made->cert_file);
    }
    options_.sources.uses_tls = true;
    options_.sources.tls = t;
  }
  const auto access = load_access_logged(options_.sources);
  if (!access)
    return expected<bool>::failure(access.error());
  set_access(o, *access);
  return true;
}

expected<bool> server_unit::start() {
  auto failed = [this](std::string why) {
    server_.reset();
    fail(why);
    return expected<bool>::failure(std::move(why));
  };
  if (status().state == unit_state::failed) // prepare() failed
    return expected<bool>::failure(status().last_error);
  if (auto ready = prepare(); !ready)
    return ready;
  // Each lookup blocks a thread (getaddrinfo) for as long as the name takes,
  // seconds for a slow one; a client holds at most --max-lookups-per-client
  // of these threads at a time, so a few with slow names leave the rest to
  // the others.
  resolver_ = std::make_shared<net::system_resolver>(options_.lookup_threads);
  server_ = std::make_shared<tunnel::server>(executor(), *resolver_, options_.server);
  auto bound = server_->bind();
  if (!bound)
    return failed(bound.error());
  std::vector<std::string> listening;
  for (const auto& l : server_->listening()) {
    // One URL per bound address, each with its path.
    std::string urls;
    for (const auto& ep : l.endpoints)
      urls += (urls.empty() ? "" : ", ") + std::string(transport::to_string(l.url.scheme)) + "://" +
              net::format_host_port(ep.address().to_string(), ep.port()) + (l.url.uses_websocket() ? l.url.path : "");
    spdlog::info("server: listening on {}", urls);
    if (l.ipv6_only)
      spdlog::warn("server: {} listens on IPv6 only (IPv4 clients are refused); use * for both", urls);
    listening.push_back(urls);
  }
  mutable_status().listening = std::move(listening);
  server_->start();
  set_state(unit_state::running);
  return true;
}

void server_unit::stop(std::chrono::milliseconds drain, std::function<void()> done) {
  auto finish = [this, done = std::move(done), alive = std::weak_ptr<int>(alive_)] {
    if (alive.expired())
      return;
    if (status().state != unit_state::failed)
      set_state(unit_state::stopped);
    if (done)
      done();
  };
  if (!server_ || status().state == unit_state::stopped || status().state == unit_state::failed) {
    boost::asio::post(executor(), std::move(finish));
    return;
  }
  set_state(unit_state::draining);
  server_->stop(drain, std::move(finish)); // logs "server: stopped…" when done
}

void server_unit::abandon() {
  if (server_)
    server_->abandon();
  if (status().state != unit_state::failed)
    set_state(unit_state::stopped);
}

reload_result server_unit::reload(std::string_view cause) {
  spdlog::info("server: {}; re-reading users, allow rules and certificate", cause);
  reload_result r;
  if (!server_) {
    r = {false, "the server is not running"};
  } else if (auto fresh = load_access_logged(options_.sources)) {
    r = {true, tunnel::describe_reload(server_->reload(std::move(fresh).value()), server_->access())};
  } else {
    spdlog::error("server: reload failed, the running settings stay: {}", fresh.error());
    r = {false, "reload failed, the running settings stay: " + fresh.error()};
  }
  emit(r.ok ? unit_event::kind::reloaded : unit_event::kind::reload_failed, r.summary);
  return r;
}

reload_result server_unit::reconfigure(unit& replacement, std::string_view cause) {
  reload_result r;
  auto* fresh = dynamic_cast<server_unit*>(&replacement);
  if (!server_ || !fresh) {
    r = {false, !server_ ? "the server is not running" : "not a server"};
  } else if (fresh->options_.cert.empty() != options_.cert.empty()) {
    r = {false, "a generated certificate cannot be swapped for a given one in place"};
  } else {
    auto sources = fresh->options_.sources;
    sources.uses_tls = options_.sources.uses_tls;
    sources.tls = options_.sources.tls; // the generated pair's, or the given one's…
    if (!options_.cert.empty()) {       // …replaced by the new given one
      sources.tls.cert_file = fresh->options_.cert;
      sources.tls.key_file = fresh->options_.key;
    }
    spdlog::info("server: {}; reading the new users, allow rules and certificate", cause);
    if (auto access = load_access_logged(sources)) {
      options_.sources = std::move(sources);
      options_.cert = fresh->options_.cert;
      options_.key = fresh->options_.key;
      r = {true, tunnel::describe_reload(server_->reload(std::move(access).value()), server_->access())};
      spdlog::info("server: {}", r.summary);
    } else {
      r = {false, "the new settings were refused, the running ones stay: " + access.error()};
      spdlog::error("server: {}", r.summary);
    }
  }
  emit(r.ok ? unit_event::kind::reloaded : unit_event::kind::reload_failed, r.summary);
  return r;
}

unit_counters server_unit::counters() const {
  unit_counters c;
  if (!server_)
    return c;
  const auto s = server_->counters();
  c.bytes_up = s.bytes_in; // from the clients
  c.bytes_down = s.bytes_out;
  c.connections_open = s.tunnels_open;
  c.connections_total = s.tunnels_total;
  c.streams_open = s.streams_open;
  c.streams_total = s.streams_total;
  return c;
}

} // namespace warren::unit
