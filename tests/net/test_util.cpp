#include "test_util.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>

#include <dirent.h>
#include <random>
#include <sys/socket.h>

namespace warren::test {

namespace asio = boost::asio;

int open_fd_count() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr)
      ++n;
    ::closedir(d);
  }
  return n;
}

bool run_until(asio::io_context& io, const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  io.restart();
  while (!pred() && std::chrono::steady_clock::now() < deadline)
    io.run_one_for(std::chrono::milliseconds(10));
  return pred();
}

int fake_resolver::pending() const {
  int n = -answered;
  for (const auto& [f, count] : asked)
    n += count;
  for (const auto& [f, count] : cancelled)
    n -= count;
  return n;
}

int fake_resolver::asked_total() const {
  int n = 0;
  for (const auto& [f, count] : asked)
    n += count;
  return n;
}

void fake_resolver::answer_pending(error_code ec) {
  for (auto& [ex, waiting] : std::exchange(held_, {})) {
    if (!*waiting)
      continue;
    ++answered;
    asio::post(ex, [ec, h = std::exchange(*waiting, nullptr)] { h(ec, {}); });
  }
}

void fake_resolver::async_resolve(asio::any_io_executor ex, std::string, net::ip_family family, handler h,
                                  asio::cancellation_slot slot) {
  ++asked[family];
  auto waiting = std::make_shared<handler>(std::move(h)); // empty once answered or cancelled
  held_.push_back({ex, waiting});
  if (slot.is_connected()) {
    // Weakly: the slot may belong to an object the handler keeps alive
    // (bounded_resolver's request), which would make a cycle; held_ keeps it.
    slot.assign([this, ex, weak_waiting = std::weak_ptr<handler>(waiting), family](asio::cancellation_type type) {
      auto w = weak_waiting.lock();
      // Its lookups count as started: a total cancellation (only) is not
      // honoured, as by system_resolver for a lookup that runs.
      if (!w || !*w ||
          (type & (asio::cancellation_type::terminal | asio::cancellation_type::partial)) ==
              asio::cancellation_type::none)
        return;
      ++cancelled[family];
      asio::post(ex, [h = std::exchange(*w, nullptr)] { h(asio::error::operation_aborted, {}); });
    });
  }
  auto it = script.find(family);
  if (it == script.end())
    return; // never answers
  auto timer = std::make_shared<asio::steady_timer>(ex, it->second.delay);
  timers_.push_back(timer);
  timer->async_wait([this, waiting, a = it->second](error_code ec) {
    if (ec || !*waiting)
      return;
    ++answered;
    std::exchange(*waiting, nullptr)(a.ec, a.addresses);
  });
}

hanging_listener::hanging_listener(asio::io_context& io, const asio::ip::address& address) : acceptor_(io) {
  const asio::ip::tcp::endpoint ep(address, 0);
  acceptor_.open(ep.protocol());
  acceptor_.bind(ep);
  acceptor_.listen(0); // never accepted: after one queued connection, SYNs are dropped
  for (int i = 0; i < 2; ++i) {
    asio::ip::tcp::socket s(io);
    s.open(ep.protocol());
    s.native_non_blocking(true);
    const asio::ip::tcp::endpoint target(address, port());
    // Raw connect: Asio's synchronous connect would wait for completion.
    [[maybe_unused]] int rc = ::connect(s.native_handle(), target.data(), static_cast<socklen_t>(target.size()));
    fillers_.push_back(std::move(s));
  }
}

std::pair<asio::ip::tcp::socket, asio::ip::tcp::socket> tcp_pair(asio::io_context& io) {
  asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(v4_loopback(), 0));
  asio::ip::tcp::socket near(io);
  near.connect(a.local_endpoint());
  asio::ip::tcp::socket far = a.accept();
  return {std::move(near), std::move(far)};
}

std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint64_t seed) {
  std::vector<std::uint8_t> v(n);
  std::mt19937_64 rng(seed);
  for (auto& c : v)
    c = static_cast<std::uint8_t>(rng());
  return v;
}

asio::ip::address v4_loopback() {
  return asio::ip::address_v4::loopback();
}
asio::ip::address v6_loopback() {
  return asio::ip::address_v6::loopback();
}

} // namespace warren::test
