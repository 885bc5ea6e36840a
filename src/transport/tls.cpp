#include "transport/tls.hpp"

#include "net/address.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/verify_context.hpp>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

namespace warren::transport {

namespace ssl = boost::asio::ssl;

namespace {

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  if (e == 0)
    return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

template <class T, void (*Free)(T*)>
struct openssl_deleter {
  void operator()(T* p) const { Free(p); }
};
using x509_ptr = std::unique_ptr<X509, openssl_deleter<X509, X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_deleter<EVP_PKEY, EVP_PKEY_free>>;

/// The first certificate of a PEM file, or why there is none.
expected<x509_ptr> read_certificate(const std::string& cert_file) {
  using result = expected<x509_ptr>;
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(cert_file.c_str(), "r"), &std::fclose);
  if (!f)
    return result::failure("cannot open certificate " + cert_file);
  x509_ptr cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!cert)
    return result::failure("cannot read certificate " + cert_file + ": " + openssl_error());
  return cert;
}

std::optional<std::vector<unsigned char>> sha256_of(X509* cert) {
  std::vector<unsigned char> md(EVP_MAX_MD_SIZE);
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md.data(), &n) != 1)
    return std::nullopt;
  md.resize(n);
  return md;
}

// The TLS 1.3 suites, fastest first: OpenSSL's default order puts
// AES-256-GCM first; AES-128-GCM is ~15% cheaper with AES-NI (openssl speed,
// 16 KiB: 3.95 vs 3.37 GB/s here) and is what Go, BoringSSL and browsers
// prefer. All three stay allowed; a client's order decides.
constexpr const char* k_tls13_suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

void base_context(ssl::context& ctx) {
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_3_VERSION);
  SSL_CTX_set_ciphersuites(ctx.native_handle(), k_tls13_suites);
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_compression);
}

} // namespace

