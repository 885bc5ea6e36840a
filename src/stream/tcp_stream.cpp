#include "stream/tcp_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>

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

  bool async_wait_writable(std::function<void(error_code)> ready) override {
    socket_.async_wait(asio::ip::tcp::socket::wait_write, std::move(ready));
    return true;
  }

  std::size_t try_read_some(std::span<const asio::mutable_buffer> buffers, error_code& ec) override {
    return transfer(buffers, ec, true, [](int fd, msghdr* msg) { return ::recvmsg(fd, msg, MSG_DONTWAIT); });
  }

  std::size_t try_write_some(std::span<const asio::const_buffer> buffers, error_code& ec) override {
    return transfer(buffers, ec, false,
                    [](int fd, msghdr* msg) { return ::sendmsg(fd, msg, MSG_DONTWAIT | MSG_NOSIGNAL); });
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

  void reset() override {
    error_code ignored;
    if (socket_.is_open())
      socket_.set_option(asio::socket_base::linger(true, 0), ignored); // close() sends an RST
    socket_.close(ignored);
  }

  void abandon() override { reset(); }

  std::string description() const override { return description_; }

 private:
  static constexpr std::size_t k_max_iov = 64;

  /// The non-empty buffers (at most k_max_iov) as an iovec array.
  template <class Buffer>
  static std::size_t to_iov(std::span<const Buffer> buffers, std::array<iovec, k_max_iov>& iov) {
    std::size_t n = 0;
    for (const auto& b : buffers) {
      if (b.size() == 0)
        continue;
      if (n == iov.size())
        break;
      iov[n++] = {const_cast<void*>(static_cast<const void*>(b.data())), b.size()};
    }
    return n;
  }

  /// One non-blocking recvmsg/sendmsg (`call`) over the non-empty buffers.
  template <class Buffer, class Call>
  std::size_t transfer(std::span<const Buffer> buffers, error_code& ec, bool reading, Call call) {
    std::array<iovec, k_max_iov> iov;
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = to_iov(buffers, iov);
    if (msg.msg_iovlen == 0) {
      ec = {};
      return 0;
    }
    return finish(call(socket_.native_handle(), &msg), ec, reading);
  }

  static std::size_t finish(ssize_t n, error_code& ec, bool reading) {
    if (n > 0) {
      ec = {};
      return static_cast<std::size_t>(n);
    }
    if (n == 0 && reading)
      ec = asio::error::eof;
    else if (n == 0)
      ec = asio::error::would_block;
    else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      ec = asio::error::would_block;
    else
      ec = error_code(errno, asio::error::get_system_category());
    return 0;
  }

  asio::ip::tcp::socket socket_;
  std::string description_;
};

} // namespace

byte_stream_ptr make_tcp_stream(asio::ip::tcp::socket socket, std::string description) {
  return std::make_unique<tcp_byte_stream>(std::move(socket), std::move(description));
}

} // namespace warren::stream
