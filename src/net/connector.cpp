#include "net/connector.hpp"

#include "core/duration.hpp"
#include "net/socket_mark.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <net/if.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>

namespace warren::net {

namespace asio = boost::asio;
using asio::ip::tcp;

std::string describe(const error_code& ec) {
  if (ec == asio::error::host_not_found)
    return "no such host";
  if (ec == asio::error::host_not_found_try_again)
    return "temporary name resolution failure (try again)";
  std::string m = ec.message();
  if (!m.empty())
    m[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(m[0])));
  return m;
}

namespace {

std::string show(const asio::ip::address& a, std::uint16_t port) {
  return format_host_port(a.to_string(), port);
}

/// One Happy Eyeballs run. Owned by the pending operations that reference it
/// (resolver callbacks hold only a weak_ptr, so a slow lookup does not keep a
/// finished run alive; and a run that ends cancels its lookups, so one still
/// queued is skipped instead of delaying everyone's). Single-threaded:
/// everything runs on ex_.
class connect_op : public std::enable_shared_from_this<connect_op> {
 public:
  connect_op(asio::any_io_executor ex, host_port target, connect_options options,
             std::function<void(connect_result)> done)
      : ex_(std::move(ex)), target_(std::move(target)), options_(std::move(options)), done_(std::move(done)),
        timer_(ex_), started_(steady_clock::now()), he_(effective_config(), started_) {}

  void start(resolver& r, asio::cancellation_slot slot) {
    slot_ = slot;
    if (slot.is_connected()) {
      std::weak_ptr<connect_op> weak = shared_from_this();
      slot.assign([weak](asio::cancellation_type) {
        if (auto self = weak.lock())
          self->cancel();
      });
    }
    spdlog::debug("{}: connecting to {} (policy {}, attempt delay {}, timeout {})", options_.log_label,
                  format_host_port(target_.host, target_.port), to_string(options_.he.policy),
                  format_duration(options_.he.attempt_delay), format_duration(options_.he.timeout));
    if (auto literal = parse_ip(target_.host)) {
      // A literal needs no lookup; the other family answers "nothing".
      const auto f = family_of(*literal);
      const auto o = f == ip_family::v4 ? ip_family::v6 : ip_family::v4;
      asio::post(ex_, [self = shared_from_this(), f, o, a = *literal] {
        std::vector<asio::ip::address> found{a};
        self->filter(found);
        self->apply(self->he_.on_resolved(steady_clock::now(), f, std::move(found), {}));
        self->apply(self->he_.on_resolved(steady_clock::now(), o, {}, {}));
      });
    } else {
      for (auto f : {ip_family::v6, ip_family::v4}) {
        if (!he_.wants(f))
          continue;
        std::weak_ptr<connect_op> weak = shared_from_this();
        r.async_resolve(
            ex_, target_.host, f,
            [weak, f](error_code ec, std::vector<asio::ip::address> found) {
              if (auto self = weak.lock())
                self->on_resolved(f, ec, std::move(found));
            },
            lookups_[f == ip_family::v6 ? 0 : 1].slot());
      }
    }
    arm_timer();
  }

  void cancel() {
    if (!completed_)
      apply(he_.cancel(steady_clock::now()));
  }

 private:
  he_config effective_config() const {
    he_config c = options_.he;
    if (options_.source) // a source address pins the family
      c.policy = options_.source->is_v6() ? family_policy::ipv6_only : family_policy::ipv4_only;
    return c;
  }

  long long since_start() const { return to_ms(steady_clock::now() - started_); }

  void on_resolved(ip_family f, error_code ec, std::vector<asio::ip::address> found) {
    if (completed_)
      return;
    const char* rr = f == ip_family::v6 ? "AAAA" : "A";
    if (ec && ec != asio::error::no_data) {
      spdlog::debug("{}: {} lookup of {} failed after {} ms: {}", options_.log_label, rr, target_.host, since_start(),
                    describe(ec));
    } else {
      std::string list;
      for (const auto& a : found)
        list += (list.empty() ? "" : ", ") + a.to_string();
      spdlog::debug("{}: {} answer for {} after {} ms: {}", options_.log_label, rr, target_.host, since_start(),
                    list.empty() ? "no addresses" : list);
      if (ec == asio::error::no_data)
        ec = {};
    }
    filter(found);
    apply(he_.on_resolved(steady_clock::now(), f, std::move(found), ec));
  }

  void filter(std::vector<asio::ip::address>& found) {
    if (!options_.allow)
      return;
    for (auto it = found.begin(); it != found.end();) {
      if (options_.allow(*it)) {
        ++it;
      } else {
        spdlog::debug("{}: {} denied by policy", options_.log_label, it->to_string());
        ++denied_;
        it = found.erase(it);
      }
    }
  }

