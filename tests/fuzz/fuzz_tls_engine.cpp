// Fuzzes tls_engine (src/transport/tls_stream.*), which sees every byte a
// tls:// or wss:// peer sends, driven as tls_stream drives it and with the
// production contexts of tls.hpp (TLS 1.3, CA + host name check, mTLS). The
// first byte picks the victim and how the peer's bytes are made:
//   0, 1  client / server fed raw bytes (ServerHello / ClientHello onwards);
//   2, 3  client / server after a real in-memory handshake with a peer engine
//         whose encrypted flight the input edits; then operations: records
//         forged with the peer's traffic keys (any content type, padding,
//         KeyUpdate, alerts), raw and flipped bytes, delivery in pieces into
//         decrypt() buffers of fuzzed size, the victim's writes and shutdown.
// Forging (keys from the peer's key log) gets past the AEAD, which mutated
// ciphertext never does. Debian's OpenSSL is not instrumented, so its
// messages, states and error reasons are fed back as extra counters.
// Checked: no handshake completes on raw input; decrypt() yields exactly the
// data the peer sent (all of it if nothing hostile was sent) and never more
// than asked; failed and closed repeat; writes fail after a failure or
// shutdown; want_input always has input space; the peer reads exactly what
// the victim wrote; output stays within a constant plus twice the input.
// A fresh corpus directory gets seeds (real hellos, flights, operations).
#include "transport/tls.hpp"
#include "transport/tls_stream.hpp"

#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/verify_context.hpp>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace ssl = boost::asio::ssl;
namespace fs = std::filesystem;
using warren::error_code;
using warren::transport::tls_engine;
using result = tls_engine::result;
using bytes = std::vector<std::uint8_t>;
using byte_span = std::span<const std::uint8_t>;

void check(bool ok) {
  if (!ok)
    std::abort();
}

constexpr std::size_t k_max_plaintext = 16384;        // TLS 1.3 record content
constexpr std::size_t k_max_input_space = 256 * 1024; // tls_engine's k_input_data
constexpr std::size_t k_output_allowance = 16 * 1024; // a server flight, an alert, a HelloRetryRequest answer
constexpr std::size_t k_max_forged = 256 * 1024;      // per input, to keep executions fast
constexpr std::size_t k_max_ops = 256;
constexpr std::size_t k_tag = 16;
constexpr std::size_t k_max_capacity = (1 << 16) + 1; // of a decrypt() buffer

enum mode : std::uint8_t { raw_client, raw_server, victim_client, victim_server };

// ---- Feedback: libFuzzer adds counters in this section to its coverage.

constexpr std::size_t k_features = 4096;
__attribute__((section("__libfuzzer_extra_counters"), used)) std::uint8_t g_features[k_features];

void feature(std::uint32_t kind, std::uint32_t value) {
  std::uint32_t h = kind * 0x9E3779B1u ^ value * 0x85EBCA77u;
  h ^= h >> 15;
  auto& c = g_features[h % k_features];
  if (c < 255)
    ++c;
}

// OpenSSL's message callback on the victim: every record header, inner
// content type, handshake message type and alert, each way.
void on_message(int write_p, int, int content_type, const void* buf, std::size_t len, SSL*, void*) {
  const auto* p = static_cast<const std::uint8_t*>(buf);
  const std::uint32_t first = len > 0 ? p[0] : 0x1ff;
  const std::uint32_t second = content_type == SSL3_RT_ALERT && len > 1 ? p[1] : 0;
  feature(1, static_cast<std::uint32_t>(write_p) << 30 | static_cast<std::uint32_t>(content_type) << 18 | first << 8 |
                 second);
}

void note(const tls_engine& e, int call, result r, const error_code& ec) {
  feature(2, static_cast<std::uint32_t>(call) << 16 | static_cast<std::uint32_t>(r) << 8 |
                 static_cast<std::uint32_t>(SSL_get_state(e.native_handle())));
  if (ec)
    feature(3, static_cast<std::uint32_t>(call) << 30 ^ static_cast<std::uint32_t>(ec.value()));
}

// ---- Input.

