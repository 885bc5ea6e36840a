#include "net/accept_backoff.hpp"

#include "core/log.hpp"
#include "net/connector.hpp"

#include <boost/asio/steady_timer.hpp>

#include <memory>

namespace warren::net {

void accept_backoff::failed(const boost::asio::any_io_executor& ex, const error_code& ec, std::function<void()> retry) {
  log_within_budget(log_, spdlog::level::warn, "failures", who_ + ": accept failed: " + describe(ec));
  auto timer = std::make_shared<boost::asio::steady_timer>(ex, k_delay);
  timer->async_wait([timer, retry = std::move(retry)](error_code) { retry(); });
}

} // namespace warren::net
