// `warren server --listen wss://HOST:PORT`: accepts tunnels (wss, ws, tls,
// tcp), authenticates them by token, and connects their streams to targets
// the destination policy allows (default: none).
#include "cli/common.hpp"

#include "core/fd_limit.hpp"

#include "core/duration.hpp"
#include "tunnel/server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>

#include <unistd.h>

namespace warren::cli {
namespace {

namespace asio = boost::asio;

struct server_args {
  std::vector<std::string> listen{"wss://localhost:8443"};
  std::vector<std::string> cert_names, trust_proxy;
  std::string cert, key, client_ca, state_dir, token_file, users_file, allow_file;
  std::vector<std::string> allow;
  std::string log_level = "info";
  std::string family = "auto";
  std::string connect_timeout = "10s";
  std::string ping_interval = "15s";
  std::string drain_timeout = "10s";
  std::string udp_idle_timeout = "60s";
  std::uint32_t max_streams = 1024;
  std::uint64_t max_buffer = 0; // 0: max_streams x the initial window
  std::size_t max_clients = 1024;
  std::size_t lookup_threads = 32;
  std::size_t max_lookups = 8;
  std::size_t max_handshakes = 256;
  std::size_t max_handshakes_per_source = 32;
  std::uint32_t max_opens = 256;
  std::uint32_t open_burst = 512;
  std::size_t max_connects = 64;
};

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

/// Every --listen as a URL; the same address twice is an error.
std::vector<transport::url> listen_urls(const std::vector<std::string>& texts) {
  std::vector<transport::url> out;
  for (const auto& text : texts) {
    auto url = transport::parse_url(text, true);
    if (!url)
      throw user_error("--listen: " + url.error());
    for (const auto& u : out)
      if (u.endpoint == url->endpoint && u.endpoint.port != 0)
        throw user_error("--listen " + transport::to_string(*url) + " and " + transport::to_string(u) +
                         " share an address: give each listener its own port");
    out.push_back(*url);
  }
  return out;
}

/// What the generated certificate names (transport::self_signed_names).
std::vector<std::string> certificate_names(const std::vector<std::string>& cert_names,
                                           const std::vector<transport::url>& listen) {
  std::vector<std::string> names;
  for (const auto& n : cert_names) {
    auto name = transport::certificate_name(n);
    if (!name)
      throw user_error(name.error());
    names.push_back(*name);
  }
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || !net::is_valid_hostname(host))
    host[0] = '\0';
  std::vector<std::string> hosts;
  for (const auto& u : listen)
    if (u.uses_tls())
      hosts.push_back(u.endpoint.host);
  return transport::self_signed_names(host, names, hosts);
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names)
    out += (out.empty() ? "" : ", ") + n;
  return out;
}

