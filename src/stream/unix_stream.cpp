#include "stream/unix_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace warren::stream {
namespace {

namespace asio = boost::asio;
using unix_socket = asio::local::stream_protocol::socket;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

class unix_byte_stream final : public byte_stream {
 public:
  unix_byte_stream(unix_socket socket, std::string description)
      : socket_(std::move(socket)), description_(std::move(description)) {}

  asio::any_io_executor get_executor() override { return socket_.get_executor(); }

  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buffer, error_code& ec) override {
    auto [e, n] = co_await socket_.async_read_some(buffer, use_tuple);
    ec = e;
    co_return n;
  }

  void async_wait_readable(std::function<void(error_code)> ready) override {
    socket_.async_wait(unix_socket::wait_read, std::move(ready));
  }

  bool async_wait_writable(std::function<void(error_code)> ready) override {
    socket_.async_wait(unix_socket::wait_write, std::move(ready));
    return true;
  }

  asio::awaitable<void> write(std::span<const asio::const_buffer> buffers, error_code& ec) override {
    auto [e, n] = co_await asio::async_write(socket_, buffers, use_tuple);
    ec = e;
  }

  asio::awaitable<void> shutdown(error_code& ec) override {
    socket_.shutdown(unix_socket::shutdown_send, ec);
    co_return;
  }

  void close() override {
    error_code ignored;
    socket_.close(ignored);
  }

  std::string description() const override { return description_; }

 private:
  unix_socket socket_;
  std::string description_;
};

} // namespace

byte_stream_ptr make_unix_stream(unix_socket socket, std::string description) {
  return std::make_unique<unix_byte_stream>(std::move(socket), std::move(description));
}

} // namespace warren::stream
