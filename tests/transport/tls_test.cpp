// Tests of the TLS helpers (src/transport/tls.*) that need no network:
// certificate pins in every accepted spelling and the wrong ones, the
// fingerprint format, the self-signed certificate kept in a state
// directory (created once with a private key file of mode 0600, then
// reused; its fingerprint matches certificate_fingerprint_file), and
// context construction errors that name the file at fault.
#include "transport/tls.hpp"

#include <gtest/gtest.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

using namespace warren;
using namespace warren::transport;
namespace fs = std::filesystem;

namespace {

const std::vector<unsigned char> k_digest = [] {
  std::vector<unsigned char> d(32);
  for (std::size_t i = 0; i < d.size(); ++i)
    d[i] = static_cast<unsigned char>(i * 8 + 5); // 05 0D 15 ... FD
  return d;
}();

std::string hex(const std::vector<unsigned char>& d, bool colons, bool upper) {
  std::string out;
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (colons && i)
      out += ':';
    out += digits[d[i] >> 4];
    out += digits[d[i] & 15];
  }
  return out;
}

/// A fresh directory under the test temp dir, removed at the end.
class temp_dir {
 public:
  temp_dir() {
    std::string pattern = (fs::path(::testing::TempDir()) / "warren-tls-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(Pin, ColonsAndPrefix) {
  auto p = parse_pin("sha256:" + hex(k_digest, true, true));
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(*p, k_digest);
}

TEST(Pin, BareHexWithoutColons) {
  auto p = parse_pin(hex(k_digest, false, true));
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(*p, k_digest);
}

TEST(Pin, CaseDoesNotMatter) {
  auto lower = parse_pin("sha256:" + hex(k_digest, true, false));
  auto upper = parse_pin("SHA256:" + hex(k_digest, false, true));
  ASSERT_TRUE(lower) << lower.error();
  ASSERT_TRUE(upper) << upper.error();
  EXPECT_EQ(*lower, k_digest);
  EXPECT_EQ(*upper, k_digest);
}

TEST(Pin, WrongLength) {
  const std::string full = hex(k_digest, false, true);
  auto short_pin = parse_pin("sha256:" + full.substr(0, 62));
  ASSERT_FALSE(short_pin);
  EXPECT_NE(short_pin.error().find("64 hex digits"), std::string::npos) << short_pin.error();
  EXPECT_FALSE(parse_pin("sha256:" + full + "00")) << "33 bytes";
  EXPECT_FALSE(parse_pin("sha256:" + full.substr(0, 63))) << "an odd number of digits";
  EXPECT_FALSE(parse_pin("sha256:" + full + "0")) << "65 digits";
  EXPECT_FALSE(parse_pin(""));
  EXPECT_FALSE(parse_pin("sha256:"));
}

TEST(Pin, NotHex) {
  std::string bad = hex(k_digest, true, true);
  bad[4] = 'G';
  auto p = parse_pin("sha256:" + bad);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().find("not hex"), std::string::npos) << p.error();
  EXPECT_FALSE(parse_pin("sha1:" + hex(k_digest, true, true))) << "another algorithm";
  EXPECT_FALSE(parse_pin("sha256: " + hex(k_digest, true, true))) << "a space";
}

TEST(Pin, FormatRoundTrips) {
  const auto text = format_fingerprint(k_digest.data(), k_digest.size());
  EXPECT_EQ(text, "sha256:" + hex(k_digest, true, true));
  auto back = parse_pin(text);
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(*back, k_digest);
}

TEST(SelfSigned, CreatesOnceThenReuses) {
  temp_dir dir;
  const auto state = (dir.path() / "state").string(); // does not exist yet
  auto first = ensure_self_signed(state, {"gw.example", "192.0.2.10"});
  ASSERT_TRUE(first) << first.error();
  EXPECT_TRUE(first->created);
  EXPECT_EQ(first->cert_file, (fs::path(state) / "cert.pem").string());
  EXPECT_EQ(first->key_file, (fs::path(state) / "key.pem").string());
  EXPECT_TRUE(fs::exists(first->cert_file));
  EXPECT_TRUE(fs::exists(first->key_file));

  struct stat st {};
  ASSERT_EQ(::stat(first->key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << std::oct << (st.st_mode & 0777);
  ASSERT_EQ(::stat(state.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u) << "the state directory is open to others: " << std::oct << (st.st_mode & 0777);

  auto fp = certificate_fingerprint_file(first->cert_file);
  ASSERT_TRUE(fp) << fp.error();
  EXPECT_EQ(*fp, first->fingerprint);
  auto pin = parse_pin(first->fingerprint);
  EXPECT_TRUE(pin) << "the printed fingerprint is not a valid --pin: " << pin.error();

  std::ifstream cert_in(first->cert_file);
  const std::string cert_text((std::istreambuf_iterator<char>(cert_in)), std::istreambuf_iterator<char>());
  EXPECT_NE(cert_text.find("BEGIN CERTIFICATE"), std::string::npos);

  auto second = ensure_self_signed(state, {"other.example"});
  ASSERT_TRUE(second) << second.error();
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->fingerprint, first->fingerprint);
  std::ifstream again(first->cert_file);
  const std::string cert_again((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>());
  EXPECT_EQ(cert_again, cert_text) << "the certificate was rewritten";

  // A server context loads the pair.
  auto ctx = make_server_context({first->cert_file, first->key_file, {}});
  EXPECT_TRUE(ctx) << ctx.error();
}

TEST(SelfSigned, TwoDirectoriesTwoCertificates) {
  temp_dir dir;
  auto a = ensure_self_signed((dir.path() / "a").string(), {});
  auto b = ensure_self_signed((dir.path() / "b").string(), {});
  ASSERT_TRUE(a) << a.error();
  ASSERT_TRUE(b) << b.error();
  EXPECT_NE(a->fingerprint, b->fingerprint);
}

TEST(SelfSigned, CorruptCertificateIsAnError) {
  temp_dir dir;
  std::ofstream(dir.path() / "cert.pem") << "not a certificate\n";
  std::ofstream(dir.path() / "key.pem") << "not a key\n";
  auto r = ensure_self_signed(dir.path().string(), {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("cert.pem"), std::string::npos) << r.error();
}

TEST(SelfSigned, ACertificateWithoutItsKeyIsAnErrorNotANewPair) {
  // Review of issue 10: a certificate whose key was removed was replaced by
  // a new pair without a word, and every client pinning it then failed.
  temp_dir dir;
  auto first = ensure_self_signed(dir.path().string(), {});
  ASSERT_TRUE(first) << first.error();
  fs::remove(first->key_file);
  auto again = ensure_self_signed(dir.path().string(), {});
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().find("key.pem is missing"), std::string::npos) << again.error();
  auto fp = certificate_fingerprint_file(first->cert_file);
  ASSERT_TRUE(fp) << fp.error();
  EXPECT_EQ(*fp, first->fingerprint) << "the certificate was replaced";
}

TEST(SelfSigned, ACompletePairIsUsedWhereNoLockCanBeTaken) {
  // A provisioned or read-only state directory holds a complete pair, and
  // no lock file can be made there (here: `.lock` is a directory, which
  // refuses even root). The pair is used; the server refused to start.
  temp_dir made;
  auto pair = ensure_self_signed((made.path() / "s").string(), {});
  ASSERT_TRUE(pair) << pair.error();
  temp_dir dir;
  fs::copy_file(pair->cert_file, dir.path() / "cert.pem");
  fs::copy_file(pair->key_file, dir.path() / "key.pem");
  fs::create_directory(dir.path() / ".lock");
  auto r = ensure_self_signed(dir.path().string(), {});
  ASSERT_TRUE(r) << r.error();
  EXPECT_FALSE(r->created);
  EXPECT_EQ(r->fingerprint, pair->fingerprint);
}

TEST(SelfSigned, AnExistingDirectoryKeepsItsMode) {
  // `--state-dir /tmp` (mode 1777) was made 0700, sticky bit and all gone,
  // at every start. A directory warren creates is still private.
  temp_dir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 01777), 0);
  auto r = ensure_self_signed(dir.path().string(), {});
  ASSERT_TRUE(r) << r.error();
  EXPECT_TRUE(r->created);
  struct stat st {};
  ASSERT_EQ(::stat(dir.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u) << std::oct << (st.st_mode & 07777);
  auto again = ensure_self_signed(dir.path().string(), {});
  ASSERT_TRUE(again) << again.error();
  ASSERT_EQ(::stat(dir.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u) << std::oct << (st.st_mode & 07777);
}

TEST(SelfSigned, APlantedTemporaryLinkIsNotFollowed) {
  // The temporary name is predictable (the pid): a symbolic link planted
  // there made warren truncate the file it points to and write the private
  // key into it.
  temp_dir dir;
  const auto victim = dir.path() / "victim";
  std::ofstream(victim) << "precious\n";
  const auto state = dir.path() / "state";
  fs::create_directory(state);
  const std::string pid = std::to_string(::getpid());
  fs::create_symlink(victim, state / ("key.pem.tmp." + pid));
  fs::create_symlink(victim, state / ("cert.pem.tmp." + pid));
  auto r = ensure_self_signed(state.string(), {});
  ASSERT_TRUE(r) << r.error();
  std::ifstream in(victim);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "precious\n");
  EXPECT_FALSE(fs::is_symlink(r->key_file));
  EXPECT_FALSE(fs::exists(state / ("key.pem.tmp." + pid)));
  struct stat st {};
  ASSERT_EQ(::stat(r->key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << std::oct << (st.st_mode & 0777);
}

TEST(Fingerprint, MissingFile) {
  auto r = certificate_fingerprint_file("/nonexistent/warren/cert.pem");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("/nonexistent/warren/cert.pem"), std::string::npos) << r.error();
}

TEST(Contexts, ErrorsNameTheFile) {
  auto server = make_server_context({"/nonexistent/cert.pem", "/nonexistent/key.pem", {}});
  ASSERT_FALSE(server);
  EXPECT_NE(server.error().find("/nonexistent/cert.pem"), std::string::npos) << server.error();

  tls_client_options ca;
  ca.ca_file = "/nonexistent/ca.pem";
  auto client = make_client_context(ca);
  ASSERT_FALSE(client);
  EXPECT_NE(client.error().find("/nonexistent/ca.pem"), std::string::npos) << client.error();

  tls_client_options bad_pin;
  bad_pin.pin = "sha256:1234";
  auto pinned = make_client_context(bad_pin);
  ASSERT_FALSE(pinned);
  EXPECT_NE(pinned.error().find("pin"), std::string::npos) << pinned.error();

  tls_client_options good_pin;
  good_pin.pin = format_fingerprint(k_digest.data(), k_digest.size());
  auto ok = make_client_context(good_pin);
  ASSERT_TRUE(ok) << ok.error();
  ASSERT_TRUE(ok->pin);
  EXPECT_EQ(*ok->pin, k_digest);
}

} // namespace

TEST(SelfSigned, NamesAreTheHostAndTheListenAddressesNeverAWildcard) {
  // wss://*:443: the host name, and loopback (a wildcard listens there too).
  EXPECT_EQ(self_signed_names("gw", {}, {"*"}), (std::vector<std::string>{"gw", "localhost", "127.0.0.1", "::1"}));
  EXPECT_EQ(self_signed_names("gw", {}, {"0.0.0.0", "::"}),
            (std::vector<std::string>{"gw", "localhost", "127.0.0.1", "::1"}));
  // A public address and a name are named as such; no loopback.
  EXPECT_EQ(self_signed_names("gw", {}, {"203.0.113.7", "gw.example"}),
            (std::vector<std::string>{"gw", "203.0.113.7", "gw.example"}));
  EXPECT_EQ(self_signed_names("gw", {}, {"localhost"}),
            (std::vector<std::string>{"gw", "localhost", "127.0.0.1", "::1"}));
  // --cert-name replaces the host name; listen addresses stay.
  EXPECT_EQ(self_signed_names("gw", {"tunnel.example", "alt.example"}, {"203.0.113.7"}),
            (std::vector<std::string>{"tunnel.example", "alt.example", "203.0.113.7"}));
  EXPECT_EQ(self_signed_names("", {}, {"::1"}), (std::vector<std::string>{"::1", "localhost", "127.0.0.1"}));
}

TEST(SelfSigned, CertNamesAreLowerCaseWithoutTrailingDotAndAddressesClientsUse) {
  EXPECT_EQ(certificate_name("GW.Example.COM.").value(), "gw.example.com");
  EXPECT_EQ(certificate_name("gw").value(), "gw");
  EXPECT_EQ(certificate_name("2001:DB8:0::1").value(), "2001:db8::1");
  EXPECT_EQ(certificate_name("203.0.113.7").value(), "203.0.113.7");
  for (const char* bad : {"0.0.0.0", "::", "0::0"}) {
    auto n = certificate_name(bad);
    ASSERT_FALSE(n) << bad;
    EXPECT_NE(n.error().find("any-address"), std::string::npos) << n.error();
  }
  auto mapped = certificate_name("::ffff:1.2.3.4");
  ASSERT_FALSE(mapped);
  EXPECT_NE(mapped.error().find("give 1.2.3.4 instead"), std::string::npos) << mapped.error();
  EXPECT_FALSE(certificate_name("gw..example"));
  EXPECT_FALSE(certificate_name("."));
  EXPECT_FALSE(certificate_name(""));
  EXPECT_FALSE(certificate_name("a b"));
}

TEST(SelfSigned, AKeptCertificateNamesCompareCaseInsensitively) {
  temp_dir dir;
  const auto state = (dir.path() / "s").string();
  ASSERT_TRUE(ensure_self_signed(state, {"gw.example.com", "2001:db8::1"}));
  auto again = ensure_self_signed(state, {"GW.Example.COM.", "2001:DB8:0::1"});
  ASSERT_TRUE(again) << again.error();
  EXPECT_TRUE(again->missing_names.empty()) << again->missing_names.front();
  auto other = ensure_self_signed(state, {"other.example"});
  ASSERT_TRUE(other) << other.error();
  EXPECT_EQ(other->missing_names, std::vector<std::string>{"other.example"});
}

TEST(SelfSigned, TheCommonNameIsNeverAnAddress) {
  temp_dir dir;
  auto made = ensure_self_signed((dir.path() / "s").string(), {"203.0.113.7", "gw.example", "::1"});
  ASSERT_TRUE(made) << made.error();
  auto names = certificate_names_file(made->cert_file);
  ASSERT_TRUE(names) << names.error();
  EXPECT_EQ(*names, (std::vector<std::string>{"203.0.113.7", "gw.example", "::1"}));
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(made->cert_file.c_str(), "r"), &std::fclose);
  X509* cert = PEM_read_X509(f.get(), nullptr, nullptr, nullptr);
  ASSERT_NE(cert, nullptr);
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  X509_free(cert);
  EXPECT_STREQ(cn, "gw.example");

  auto only_addresses = ensure_self_signed((dir.path() / "t").string(), {"0.0.0.0", "203.0.113.7"});
  ASSERT_TRUE(only_addresses) << only_addresses.error();
  std::unique_ptr<FILE, int (*)(FILE*)> g(std::fopen(only_addresses->cert_file.c_str(), "r"), &std::fclose);
  cert = PEM_read_X509(g.get(), nullptr, nullptr, nullptr);
  ASSERT_NE(cert, nullptr);
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  X509_free(cert);
  EXPECT_STREQ(cn, "warren");
}

TEST(SelfSigned, AnExistingCertificateIsKeptAndSaysWhichNamesItLacks) {
  temp_dir dir;
  const auto state = (dir.path() / "s").string();
  auto first = ensure_self_signed(state, {"gw.example", "203.0.113.7"});
  ASSERT_TRUE(first) << first.error();
  EXPECT_TRUE(first->missing_names.empty());
  auto same = ensure_self_signed(state, {"gw.example", "203.0.113.7"});
  ASSERT_TRUE(same) << same.error();
  EXPECT_TRUE(same->missing_names.empty());
  auto other = ensure_self_signed(state, {"gw.example", "tunnel.example", "2001:db8:0::1"});
  ASSERT_TRUE(other) << other.error();
  EXPECT_FALSE(other->created);
  EXPECT_EQ(other->fingerprint, first->fingerprint) << "kept: clients pin it";
  EXPECT_EQ(other->missing_names, (std::vector<std::string>{"tunnel.example", "2001:db8:0::1"}));
}