std::string format_fingerprint(const unsigned char* digest, std::size_t size) {
  static const char* hex = "0123456789ABCDEF";
  std::string out = "sha256:";
  for (std::size_t i = 0; i < size; ++i) {
    if (i)
      out += ':';
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

expected<std::vector<unsigned char>> parse_pin(const std::string& text) {
  using result = expected<std::vector<unsigned char>>;
  std::string_view v = text;
  if (v.starts_with("sha256:") || v.starts_with("SHA256:"))
    v.remove_prefix(7);
  std::vector<unsigned char> out;
  int nibble = -1;
  for (char c : v) {
    if (c == ':')
      continue;
    int x = -1;
    if (c >= '0' && c <= '9')
      x = c - '0';
    else if (c >= 'a' && c <= 'f')
      x = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      x = c - 'A' + 10;
    if (x < 0)
      return result::failure("certificate pin is not hex: expected sha256:AB:CD:... (64 hex digits)");
    if (nibble < 0) {
      nibble = x;
    } else {
      out.push_back(static_cast<unsigned char>(nibble * 16 + x));
      nibble = -1;
    }
  }
  if (out.size() != 32 || nibble >= 0)
    return result::failure("certificate pin must be a SHA-256 fingerprint: 64 hex digits after 'sha256:'");
  return out;
}

expected<client_context> make_client_context(const tls_client_options& options) {
  using result = expected<client_context>;
  client_context out;
  out.context = std::make_shared<ssl::context>(ssl::context::tls_client);
  out.report = std::make_shared<verify_report>();
  auto& ctx = *out.context;
  base_context(ctx);
  error_code ec;
  if (!options.pin.empty()) {
    auto pin = parse_pin(options.pin);
    if (!pin)
      return result::failure(pin.error());
    out.pin = *pin;
  } else if (!options.ca_file.empty()) {
    ctx.load_verify_file(options.ca_file, ec);
    if (ec)
      return result::failure("cannot load CA file " + options.ca_file + ": " + ec.message());
  } else {
    ctx.set_default_verify_paths(ec);
    if (ec)
      return result::failure("cannot load the system CA store: " + ec.message());
  }
  if (!options.cert_file.empty()) {
    ctx.use_certificate_chain_file(options.cert_file, ec);
    if (ec)
      return result::failure("cannot load client certificate " + options.cert_file + ": " + ec.message());
    ctx.use_private_key_file(options.key_file.empty() ? options.cert_file : options.key_file, ssl::context::pem, ec);
    if (ec)
      return result::failure("cannot load client key " + options.key_file + ": " + ec.message());
  }
  ctx.set_verify_mode(ssl::verify_peer);
  return out;
}

expected<std::shared_ptr<ssl::context>> make_server_context(const tls_server_options& options) {
  using result = expected<std::shared_ptr<ssl::context>>;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  base_context(*ctx);
  // warren does not resume TLS sessions: no NewSessionTickets after the handshake.
  SSL_CTX_set_num_tickets(ctx->native_handle(), 0);
  error_code ec;
  ctx->use_certificate_chain_file(options.cert_file, ec);
  if (ec)
    return result::failure("cannot load certificate " + options.cert_file + ": " + ec.message());
  ctx->use_private_key_file(options.key_file, ssl::context::pem, ec);
  if (ec)
    return result::failure("cannot load private key " + options.key_file + ": " + ec.message());
  if (!options.client_ca_file.empty()) {
    ctx->load_verify_file(options.client_ca_file, ec);
    if (ec)
      return result::failure("cannot load client CA " + options.client_ca_file + ": " + ec.message());
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  }
  return ctx;
}

expected<std::string> certificate_fingerprint_file(const std::string& cert_file) {
  using result = expected<std::string>;
  auto loaded = read_certificate(cert_file);
  if (!loaded)
    return result::failure(loaded.error());
  x509_ptr cert = std::move(loaded.value());
  auto md = sha256_of(cert.get());
  if (!md)
    return result::failure("cannot hash certificate " + cert_file);
  return format_fingerprint(md->data(), md->size());
}

namespace {

bool is_address(std::string_view n) {
  error_code ec;
  boost::asio::ip::make_address(std::string(n), ec);
  return !ec;
}

/// A name as compared with another: lower case, no trailing dot; an address canonical.
std::string comparable_name(std::string_view n) {
  if (is_address(n))
    return boost::asio::ip::make_address(std::string(n)).to_string();
  std::string out(n);
  if (!out.empty() && out.back() == '.')
    out.pop_back();
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

} // namespace

expected<std::string> certificate_name(std::string_view text) {
  using result = expected<std::string>;
  const std::string shown = "'" + std::string(text.substr(0, 80)) + "'";
  if (is_address(text)) {
    const auto a = boost::asio::ip::make_address(std::string(text));
    if (a.is_unspecified())
      return result::failure("--cert-name " + shown +
                             " is the any-address, which no client connects to: give the "
                             "host's name or an address clients use");
    if (a.is_v6() && a.to_v6().is_v4_mapped())
      return result::failure("--cert-name " + shown + " is an IPv4-mapped address: give " +
                             boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()).to_string() +
                             " instead");
    return a.to_string();
  }
  std::string name(text);
  if (!name.empty() && name.back() == '.')
    name.pop_back();
  if (!net::is_valid_hostname(name))
    return result::failure("--cert-name " + shown + " is not a host name or an address");
  return comparable_name(name);
}

std::vector<std::string> self_signed_names(const std::string& host_name, const std::vector<std::string>& cert_names,
                                           const std::vector<std::string>& listen_hosts) {
  std::vector<std::string> out;
  auto add = [&out](const std::string& n) {
    if (!n.empty() && std::find(out.begin(), out.end(), n) == out.end())
      out.push_back(n);
  };
  if (cert_names.empty())
    add(host_name);
  for (const auto& n : cert_names)
    add(n);
  bool loopback = false;
  for (const auto& h : listen_hosts) {
    error_code ec;
    const auto a = boost::asio::ip::make_address(h, ec);
    const bool wildcard = h == "*" || (!ec && a.is_unspecified());
    loopback = loopback || wildcard || h == "localhost" || (!ec && a.is_loopback());
    if (!wildcard && h != "localhost")
      add(h);
  }
  if (loopback)
    for (const char* n : {"localhost", "127.0.0.1", "::1"})
      add(n);
  return out;
}

expected<std::vector<std::string>> certificate_names_file(const std::string& cert_file) {
  using result = expected<std::vector<std::string>>;
  auto loaded = read_certificate(cert_file);
  if (!loaded)
    return result::failure(loaded.error());
  x509_ptr cert = std::move(loaded.value());
  std::vector<std::string> out;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
    if (g->type == GEN_DNS) {
      const auto* d = g->d.dNSName;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(d)),
                       static_cast<std::size_t>(ASN1_STRING_length(d)));
    } else if (g->type == GEN_IPADD) {
      const auto* ip = g->d.iPAddress;
      const auto* p = ASN1_STRING_get0_data(ip);
      if (ASN1_STRING_length(ip) == 4) {
        boost::asio::ip::address_v4::bytes_type b;
        std::copy(p, p + 4, b.begin());
        out.push_back(boost::asio::ip::address_v4(b).to_string());
      } else if (ASN1_STRING_length(ip) == 16) {
        boost::asio::ip::address_v6::bytes_type b;
        std::copy(p, p + 16, b.begin());
        out.push_back(boost::asio::ip::address_v6(b).to_string());
      }
    }
  }
  GENERAL_NAMES_free(sans);
  return out;
}