  void apply(happy_eyeballs::actions actions) {
    // Actions may produce more actions (a socket that cannot even be opened
    // fails at once), so work through a queue instead of recursing.
    std::deque<happy_eyeballs::action> work(actions.begin(), actions.end());
    while (!work.empty()) {
      auto action = std::move(work.front());
      work.pop_front();
      if (auto* s = std::get_if<happy_eyeballs::start_attempt>(&action)) {
        if (auto ec = begin_attempt(s->id, s->address)) {
          spdlog::debug("{}: attempt {} to {} could not start: {}", options_.log_label, s->id + 1,
                        show(s->address, target_.port), describe(ec));
          for (auto& a : he_.on_attempt_failed(steady_clock::now(), s->id, ec))
            work.push_back(std::move(a));
        }
      } else if (auto* c = std::get_if<happy_eyeballs::cancel_attempt>(&action)) {
        if (c->id < sockets_.size() && sockets_[c->id]) {
          spdlog::debug("{}: attempt {} to {} cancelled after {} ms", options_.log_label, c->id + 1,
                        show(he_.attempts()[c->id].address, target_.port),
                        to_ms(steady_clock::now() - he_.attempts()[c->id].started));
          error_code ignored;
          sockets_[c->id]->close(ignored);
          sockets_[c->id].reset();
          tickets_[c->id].reset();
        }
      } else if (auto* w = std::get_if<happy_eyeballs::succeeded>(&action)) {
        complete_success(w->id);
      } else if (auto* f = std::get_if<happy_eyeballs::failed>(&action)) {
        complete_failure(f->ec);
      }
    }
    if (!completed_)
      arm_timer();
  }

  error_code begin_attempt(std::size_t id, const asio::ip::address& address) {
    if (sockets_.size() <= id)
      sockets_.resize(id + 1);
    if (tickets_.size() <= id)
      tickets_.resize(id + 1);
    if (options_.racing_sockets && std::any_of(sockets_.begin(), sockets_.end(), [](const auto& s) { return s.has_value(); })) {
      // A second socket at once: it must fit in the caller's budget.
      tickets_[id] = options_.racing_sockets->take();
      if (!tickets_[id])
        return asio::error::no_descriptors;
    }
    tcp::socket socket(ex_);
    error_code ec;
    const tcp::endpoint ep(address, target_.port);
    socket.open(ep.protocol(), ec);
    if (ec)
      return ec;
    socket.set_option(tcp::no_delay(true), ec);
    if (options_.mark) {
      // Before any packet leaves: an unmarked SYN would be routed into the TUN.
      if (auto me = set_socket_mark(socket.native_handle(), *options_.mark)) {
        mark_error_ = me;
        return me;
      }
    }
    if (auto be = bind_to_device(socket.native_handle(), options_.interface))
      return be;
    if (options_.source) {
      socket.bind(tcp::endpoint(*options_.source, 0), ec);
      if (ec)
        return ec;
    }
    spdlog::debug("{}: attempt {} to {} ({}) started at +{} ms", options_.log_label, id + 1,
                  show(address, target_.port), to_string(family_of(address)), since_start());
    socket.async_connect(ep, [self = shared_from_this(), id](error_code e) { self->on_attempt_done(id, e); });
    sockets_[id] = std::move(socket);
    return {};
  }

  void on_attempt_done(std::size_t id, error_code ec) {
    if (completed_ || ec == asio::error::operation_aborted)
      return;
    const auto& rec = he_.attempts()[id];
    if (ec) {
      spdlog::debug("{}: attempt {} to {} failed after {} ms: {}", options_.log_label, id + 1,
                    show(rec.address, target_.port), to_ms(steady_clock::now() - rec.started), describe(ec));
      if (sockets_[id]) {
        error_code ignored;
        sockets_[id]->close(ignored);
        sockets_[id].reset();
      }
      tickets_[id].reset();
      apply(he_.on_attempt_failed(steady_clock::now(), id, ec));
    } else {
      apply(he_.on_connected(steady_clock::now(), id));
    }
  }

  void arm_timer() {
    auto when = he_.next_wakeup();
    if (!when)
      return;
    if (armed_ && *armed_ == *when)
      return;
    armed_ = *when;
    timer_.expires_at(*when);
    timer_.async_wait([self = shared_from_this(), when = *when](error_code ec) {
      if (ec || self->completed_ || !self->armed_ || *self->armed_ != when)
        return;
      self->armed_.reset();
      self->apply(self->he_.on_timer(steady_clock::now()));
    });
  }

