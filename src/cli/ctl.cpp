// `warren ctl status|stop|ls|show|add|rm|restart|reload|events|metrics`: one request to a
// running `warren daemon` over its
// Unix control socket (default), or over tcp:// / tls:// with a token
// (--connect, --token-file), printed as aligned text or, with --json, as
// the reply's JSON. Every failure is one line and exit code 1: the daemon
// is not running (naming the path tried), permission denied (whose socket),
// wrong token, protocol mismatch (the reply parser, daemon/ctl_reply.*,
// treats the reply as untrusted input).
#include "cli/command.hpp"
#include "cli/common.hpp"
#include "cli/ctl_units.hpp"
#include "core/duration.hpp"
#include "daemon/control_frame.hpp"
#include "daemon/control_socket.hpp"
#include "daemon/ctl_reply.hpp"
#include "daemon/jsonrpc.hpp"
#include "net/address.hpp"
#include "transport/tls.hpp"
#include "transport/tls_stream.hpp"
#include "tunnel/server_access.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <thread>

namespace warren::cli {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using unix_proto = asio::local::stream_protocol;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// What one `ctl` run learns across its connections: the daemon's pid
/// (`stop` waits for it to exit; `events --follow` tells a restarted daemon
/// from a dropped connection) and, for events, where it has read up to.
struct ctl_session {
  std::optional<std::int64_t> pid;
  std::uint64_t last_seq = 0;
  bool subscribed = false;              // events.subscribe answered on some connection
  std::function<void()> on_subscribed;  // stops the --timeout clock
};

struct ctl_args {
  std::string action, connect, token_file, pin, timeout = "5s", wait = "30s";
  bool follow = false;
  ctl_session* session = nullptr;
  std::vector<std::string> operands; // UNIT or FILE
  std::string method;                 // the request the action makes
  nlohmann::json params;
  std::optional<std::string> control; // given, even empty: no default path then
  bool json = false;
};

/// Why a step failed, as the one line the user sees.
struct ctl_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// "owned by root, mode 0600" for `path`, or for the nearest directory
/// above it that we may look at ("/run/warren owned by root, mode 0700").
std::string owner_of(const std::string& path) {
  std::string at = path;
  struct stat st {};
  while (::stat(at.c_str(), &st) != 0) {
    const auto slash = at.rfind('/');
    if (slash == std::string::npos || slash == 0)
      return "owner unknown";
    at.resize(slash);
  }
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(4096);
  std::string name = ::getpwuid_r(st.st_uid, &pw, buf.data(), buf.size(), &found) == 0 && found
                         ? std::string(found->pw_name)
                         : "uid " + std::to_string(st.st_uid);
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return (at == path ? "" : at + " ") + "owned by " + name + ", mode " + mode;
}

/// Reads one frame's text from `s`.
template <class Stream>
asio::awaitable<std::string> read_frame(Stream& s, const std::string& where) {
  daemon::frame_decoder decoder;
  char buffer[16384];
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buffer), use_tuple);
    if (ec) {
      if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated || ec == asio::error::connection_reset)
        throw ctl_failure("the daemon at " + where + " closed the connection without answering" +
                          (decoder.announced_length() ? " (mid-reply)" : ""));
      throw ctl_failure("reading from " + where + ": " + ec.message());
    }
    std::string_view input(buffer, n);
    const auto status = decoder.decode(input);
    if (status == daemon::frame_status::frame) {
      if (!input.empty())
        throw ctl_failure("protocol mismatch: " + where + " sent more than one reply");
      co_return std::string(decoder.frame());
    }
    if (status != daemon::frame_status::need_more)
      throw ctl_failure("protocol mismatch: " + where + " sent a frame of " +
                        std::to_string(decoder.announced_length()) + " bytes (" +
                        std::string(daemon::frame_status_name(status)) + "); is it a warren daemon?");
  }
}

template <class Stream>
asio::awaitable<daemon::ctl_reply> call(Stream& s, std::int64_t id, std::string method, std::string where,
                                        nlohmann::json params) {
  const auto request = daemon::encode_ctl_request(id, method, params);
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(request), use_tuple);
  if (ec == asio::error::broken_pipe || ec == asio::error::connection_reset) // refused at accept, before we wrote
    throw ctl_failure("the daemon at " + where + " closed the connection without answering");
  if (ec)
    throw ctl_failure("writing to " + where + ": " + ec.message());
  const auto text = co_await read_frame(s, where);
  auto reply = daemon::parse_reply(text, id);
  if (!reply)
    throw ctl_failure(reply.error() + " (from " + where + ")");
  co_return std::move(*reply);
}

