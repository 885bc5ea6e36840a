#include "daemon/watchdog.hpp"

#include "daemon/sd_notify.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <utility>

namespace warren::daemon {

namespace asio = boost::asio;

namespace {

bool parse_positive(const char* text, std::uint64_t& out) {
  const std::string_view s(text);
  if (s.empty())
    return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && out > 0;
}

} // namespace

expected<std::optional<duration>> watchdog_timeout(const char* usec, const char* pid, pid_t self) {
  using result = expected<std::optional<duration>>;
  if (!usec)
    return std::optional<duration>();
  if (pid) {
    std::uint64_t want = 0;
    if (!parse_positive(pid, want))
      return result::failure("WATCHDOG_PID is not a process id");
    if (want != static_cast<std::uint64_t>(self))
      return std::optional<duration>(); // meant for another process (our parent's, say)
  }
  std::uint64_t us = 0;
  // A bound far above any WatchdogSec= keeps the arithmetic below in range.
  if (!parse_positive(usec, us) || us > 100ULL * 365 * 24 * 3600 * 1000000)
    return result::failure("WATCHDOG_USEC is not a positive number of microseconds");
  return std::optional<duration>(std::chrono::duration_cast<duration>(std::chrono::microseconds(us)));
}

// What the loops write and the watchdog reads: the number of the last ping
// each loop ran. Shared with the pings in flight, which may run after the
// watchdog is gone.
struct loop_watchdog::answers {
  explicit answers(std::size_t n) : answered(n) {}
  std::vector<std::atomic<std::uint64_t>> answered;
};

loop_watchdog::loop_watchdog(std::vector<asio::any_io_executor> loops, notify_fn notify)
    : answers_(std::make_shared<answers>(loops.size())), notify_(std::move(notify)) {
  slots_.reserve(loops.size());
  for (auto& ex : loops)
    slots_.push_back(slot{std::move(ex)});
}

bool loop_watchdog::tick(time_point now) {
  bool all_answered = !slots_.empty();
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    auto& s = slots_[i];
    const bool answered = s.pinged != 0 && answers_->answered[i].load(std::memory_order_acquire) == s.pinged;
    if (s.pinged == 0) {
      all_answered = false; // never asked: no evidence yet
    } else if (!answered) {
      all_answered = false;
      if (!std::exchange(s.reported_late, true))
        spdlog::warn("daemon: watchdog: event loop {} of {} has not run a ping posted {} ms ago; WATCHDOG=1 is "
                     "withheld until it does (systemd ends the daemon after WatchdogSec)",
                     i, slots_.size(), to_ms(now - s.pinged_at));
      continue; // one ping in its queue is enough
    } else if (std::exchange(s.reported_late, false)) {
      spdlog::info("daemon: watchdog: event loop {} of {} answers again", i, slots_.size());
    }
    const std::uint64_t n = ++s.pinged;
    s.pinged_at = now;
    asio::post(s.executor, [answers = answers_, i, n] { answers->answered[i].store(n, std::memory_order_release); });
  }
  if (all_answered)
    notify_("WATCHDOG=1");
  return all_answered;
}

struct watchdog_thread::state {
  state(std::vector<asio::any_io_executor> loops, duration t, loop_watchdog::notify_fn notify)
      : watchdog(std::move(loops), std::move(notify)), period(t / 2), timer(io) {}
  asio::io_context io{1};
  loop_watchdog watchdog;
  duration period;
  asio::steady_timer timer;

  void run_round() {
    watchdog.tick(steady_clock::now());
    timer.expires_after(period);
    timer.async_wait([this](const boost::system::error_code& ec) {
      if (!ec)
        run_round();
    });
  }
};

watchdog_thread::watchdog_thread(std::vector<asio::any_io_executor> loops, duration timeout,
                                 loop_watchdog::notify_fn notify)
    : state_(std::make_shared<state>(std::move(loops), timeout, std::move(notify))) {
  asio::post(state_->io, [s = state_.get()] { s->run_round(); });
  thread_ = std::thread([s = state_] { s->io.run(); });
}

watchdog_thread::~watchdog_thread() { stop(); }

void watchdog_thread::stop() {
  if (!thread_.joinable())
    return;
  state_->io.stop();
  thread_.join();
}

std::unique_ptr<watchdog_thread> start_watchdog_from_env(std::vector<asio::any_io_executor> loops) {
  auto timeout = watchdog_timeout(std::getenv("WATCHDOG_USEC"), std::getenv("WATCHDOG_PID"), ::getpid());
  if (!timeout) {
    spdlog::warn("daemon: watchdog: {}; running without it", timeout.error());
    return nullptr;
  }
  if (!*timeout)
    return nullptr;
  spdlog::info("daemon: watchdog: WATCHDOG=1 every {} ms while all {} event loop{} answer", to_ms(**timeout / 2),
               loops.size(), loops.size() == 1 ? "" : "s");
  return std::make_unique<watchdog_thread>(std::move(loops), **timeout, [warned = false](std::string_view message) mutable {
    if (auto why = sd_notify(message); !why.empty() && !std::exchange(warned, true))
      spdlog::warn("daemon: watchdog: sd_notify: {} (said once)", why);
  });
}

} // namespace warren::daemon
