#include "stream/pump.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include <array>
#include <vector>

namespace warren::stream {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr std::size_t k_buffer = 64 * 1024;

asio::awaitable<void> one_way(byte_stream& from, byte_stream& to, std::uint64_t& bytes, error_code& first_error,
                              byte_stream& other_side) {
  std::vector<char> buffer(k_buffer);
  for (;;) {
    error_code ec;
    const std::size_t n = co_await from.read_some(asio::buffer(buffer), ec);
    if (n > 0) {
      const asio::const_buffer out(buffer.data(), n);
      error_code wec;
      co_await to.write(std::span(&out, 1), wec);
      if (wec) {
        ec = wec;
      } else {
        bytes += n;
      }
    }
    if (ec == asio::error::eof) {
      error_code sec;
      co_await to.shutdown(sec);
      co_return;
    }
    if (ec) {
      if (!first_error)
        first_error = ec;
      from.close();
      to.close();
      other_side.close();
      co_return;
    }
  }
}

} // namespace

asio::awaitable<pump_stats> pump(byte_stream& a, byte_stream& b) {
  pump_stats stats;
  co_await (one_way(a, b, stats.a_to_b, stats.error, a) && one_way(b, a, stats.b_to_a, stats.error, b));
  co_return stats;
}

} // namespace warren::stream