/// An integer member of the daemon's (untrusted) JSON, or `fallback`:
/// never json::value(), which throws on a member of another type.
template <class T>
T integer(const nlohmann::json& v, const char* key, T fallback) {
  if (!v.is_object())
    return fallback;
  const auto it = v.find(key);
  if (it == v.end() || !it->is_number_integer())
    return fallback;
  if constexpr (std::is_unsigned_v<T>)
    return it->is_number_unsigned() ? it->get<T>() : fallback;
  else
    return it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)
               ? fallback
               : it->get<T>();
}

/// Frames one after another from a stream (a reply, then notifications):
/// unlike read_frame(), bytes after a frame are kept for the next.
class frame_reader {
 public:
  template <class Stream>
  asio::awaitable<std::string> next(Stream& s, const std::string& where) {
    for (;;) {
      std::string_view input(pending_);
      const auto status = decoder_.decode(input);
      pending_.erase(0, pending_.size() - input.size());
      if (status == daemon::frame_status::frame)
        co_return std::string(decoder_.frame());
      if (status != daemon::frame_status::need_more)
        throw ctl_failure("protocol mismatch: " + where + " sent a frame of " +
                          std::to_string(decoder_.announced_length()) + " bytes (" +
                          std::string(daemon::frame_status_name(status)) + ")");
      char buffer[16384];
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buffer), use_tuple);
      if (ec) {
        if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated || ec == asio::error::connection_reset)
          throw ctl_failure("the daemon at " + where + " closed the connection");
        throw ctl_failure("reading from " + where + ": " + ec.message());
      }
      pending_.append(buffer, n);
    }
  }

 private:
  daemon::frame_decoder decoder_;
  std::string pending_;
};

/// `ctl events`: subscribes (replaying what this run has not printed yet:
/// after a reconnect to the same daemon the events since the last one
/// printed, from a new daemon all it still holds, at the start the last
/// 10 with --follow and all without) and prints each event as a line, or
/// its params as JSON. Without --follow it ends once the replay is printed.
template <class Stream>
asio::awaitable<daemon::ctl_reply> stream_events(Stream& s, const ctl_args& a, const std::string& where) {
  auto& st = *a.session;
  nlohmann::json params = nlohmann::json::object();
  if (st.pid) {
    const auto status = co_await call(s, 3, "daemon.status", where, nullptr);
    const bool same = status.ok && integer(status.result, "pid", std::int64_t{-1}) == *st.pid;
    if (same)
      params["after"] = st.last_seq;
    else
      params["recent"] = 256;
    if (!same)
      st.last_seq = 0;
  } else {
    params["recent"] = a.follow ? 10 : 256;
  }
  const auto request = daemon::encode_ctl_request(4, "events.subscribe", params);
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(request), use_tuple);
  if (ec)
    throw ctl_failure("writing to " + where + ": " + ec.message());
  frame_reader reader;
  auto reply = daemon::parse_reply(co_await reader.next(s, where), 4);
  if (!reply)
    throw ctl_failure(reply.error() + " (from " + where + ")");
  if (!reply->ok)
    co_return std::move(*reply);
  const auto upto = integer(reply->result, "seq", std::uint64_t{0});
  const auto pid = integer(reply->result, "pid", std::int64_t{-1});
  if (st.pid && *st.pid != pid)
    std::fprintf(stderr, "warren: reconnected to a new daemon (pid %lld) at %s\n", static_cast<long long>(pid),
                 where.c_str());
  else if (st.subscribed)
    std::fprintf(stderr, "warren: reconnected to the daemon at %s\n", where.c_str());
  st.pid = pid;
  st.subscribed = true;
  if (st.on_subscribed)
    st.on_subscribed();
  const bool colour = !a.json && ::isatty(STDOUT_FILENO) != 0 && std::getenv("NO_COLOR") == nullptr;
  while (a.follow || st.last_seq < upto) {
    auto note = daemon::parse_notification(co_await reader.next(s, where));
    if (!note)
      throw ctl_failure(note.error() + " (from " + where + ")");
    const auto seq = integer(note->params, "seq", std::uint64_t{0});
    if (seq != 0) {
      if (seq <= st.last_seq)
        continue; // seen on an earlier connection
      st.last_seq = seq;
    }
    if (a.json) {
      auto line = note->params;
      line["method"] = note->method;
      std::printf("%s\n", daemon::dump(line).c_str());
    } else {
      std::fputs(event_line(note->method, note->params, colour).c_str(), stdout);
    }
    std::fflush(stdout);
  }
  co_return std::move(*reply);
}