class reader {
 public:
  reader(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
  bool empty() const { return p_ == end_; }
  std::uint8_t u8() { return p_ == end_ ? 0 : *p_++; }
  std::uint16_t u16() {
    const unsigned hi = u8();
    return static_cast<std::uint16_t>(hi << 8 | u8());
  }
  byte_span take(std::size_t n) {
    n = std::min<std::size_t>(n, static_cast<std::size_t>(end_ - p_));
    const byte_span s(p_, n);
    p_ += n;
    return s;
  }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

/// `size` bytes: those from the input first, then a pattern (big records cost
/// the fuzzer no input).
bytes fill(byte_span from_input, std::size_t size, std::uint8_t seed) {
  static const bytes pattern = [] {
    bytes p((1 << 16) + 256);
    for (std::size_t i = 0; i < p.size(); ++i)
      p[i] = static_cast<std::uint8_t>(i * 131);
    return p;
  }();
  check(size + seed <= pattern.size());
  bytes out(size);
  const std::size_t n = std::min(size, from_input.size());
  if (n > 0)
    std::memcpy(out.data(), from_input.data(), n);
  if (size > n)
    std::memcpy(out.data() + n, pattern.data() + seed + n, size - n);
  return out;
}

// ---- Keys: the peer's traffic secrets from its key log, and TLS 1.3 record
// protection with them (RFC 8446 sections 5.2, 5.3, 7.1).

std::map<std::string, bytes, std::less<>> g_secrets; // label -> secret, for the current input

void on_keylog(const SSL*, const char* line) {
  const std::string_view l(line);
  const auto first = l.find(' ');
  const auto last = l.rfind(' ');
  if (first == std::string_view::npos || last == first)
    return;
  bytes secret;
  for (std::size_t i = last + 1; i + 1 < l.size(); i += 2)
    secret.push_back(static_cast<std::uint8_t>(std::stoi(std::string(l.substr(i, 2)), nullptr, 16)));
  g_secrets.insert_or_assign(std::string(l.substr(0, first)), std::move(secret));
}

class record_key {
 public:
  /// For the cipher suite `ssl` negotiated.
  record_key(const SSL* ssl, bytes secret) {
    const SSL_CIPHER* suite = SSL_get_current_cipher(ssl);
    check(suite != nullptr);
    md_ = SSL_CIPHER_get_handshake_digest(suite);
    cipher_ = EVP_get_cipherbynid(SSL_CIPHER_get_cipher_nid(suite));
    check(md_ != nullptr && cipher_ != nullptr);
    set(std::move(secret));
  }

  /// What a KeyUpdate does to the sender's key.
  void update() { set(expand(secret_, "traffic upd", secret_.size())); }

  /// One record: `content`, inner type `type`, `padding` zeros.
  bytes seal(std::uint8_t type, byte_span content, std::size_t padding) {
    bytes inner(content.begin(), content.end());
    inner.push_back(type);
    inner.resize(inner.size() + padding);
    const std::size_t length = inner.size() + k_tag;
    check(length <= 0xffff);
    bytes record{0x17, 0x03, 0x03, static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length)};
    record.resize(5 + length);
    check(crypt(true, byte_span(record).first(5), inner, record.data() + 5, record.data() + 5 + inner.size()));
    return record;
  }

  /// The inner plaintext of one record, if it authenticates.
  std::optional<bytes> open(byte_span record) {
    if (record.size() < 5 + k_tag)
      return std::nullopt;
    bytes inner(record.size() - 5 - k_tag);
    std::array<std::uint8_t, k_tag> tag{};
    std::memcpy(tag.data(), record.data() + record.size() - k_tag, k_tag);
    if (!crypt(false, record.first(5), record.subspan(5, inner.size()), inner.data(), tag.data()))
      return std::nullopt;
    return inner;
  }

 private:
  // HKDF-Expand-Label with an empty context; every length here fits one
  // HMAC block, so HKDF-Expand is a single HMAC.
  bytes expand(const bytes& secret, std::string_view label, std::size_t size) const {
    const std::string full = "tls13 " + std::string(label);
    bytes info{static_cast<std::uint8_t>(size >> 8), static_cast<std::uint8_t>(size),
               static_cast<std::uint8_t>(full.size())};
    info.insert(info.end(), full.begin(), full.end());
    info.push_back(0); // context
    info.push_back(1); // T(1)
    std::array<std::uint8_t, EVP_MAX_MD_SIZE> out{};
    unsigned int n = 0;
    check(HMAC(md_, secret.data(), static_cast<int>(secret.size()), info.data(), info.size(), out.data(), &n) !=
              nullptr &&
          n >= size);
    return bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(size));
  }

  void set(bytes secret) {
    secret_ = std::move(secret);
    key_ = expand(secret_, "key", static_cast<std::size_t>(EVP_CIPHER_get_key_length(cipher_)));
    iv_ = expand(secret_, "iv", 12);
    seq_ = 0;
  }

