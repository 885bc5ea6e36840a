#include "net/resolver.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>

namespace warren::net {

namespace asio = boost::asio;

std::optional<asio::ip::address> parse_ip(std::string_view text) {
  error_code ec;
  auto a = asio::ip::make_address(std::string(text), ec);
  if (ec)
    return std::nullopt;
  return a;
}

std::optional<std::vector<asio::ip::address>> localhost_addresses(std::string_view host, ip_family family) {
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (auto& c : out)
      if (c >= 'A' && c <= 'Z')
        c = static_cast<char>(c - 'A' + 'a');
    if (!out.empty() && out.back() == '.')
      out.pop_back();
    return out;
  };
  const std::string h = lower(host);
  if (h != "localhost" && !h.ends_with(".localhost"))
    return std::nullopt;
  if (family == ip_family::v6)
    return std::vector<asio::ip::address>{asio::ip::address_v6::loopback()};
  return std::vector<asio::ip::address>{asio::ip::address_v4::loopback()};
}

error_code resolve_blocking(const std::string& host, ip_family family, std::vector<asio::ip::address>& out) {
  out.clear();
  if (auto local = localhost_addresses(host, family)) {
    out = *local;
    return {};
  }
  addrinfo hints{};
  hints.ai_family = family == ip_family::v6 ? AF_INET6 : AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, &::freeaddrinfo);
  switch (rc) {
  case 0:
    break;
  case EAI_NONAME:
    return asio::error::host_not_found;
#ifdef EAI_NODATA
  case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
  case EAI_ADDRFAMILY:
#endif
    return asio::error::no_data;
  case EAI_AGAIN:
    return asio::error::host_not_found_try_again;
  case EAI_FAIL:
    return asio::error::no_recovery;
  case EAI_SYSTEM:
    return error_code(errno, boost::system::system_category());
  default:
    return error_code(rc, asio::error::get_addrinfo_category());
  }
  for (auto* p = res; p; p = p->ai_next) {
    asio::ip::address a;
    if (p->ai_family == AF_INET6) {
      const auto* sa = reinterpret_cast<const sockaddr_in6*>(p->ai_addr);
      asio::ip::address_v6::bytes_type b;
      std::memcpy(b.data(), &sa->sin6_addr, b.size());
      a = asio::ip::address_v6(b, sa->sin6_scope_id);
    } else if (p->ai_family == AF_INET) {
      const auto* sa = reinterpret_cast<const sockaddr_in*>(p->ai_addr);
      a = asio::ip::address_v4(ntohl(sa->sin_addr.s_addr));
    } else {
      continue;
    }
    if (std::find(out.begin(), out.end(), a) == out.end())
      out.push_back(a);
  }
  return {};
}

system_resolver::system_resolver(std::size_t threads, lookup_function lookup)
    : lookup_(std::move(lookup)), pool_(threads) {}

system_resolver::~system_resolver() {
  pool_.stop();
  pool_.join();
}

namespace {
/// One lookup: shared by the pool's task, the answer posted back and the
/// cancellation handler. `h` and `done` are touched on the caller's executor
/// only; `at` is shared with the pool's thread.
struct lookup {
  enum stage : int { queued, running, abandoned };
  explicit lookup(resolver::handler handler) : h(std::move(handler)) {}
  resolver::handler h;
  bool done = false;
  std::atomic<int> at{queued};

  void finish(error_code ec, std::vector<asio::ip::address> addresses) {
    if (done)
      return;
    done = true;
    auto handler = std::move(h);
    handler(ec, std::move(addresses));
  }
};
} // namespace