template <class Stream>
asio::awaitable<daemon::ctl_reply> authenticate_and_call(Stream& s, const ctl_args& a, const std::string& where,
                                                         const std::string& token) {
  if (!token.empty()) {
    nlohmann::json params = nlohmann::json::object(); // not a braced list: GCC 12 miscompiles those in coroutines
    params["token"] = token;
    auto auth = co_await call(s, 1, "auth", where, std::move(params));
    if (!auth.ok) {
      if (auth.code == static_cast<int>(daemon::error_code::unauthorized))
        throw ctl_failure("wrong token: " + where + " refused it (" + auth.message + ")");
      if (auth.code == static_cast<int>(daemon::error_code::rate_limited))
        throw ctl_failure(where + " refused to check the token: too many failed attempts from this address; "
                                  "wait a minute");
      throw ctl_failure("authentication with " + where + " failed: " + auth.message);
    }
  }
  if (a.action == "events")
    co_return co_await stream_events(s, a, where);
  if (a.action == "stop") { // the pid to wait for
    const auto status = co_await call(s, 3, "daemon.status", where, nullptr);
    const auto pid = status.ok ? integer(status.result, "pid", std::int64_t{-1}) : -1;
    if (pid > 0)
      a.session->pid = pid;
  }
  co_return co_await call(s, 2, a.method, where, a.params);
}

asio::awaitable<daemon::ctl_reply> over_unix(const ctl_args& a, const std::string& path) {
  unix_proto::socket s(co_await asio::this_coro::executor);
  auto [ec] = co_await s.async_connect(unix_proto::endpoint(path), use_tuple);
  if (ec == asio::error::access_denied)
    throw ctl_failure("permission denied: cannot connect to " + path + " (" + owner_of(path) + "; you are uid " +
                      std::to_string(::geteuid()) + ")");
  if (ec == boost::system::errc::no_such_file_or_directory || ec == asio::error::connection_refused)
    throw ctl_failure("warren daemon is not running (no control socket answers at " + path + ")");
  if (ec)
    throw ctl_failure("cannot connect to " + path + ": " + ec.message());
  try {
    co_return co_await authenticate_and_call(s, a, path, "");
  } catch (const ctl_failure& f) {
    if (std::string_view(f.what()).find("closed the connection without answering") == std::string_view::npos)
      throw;
    throw ctl_failure(std::string(f.what()) + ": permission denied? only the daemon's user and root may control it (" +
                      owner_of(path) + "; you are uid " + std::to_string(::geteuid()) + ")");
  }
}

