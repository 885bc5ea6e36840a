// ares_resolver: see ares_resolver.hpp. One `ares_lookup` per request owns a
// channel and the waits that drive it; c-ares calls back only from inside
// the ares_* calls made here, on the lookup's executor, while a shared_ptr
// to the lookup is held.
#include "net/ares_resolver.hpp"

#include "net/socket_mark.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <ares.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

namespace warren::net {

namespace asio = boost::asio;

namespace {

constexpr int k_deadline_status = 1000; // our own: the lookup's bound passed
constexpr int k_mark_status = 1001;     // our own: SO_MARK refused

class ares_error_category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "c-ares"; }
  std::string message(int code) const override {
    if (code == k_deadline_status || code == ARES_ETIMEOUT)
      return "the DNS servers did not answer in time";
    if (code == k_mark_status)
      return "cannot set the socket mark (SO_MARK) on the DNS socket: it needs CAP_NET_ADMIN";
    if (code == ARES_ECONNREFUSED)
      return "the DNS servers could not be reached (connection refused)";
    return ares_strerror(code);
  }
};

void library_init() {
  // c-ares 1.18's init is a counter, not thread-safe; done once, never undone.
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

/// One lookup. Single-threaded: everything runs on ex_.
class ares_lookup : public std::enable_shared_from_this<ares_lookup> {
 public:
  ares_lookup(asio::any_io_executor ex, const ares_resolver_options& options, resolver::handler h)
      : ex_(std::move(ex)), options_(options), h_(std::move(h)), timer_(ex_), deadline_(ex_) {}

  ares_lookup(const ares_lookup&) = delete;
  ares_lookup& operator=(const ares_lookup&) = delete;
  ~ares_lookup() { destroy_channel(); }

  void start(const std::string& host, ip_family family) {
    ares_options o{};
    o.sock_state_cb = &ares_lookup::on_sock_state;
    o.sock_state_cb_data = this;
    o.timeout = static_cast<int>(std::max<long long>(1, options_.try_timeout.count()));
    o.tries = std::max(1, options_.tries);
    const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    if (const int st = ares_init_options(&channel_, &o, mask); st != ARES_SUCCESS) {
      channel_ = nullptr;
      return finish(from_ares_status(st));
    }
    if (!options_.servers.empty()) {
      if (const int st = ares_set_servers_ports_csv(channel_, options_.servers.c_str()); st != ARES_SUCCESS)
        return finish(from_ares_status(st));
    }
    if (!options_.interface.empty())
      ares_set_local_dev(channel_, options_.interface.c_str());
    // The configure callback runs after socket(), before connect(): the
    // first packet (a UDP query or a TCP SYN) already carries the mark.
    // (ares_set_socket_callback's runs after connect().)
    ares_set_socket_configure_callback(channel_, &ares_lookup::on_socket, this);
    deadline_.expires_after(options_.deadline);
    deadline_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec && !self->done_)
        self->finish(ares_timed_out());
    });
    ares_gethostbyname(channel_, host.c_str(), family == ip_family::v6 ? AF_INET6 : AF_INET, &ares_lookup::on_host,
                       this);
    step();
  }

  void cancel() {
    if (!done_)
      finish(asio::error::operation_aborted);
  }

 private:
  /// One socket c-ares watches; the descriptor never owns the fd.
  struct watch {
    explicit watch(asio::any_io_executor ex) : d(std::move(ex)) {}
    ~watch() {
      if (d.is_open())
        d.release();
    }
    asio::posix::stream_descriptor d;
    bool want_read = false, want_write = false, reading = false, writing = false;
  };

  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<ares_lookup*>(data)->sock_state(fd, readable != 0, writable != 0);
  }

  static int on_socket(ares_socket_t fd, int /*type*/, void* data) {
    auto* self = static_cast<ares_lookup*>(data);
    if (self->options_.mark) {
      if (auto ec = set_socket_mark(fd, *self->options_.mark)) {
        self->mark_error_ = ec;
        return -1; // c-ares gives up this server for this query
      }
    }
    if (self->options_.on_socket)
      self->options_.on_socket(fd);
    return 0;
  }

  static void on_host(void* data, int status, int /*timeouts*/, hostent* host) {
    auto* self = static_cast<ares_lookup*>(data);
    if (self->result_ready_)
      return;
    self->result_ready_ = true;
    if (status != ARES_SUCCESS || host == nullptr) {
      self->result_ec_ = from_ares_status(status);
      return;
    }
    for (char** p = host->h_addr_list; p && *p; ++p) {
      asio::ip::address a;
      if (host->h_addrtype == AF_INET6 && host->h_length == 16) {
        asio::ip::address_v6::bytes_type b;
        std::memcpy(b.data(), *p, b.size());
        a = asio::ip::address_v6(b);
      } else if (host->h_addrtype == AF_INET && host->h_length == 4) {
        asio::ip::address_v4::bytes_type b;
        std::memcpy(b.data(), *p, b.size());
        a = asio::ip::address_v4(b);
      } else {
        continue;
      }
      if (std::find(self->addresses_.begin(), self->addresses_.end(), a) == self->addresses_.end())
        self->addresses_.push_back(a);
    }
    if (self->addresses_.empty())
      self->result_ec_ = asio::error::no_data;
  }

  void sock_state(ares_socket_t fd, bool readable, bool writable) {
    if (!readable && !writable) {
      watches_.erase(fd); // c-ares closes it next; the descriptor lets go first
      return;
    }
    auto& w = watches_[fd];
    if (!w) {
      w = std::make_shared<watch>(ex_);
      error_code ec;
      w->d.assign(fd, ec);
      if (ec) {
        watches_.erase(fd);
        return; // the lookup still ends: c-ares' timeout or our deadline
      }
    }
    w->want_read = readable;
    w->want_write = writable;
    arm(fd, w);
  }

  void arm(int fd, const std::shared_ptr<watch>& w) {
    if (w->want_read && !w->reading) {
      w->reading = true;
      w->d.async_wait(asio::posix::descriptor_base::wait_read,
                      [self = shared_from_this(), fd, w](error_code ec) { self->on_ready(fd, w, ec, true); });
    }
    if (w->want_write && !w->writing) {
      w->writing = true;
      w->d.async_wait(asio::posix::descriptor_base::wait_write,
                      [self = shared_from_this(), fd, w](error_code ec) { self->on_ready(fd, w, ec, false); });
    }
  }

  void on_ready(int fd, const std::shared_ptr<watch>& w, error_code ec, bool read) {
    (read ? w->reading : w->writing) = false;
    const auto it = watches_.find(fd);
    if (done_ || ec || it == watches_.end() || it->second != w)
      return; // released (socket closed by c-ares) or the lookup ended
    ares_process_fd(channel_, read ? fd : ARES_SOCKET_BAD, read ? ARES_SOCKET_BAD : fd);
    step();
    const auto again = watches_.find(fd);
    if (!done_ && again != watches_.end() && again->second == w)
      arm(fd, w);
  }

  /// After any c-ares call: finish if answered, else wait for c-ares' next timeout.
  void step() {
    if (done_)
      return;
    if (result_ready_) {
      // A refused mark shows as "refused"/"timeout" from c-ares; say why.
      finish(mark_error_ && result_ec_ && result_ec_ != asio::error::host_not_found ? ares_mark_failed() : result_ec_);
      return;
    }
    timeval tv{};
    if (ares_timeout(channel_, nullptr, &tv) == nullptr)
      return;
    timer_.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
    timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->done_)
        return;
      ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      self->step();
    });
  }

  void finish(error_code ec) {
    done_ = true;
    timer_.cancel();
    deadline_.cancel();
    destroy_channel();
    std::vector<asio::ip::address> addresses;
    if (!ec)
      addresses = std::move(addresses_);
    asio::post(ex_,
               [h = std::move(h_), ec, addresses = std::move(addresses)]() mutable { h(ec, std::move(addresses)); });
  }

  void destroy_channel() {
    if (!channel_)
      return;
    result_ready_ = true; // ARES_EDESTRUCTION callbacks change nothing
    auto* c = channel_;
    channel_ = nullptr;
    ares_destroy(c); // its sock_state callbacks erase the watches
    watches_.clear();
  }

  asio::any_io_executor ex_;
  ares_resolver_options options_; // a copy: a lookup may outlive its resolver's call
  resolver::handler h_;
  asio::steady_timer timer_;    // c-ares' own next timeout
  asio::steady_timer deadline_; // the whole lookup's bound
  ares_channel channel_ = nullptr;
  std::map<int, std::shared_ptr<watch>> watches_;
  std::vector<asio::ip::address> addresses_;
  error_code result_ec_;
  error_code mark_error_;
  bool result_ready_ = false;
  bool done_ = false;
};

} // namespace

