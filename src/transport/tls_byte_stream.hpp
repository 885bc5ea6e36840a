// tls_stream as a stream::byte_stream: what the tunnel's tls:// carriers and
// the daemon's tls:// control connections hand to the layers above, so
// nothing there knows it is TLS. The handshake is the owner's step
// (dial/accept run it under their deadlines; a server may run it here
// with handshake()). A peer's FIN without close_notify reads as EOF.
#pragma once

#include "stream/byte_stream.hpp"
#include "transport/tls_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <memory>
#include <string>

namespace warren::transport {

inline constexpr auto k_use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);

class tls_byte_stream final : public stream::byte_stream {
 public:
  tls_byte_stream(std::shared_ptr<boost::asio::ssl::context> ctx, tls_stream s, std::string description)
      : ctx_(std::move(ctx)), s_(std::move(s)), description_(std::move(description)) {}

  /// The server or client handshake (as `s` was made), for owners that
  /// hand the stream over before it.
  boost::asio::awaitable<void> handshake(error_code& ec) {
    auto [e] = co_await s_.async_handshake(k_use_tuple);
    ec = e;
  }
  boost::asio::any_io_executor get_executor() override { return s_.get_executor(); }
  boost::asio::awaitable<std::size_t> read_some(boost::asio::mutable_buffer b, error_code& ec) override {
    auto [e, n] = co_await s_.async_read_some(b, k_use_tuple);
    ec = e == boost::asio::ssl::error::stream_truncated ? error_code(boost::asio::error::eof) : e;
    co_return n;
  }
  boost::asio::awaitable<void> write(std::span<const boost::asio::const_buffer> b, error_code& ec) override {
    auto [e, n] = co_await boost::asio::async_write(s_, b, k_use_tuple);
    ec = e;
  }
  boost::asio::awaitable<void> shutdown(error_code& ec) override {
    auto [e] = co_await s_.async_shutdown(k_use_tuple);
    ec = e;
  }
  void close() override {
    error_code ignored;
    s_.lowest_layer().close(ignored);
  }
  std::string description() const override { return description_; }
  tls_stream& tls() { return s_; }

 private:
  std::shared_ptr<boost::asio::ssl::context> ctx_; // must outlive s_
  tls_stream s_;
  std::string description_;
};

} // namespace warren::transport