asio::awaitable<daemon::ctl_reply> over_network(const ctl_args& a) {
  const bool tls = a.connect.starts_with("tls://");
  if (!tls && !a.connect.starts_with("tcp://"))
    throw user_error("--connect '" + a.connect + "': use tcp://HOST:PORT or tls://HOST:PORT");
  auto target = net::parse_host_port(std::string_view(a.connect).substr(6));
  if (!target)
    throw user_error("--connect '" + a.connect + "': " + target.error());
  if (a.token_file.empty())
    throw user_error("--connect needs --token-file: the daemon's TCP and TLS listeners take a token first");
  const std::string token = load_token(a.token_file);
  if (token.empty())
    throw user_error("--token-file " + a.token_file + " holds no token");
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(target->host, std::to_string(target->port), use_tuple);
  if (rec)
    throw ctl_failure("cannot resolve " + target->host + ": " + rec.message());
  tcp::socket socket(ex);
  auto [cec, ep] = co_await asio::async_connect(socket, results, use_tuple);
  if (cec == asio::error::connection_refused)
    throw ctl_failure("warren daemon is not running at " + a.connect + " (connection refused)");
  if (cec)
    throw ctl_failure("cannot connect to " + a.connect + ": " + cec.message());
  socket.set_option(tcp::no_delay(true));
  if (!tls)
    co_return co_await authenticate_and_call(socket, a, a.connect, token);

  transport::tls_client_options options;
  options.pin = a.pin;
  auto made = transport::make_client_context(options);
  if (!made)
    throw user_error(made.error());
  transport::tls_stream s(std::move(socket), *made->context, transport::tls_stream::client);
  auto report = made->report;
  if (made->pin) {
    s.engine().set_verify_callback([pin = *made->pin, report](bool, X509_STORE_CTX* store) {
      if (X509_STORE_CTX_get_error_depth(store) > 0)
        return true; // only the leaf is pinned
      X509* cert = X509_STORE_CTX_get_current_cert(store);
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned int n = 0;
      if (!cert || X509_digest(cert, EVP_sha256(), md, &n) != 1)
        return false;
      report->presented_fingerprint = transport::format_fingerprint(md, n);
      if (n == pin.size() && std::equal(pin.begin(), pin.end(), md))
        return true;
      report->failure = "certificate pin mismatch: the daemon presented " + report->presented_fingerprint;
      return false;
    });
  } else if (!net::is_ip_literal(target->host)) {
    s.engine().set_server_name(target->host);
  }
  auto [hec] = co_await s.async_handshake(use_tuple);
  if (hec)
    throw ctl_failure("TLS handshake with " + a.connect +
                      " failed: " + (report->failure.empty() ? hec.message() : report->failure) +
                      (made->pin ? ""
                                 : " (for the daemon's self-signed certificate, pass --pin with the fingerprint "
                                   "it logs)"));
  co_return co_await authenticate_and_call(s, a, a.connect, token);
}

std::string human_duration(long long seconds) {
  char buf[64];
  if (seconds < 60)
    std::snprintf(buf, sizeof buf, "%llds", seconds);
  else if (seconds < 3600)
    std::snprintf(buf, sizeof buf, "%lldm %02llds", seconds / 60, seconds % 60);
  else if (seconds < 86400)
    std::snprintf(buf, sizeof buf, "%lldh %02lldm", seconds / 3600, seconds % 3600 / 60);
  else
    std::snprintf(buf, sizeof buf, "%lldd %02lldh", seconds / 86400, seconds % 86400 / 3600);
  return buf;
}

/// A member as text for the table ("-" when absent or of another type).
std::string text_of(const nlohmann::json& v, const char* key) {
  const auto it = v.find(key);
  if (it == v.end() || it->is_null())
    return "-";
  if (it->is_string()) // the daemon's strings reach a terminal: no escapes
    return tunnel::printable(it->get<std::string>());
  if (it->is_number_integer())
    return std::to_string(it->get<long long>());
  return it->dump();
}

void print_status(const nlohmann::json& r) {
  std::vector<std::pair<std::string, std::string>> rows;
  rows.emplace_back("version", text_of(r, "version"));
  rows.emplace_back("pid", text_of(r, "pid"));
  const auto up = r.find("uptime_seconds");
  rows.emplace_back("uptime", up != r.end() && up->is_number_integer() ? human_duration(up->get<long long>()) : "-");
  rows.emplace_back("config", text_of(r, "config"));
  std::string control;
  if (const auto c = r.find("control"); c != r.end() && c->is_array())
    for (const auto& l : *c)
      control += (control.empty() ? "" : "\n") + tunnel::printable(l.is_string() ? l.get<std::string>() : l.dump());
  rows.emplace_back("control", control.empty() ? "-" : control);
  const auto units = r.find("units");
  rows.emplace_back("units", units != r.end() && units->is_object() ? text_of(*units, "total") : "-");
  std::string out;
  for (const auto& [key, value] : rows) {
    std::size_t start = 0;
    bool first = true;
    for (;;) {
      const auto nl = value.find('\n', start);
      char line[32];
      std::snprintf(line, sizeof line, "%-9s", first ? key.c_str() : "");
      out += line + value.substr(start, nl == std::string::npos ? std::string::npos : nl - start) + "\n";
      if (nl == std::string::npos)
        break;
      start = nl + 1;
      first = false;
    }
  }
  std::fputs(out.c_str(), stdout);
}