  bool crypt(bool encrypt, byte_span header, byte_span in, std::uint8_t* out, std::uint8_t* tag) {
    bytes nonce = iv_;
    for (std::size_t i = 0; i < 8; ++i)
      nonce[nonce.size() - 1 - i] ^= static_cast<std::uint8_t>(seq_ >> (8 * i));
    ++seq_;
    std::unique_ptr<EVP_CIPHER_CTX, void (*)(EVP_CIPHER_CTX*)> c(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
    const int enc = encrypt ? 1 : 0;
    int len = 0;
    std::array<std::uint8_t, 32> final_block{};
    return c && EVP_CipherInit_ex(c.get(), cipher_, nullptr, nullptr, nullptr, enc) == 1 &&
           EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_AEAD_SET_IVLEN, 12, nullptr) == 1 &&
           EVP_CipherInit_ex(c.get(), nullptr, nullptr, key_.data(), nonce.data(), enc) == 1 &&
           EVP_CipherUpdate(c.get(), nullptr, &len, header.data(), static_cast<int>(header.size())) == 1 &&
           (in.empty() || EVP_CipherUpdate(c.get(), out, &len, in.data(), static_cast<int>(in.size())) == 1) &&
           (encrypt || EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_AEAD_SET_TAG, k_tag, tag) == 1) &&
           EVP_CipherFinal_ex(c.get(), final_block.data(), &len) == 1 &&
           (!encrypt || EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_AEAD_GET_TAG, k_tag, tag) == 1);
  }

  const EVP_MD* md_ = nullptr;
  const EVP_CIPHER* cipher_ = nullptr;
  bytes secret_, key_, iv_;
  std::uint64_t seq_ = 0;
};

/// What a receiver makes of an inner plaintext: its content type (0: none,
/// all padding) and content.
std::pair<std::uint8_t, byte_span> unpad(byte_span inner) {
  std::size_t n = inner.size();
  while (n > 0 && inner[n - 1] == 0)
    --n;
  if (n == 0)
    return {0, {}};
  return {inner[n - 1], inner.first(n - 1)};
}

/// The whole records in `wire` (an engine's output never ends mid-record).
std::vector<byte_span> split_records(byte_span wire) {
  std::vector<byte_span> out;
  std::size_t off = 0;
  while (off < wire.size()) {
    check(off + 5 <= wire.size());
    const std::size_t n = 5 + (std::size_t{wire[off + 3]} << 8 | wire[off + 4]);
    check(off + n <= wire.size());
    out.push_back(wire.subspan(off, n));
    off += n;
  }
  return out;
}

// ---- Contexts, built once: the victim's exactly as production builds them;
// the peer's the same plus the key-log callback.

struct contexts {
  std::shared_ptr<ssl::context> client, client_mtls, server, server_mtls;
  std::shared_ptr<ssl::context> peer_client, peer_client_mtls, peer_server, peer_server_mtls;
};

const contexts& the_contexts() {
  static const contexts made = [] {
    std::string dir = (fs::temp_directory_path() / "fuzz-tls-engine-XXXXXX").string();
    check(::mkdtemp(dir.data()) != nullptr);
    const auto cert = warren::transport::ensure_self_signed(dir, {}); // localhost, 127.0.0.1, ::1
    check(static_cast<bool>(cert));
    auto client = [&](bool mtls) {
      // Chain and host name verified for real, against the server's own
      // certificate as the CA (as tls_stream_test does).
      auto c = warren::transport::make_client_context(
          {cert->cert_file, {}, mtls ? cert->cert_file : std::string(), mtls ? cert->key_file : std::string()});
      check(static_cast<bool>(c));
      return c->context;
    };
    auto server = [&](bool mtls) {
      auto s = warren::transport::make_server_context(
          {cert->cert_file, cert->key_file, mtls ? cert->cert_file : std::string()});
      check(static_cast<bool>(s));
      return *s;
    };
    contexts out{client(false), client(true), server(false), server(true),
                 client(false), client(true), server(false), server(true)};
    for (const auto& c : {out.peer_client, out.peer_client_mtls, out.peer_server, out.peer_server_mtls})
      SSL_CTX_set_keylog_callback(c->native_handle(), &on_keylog);
    std::error_code ignored;
    fs::remove_all(dir, ignored);
    return out;
  }();
  return made;
}

// ---- One connection: the victim and (outside the raw modes) its peer.

struct endpoint {
  endpoint(SSL_CTX* context, bool server) : engine(context, server) {}

  tls_engine engine;
  bool handshake_done = false;
  bool handshake_failed = false; // production drops the connection here
  std::optional<result> ended;   // failed or closed from decrypt(): it must repeat
  error_code ended_ec;
  bool shut_down = false; // sent close_notify
  bytes pending;          // ciphertext on its way to this endpoint
  std::size_t pending_off = 0;
  bytes expected; // application data its peer sent, in order
  std::size_t received = 0;
  std::size_t input_total = 0;
  std::size_t output_total = 0; // output not asked for with encrypt()

