// tls_stream: TLS (OpenSSL) over a TCP socket as an asio AsyncStream, built
// for throughput: a write encrypts the caller's whole batch — many 16 KiB
// records — into one buffer and hands it to the kernel in ONE system call;
// a read takes up to 256 KiB of ciphertext from the socket at once and
// decrypts as much as fits the caller's buffer.
//
// Why not asio::ssl::stream: it pairs the SSL object with a 17 KiB BIO pair,
// so every record is its own sendto() and its own wake-up of the peer; on
// the wss path that cost more than the cryptography (bench/README.md).
//
// OpenSSL talks to this class through a BIO whose write appends to the
// pending output and whose read takes from the input buffer: no extra
// buffering layer, no copies beyond OpenSSL's own. Verification (CA store,
// host name, pins) stays in the SSL_CTX from tls.hpp plus an optional
// per-connection verify callback.
//
// Concurrency, as asio::ssl::stream: one read and one write (or handshake,
// or shutdown) in flight at a time; reads and writes may overlap. Output
// that a read produces (a TLS alert, a KeyUpdate answer) is sent with the
// next write.
//
// Works as Beast's next layer: websocket::stream<tls_stream> (teardown at
// the end of this file).
#pragma once

#include "core/error.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/role.hpp>

#include <openssl/ssl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace warren::transport {

/// The I/O-free half: an SSL object, its ciphertext input and output.
class tls_engine {
 public:
  enum class result { ok, want_input, closed, failed };
  using verify_callback = std::function<bool(bool preverified, X509_STORE_CTX* store)>;

  tls_engine(SSL_CTX* context, bool server);
  ~tls_engine();
  tls_engine(const tls_engine&) = delete;
  tls_engine& operator=(const tls_engine&) = delete;

  SSL* native_handle() const { return ssl_; }
  void set_verify_callback(verify_callback callback);
  bool verify(bool preverified, X509_STORE_CTX* store); // for OpenSSL's callback
  void set_server_name(const std::string& host); // SNI

  result handshake(error_code& ec);
  /// Encrypts all of [data, data + size) into the pending output.
  result encrypt(const void* data, std::size_t size, error_code& ec);
  /// Like encrypt(), for a sequence of pieces: small pieces (a WebSocket
  /// header, a frame header) are gathered so that records come out full
  /// (16 KiB) instead of one record per piece. Ends with encrypt_gather_end();
  /// if that fails, what was gathered is lost.
  bool encrypt_gather(const void* data, std::size_t size, error_code& ec);
  void encrypt_gather_end(error_code& ec);

  /// Decrypts into [data, data + capacity) as much as the input allows;
  /// `n` > 0 means data (whatever the result says about what comes next).
  result decrypt(void* data, std::size_t capacity, std::size_t& n, error_code& ec);
  /// Queues close_notify (once).
  void shutdown();

  bool has_output() const { return !output_.empty(); }
  /// Moves the pending output into the send buffer and returns it; valid
  /// until end_send(). Output produced meanwhile waits for the next send.
  boost::asio::const_buffer begin_send();
  void end_send() { sending_.clear(); }

  /// Free space for the next socket read (compacts, grows after the handshake).
  boost::asio::mutable_buffer input_space();
  void commit_input(std::size_t n) { input_end_ += n; }

 private:
  friend struct tls_engine_bio;
  result fail_or_want(int ret, error_code& ec);
  /// False, with the reason, once writing is over: after a failure or shutdown().
  bool writable(error_code& ec) const;

  SSL* ssl_ = nullptr;
  verify_callback verify_;
  bool shutdown_sent_ = false;
  error_code failure_; // the first fatal error; the SSL object is unusable after it
  std::vector<std::uint8_t> gather_; // less than one record of plaintext, waiting for more
  std::vector<std::uint8_t> output_;
  std::vector<std::uint8_t> sending_;
  std::vector<std::uint8_t> input_;
  std::size_t input_begin_ = 0;
  std::size_t input_end_ = 0;
};

