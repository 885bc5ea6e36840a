#include "stream/pump.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include <array>
#include <vector>

namespace warren::stream {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr std::size_t k_buffer = 256 * 1024;
constexpr std::size_t k_pool_max = 16;

/// Read buffers are borrowed only between "readable" and "written", so an
/// idle stream holds none (10,000 idle streams cost no 64 KiB buffers).
class buffer_pool {
 public:
  std::unique_ptr<char[]> take() {
    if (free_.empty())
      return std::make_unique<char[]>(k_buffer);
    auto b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void give(std::unique_ptr<char[]> b) {
    if (free_.size() < k_pool_max)
      free_.push_back(std::move(b));
  }

 private:
  std::vector<std::unique_ptr<char[]>> free_;
};

thread_local buffer_pool pool;

asio::awaitable<void> one_way(byte_stream& from, byte_stream& to, std::uint64_t& bytes, error_code& first_error) {
  for (;;) {
    error_code ec;
    co_await from.wait_readable(ec);
    std::unique_ptr<char[]> buffer;
    std::size_t n = 0;
    if (!ec) {
      buffer = pool.take();
      n = co_await from.read_some(asio::buffer(buffer.get(), k_buffer), ec);
    }
    if (n > 0) {
      const asio::const_buffer out(buffer.get(), n);
      error_code wec;
      co_await to.write(std::span(&out, 1), wec);
      if (wec) {
        ec = wec;
      } else {
        bytes += n;
      }
    }
    if (buffer)
      pool.give(std::move(buffer));
    if (ec == asio::error::eof) {
      error_code sec;
      co_await to.shutdown(sec);
      co_return;
    }
    if (ec) {
      if (!first_error)
        first_error = ec;
      from.close(); // ends the other direction too
      to.close();
      co_return;
    }
  }
}

} // namespace

asio::awaitable<pump_stats> pump(byte_stream& a, byte_stream& b) {
  pump_stats stats;
  co_await (one_way(a, b, stats.a_to_b, stats.error) && one_way(b, a, stats.b_to_a, stats.error));
  co_return stats;
}

} // namespace warren::stream