void system_resolver::async_resolve(asio::any_io_executor ex, std::string host, ip_family family, handler h,
                                    asio::cancellation_slot slot) {
  auto op = std::make_shared<lookup>(std::move(h));
  if (slot.is_connected()) {
    // Not cleared on completion (as Asio's own operations leave theirs): a
    // late cancellation finds the lookup done and does nothing.
    // Holds the lookup weakly: the slot may belong to an object the
    // lookup's handler keeps alive (a cycle if this held it).
    slot.assign([weak_op = std::weak_ptr<lookup>(op), ex](asio::cancellation_type type) {
      auto l = weak_op.lock();
      if (!l)
        return; // answered and gone
      int expected = lookup::queued;
      const bool skipped = l->at.compare_exchange_strong(expected, lookup::abandoned);
      // Total cancellation promises that nothing happened: only a lookup
      // that has not started can honour it. Terminal and partial end it now.
      if (skipped || (type & (asio::cancellation_type::terminal | asio::cancellation_type::partial)) !=
                         asio::cancellation_type::none)
        asio::post(ex, [l] { l->finish(asio::error::operation_aborted, {}); });
    });
  }
  asio::post(pool_, [this, op, ex = std::move(ex), host = std::move(host), family]() mutable {
    int expected = lookup::queued;
    if (!op->at.compare_exchange_strong(expected, lookup::running))
      return; // nobody waits for it: do not hold up the lookups behind it
    std::vector<asio::ip::address> addresses;
    const error_code ec = lookup_(host, family, addresses);
    asio::post(ex, [op, ec, addresses = std::move(addresses)]() mutable { op->finish(ec, std::move(addresses)); });
  });
}

struct bounded_resolver::request {
  enum class stage { waiting, running, ended };
  asio::any_io_executor ex;
  std::string host;
  ip_family family = ip_family::v4;
  handler h;
  stage at = stage::waiting;
  bool answered = false;
  std::list<std::shared_ptr<request>>::iterator place; // in waiting_, while waiting
  asio::cancellation_signal inner;                     // to the other resolver, while running

  /// Answers the caller, once.
  void finish(error_code ec, std::vector<asio::ip::address> addresses) {
    if (answered)
      return;
    answered = true;
    auto handler = std::move(h);
    handler(ec, std::move(addresses));
  }
  /// Answers operation_aborted from a cancellation handler, which must not
  /// call the caller inline.
  void abort() {
    if (answered)
      return;
    answered = true;
    asio::post(ex, [handler = std::move(h)] { handler(asio::error::operation_aborted, {}); });
  }
};

std::shared_ptr<bounded_resolver> bounded_resolver::create(resolver& inner, std::size_t limit) {
  return std::shared_ptr<bounded_resolver>(new bounded_resolver(inner, std::max<std::size_t>(limit, 1)));
}

void bounded_resolver::async_resolve(asio::any_io_executor ex, std::string host, ip_family family, handler h,
                                     asio::cancellation_slot slot) {
  auto r = std::make_shared<request>();
  r->ex = std::move(ex);
  r->host = std::move(host);
  r->family = family;
  r->h = std::move(h);
  if (slot.is_connected()) {
    // Installed once, for the whole life of the request (Asio's convention:
    // left in place after completion; a late cancellation does nothing).
    slot.assign([weak_self = weak_from_this(), weak_r = std::weak_ptr<request>(r)](asio::cancellation_type type) {
      auto req = weak_r.lock();
      if (!req || req->answered)
        return;
      if (req->at == request::stage::waiting) {
        if (auto self = weak_self.lock())
          self->waiting_.erase(req->place);
        req->at = request::stage::ended;
        req->abort();
      } else if (req->at == request::stage::running) {
        // Skipped if the other resolver has not started it (its answer then
        // frees the place at once); if it runs, the place stays taken until
        // it ends, since the thread is busy until then. A total cancellation
        // (only) is answered as the other resolver answers it.
        req->inner.emit(asio::cancellation_type::total);
        if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial)) !=
            asio::cancellation_type::none)
          req->abort();
      }
    });
  }
  if (running_ < limit_) {
    run(std::move(r));
    return;
  }
  waiting_.push_back(r);
  r->place = std::prev(waiting_.end());
}

void bounded_resolver::run(std::shared_ptr<request> r) {
  r->at = request::stage::running;
  ++running_;
  const auto ex = r->ex;
  const auto host = r->host;
  inner_.async_resolve(
      ex, host, r->family,
      [self = shared_from_this(), r](error_code ec, std::vector<asio::ip::address> addresses) {
        r->at = request::stage::ended;
        --self->running_;
        if (!self->waiting_.empty() && self->running_ < self->limit_) {
          auto next = std::move(self->waiting_.front());
          self->waiting_.pop_front();
          self->run(std::move(next));
        }
        r->finish(ec, std::move(addresses));
      },
      r->inner.slot());
}

} // namespace warren::net