/// The request an action makes, its operands checked.
void plan_request(ctl_args& a) {
  const bool unit_action = a.action == "show" || a.action == "rm" || a.action == "restart";
  const std::size_t wanted = unit_action || a.action == "add" ? 1 : 0;
  if (a.operands.size() != wanted)
    throw user_error("ctl " + a.action + (wanted ? std::string(a.action == "add" ? " takes one FILE" : " takes one UNIT")
                                                 : std::string(" takes no operand")));
  static const std::pair<const char*, const char*> methods[] = {
      {"status", "daemon.status"}, {"stop", "daemon.stop"},   {"ls", "units.list"},         {"show", "units.get"},
      {"add", "units.add"},        {"rm", "units.remove"},    {"restart", "units.restart"}, {"reload", "config.reload"},
      {"events", "events.subscribe"}, {"metrics", "metrics.get"}};
  for (const auto& [action, method] : methods)
    if (a.action == action)
      a.method = method;
  if (unit_action) {
    a.params = nlohmann::json::object();
    a.params["name"] = a.operands.front();
  } else if (a.action == "add") {
    auto section = section_json(a.operands.front());
    if (!section)
      throw user_error(section.error());
    a.params = std::move(section).value();
  }
}

void print_result(const ctl_args& a, const nlohmann::json& result) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const bool colour = ::isatty(STDOUT_FILENO) != 0 && std::getenv("NO_COLOR") == nullptr;
  std::string out;
  if (a.action == "metrics")
    out = metrics_table(result, colour);
  else if (a.action == "ls")
    out = units_table(result.is_object() ? result.value("units", nlohmann::json::array()) : nlohmann::json(), now,
                      colour);
  else if (a.action == "show" || a.action == "add" || a.action == "restart")
    out = unit_details(result.is_object() ? result : nlohmann::json::object(), now, colour);
  else if (a.action == "rm")
    out = "unit " + tunnel::printable(a.operands.front()) + " removed\n";
  else if (a.action == "reload")
    out = reload_summary(result.is_object() ? result : nlohmann::json::object());
  else if (a.action == "stop")
    out = a.session->pid ? "warren daemon (pid " + std::to_string(*a.session->pid) + ") stopped\n"
                         : "warren daemon is stopping\n";
  std::fputs(out.c_str(), stdout);
}

/// `ctl stop` over the Unix socket: the daemon (same host) has answered;
/// waits for its process to end, polling, up to `limit`.
/// Whether process `pid` has exited: gone, or a zombie its parent has not
/// reaped yet (its work, and its sockets, are over).
bool exited(std::int64_t pid) {
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
    return true;
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr)
    return errno == ENOENT;
  char line[512] = {};
  const bool read = std::fgets(line, sizeof line, f) != nullptr;
  std::fclose(f);
  const char* paren = read ? std::strrchr(line, ')') : nullptr; // "PID (comm) S ...": comm may hold spaces
  return paren != nullptr && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

void wait_for_exit(std::int64_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (exited(pid))
      return;
    if (std::chrono::steady_clock::now() >= deadline)
      throw user_error("the daemon (pid " + std::to_string(pid) + ") is still stopping after " +
                       format_duration(limit) + " (it lets open connections finish; see its log)");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

/// One connection: connect, authenticate, the request (or the event
/// stream), bounded by --timeout until the answer (or the subscription).
daemon::ctl_reply run_once(const ctl_args& a, const std::string& where, std::chrono::milliseconds limit) {
  auto io = std::make_unique<asio::io_context>(1);
  std::optional<daemon::ctl_reply> reply;
  std::exception_ptr failure;
  bool timed_out = false;
  asio::steady_timer timer(*io, limit);
  timer.async_wait([&](error_code ec) {
    if (!ec) {
      timed_out = true;
      io->stop();
    }
  });
  a.session->on_subscribed = [&timer] { timer.cancel(); };
  asio::co_spawn(*io, where.empty() ? over_network(a) : over_unix(a, where),
                 [&](std::exception_ptr e, daemon::ctl_reply r) {
                   failure = e;
                   reply = std::move(r);
                   timer.cancel();
                 });
  io->run();
  a.session->on_subscribed = nullptr;
  if (timed_out) {
    // Ends here, without destructors: a resolver thread stuck in
    // getaddrinfo() would make the io_context's destructor wait past
    // --timeout. The line is the one main() prints for a user_error.
    std::fprintf(stderr, "warren: error: no answer from %s within %s\n",
                 tunnel::printable(where.empty() ? a.connect : where).c_str(), a.timeout.c_str());
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(1);
  }
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const ctl_failure& f) {
      throw user_error(f.what());
    }
  }
  return std::move(*reply);
}