  std::size_t pending_size() const { return pending.size() - pending_off; }
  bool alive() const { return handshake_done && !ended; }
};

class connection {
 public:
  connection(mode m, bool mtls, std::uint8_t peer_config)
      : mode_(m), client_(client_context(m, mtls), false), server_(server_context(m, mtls), true),
        victim_(m == raw_client || m == victim_client ? client_ : server_),
        peer_(&victim_ == &client_ ? server_ : client_) {
    client_.engine.set_server_name("localhost");
    // As transport.cpp does without a pin.
    client_.engine.set_verify_callback(
        [verify = ssl::host_name_verification("localhost")](bool preverified, X509_STORE_CTX* store) mutable {
          ssl::verify_context context(store);
          return verify(preverified, context);
        });
    SSL_set_msg_callback(victim_.engine.native_handle(), &on_message);
    // The peer's choice of cipher suite and key-exchange groups (HelloRetryRequest).
    static const char* const suites[] = {"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
                                         "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256",
                                         "TLS_AES_256_GCM_SHA384"};
    static const char* const groups[] = {nullptr, "P-256", "P-384:X25519", "X448:P-521"};
    SSL* peer = peer_.engine.native_handle();
    check(SSL_set_ciphersuites(peer, suites[peer_config & 3]) == 1);
    if (const char* g = groups[(peer_config >> 2) & 3])
      check(SSL_ctrl(peer, SSL_CTRL_SET_GROUPS_LIST, 0, const_cast<char*>(g)) == 1);
  }
  // Freed with the input's other memory: libFuzzer re-runs inputs that
  // allocate more than they free, looking for leaks.
  ~connection() { g_secrets.clear(); }

  bool raw() const { return mode_ == raw_client || mode_ == raw_server; }
  const bytes& client_session_id() const { return client_session_id_; }
  endpoint& victim() { return victim_; }
  endpoint& peer() { return peer_; }

