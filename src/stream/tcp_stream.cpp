#include "stream/tcp_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace warren::stream {
namespace {

namespace asio = boost::asio;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

class tcp_byte_stream final : public byte_stream {
 public:
  tcp_byte_stream(asio::ip::tcp::socket socket, std::string description)
      : socket_(std::move(socket)), description_(std::move(description)) {}

  asio::any_io_executor get_executor() override { return socket_.get_executor(); }

  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buffer, error_code& ec) override {
    auto [e, n] = co_await socket_.async_read_some(buffer, use_tuple);
    ec = e;
    co_return n;
  }

  void async_wait_readable(std::function<void(error_code)> ready) override {
    socket_.async_wait(asio::ip::tcp::socket::wait_read, std::move(ready));
  }

  asio::awaitable<void> write(std::span<const asio::const_buffer> buffers, error_code& ec) override {
    auto [e, n] = co_await asio::async_write(socket_, buffers, use_tuple);
    ec = e;
  }

  asio::awaitable<void> shutdown(error_code& ec) override {
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    co_return;
  }

  void close() override {
    error_code ignored;
    socket_.close(ignored);
  }

  std::string description() const override { return description_; }

 private:
  asio::ip::tcp::socket socket_;
  std::string description_;
};

} // namespace

byte_stream_ptr make_tcp_stream(asio::ip::tcp::socket socket, std::string description) {
  return std::make_unique<tcp_byte_stream>(std::move(socket), std::move(description));
}

} // namespace warren::stream