expected<generated_certificate> ensure_self_signed(const std::string& state_dir,
                                                   const std::vector<std::string>& asked) {
  // None asked: the loopback names (tests, a server for this host only).
  const std::vector<std::string> names =
      asked.empty() ? std::vector<std::string>{"localhost", "127.0.0.1", "::1"} : asked;
  using result = expected<generated_certificate>;
  namespace fs = std::filesystem;
  generated_certificate out;
  out.cert_file = (fs::path(state_dir) / "cert.pem").string();
  out.key_file = (fs::path(state_dir) / "key.pem").string();
  std::error_code fec;
  // A complete pair is used as it is, without the lock below: the state
  // directory may be read-only (provisioned, a read-only mount), where no
  // lock file can be created. The certificate is renamed into place after
  // the key, so its presence means the pair is complete.
  auto complete_pair = [&]() -> std::optional<expected<generated_certificate>> {
    if (!fs::exists(out.cert_file, fec) || !fs::exists(out.key_file, fec))
      return std::nullopt;
    auto fp = certificate_fingerprint_file(out.cert_file);
    if (!fp)
      return result::failure(fp.error());
    out.fingerprint = *fp;
    auto has = certificate_names_file(out.cert_file);
    if (!has)
      return result::failure(has.error());
    for (const auto& n : names) {
      const auto want = comparable_name(n);
      if (std::none_of(has->begin(), has->end(), [&want](const std::string& h) { return comparable_name(h) == want; }))
        out.missing_names.push_back(n);
    }
    return out;
  };
  if (auto found = complete_pair())
    return std::move(*found);
  const bool created = fs::create_directories(state_dir, fec);
  if (fec)
    return result::failure("cannot create state directory " + state_dir + ": " + fec.message());
  // Only a directory made here is made private: an existing one given as
  // --state-dir (/tmp, a home directory) keeps its mode.
  if (created)
    ::chmod(state_dir.c_str(), 0700);
  // Servers starting together with one state directory take turns: the
  // first generates, the others then find its pair. Each file is written
  // under a temporary name and renamed into place, the key before the
  // certificate, so the certificate's presence means the pair is complete.
  const std::string lock_file = (fs::path(state_dir) / ".lock").string();
  const int lock_fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0)
    return result::failure("cannot open " + lock_file + ": " + std::strerror(errno));
  const std::unique_ptr<int, void (*)(int*)> unlock(new int(lock_fd), [](int* fd) {
    ::close(*fd); // releases the flock
    delete fd;
  });
  while (::flock(lock_fd, LOCK_EX) != 0)
    if (errno != EINTR)
      return result::failure("cannot lock " + lock_file + ": " + std::strerror(errno));
  if (auto found = complete_pair()) // another server made it while we waited
    return std::move(*found);
  // warren writes the key first, so a certificate alone means someone removed
  // the key: a new pair would silently change the fingerprint every client pins.
  if (fs::exists(out.cert_file, fec))
    return result::failure(out.cert_file + " is there but " + out.key_file +
                           " is missing: restore the key, or remove the certificate to generate a new pair (clients "
                           "that pin the old fingerprint will then need the new one)");

  pkey_ptr key(EVP_EC_gen("P-256"));
  if (!key)
    return result::failure("cannot generate a key: " + openssl_error());
  x509_ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  // The CN: the first name that is not an address (never CN=0.0.0.0).
  const auto first_name = std::find_if(names.begin(), names.end(), [](const auto& n) { return !is_address(n); });
  const std::string cn = first_name == names.end() ? "warren" : *first_name;
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  std::string san;
  for (const auto& n : names) {
    if (n.empty() || n == "*" || n.find_first_of(", \t\r\n") != std::string::npos)
      continue; // not a name (the CLI checks --cert-name; this keeps the SAN list well-formed)
    san += (san.empty() ? "" : ",") + std::string(is_address(n) ? "IP:" : "DNS:") + n;
  }
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, san.c_str());
  if (!ext)
    return result::failure("cannot build the certificate's names (" + san + "): " + openssl_error());
  X509_add_ext(cert.get(), ext, -1);
  X509_EXTENSION_free(ext);
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0)
    return result::failure("cannot sign the certificate: " + openssl_error());

  const std::string suffix = ".tmp." + std::to_string(::getpid());
  auto write_pem = [&](const std::string& file, mode_t mode, auto write) -> expected<bool> {
    const std::string tmp = file + suffix;
    // A file left under this name (a crash, a reused pid) or planted there
    // (a symbolic link to a file of ours) goes first; the new one must be
    // ours alone: O_EXCL, and never through a link.
    ::unlink(tmp.c_str());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    int err = fd < 0 ? errno : 0;
    std::unique_ptr<FILE, int (*)(FILE*)> f(fd >= 0 ? ::fdopen(fd, "w") : nullptr, &std::fclose);
    if (fd >= 0 && !f) {
      err = errno;
      ::close(fd);
    }
    bool written = f && write(f.get()) == 1 && std::fflush(f.get()) == 0 && ::fsync(fd) == 0;
    if (f && !written && err == 0)
      err = errno;
    f.reset();
    if (written && ::rename(tmp.c_str(), file.c_str()) != 0) {
      err = errno;
      written = false;
    }
    if (!written) {
      ::unlink(tmp.c_str());
      return expected<bool>::failure("cannot write " + file + ": " + std::strerror(err != 0 ? err : EIO));
    }
    return true;
  };
  if (auto w = write_pem(out.key_file, 0600,
                         [&](FILE* f) { return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr); });
      !w)
    return result::failure(w.error());
  if (auto w = write_pem(out.cert_file, 0644, [&](FILE* f) { return PEM_write_X509(f, cert.get()); }); !w)
    return result::failure(w.error());
  auto md = sha256_of(cert.get());
  out.fingerprint = format_fingerprint(md->data(), md->size());
  out.created = true;
  return out;
}

} // namespace warren::transport