  /// Runs `e` as tls_stream does and hands it up to `limit` bytes of its
  /// pending ciphertext, at most `piece` per "socket read": handshake() or
  /// decrypt() first, a read only after want_input; after data the
  /// application reads again. Returns early once `e` is finished.
  void run(endpoint& e, std::size_t limit, std::size_t piece, std::size_t capacity) {
    static bytes scratch(k_max_capacity);
    check(capacity > 0 && capacity <= k_max_capacity);
    const std::span<std::uint8_t> buf(scratch.data(), capacity);
    std::size_t moved = 0;
    for (std::size_t guard = 0;; ++guard) {
      check(guard < 4 * k_max_forged + 1000); // no endless loop
      if (e.handshake_failed)
        return;
      std::size_t n = 0;
      error_code ec;
      result r;
      const bool handshaking = !e.handshake_done;
      if (handshaking) {
        r = e.engine.handshake(ec);
        note(e.engine, 0, r, ec);
        check(r == result::failed ? static_cast<bool>(ec) : !ec);
        if (r == result::ok) {
          check(!raw()); // nobody on the raw side holds the keys
          e.handshake_done = true;
        } else if (r != result::want_input) {
          e.handshake_failed = true;
        }
      } else {
        r = e.engine.decrypt(buf.data(), buf.size(), n, ec);
        note(e.engine, 1, r, ec);
        check(n <= buf.size() && (r != result::ok || n == buf.size()));
        check(r == result::failed ? static_cast<bool>(ec) : !ec);
        if (e.ended) {
          check(r == *e.ended && n == 0 && ec == e.ended_ec);
        } else if (r == result::failed || r == result::closed) {
          e.ended = r;
          e.ended_ec = ec;
        }
        check(e.received + n <= e.expected.size() &&
              std::equal(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n),
                         e.expected.begin() + static_cast<std::ptrdiff_t>(e.received)));
        e.received += n;
      }
      drain(e, false);
      if (r == result::want_input && n == 0) {
        const auto space = e.engine.input_space();
        check(space.size() > 0 && space.size() <= k_max_input_space);
        const std::size_t m = std::min({space.size(), piece, limit - moved, e.pending_size()});
        if (m == 0)
          return;
        std::memcpy(space.data(), e.pending.data() + e.pending_off, m);
        e.engine.commit_input(m);
        e.pending_off += m;
        e.input_total += m;
        moved += m;
        if (e.pending_off == e.pending.size()) {
          e.pending.clear();
          e.pending_off = 0;
        }
        continue;
      }
      if (handshaking && r == result::ok)
        continue; // the first read follows
      if (r == result::ok || r == result::want_input)
        continue; // data: the application reads again
      return;     // failed or closed: reported to the application
    }
  }

  /// The handshake, the peer's encrypted flight edited by `in` on its way.
  void handshake(reader& in, std::size_t piece) {
    edits_ = in.u8() % 6;
    edit_input_ = &in;
    for (int round = 0; round < 8 && !(client_.handshake_done && server_.handshake_done); ++round) {
      run(client_, SIZE_MAX, piece, 1024);
      run(server_, SIZE_MAX, piece, 1024);
    }
    edit_input_ = nullptr;
    // From here on the peer's writes are forged in its name, with its keys.
    forging_ = true;
    const char* label = &peer_ == &server_ ? "SERVER_TRAFFIC_SECRET_0" : "CLIENT_TRAFFIC_SECRET_0";
    if (const auto it = g_secrets.find(label); it != g_secrets.end())
      forge_.emplace(peer_.engine.native_handle(), it->second);
  }

  /// The operations after the handshake, then delivery of what is left.
  void operate(reader& in, std::size_t piece) {
    bool clean = edits_ == 0; // nothing hostile sent: all data must arrive
    std::size_t forged = 0;
    auto send = [&](std::uint8_t type, byte_span content, std::size_t padding) {
      if (!forge_ || forged > k_max_forged)
        return;
      const bytes record = forge_->seal(type, content, padding);
      forged += record.size();
      victim_.pending.insert(victim_.pending.end(), record.begin(), record.end());
      // What the victim must make of it.
      bytes inner(content.begin(), content.end());
      inner.push_back(type);
      inner.resize(inner.size() + padding);
      // OpenSSL limits the content, not content + padding (RFC 8446 5.4 says
      // 2^14 + 1 for both), and the record to 2^14 + 256.
      const auto [effective, data] = unpad(inner);
      if (effective == SSL3_RT_APPLICATION_DATA && data.size() <= k_max_plaintext &&
          inner.size() + k_tag <= k_max_plaintext + 256)
        victim_.expected.insert(victim_.expected.end(), data.begin(), data.end());
      else
        clean = false;
    };
    for (std::size_t op = 0; op < k_max_ops && !in.empty(); ++op) {
      switch (in.u8() % 11) {
      case 0: { // a short application data record from the input, or a patterned one around the size limit
        const std::uint8_t a = in.u8();
        if (a < 0xf0) {
          send(SSL3_RT_APPLICATION_DATA, in.take(a), 0);
        } else {
          const std::size_t size = k_max_plaintext - 8 + (a - 0xf0u);
          send(SSL3_RT_APPLICATION_DATA, fill({}, size, a), 0);
        }
        break;
      }
      case 1: { // patterned application data of any size, with padding
        const std::size_t size = in.u16() % (k_max_plaintext + 300);
        const std::size_t padding = in.u16() % (k_max_plaintext + 300);
        send(SSL3_RT_APPLICATION_DATA, fill({}, size, static_cast<std::uint8_t>(size)), padding);
        break;
      }
      case 2: { // one handshake message, its length right
        const std::uint8_t type = in.u8();
        const std::size_t size = in.u8();
        bytes message{type, 0, 0, static_cast<std::uint8_t>(size)};
        const auto body = in.take(size);
        message.insert(message.end(), body.begin(), body.end());
        message.resize(4 + size);
        send(SSL3_RT_HANDSHAKE, message, 0);
        break;
      }
      case 3: { // any inner content type (0: the content's last non-zero byte), any padding
        const std::uint8_t type = in.u8();
        const std::size_t padding = in.u8();
        send(type, in.take(in.u8()), padding);
        break;
      }
      case 4: { // an alert (1, 0 is close_notify)
        const std::array<std::uint8_t, 2> alert{in.u8(), in.u8()};
        send(SSL3_RT_ALERT, alert, 0);
        break;
      }
      case 5: { // KeyUpdate, update_requested or not; the peer's key moves on
        const std::array<std::uint8_t, 5> message{SSL3_MT_KEY_UPDATE, 0, 0, 1, static_cast<std::uint8_t>(in.u8() & 1)};
        const bool was_clean = clean; // a valid KeyUpdate is no attack
        send(SSL3_RT_HANDSHAKE, message, 0);
        clean = was_clean;
        if (forge_)
          forge_->update();
        break;
      }
      case 6: { // raw bytes on the wire
        const auto junk = in.take(in.u8());
        victim_.pending.insert(victim_.pending.end(), junk.begin(), junk.end());
        clean = false;
        break;
      }
      case 7: { // a flipped byte in what is not delivered yet
        const std::size_t at = in.u16();
        const std::uint8_t flip = in.u8() | 1;
        if (victim_.pending_size() > 0) {
          victim_.pending[victim_.pending_off + at % victim_.pending_size()] ^= flip;
          clean = false;
        }
        break;
      }
      case 8: { // delivery
        const std::size_t limit = 1 + std::size_t{in.u16()} * 4;
        const std::size_t capacity = 1 + in.u16();
        run(victim_, limit, piece, capacity);
        break;
      }
      case 9: // the victim writes
        write(in);
        break;
      case 10: // the victim sends close_notify
        if (victim_.handshake_done) {
          victim_.engine.shutdown();
          victim_.shut_down = true;
          drain(victim_, false);
          run(peer_, SIZE_MAX, SIZE_MAX, 1 << 16);
        }
        break;
      }
    }
    run(victim_, SIZE_MAX, piece, 1 << 16);
    if (clean && victim_.alive())
      check(victim_.received == victim_.expected.size());
  }

 private:
  static SSL_CTX* client_context(mode m, bool mtls) {
    const auto& c = the_contexts();
    const bool peer = m == victim_server;
    return (peer ? (mtls ? c.peer_client_mtls : c.peer_client) : (mtls ? c.client_mtls : c.client))->native_handle();
  }
  static SSL_CTX* server_context(mode m, bool mtls) {
    const auto& c = the_contexts();
    const bool peer = m == victim_client;
    return (peer ? (mtls ? c.peer_server_mtls : c.peer_server) : (mtls ? c.server_mtls : c.server))->native_handle();
  }

  /// Takes `from`'s output and sends it to the other endpoint (or nowhere:
  /// the raw modes have no peer, and forged records replace the peer's).
  void drain(endpoint& from, bool asked_for) {
    if (!from.engine.has_output())
      return;
    const auto out = from.engine.begin_send();
    check(out.size() > 0);
    const byte_span wire(static_cast<const std::uint8_t*>(out.data()), out.size());
    if (!asked_for)
      from.output_total += wire.size();
    if (&from == &victim_)
      check(victim_.output_total <= k_output_allowance + 2 * victim_.input_total);
    endpoint& to = &from == &client_ ? server_ : client_;
    if (raw() && &from == &client_ && client_session_id_.empty() && wire.size() > 44 && wire[5] == SSL3_MT_CLIENT_HELLO)
      client_session_id_.assign(wire.begin() + 44,
                                wire.begin() + 44 + std::min<std::size_t>(wire[43], wire.size() - 44));
    if (raw() || (forging_ && &from == &peer_)) {
      // dropped
    } else if (&from == &peer_ && edits_ > 0 && !edited_) {
      edit_flight(wire, to.pending);
    } else {
      to.pending.insert(to.pending.end(), wire.begin(), wire.end());
    }
    from.engine.end_send();
  }

  /// The peer's first flight with encrypted handshake records: their
  /// handshake messages, edited, re-encrypted in records of a fuzzed size.
  void edit_flight(byte_span wire, bytes& to) {
    const char* label = &peer_ == &server_ ? "SERVER_HANDSHAKE_TRAFFIC_SECRET" : "CLIENT_HANDSHAKE_TRAFFIC_SECRET";
    const auto secret = g_secrets.find(label);
    const auto records = split_records(wire);
    const bool encrypted =
        std::any_of(records.begin(), records.end(), [](byte_span r) { return r[0] == SSL3_RT_APPLICATION_DATA; });
    if (!encrypted || secret == g_secrets.end() || edit_input_ == nullptr) {
      to.insert(to.end(), wire.begin(), wire.end());
      return;
    }
    edited_ = true;
    record_key key(peer_.engine.native_handle(), secret->second);
    bytes messages;
    for (const auto r : records) {
      if (r[0] != SSL3_RT_APPLICATION_DATA) { // ServerHello, ChangeCipherSpec
        to.insert(to.end(), r.begin(), r.end());
        continue;
      }
      const auto inner = key.open(r);
      check(inner.has_value());
      const auto [type, content] = unpad(*inner);
      check(type == SSL3_RT_HANDSHAKE);
      messages.insert(messages.end(), content.begin(), content.end());
    }
    reader& in = *edit_input_;
    for (unsigned i = 0; i < edits_; ++i) {
      const std::uint8_t kind = in.u8();
      const std::size_t at = messages.empty() ? 0 : in.u16() % messages.size();
      const auto pos = messages.begin() + static_cast<std::ptrdiff_t>(at);
      switch (kind % 5) {
      case 0:
        if (!messages.empty())
          messages[at] ^= in.u8() | 1;
        break;
      case 1:
        if (!messages.empty())
          messages[at] = in.u8();
        break;
      case 2: {
        const auto more = in.take(in.u8());
        messages.insert(pos, more.begin(), more.end());
        break;
      }
      case 3:
        messages.erase(pos, pos + std::min<std::ptrdiff_t>(in.u8(), messages.end() - pos));
        break;
      default:
        messages.erase(pos, messages.end());
        break;
      }
    }
    const std::size_t record = 1 + in.u16() % k_max_plaintext;
    record_key fresh(peer_.engine.native_handle(), secret->second);
    for (std::size_t off = 0; off < messages.size(); off += record) {
      const auto r =
          fresh.seal(SSL3_RT_HANDSHAKE, byte_span(messages).subspan(off, std::min(record, messages.size() - off)), 0);
      to.insert(to.end(), r.begin(), r.end());
    }
  }

  /// The victim encrypts, whole or gathered from pieces; the peer must read
  /// back exactly that.
  void write(reader& in) {
    const std::size_t size = in.u16();
    const std::uint8_t how = in.u8();
    if (!victim_.handshake_done)
      return; // tls_stream writes only after the handshake
    const bytes data = fill({}, size, how);
    error_code ec;
    bool ok = false;
    if (how % 2 == 0) {
      const auto r = victim_.engine.encrypt(data.data(), data.size(), ec);
      check(r == result::ok ? !ec : r == result::failed && ec); // never want_input: tls_stream would spin
      ok = r == result::ok;
    } else {
      // Pieces as a WebSocket header, a frame header and a payload come.
      std::size_t off = 0;
      ok = true;
      for (unsigned i = 0; ok && off < data.size(); ++i) {
        const std::size_t n = i < 3 ? std::min<std::size_t>(in.u8() + 1, data.size() - off) : data.size() - off;
        ok = victim_.engine.encrypt_gather(data.data() + off, n, ec);
        check(ok == !ec);
        off += n;
      }
      if (ok) {
        victim_.engine.encrypt_gather_end(ec);
        ok = !ec;
      }
    }
    if (size == 0) {
      ok = false; // nothing written (and an alert of a failed victim may go out now)
    } else {
      if (victim_.ended == result::failed)
        check(!ok && ec == victim_.ended_ec);
      if (victim_.shut_down)
        check(!ok);
    }
    const bool peer_was_alive = peer_.alive();
    if (ok)
      peer_.expected.insert(peer_.expected.end(), data.begin(), data.end());
    drain(victim_, true);
    run(peer_, SIZE_MAX, SIZE_MAX, 1 << 16);
    if (ok && peer_was_alive)
      check(peer_.alive() && peer_.received == peer_.expected.size());
  }

  mode mode_;
  endpoint client_;
  endpoint server_;
  endpoint& victim_;
  endpoint& peer_;
  unsigned edits_ = 0;
  bool edited_ = false;
  reader* edit_input_ = nullptr;
  bool forging_ = false;
  std::optional<record_key> forge_;
  bytes client_session_id_; // raw client mode
};

