// TLS for tunnels (OpenSSL 3 through asio::ssl): TLS 1.3 only, contexts for
// client and server, certificate verification by system CA store, a CA file
// or a SHA-256 certificate pin, optional client certificates (mTLS), and a
// self-signed certificate generated once into the server's state directory.
//
// A pin ("sha256:AB:CD:…", colons and case optional) replaces chain and name
// verification for a self-signed server: the leaf certificate's SHA-256 must
// match exactly. Without a pin the chain is verified and the host name is
// checked (SNI is always sent for names). No mode silently skips checks:
// an insecure mode needs an explicit flag at the CLI.
#pragma once

#include "core/error.hpp"
#include "core/expected.hpp"

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace warren::transport {

struct tls_client_options {
  std::string ca_file;   // verify against this CA bundle instead of the system store
  std::string pin;       // "sha256:..." certificate fingerprint; replaces chain + name checks
  std::string cert_file; // client certificate (mTLS)
  std::string key_file;
};

struct tls_server_options {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file; // when set, clients must present a certificate signed by it (mTLS)
};

/// What the verify callback saw, for error messages (shared with the context).
struct verify_report {
  std::string presented_fingerprint; // of the leaf certificate
  std::string failure;               // human reason when verification failed
};

struct client_context {
  std::shared_ptr<boost::asio::ssl::context> context;
  std::shared_ptr<verify_report> report;
  std::optional<std::vector<unsigned char>> pin; // SHA-256 bytes
};

expected<client_context> make_client_context(const tls_client_options& options);
expected<std::shared_ptr<boost::asio::ssl::context>> make_server_context(const tls_server_options& options);

/// Parses "sha256:AB:CD:..." (or bare hex) into 32 bytes.
expected<std::vector<unsigned char>> parse_pin(const std::string& text);

/// "sha256:AB:CD:..." of a PEM certificate file.
expected<std::string> certificate_fingerprint_file(const std::string& cert_file);

struct generated_certificate {
  std::string cert_file;
  std::string key_file;
  std::string fingerprint;
  bool created = false; // false: an existing one was loaded
  /// An existing certificate is kept as it is (clients pin its
  /// fingerprint): the names asked for that it does not carry.
  std::vector<std::string> missing_names;
};

/// A `--cert-name` as the generated certificate carries it: a host name in
/// lower case without a trailing dot (names compare case-insensitively, and
/// `gw.example.` is `gw.example`), an address in its canonical form. An
/// error for what clients cannot connect to (0.0.0.0, ::, an IPv4-mapped
/// address) or what is neither a name nor an address.
expected<std::string> certificate_name(std::string_view text);

/// The names a generated certificate is for: `cert_names` (--cert-name) if
/// any, else `host_name` (gethostname()); then every listen host that is
/// not a wildcard (`*`, 0.0.0.0, ::), names and addresses; then localhost,
/// 127.0.0.1 and ::1 if a listener takes loopback connections (localhost, a
/// loopback address or a wildcard). In that order, no duplicates; the first
/// name that is not an address becomes the CN.
std::vector<std::string> self_signed_names(const std::string& host_name, const std::vector<std::string>& cert_names,
                                           const std::vector<std::string>& listen_hosts);

/// The names (DNS and IP subject alternative names) of a PEM certificate.
expected<std::vector<std::string>> certificate_names_file(const std::string& cert_file);

/// Returns the certificate in `state_dir` (cert.pem / key.pem), creating a
/// self-signed one (EC P-256, 10 years) when none exists, for `names` (the
/// subject alternative names, DNS or IP; CN: the first that is not an
/// address, else "warren"; none given: localhost, 127.0.0.1, ::1). The key
/// file is created mode 0600. An existing pair is used as it is, whatever
/// names it carries (missing_names tells which it lacks).
expected<generated_certificate> ensure_self_signed(const std::string& state_dir, const std::vector<std::string>& names);

std::string format_fingerprint(const unsigned char* digest, std::size_t size);

} // namespace warren::transport
