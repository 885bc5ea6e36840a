#include "unit/foreground.hpp"

#include "core/error.hpp"

#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include <csignal>

namespace warren::unit {

namespace asio = boost::asio;

expected<int> run_foreground(const unit_factory& make) {
  // Until the handler below is installed, a SIGHUP must not end the program.
  std::signal(SIGHUP, SIG_IGN);
  asio::io_context io(1);
  // Registered before the unit starts: a signal during start-up (binding,
  // a relay's target check) is queued by Asio and handled as a clean
  // shutdown, never the default action.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  std::unique_ptr<unit> u = make(io.get_executor());
  const std::string kind(u->kind());

  std::string fatal;
  u->set_events([&](const unit_event& e) {
    if (e.what == unit_event::kind::state_changed && e.state == unit_state::failed) {
      fatal = u->status().last_error;
      io.stop();
    }
  });
  if (auto prepared = u->prepare(); !prepared)
    return expected<int>::failure(prepared.error());
  // Only now: a SIGHUP while the unit read its files (a server making its
  // certificate, reading its users) was ignored; from here it is queued
  // and is a reload once the unit runs.
  asio::signal_set hangup(io, SIGHUP);
  if (auto started = u->start(); !started)
    return expected<int>::failure(started.error());

  std::function<void()> wait_hangup = [&] {
    hangup.async_wait([&](error_code ec, int) {
      if (ec)
        return;
      u->reload("SIGHUP received"); // the unit logs what it did
      wait_hangup();
    });
  };
  wait_hangup();

  bool second_signal = false;
  signals.async_wait([&](error_code ec, int signo) {
    if (ec)
      return;
    spdlog::info("{}: {} received{}", kind, signo == SIGINT ? "SIGINT" : "SIGTERM", u->stop_announcement());
    error_code ignored;
    hangup.cancel(ignored);
    u->stop(u->drain_bound(), [&io] { io.stop(); });
    signals.async_wait([&](error_code e2, int) {
      if (e2)
        return;
      second_signal = true;
      io.stop(); // a second signal: stop now
    });
  });
  io.run();
  if (second_signal) {
    u->abandon();
    spdlog::info("{}: stopped (second signal: open streams reset)", kind);
  }
  u.reset(); // before the io_context: the unit's sockets close on it
  if (!fatal.empty())
    return expected<int>::failure(fatal);
  return 0;
}

} // namespace warren::unit