/// Puts the client's legacy_session_id (random, 32 bytes: middlebox
/// compatibility mode) into every ServerHello and HelloRetryRequest that
/// starts a record of `wire`, where the client insists on finding it; the
/// fuzzer could never guess it.
void echo_session_id(bytes& wire, const bytes& id) {
  constexpr std::size_t at = 5 + 4 + 2 + 32; // record and message headers, version, random
  for (std::size_t off = 0; off + 5 <= wire.size();) {
    const std::size_t length = std::size_t{wire[off + 3]} << 8 | wire[off + 4];
    const std::size_t end = std::min(wire.size(), off + 5 + length);
    if (wire[off] == SSL3_RT_HANDSHAKE && off + at < end && wire[off + 5] == SSL3_MT_SERVER_HELLO &&
        wire[off + at] == id.size() && off + at + 1 + id.size() <= end && !id.empty())
      std::memcpy(wire.data() + off + at + 1, id.data(), id.size());
    off += 5 + length;
  }
}

std::size_t piece_size(std::uint8_t p) {
  // 0: everything at once; small pieces split every header; large ones are socket reads.
  if (p == 0)
    return SIZE_MAX;
  return p < 0x80 ? p : std::size_t{p - 0x7fu} * 512;
}

void fuzz(const std::uint8_t* data, std::size_t size) {
  reader in(data, size);
  const std::uint8_t first = in.u8();
  const auto m = static_cast<mode>(first & 3);
  const bool mtls = (first & 4) != 0;
  connection c(m, mtls, static_cast<std::uint8_t>(first >> 3));
  const std::size_t piece = piece_size(in.u8());
  if (c.raw()) {
    const auto wire = in.take(size);
    auto& v = c.victim();
    v.pending.assign(wire.begin(), wire.end());
    if (m == raw_client) {
      c.run(v, 0, piece, 1); // the ClientHello
      echo_session_id(v.pending, c.client_session_id());
    }
    c.run(v, SIZE_MAX, piece, 1 << 14);
    return;
  }
  c.handshake(in, piece);
  c.operate(in, piece);
}

