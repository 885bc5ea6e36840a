#include "transport/tls_stream.hpp"

#include <boost/asio/ssl/error.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace warren::transport {

namespace asio = boost::asio;

namespace {

// Ciphertext read from the socket at once once the handshake is done; the
// handshake itself needs no more than a record or two.
constexpr std::size_t k_input_handshake = 17 * 1024;
constexpr std::size_t k_input_data = 256 * 1024;

int engine_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int verify_trampoline(int preverified, X509_STORE_CTX* store) {
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* engine = ssl ? static_cast<tls_engine*>(SSL_get_ex_data(ssl, engine_index())) : nullptr;
  if (!engine)
    return preverified;
  return engine->verify(preverified != 0, store) ? 1 : 0;
}

/// The first queued OpenSSL error as an error_code (asio's SSL category, so
/// messages read like asio::ssl's), or a generic one when the queue is empty.
error_code take_ssl_error() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0)
    return asio::ssl::error::make_error_code(asio::ssl::error::unspecified_system_error);
  return {static_cast<int>(code), asio::error::get_ssl_category()};
}

} // namespace

/// The BIO between OpenSSL and the engine's buffers.
struct tls_engine_bio {
  static int write(BIO* bio, const char* data, std::size_t size, std::size_t* written) {
    auto* e = static_cast<tls_engine*>(BIO_get_data(bio));
    // As bytes of the vector's own type: from char, insert() copies one at a time.
    const auto* p = reinterpret_cast<const std::uint8_t*>(data);
    e->output_.insert(e->output_.end(), p, p + size);
    *written = size;
    return 1;
  }

  static int read(BIO* bio, char* data, std::size_t size, std::size_t* read) {
    auto* e = static_cast<tls_engine*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    const std::size_t available = e->input_end_ - e->input_begin_;
    if (available == 0) {
      BIO_set_retry_read(bio);
      *read = 0;
      return 0;
    }
    const std::size_t n = std::min(size, available);
    std::memcpy(data, e->input_.data() + e->input_begin_, n);
    e->input_begin_ += n;
    *read = n;
    return 1;
  }

  static long ctrl(BIO*, int command, long, void*) {
    return command == BIO_CTRL_FLUSH ? 1 : 0;
  }

  static int create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
  }

  static BIO_METHOD* method() {
    static BIO_METHOD* const m = [] {
      BIO_METHOD* made = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "warren tls_engine");
      if (!made || !BIO_meth_set_write_ex(made, &write) || !BIO_meth_set_read_ex(made, &read) ||
          !BIO_meth_set_ctrl(made, &ctrl) || !BIO_meth_set_create(made, &create))
        throw std::runtime_error("cannot create the OpenSSL BIO method");
      return made;
    }();
    return m;
  }
};

tls_engine::tls_engine(SSL_CTX* context, bool server) : ssl_(SSL_new(context)) {
  if (!ssl_)
    throw std::runtime_error("SSL_new failed");
  BIO* bio = BIO_new(tls_engine_bio::method());
  if (!bio) {
    SSL_free(ssl_);
    throw std::runtime_error("BIO_new failed");
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio); // one reference, owned by the SSL
  SSL_set_ex_data(ssl_, engine_index(), this);
  if (server)
    SSL_set_accept_state(ssl_);
  else
    SSL_set_connect_state(ssl_);
}

tls_engine::~tls_engine() {
  SSL_free(ssl_);
}

void tls_engine::set_verify_callback(verify_callback callback) {
  verify_ = std::move(callback);
  SSL_set_verify(ssl_, SSL_get_verify_mode(ssl_), &verify_trampoline);
}

bool tls_engine::verify(bool preverified, X509_STORE_CTX* store) {
  return verify_ ? verify_(preverified, store) : preverified;
}

void tls_engine::set_server_name(const std::string& host) {
  // SSL_set_tlsext_host_name is a macro with an old-style cast; call what it expands to.
  SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(host.c_str()));
}

tls_engine::result tls_engine::fail_or_want(int ret, error_code& ec) {
  switch (SSL_get_error(ssl_, ret)) {
  case SSL_ERROR_WANT_READ:
    ERR_clear_error();
    return result::want_input;
  case SSL_ERROR_ZERO_RETURN:
    ERR_clear_error();
    return result::closed;
  default:
    if (!failure_)
      failure_ = take_ssl_error();
    ec = failure_; // sticky: a failed SSL object stays failed
    return result::failed;
  }
}