int run(const server_args& a) {
  // Until the reload handler is installed (after the certificate is made
  // and the files are read), SIGHUP is ignored instead of ending the server.
  std::signal(SIGHUP, SIG_IGN);
  init_logging(a.log_level);
  tunnel::server_options o;
  o.listen = listen_urls(a.listen);
  for (const auto& text : a.trust_proxy) {
    auto n = transport::parse_ip_network(text);
    if (!n)
      throw user_error("--trust-proxy: " + n.error());
    auto note = transport::trust_proxy_warning(*n);
    if (!note)
      throw user_error("--trust-proxy " + text + ": " + note.error());
    if (!note->empty())
      spdlog::warn("server: --trust-proxy {}", *note);
    o.accept.trusted_proxies.push_back(*n);
  }
  const bool any_ws = std::any_of(o.listen.begin(), o.listen.end(), [](const auto& u) { return u.uses_websocket(); });
  if (!o.accept.trusted_proxies.empty() && !any_ws)
    spdlog::warn("server: --trust-proxy has no effect: X-Forwarded-For is read only on ws:// and wss:// listeners, "
                 "and every --listen here is tcp:// or tls://");
  // What SIGHUP re-reads (tunnel/server_access.hpp).
  tunnel::access_sources sources;
  sources.users_file = a.users_file;
  sources.token_file = a.token_file;
  if (a.token_file.empty())
    sources.token_env = load_token("");
  if (!a.users_file.empty() && !sources.token_env.empty())
    spdlog::warn("server: WARREN_TOKEN is set beside --users-file: it adds the user '{}' (unset it if that is a "
                 "leftover)",
                 tunnel::k_default_user);
  sources.allow = a.allow;
  sources.allow_file = a.allow_file;
  auto policy = net::parse_family_policy(a.family);
  if (!policy)
    throw user_error("--family '" + a.family + "' is not one of auto, prefer-ipv4, ipv4, ipv6");
  o.connect.he.policy = *policy;
  o.connect.he.timeout = duration_arg(a.connect_timeout, "--connect-timeout");
  o.session.ping_interval = duration_arg(a.ping_interval, "--ping-interval");
  o.session.max_streams = a.max_streams;
  o.drain_timeout = duration_arg(a.drain_timeout, "--drain-timeout");
  o.udp_idle_timeout = duration_arg(a.udp_idle_timeout, "--udp-idle-timeout");
  o.max_clients = a.max_clients;
  if (a.max_buffer != 0 && a.max_buffer < o.session.initial_window)
    throw user_error("--max-buffer-per-client " + std::to_string(a.max_buffer) + " is less than one stream's window (" +
                     std::to_string(o.session.initial_window / 1024) + " KiB)");
  o.max_buffer_per_client = a.max_buffer;
  if (a.max_lookups > a.lookup_threads)
    throw user_error("--max-lookups-per-client " + std::to_string(a.max_lookups) + " is more than --lookup-threads " +
                     std::to_string(a.lookup_threads) + ": one client could take every lookup thread");
  o.max_lookups_per_client = a.max_lookups;
  o.max_handshakes = a.max_handshakes;
  o.max_handshakes_per_source = a.max_handshakes_per_source;
  o.max_opens_per_second = a.max_opens;
  o.open_burst = a.open_burst;
  o.max_connects_per_client = a.max_connects;
  o.session.label = "server";
  const std::uint64_t buffer =
      a.max_buffer != 0 ? a.max_buffer : std::uint64_t{a.max_streams} * o.session.initial_window;
  spdlog::info("server: per client at most {} streams and {} of data buffered for them, {} of {} name lookups "
               "at a time, {} connects in flight, {} stream opens per second in bursts of {} (faster opens pause "
               "its tunnel) (--max-streams-per-client, --max-buffer-per-client, --max-lookups-per-client, "
               "--max-connects-per-client, --max-opens-per-second-per-client, --open-burst-per-client); all tunnels of "
               "one user share them",
               a.max_streams,
               buffer % (1u << 20) == 0 ? std::to_string(buffer >> 20) + " MiB" : std::to_string(buffer >> 10) + " KiB",
               a.max_lookups, a.lookup_threads, a.max_connects, a.max_opens, a.open_burst);
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
  if (fds.now != 0 && fds.now < 2 * std::uint64_t{a.max_streams} + 64)
    spdlog::warn("server: the open-file limit ({}) is below what one client's {} streams may take (up to 2 "
                 "sockets each): a single client could use up the server's descriptors and lock everyone else out; "
                 "lower --max-streams-per-client or raise the limit (ulimit -n, LimitNOFILE=)",
                 fds.now, a.max_streams);

  const bool any_tls = std::any_of(o.listen.begin(), o.listen.end(), [](const auto& u) { return u.uses_tls(); });
  if (!a.cert_names.empty() && (!any_tls || !a.cert.empty()))
    spdlog::warn("server: --cert-name is ignored: {}",
                 any_tls ? "it names the generated certificate, and --cert gives one"
                         : "no --listen is wss:// or tls://, so no certificate is used");
  if (any_tls) {
    transport::tls_server_options t{a.cert, a.key, a.client_ca};
    if (a.cert.empty() != a.key.empty())
      throw user_error("--cert and --key go together");
    if (a.cert.empty()) {
      const std::string dir = a.state_dir.empty() ? default_state_dir() : a.state_dir;
      auto made = transport::ensure_self_signed(dir, certificate_names(a.cert_names, o.listen));
      if (!made)
        throw user_error(made.error());
      if (!made->missing_names.empty())
        spdlog::warn("server: the certificate in {} does not name {}; it is kept, as clients pin its fingerprint "
                     "(to generate one with these names, remove cert.pem and key.pem there and give clients "
                     "the new fingerprint)",
                     made->cert_file, join(made->missing_names));
      t.cert_file = made->cert_file;
      t.key_file = made->key_file;
      spdlog::info("server: {} self-signed certificate {}", made->created ? "generated" : "using", made->cert_file);
    }
    sources.uses_tls = true;
    sources.tls = t;
  }
  const auto access = load_access_logged(sources);
  if (!access)
    throw user_error(access.error());
  set_access(o, *access);

  asio::io_context io(1);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::signal_set hangup(io, SIGHUP);
  // Each lookup blocks a thread (getaddrinfo) for as long as the name takes,
  // seconds for a slow one; a client holds at most --max-lookups-per-client
  // of these threads at a time, so a few with slow names leave the rest to
  // the others.
  net::system_resolver resolver(a.lookup_threads);
  auto srv = std::make_shared<tunnel::server>(io.get_executor(), resolver, o);
  auto bound = srv->bind();
  if (!bound)
    throw user_error(bound.error());
  for (const auto& l : srv->listening()) {
    // One URL per bound address, each with its path.
    std::string urls;
    for (const auto& ep : l.endpoints)
      urls += (urls.empty() ? "" : ", ") + std::string(transport::to_string(l.url.scheme)) + "://" +
              net::format_host_port(ep.address().to_string(), ep.port()) + (l.url.uses_websocket() ? l.url.path : "");
    spdlog::info("server: listening on {}", urls);
    if (l.ipv6_only)
      spdlog::warn("server: {} listens on IPv6 only (IPv4 clients are refused); use * for both", urls);
  }
  srv->start();
  // SIGHUP: re-read users, rules and certificate; all or nothing.
  std::function<void()> wait_hangup = [&] {
    hangup.async_wait([&](error_code ec, int) {
      if (ec)
        return;
      spdlog::info("server: SIGHUP received; re-reading users, allow rules and certificate");
      if (auto fresh = load_access_logged(sources))
        srv->reload(std::move(fresh).value());
      else
        spdlog::error("server: reload failed, the running settings stay: {}", fresh.error());
      wait_hangup();
    });
  };
  wait_hangup();
  bool second_signal = false;
  signals.async_wait([&](error_code ec, int signo) {
    if (ec)
      return;
    spdlog::info("server: {} received; letting open streams finish (up to {})", signo == SIGINT ? "SIGINT" : "SIGTERM",
                 format_duration(o.drain_timeout));
    error_code ignored;
    hangup.cancel(ignored);
    srv->stop([&io] { io.stop(); });
    signals.async_wait([&](error_code e2, int) {
      if (e2)
        return;
      second_signal = true;
      io.stop(); // a second signal: stop now
    });
  });
  io.run();
  // The drain's own "server: stopped" line did not come: say so last.
  if (second_signal) {
    srv->abandon();
    spdlog::info("server: stopped (second signal: open streams reset)");
  }
  return 0;
}

} // namespace