// ---- Seeds for a fresh corpus.

/// The peer-side bytes of a real handshake: a client's ClientHello, or a
/// server's first flight (the answer to a ClientHello, or a HelloRetryRequest).
bytes real_flight(bool server_flight, const char* server_groups) {
  const auto& ctx = the_contexts();
  tls_engine client(ctx.peer_client->native_handle(), false);
  tls_engine server(ctx.peer_server->native_handle(), true);
  client.set_server_name("localhost");
  if (server_groups)
    check(SSL_ctrl(server.native_handle(), SSL_CTRL_SET_GROUPS_LIST, 0, const_cast<char*>(server_groups)) == 1);
  error_code ec;
  client.handshake(ec);
  const auto hello = client.begin_send();
  bytes out(static_cast<const std::uint8_t*>(hello.data()),
            static_cast<const std::uint8_t*>(hello.data()) + hello.size());
  if (!server_flight)
    return out;
  const auto space = server.input_space();
  check(space.size() >= out.size());
  std::memcpy(space.data(), out.data(), out.size());
  server.commit_input(out.size());
  server.handshake(ec);
  const auto flight = server.begin_send();
  return bytes(static_cast<const std::uint8_t*>(flight.data()),
               static_cast<const std::uint8_t*>(flight.data()) + flight.size());
}