tls_engine::result tls_engine::handshake(error_code& ec) {
  ec = {};
  ERR_clear_error();
  const int ret = SSL_do_handshake(ssl_);
  return ret == 1 ? result::ok : fail_or_want(ret, ec);
}

tls_engine::result tls_engine::encrypt(const void* data, std::size_t size, error_code& ec) {
  ec = {};
  if (!writable(ec))
    return result::failed;
  const auto* p = static_cast<const std::uint8_t*>(data);
  while (size > 0) {
    std::size_t written = 0;
    ERR_clear_error();
    // The BIO never refuses output, so a write takes everything at once
    // (as records of up to 16 KiB).
    if (SSL_write_ex(ssl_, p, size, &written) != 1)
      return fail_or_want(0, ec);
    p += written;
    size -= written;
  }
  return result::ok;
}

bool tls_engine::writable(error_code& ec) const {
  if (failure_)
    ec = failure_;
  else if (shutdown_sent_) // a misuse, not a failure of the connection: reading goes on
    ec = asio::error::shut_down;
  else
    return true;
  return false;
}

bool tls_engine::encrypt_gather(const void* data, std::size_t size, error_code& ec) {
  constexpr std::size_t record = SSL3_RT_MAX_PLAIN_LENGTH;
  // Refused now, not at encrypt_gather_end(): a caller counts what this
  // takes as written.
  if (!writable(ec))
    return false;
  const auto* p = static_cast<const std::uint8_t*>(data);
  if (!gather_.empty() || size < record) {
    // Top up the partial record first.
    const std::size_t n = std::min(size, record - gather_.size());
    gather_.insert(gather_.end(), p, p + n);
    p += n;
    size -= n;
    if (gather_.size() < record)
      return true;
    if (encrypt(gather_.data(), gather_.size(), ec) != result::ok)
      return false;
    gather_.clear();
  }
  // Whole records straight from the caller's memory; the tail waits.
  const std::size_t whole = size - size % record;
  if (whole > 0 && encrypt(p, whole, ec) != result::ok)
    return false;
  gather_.insert(gather_.end(), p + whole, p + size);
  return true;
}

void tls_engine::encrypt_gather_end(error_code& ec) {
  if (gather_.empty())
    return;
  encrypt(gather_.data(), gather_.size(), ec);
  gather_.clear();
}

tls_engine::result tls_engine::decrypt(void* data, std::size_t capacity, std::size_t& n, error_code& ec) {
  ec = {};
  n = 0;
  // Sticky, as for encrypt(). OpenSSL itself is not: after a fatal alert
  // from the peer the next SSL_read reports SSL_ERROR_ZERO_RETURN (its
  // warn_alert is still 0, which is close_notify), a clean end of stream.
  if (failure_) {
    ec = failure_;
    return result::failed;
  }
  auto* out = static_cast<std::uint8_t*>(data);
  while (n < capacity) {
    std::size_t got = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl_, out + n, capacity - n, &got) != 1)
      return fail_or_want(0, ec);
    n += got;
  }
  return result::ok;
}

void tls_engine::shutdown() {
  if (shutdown_sent_)
    return;
  shutdown_sent_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_); // queues close_notify; we do not wait for the peer's here
  ERR_clear_error();
}

asio::const_buffer tls_engine::begin_send() {
  sending_.swap(output_);
  return asio::buffer(sending_);
}

asio::mutable_buffer tls_engine::input_space() {
  if (input_begin_ == input_end_)
    input_begin_ = input_end_ = 0;
  const std::size_t want = SSL_is_init_finished(ssl_) ? k_input_data : k_input_handshake;
  if (input_.size() < want)
    input_.resize(want);
  // OpenSSL asks for more only once it has taken everything buffered, so
  // the buffer is normally empty here; compact if it is not.
  if (input_begin_ > 0) {
    std::memmove(input_.data(), input_.data() + input_begin_, input_end_ - input_begin_);
    input_end_ -= input_begin_;
    input_begin_ = 0;
  }
  return asio::buffer(input_.data() + input_end_, input_.size() - input_end_);
}

void teardown(boost::beast::role_type, tls_stream& stream, error_code& ec) {
  auto& e = stream.engine();
  e.shutdown();
  ec = {};
  if (e.has_output()) {
    asio::write(stream.next_layer(), e.begin_send(), ec);
    e.end_send();
  }
  error_code ignored;
  stream.next_layer().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  stream.next_layer().close(ignored);
}

} // namespace warren::transport