class tls_stream {
 public:
  using socket_type = boost::asio::ip::tcp::socket;
  using executor_type = socket_type::executor_type;
  using next_layer_type = socket_type;
  using lowest_layer_type = socket_type::lowest_layer_type;
  enum handshake_type { client, server };

  /// A write encrypts at most this much plaintext before it goes to the socket.
  static constexpr std::size_t k_max_write_batch = 1 << 20;

  tls_stream(socket_type socket, boost::asio::ssl::context& context, handshake_type role)
      : socket_(std::move(socket)),
        engine_(std::make_unique<tls_engine>(context.native_handle(), role == server)) {}

  executor_type get_executor() { return socket_.get_executor(); }
  socket_type& next_layer() { return socket_; }
  lowest_layer_type& lowest_layer() { return socket_.lowest_layer(); }
  SSL* native_handle() { return engine_->native_handle(); }
  tls_engine& engine() { return *engine_; }

  template <class Token>
  auto async_handshake(Token&& token) {
    return boost::asio::async_compose<Token, void(error_code)>(handshake_op{*this}, token, socket_);
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    boost::asio::mutable_buffer first;
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it)
      if (boost::asio::mutable_buffer b(*it); b.size() > 0) {
        first = b;
        break;
      }
    return boost::asio::async_compose<Token, void(error_code, std::size_t)>(read_op{*this, first}, token, socket_);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    // Encrypt now: the caller's buffers need not outlive this call's start.
    error_code ec;
    std::size_t taken = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() == 0)
        continue;
      if (taken > 0 && taken + b.size() > k_max_write_batch)
        break;
      if (!engine_->encrypt_gather(b.data(), b.size(), ec))
        break;
      taken += b.size();
    }
    if (!ec)
      engine_->encrypt_gather_end(ec);
    return boost::asio::async_compose<Token, void(error_code, std::size_t)>(write_op{*this, taken, ec}, token,
                                                                              socket_);
  }

  /// Sends close_notify and ends the TCP write side. Does not read: a read
  /// in flight sees the peer's close_notify or end of stream.
  template <class Token>
  auto async_shutdown(Token&& token) {
    engine_->shutdown();
    return boost::asio::async_compose<Token, void(error_code)>(shutdown_op{*this}, token, socket_);
  }

 private:
  /// asio::async_write's default hands the kernel at most 64 KiB per call;
  /// a batch goes in one (the kernel takes what the socket buffer holds).
  struct whole_batch {
    std::size_t operator()(const error_code& ec, std::size_t) const { return ec ? 0 : k_max_write_batch * 2; }
  };

  struct handshake_op {
    tls_stream& s;
    enum { start, reading, flushing } state = start;
    bool finished = false;
    error_code result;

    template <class Self>
    void operator()(Self& self, error_code ec = {}, std::size_t n = 0) {
      auto& e = *s.engine_;
      if (state == reading) {
        if (ec)
          return self.complete(ec == boost::asio::error::eof ? error_code(boost::asio::ssl::error::stream_truncated)
                                                             : ec);
        e.commit_input(n);
      } else if (state == flushing) {
        e.end_send();
        if (ec)
          return self.complete(result ? result : ec);
        if (finished)
          return self.complete(result);
      }
      const auto r = e.handshake(result);
      finished = r != tls_engine::result::want_input;
      if (e.has_output()) { // the next flight, or an alert telling the peer why
        state = flushing;
        return boost::asio::async_write(s.socket_, e.begin_send(), whole_batch{}, std::move(self));
      }
      if (finished) {
        if (state == start) // never complete inside the initiating call
          return boost::asio::post(s.socket_.get_executor(), std::move(self));
        if (r == tls_engine::result::closed && !result)
          result = boost::asio::ssl::error::stream_truncated;
        return self.complete(result);
      }
      state = reading;
      s.socket_.async_read_some(e.input_space(), std::move(self));
    }
  };

  struct read_op {
    tls_stream& s;
    boost::asio::mutable_buffer buffer;
    enum { start, reading, posted } state = start;
    error_code result;
    std::size_t bytes = 0;

    template <class Self>
    void operator()(Self& self, error_code ec = {}, std::size_t n = 0) {
      auto& e = *s.engine_;
      if (state == posted)
        return self.complete(result, bytes);
      if (state == reading) {
        if (ec)
          return self.complete(ec == boost::asio::error::eof ? error_code(boost::asio::ssl::error::stream_truncated)
                                                             : ec,
                               0);
        e.commit_input(n);
      }
      const auto r = buffer.size() == 0 ? tls_engine::result::ok : e.decrypt(buffer.data(), buffer.size(), bytes, ec);
      if (bytes > 0 || r != tls_engine::result::want_input) {
        result = bytes > 0 ? error_code() : r == tls_engine::result::closed ? boost::asio::error::eof : ec;
        if (state == reading)
          return self.complete(result, bytes);
        state = posted; // never complete inside the initiating call
        return boost::asio::post(s.socket_.get_executor(), std::move(self));
      }
      state = reading;
      s.socket_.async_read_some(e.input_space(), std::move(self));
    }
  };

  struct write_op {
    tls_stream& s;
    std::size_t taken;
    error_code failure; // what was gathered is lost: nothing counts as written
    enum { start, writing, posted } state = start;

    template <class Self>
    void operator()(Self& self, error_code ec = {}, std::size_t = 0) {
      auto& e = *s.engine_;
      if (state == posted)
        return self.complete(failure, failure ? 0 : taken);
      if (state == writing) {
        e.end_send();
        if (ec)
          return self.complete(ec, 0);
      }
      if (e.has_output()) {
        state = writing;
        return boost::asio::async_write(s.socket_, e.begin_send(), whole_batch{}, std::move(self));
      }
      if (state == start) { // never complete inside the initiating call
        state = posted;
        return boost::asio::post(s.socket_.get_executor(), std::move(self));
      }
      self.complete(failure, failure ? 0 : taken);
    }
  };

  struct shutdown_op {
    tls_stream& s;
    enum { start, writing, done } state = start;

    template <class Self>
    void operator()(Self& self, error_code ec = {}, std::size_t = 0) {
      auto& e = *s.engine_;
      if (state == done)
        return self.complete(ec);
      if (state == writing) {
        e.end_send();
        if (ec)
          return self.complete(ec);
      }
      if (e.has_output()) {
        state = writing;
        return boost::asio::async_write(s.socket_, e.begin_send(), whole_batch{}, std::move(self));
      }
      error_code ignored;
      s.socket_.shutdown(socket_type::shutdown_send, ignored);
      if (state == start) {
        state = done;
        return boost::asio::post(s.socket_.get_executor(), std::move(self));
      }
      self.complete(error_code());
    }
  };

  socket_type socket_;
  std::unique_ptr<tls_engine> engine_; // on the heap: OpenSSL holds pointers into it
};