void write_seeds(const fs::path& dir) {
  auto put = [&](const std::string& name, bytes content) {
    std::ofstream(dir / name, std::ios::binary)
        .write(reinterpret_cast<const char*>(content.data()), static_cast<std::streamsize>(content.size()));
  };
  auto with = [](std::initializer_list<std::uint8_t> head, const bytes& tail) {
    bytes out(head);
    out.insert(out.end(), tail.begin(), tail.end());
    return out;
  };
  put("seed-raw-server", with({raw_server, 0}, real_flight(false, nullptr)));
  put("seed-raw-server-mtls-pieces", with({raw_server | 4, 7}, real_flight(false, nullptr)));
  put("seed-raw-client", with({raw_client, 0}, real_flight(true, nullptr)));
  put("seed-raw-client-hrr", with({raw_client, 0}, real_flight(true, "P-256")));
  // Operations: data, delivery, a write, KeyUpdate, more data, close_notify.
  const bytes ops{
      0,  5,    'h',  'e',  'l',  'l', 'o', // application data
      8,  0xff, 0xff, 0x40, 0x00,           // delivery
      9,  0x01, 0x00, 1,    2,    7,   50,  // the victim writes 256 bytes in pieces
      5,  1,                                // KeyUpdate, update_requested
      1,  0x40, 0x00, 0x00, 0x10,           // 16 KiB of application data, 16 bytes of padding
      8,  0x00, 0x40, 0x00, 0xff,           // delivery in 257-byte reads
      9,  0x00, 0x10, 0,                    // the victim writes 16 bytes
      4,  1,    0,                          // close_notify
      8,  0xff, 0xff, 0x40, 0x00,           // delivery
      10,                                   // the victim's close_notify
  };
  for (const std::uint8_t victim : {victim_client, victim_server})
    for (const std::uint8_t mtls : {0, 4}) {
      const std::string name =
          std::string("seed-") + (victim == victim_client ? "client" : "server") + (mtls ? "-mtls" : "");
      put(name, with({static_cast<std::uint8_t>(victim | mtls), 0, 0}, ops));
      // A flipped byte in the encrypted flight, records of 100 bytes.
      put(name + "-edited", with({static_cast<std::uint8_t>(victim | mtls), 0, 1, 0, 0, 40, 0x20, 0, 100}, ops));
    }
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  (void)the_contexts();
  // The first directory argument is the corpus libFuzzer writes to.
  for (int i = 1; i < *argc; ++i) {
    const std::string_view arg((*argv)[i]);
    std::error_code ec;
    if (arg.starts_with("-") || !fs::is_directory(arg, ec))
      continue;
    if (fs::is_empty(arg, ec))
      write_seeds(fs::path(arg));
    break;
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz(data, size);
  ERR_clear_error();
  return 0;
}