  void complete_success(std::size_t id) {
    completed_ = true;
    timer_.cancel();
    connect_result result;
    result.socket = std::move(*sockets_[id]);
    sockets_[id].reset();
    result.peer = tcp::endpoint(he_.attempts()[id].address, target_.port);
    result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started_);
    spdlog::debug("{}: connected to {} ({}) in {} ms, attempt {} of {}", options_.log_label,
                  show(result.peer.address(), target_.port), to_string(family_of(result.peer.address())),
                  result.elapsed.count(), id + 1, he_.attempts().size());
    finish(std::move(result));
  }

  void complete_failure(error_code ec) {
    if (denied_ > 0 && he_.attempts().empty() && ec != errc::timed_out && ec != errc::cancelled)
      ec = errc::denied;
    completed_ = true;
    timer_.cancel();
    connect_result result;
    result.ec = ec;
    result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started_);
    result.detail = failure_detail(ec);
    spdlog::debug("{}: connect to {} failed after {} ms: {}", options_.log_label,
                  format_host_port(target_.host, target_.port), result.elapsed.count(), result.detail);
    finish(std::move(result));
  }

  std::string failure_detail(error_code ec) const {
    std::string detail = failure_summary(ec);
    if (mark_error_) // the reason every attempt shares, said once and plainly
      detail += " (" + describe_mark_failure(*options_.mark, mark_error_) + ")";
    return detail;
  }

  std::string failure_summary(error_code ec) const {
    const auto target = format_host_port(target_.host, target_.port);
    if (ec == errc::cancelled)
      return "connect to " + target + " cancelled";
    std::string tried;
    for (const auto& a : he_.attempts()) {
      tried += tried.empty() ? "" : "; ";
      tried += show(a.address, target_.port) + ": " +
               (a.ec == errc::cancelled || !a.ec ? std::string("no answer") : describe(a.ec));
    }
    if (ec == errc::timed_out)
      return "connect to " + target + " timed out after " + format_duration(options_.he.timeout) +
             (tried.empty() ? " (name resolution did not finish)" : " (" + tried + ")");
    if (ec == errc::denied)
      return "connect to " + target + " denied by the destination policy (" + std::to_string(denied_) +
             " address(es) not allowed)";
    if (he_.attempts().empty()) {
      if (ec != errc::no_addresses)
        return "cannot resolve " + target_.host + ": " + describe(ec);
      const bool both = he_.wants(ip_family::v4) && he_.wants(ip_family::v6);
      const std::string which = both ? "" : he_.wants(ip_family::v4) ? "IPv4 " : "IPv6 ";
      return "no " + which + "address found for " + target_.host + " (family policy " +
             std::string(to_string(effective_config().policy)) + ")";
    }
    const auto& attempts = he_.attempts();
    if (attempts.size() == 1 && parse_ip(target_.host))
      return "cannot connect to " + target + ": " + describe(attempts.front().ec);
    return "cannot connect to " + target + " (" + tried + ")";
  }

  void finish(connect_result result) {
    if (slot_.is_connected())
      slot_.clear();
    for (auto& lookup : lookups_)
      lookup.emit(asio::cancellation_type::terminal); // one still waiting is not needed any more
    for (auto& s : sockets_) {
      if (s) {
        error_code ignored;
        s->close(ignored);
        s.reset();
      }
    }
    tickets_.clear();
    asio::post(ex_, [done = std::move(done_), result = std::move(result)]() mutable { done(std::move(result)); });
  }

  asio::any_io_executor ex_;
  host_port target_;
  connect_options options_;
  std::function<void(connect_result)> done_;
  asio::steady_timer timer_;
  time_point started_;
  happy_eyeballs he_;
  std::vector<std::optional<tcp::socket>> sockets_; // by attempt id; empty once ended
  std::vector<std::optional<fd_budget::ticket>> tickets_; // by attempt id: a racing socket's descriptor
  std::optional<time_point> armed_;
  asio::cancellation_slot slot_;
  std::array<asio::cancellation_signal, 2> lookups_; // AAAA, A
  std::size_t denied_ = 0;
  error_code mark_error_; // set when SO_MARK could not be set on an attempt socket
  bool completed_ = false;
};

} // namespace

void start_connect(asio::any_io_executor ex, resolver& r, host_port target, connect_options options,
                   std::function<void(connect_result)> done, asio::cancellation_slot slot) {
  auto op = std::make_shared<connect_op>(std::move(ex), std::move(target), std::move(options), std::move(done));
  op->start(r, slot);
}

} // namespace warren::net