std::function<int()> add_server_command(CLI::App& app) {
  auto a = std::make_shared<server_args>();
  auto* cmd = app.add_subcommand("server", "Accept tunnels from warren clients");
  // allow_extra_args(false): one URL per --listen, and "[::]" is not a list.
  cmd->add_option("--listen", a->listen,
                  "wss://HOST:PORT[/PATH], ws://, tls:// or tcp://; HOST * is every interface (IPv4 and IPv6), "
                  "localhost both loopbacks; repeatable")
      ->capture_default_str()
      ->allow_extra_args(false);
  cmd->add_option("--cert", a->cert, "Certificate chain (PEM); default: a self-signed one in --state-dir");
  cmd->add_option("--cert-name", a->cert_names,
                  "A name (or address) the generated certificate is for, instead of the host name; repeatable")
      ->allow_extra_args(false);
  cmd->add_option("--trust-proxy", a->trust_proxy,
                  "A reverse proxy (CIDR) whose X-Forwarded-For names the client: its right-most address not "
                  "in a --trust-proxy block; repeatable; default none (the header is ignored)")
      ->allow_extra_args(false);
  cmd->add_option("--key", a->key, "Private key (PEM)");
  cmd->add_option("--client-ca", a->client_ca, "Require client certificates signed by this CA (mTLS)");
  cmd->add_option("--state-dir", a->state_dir, "Where the generated certificate lives");
  cmd->add_option("--token-file", a->token_file,
                  "File holding the token clients must present (or WARREN_TOKEN): the user 'default'");
  cmd->add_option("--users-file", a->users_file,
                  "Named users (TOML: [[user]] name, token_sha256 / token_file / token, allow); re-read on SIGHUP");
  // allow_extra_args(false): otherwise CLI11 reads "[::1]" as a bracketed list.
  cmd->add_option("--allow", a->allow, "Allowed destination: CIDR[:ports], host[:ports], *.domain[:ports], *")
      ->allow_extra_args(false);
  cmd->add_option("--allow-file", a->allow_file, "More --allow rules, one per line (# comments); re-read on SIGHUP");
  cmd->add_option("--log-level", a->log_level)->capture_default_str();
  cmd->add_option("--family", a->family, "Outbound family policy: auto, prefer-ipv4, ipv4, ipv6")
      ->capture_default_str();
  cmd->add_option("--connect-timeout", a->connect_timeout)->capture_default_str();
  cmd->add_option("--ping-interval", a->ping_interval)->capture_default_str();
  cmd->add_option("--drain-timeout", a->drain_timeout, "On SIGTERM, how long open streams may finish")
      ->capture_default_str();
  cmd->add_option("--udp-idle-timeout", a->udp_idle_timeout)->capture_default_str();
  cmd->add_option("--max-streams-per-client", a->max_streams)->capture_default_str()->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--max-buffer-per-client", a->max_buffer,
                  "Data a client's streams may have buffered on the server (256 KiB windows, all streams together; "
                  "a stream beyond it is refused); e.g. 64M. Default: max-streams-per-client x 256 KiB")
      ->check(k_not_negative)
      ->transform(CLI::AsSizeValue(false));
  cmd->add_option("--max-clients", a->max_clients)->capture_default_str()->check(CLI::Range(1, 100'000));
  cmd->add_option("--max-handshakes", a->max_handshakes,
                  "Connections that may be in their handshake (not authenticated yet) at a time; when all are "
                  "taken, a newcomer evicts the oldest (of the source holding the most, if that is fairer)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  cmd->add_option("--max-handshakes-per-source", a->max_handshakes_per_source,
                  "The same from one source (an IPv4 address or an IPv6 /64)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  cmd->add_option("--lookup-threads", a->lookup_threads, "Threads for outbound name lookups (getaddrinfo), all clients")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--max-lookups-per-client", a->max_lookups,
                  "Name lookups one client may have running at a time; more wait their turn")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--max-opens-per-second-per-client", a->max_opens,
                  "Streams a client may open per second (each costs a connect); faster opens pause the reading "
                  "of its tunnel until they are due, they are not refused")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--open-burst-per-client", a->open_burst,
                  "Streams a client may open at once before --max-opens-per-second-per-client paces it")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--max-connects-per-client", a->max_connects,
                  "Outbound connects a client may have in flight (until connected or refused); more wait their turn")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  refuse_negative_numbers(*cmd);
  return [a] { return run(*a); };
}

} // namespace warren::cli