// Beast's WebSocket close ends its next layer through these (found by ADL).
void teardown(boost::beast::role_type role, tls_stream& stream, error_code& ec);

/// Beast's end of a WebSocket over TLS, after the close frames: close_notify,
/// end of our write side, then (like Beast's TCP teardown) reading and
/// discarding until the peer closes too, so that closing the socket does not
/// reset a connection with unread data. The caller bounds the wait.
struct tls_teardown_op {
  tls_stream& stream;
  enum { start, draining } state = start;
  std::unique_ptr<char[]> scratch;

  template <class Self>
  void operator()(Self& self, error_code ec = {}, std::size_t = 0) {
    if (state == start) {
      state = draining;
      return stream.async_shutdown(std::move(self));
    }
    if (!ec) {
      if (!scratch)
        scratch = std::make_unique<char[]>(4096);
      return stream.next_layer().async_read_some(boost::asio::buffer(scratch.get(), 4096), std::move(self));
    }
    error_code ignored;
    stream.next_layer().close(ignored);
    self.complete(ec == boost::asio::error::eof ? error_code() : ec);
  }
};

template <class Handler>
void async_teardown(boost::beast::role_type, tls_stream& stream, Handler&& handler) {
  boost::asio::async_compose<Handler, void(error_code)>(tls_teardown_op{stream}, handler, stream.next_layer());
}

} // namespace warren::transport