int run(ctl_args& a) {
  plan_request(a);
  const auto limit = duration_arg(a.timeout, "--timeout");
  const auto wait = duration_arg(a.wait, "--wait");
  if (a.follow && a.action != "events")
    throw user_error("--follow is for ctl events");
  std::string where;
  if (a.connect.empty()) {
    if (!a.token_file.empty() || !a.pin.empty())
      throw user_error(std::string(a.token_file.empty() ? "--pin" : "--token-file") +
                       " is for --connect: over the Unix socket the daemon checks your uid, not a token");
    if (a.control) {
      if (a.control->empty())
        throw user_error("--control is empty; give the control socket's path (or leave it out for the default)");
      where = *a.control;
    } else {
      auto path = daemon::default_control_path();
      if (!path)
        throw user_error(path.error());
      where = *path;
    }
  } else if (a.control) {
    throw user_error("--control and --connect are two ways to reach the daemon: give one");
  }
  ctl_session session;
  a.session = &session;
  std::optional<daemon::ctl_reply> reply;
  // events --follow: a connection that ends after the subscription (the
  // daemon stopped or restarted) is made again, with a back-off; the first
  // one must work (a wrong path is an error, not a wait).
  auto backoff = std::chrono::milliseconds(100);
  bool waiting = false;
  for (;;) {
    try {
      reply = run_once(a, where, limit);
      break;
    } catch (const user_error& e) {
      if (!a.follow || !session.subscribed)
        throw;
      if (!waiting)
        std::fprintf(stderr, "warren: %s; waiting for the daemon\n", e.what());
      waiting = true;
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
  if (!reply->ok) {
    for (const auto& d : reply->details)
      std::fprintf(stderr, "warren: error: %s\n", d.c_str());
    std::fprintf(stderr, "warren: error: %s: %s (%d)\n", a.method.c_str(), reply->message.c_str(), reply->code);
    return 1;
  }
  if (a.action == "events")
    return 0;
  if (a.action == "stop" && !where.empty() && session.pid && wait.count() > 0)
    wait_for_exit(*session.pid, wait);
  if (a.json) {
    std::printf("%s\n", daemon::dump(reply->result).c_str());
  } else if (a.action == "status") {
    print_status(reply->result);
  } else {
    print_result(a, reply->result);
  }
  return 0;
}

} // namespace

std::function<int()> add_ctl_command(CLI::App& app) {
  auto a = std::make_shared<ctl_args>();
  auto* cmd = app.add_subcommand("ctl", "Control a running warren daemon");
  cmd->add_option("action", a->action, "status, stop, ls, show UNIT, add FILE, rm UNIT, restart UNIT, reload, events or metrics")
      ->required()
      ->check(CLI::IsMember({"status", "stop", "ls", "show", "add", "rm", "restart", "reload", "events", "metrics"}));
  cmd->add_option("operand", a->operands, "The UNIT (show, rm, restart) or the FILE (add: one TOML section)");
  cmd->add_option("--control", a->control,
                  "The daemon's Unix control socket (default: $XDG_RUNTIME_DIR/warren/control.sock; "
                  "/run/warren/control.sock as root)");
  cmd->add_option("--connect", a->connect, "Reach the daemon over tcp://HOST:PORT or tls://HOST:PORT instead");
  cmd->add_option("--token-file", a->token_file, "The control token for --connect");
  cmd->add_option("--pin", a->pin, "tls://: the daemon certificate's sha256:… fingerprint (it logs it at start)");
  cmd->add_option("--timeout", a->timeout, "Give up after this long")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the reply's JSON (for scripts; events: one JSON object a line)");
  cmd->add_flag("-f,--follow", a->follow,
                "events: keep printing new events, and reconnect when the daemon restarts (until interrupted)");
  cmd->add_option("--wait", a->wait,
                  "stop: wait this long for the daemon to exit once it has answered (Unix socket; 0: do not wait)")
      ->capture_default_str();
  return [a] { return run(*a); };
}

} // namespace warren::cli