const boost::system::error_category& ares_category() noexcept {
  static const ares_error_category category;
  return category;
}

error_code ares_timed_out() noexcept {
  return error_code(k_deadline_status, ares_category());
}

error_code ares_mark_failed() noexcept {
  return error_code(k_mark_status, ares_category());
}

error_code from_ares_status(int status) noexcept {
  switch (status) {
  case ARES_SUCCESS:
    return {};
  case ARES_ENOTFOUND:
    return asio::error::host_not_found;
  case ARES_ENODATA:
    return asio::error::no_data;
  case ARES_ECANCELLED:
  case ARES_EDESTRUCTION:
    return asio::error::operation_aborted;
  case ARES_ETIMEOUT:
    return ares_timed_out();
  default:
    return error_code(status, ares_category());
  }
}

ares_resolver::ares_resolver(ares_resolver_options options) : options_(std::move(options)) {
  library_init();
}

void ares_resolver::async_resolve(asio::any_io_executor ex, std::string host, ip_family family, handler h,
                                  asio::cancellation_slot slot) {
  // Literals and localhost answer at once, as system_resolver does.
  std::optional<std::vector<asio::ip::address>> fixed = localhost_addresses(host, family);
  error_code fixed_ec;
  if (!fixed) {
    if (auto literal = parse_ip(host)) {
      fixed.emplace();
      if (family_of(*literal) == family)
        fixed->push_back(*literal);
      else
        fixed_ec = asio::error::no_data;
    }
  }
  if (fixed) {
    asio::post(ex, [h = std::move(h), fixed_ec, a = std::move(*fixed)]() mutable { h(fixed_ec, std::move(a)); });
    return;
  }
  auto op = std::make_shared<ares_lookup>(ex, options_, std::move(h));
  if (slot.is_connected()) {
    slot.assign([weak = std::weak_ptr<ares_lookup>(op), ex](asio::cancellation_type) {
      asio::post(ex, [weak] {
        if (auto l = weak.lock())
          l->cancel();
      });
    });
  }
  // Started from a handler on ex: c-ares' first calls (and the hosts file's
  // synchronous answers) then run where the rest of the lookup does.
  asio::post(ex, [op, host = std::move(host), family] { op->start(host, family); });
}

} // namespace warren::net
