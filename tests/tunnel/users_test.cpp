// Tests of the server's access files and their reload (src/tunnel/users.*,
// src/tunnel/server_access.*): the users file (TOML) with every credential
// form, its errors with line and column (unknown keys, duplicates, bad
// rules), the allow file, load_access() on real files (permissions, token
// files relative to the users file, all-or-nothing errors, the certificate)
// and diff_access() / describe_reload() for what a reload changes.
#include "tunnel/server_access.hpp"
#include "tunnel/users.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace warren;
using namespace warren::tunnel;

namespace {

// printf %s test | sha256sum
constexpr const char* k_test_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

users_file parse_ok(std::string_view text) {
  auto r = parse_users_file(text, "users.toml");
  EXPECT_TRUE(r) << r.error();
  return r ? *r : users_file{};
}

std::string parse_error(std::string_view text) {
  auto r = parse_users_file(text, "users.toml");
  EXPECT_FALSE(r) << text;
  return r ? std::string() : r.error();
}

} // namespace

TEST(UsersFileTest, ParsesEveryCredentialAndRules) {
  const auto f = parse_ok("\xEF\xBB\xBF"
                          R"(
# two people and a robot
[[user]]
name = "alice"
token_sha256 = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
allow = ["10.0.0.0/8:22", "db.internal:5432"]

  [[ user ]]   # spaces inside the brackets
name = "bob"
token_file = 'C:\bob.token'

[[user]]
name = "ci-robot@build"
token = "s3cret\"quoted"
allow = [
  # none yet
]
)");
  ASSERT_EQ(f.users.size(), 3u);
  EXPECT_TRUE(f.holds_tokens);
  EXPECT_EQ(f.users[0].name, "alice");
  EXPECT_EQ(f.users[0].kind, user_entry::credential::sha256);
  EXPECT_EQ(f.users[0].secret, k_test_sha256) << "stored lowercase";
  ASSERT_TRUE(f.users[0].allow);
  ASSERT_EQ(f.users[0].allow->size(), 2u);
  EXPECT_EQ((*f.users[0].allow)[1].text, "db.internal:5432");
  EXPECT_EQ(f.users[0].line, 3);
  EXPECT_EQ(f.users[1].kind, user_entry::credential::file);
  EXPECT_EQ(f.users[1].secret, "C:\\bob.token") << "a 'literal string' keeps its backslashes";
  EXPECT_EQ(f.users[2].secret, "s3cret\"quoted");
  EXPECT_FALSE(f.users[1].allow) << "no allow: the server's rules";
  EXPECT_EQ(f.users[2].kind, user_entry::credential::token);
  ASSERT_TRUE(f.users[2].allow);
  EXPECT_TRUE(f.users[2].allow->empty()) << "allow = []: nothing";
}

TEST(UsersFileTest, DigestsOnlyDoNotMakeTheFileSecret) {
  const auto f = parse_ok("[[user]]\nname = \"a\"\ntoken_sha256 = \"" + std::string(k_test_sha256) + "\"\n");
  EXPECT_FALSE(f.holds_tokens);
}

TEST(UsersFileTest, ErrorsNameLineAndColumn) {
  EXPECT_EQ(parse_error("[[user]]\nname = \"a\"\ntoken = \"x\"\nalow = [\"*\"]\n"),
            "users.toml:4:1: unknown key 'alow' (a user has name, token / token_sha256 / token_file, allow)");
  EXPECT_EQ(parse_error("[users]\nname = \"a\"\n"),
            "users.toml:1:1: expected [[user]] (the file holds [[user]] tables)");
  EXPECT_EQ(parse_error("name = \"a\"\n"), "users.toml:1:1: 'name' outside a [[user]] table");
  EXPECT_EQ(parse_error("[[user]]\nname = \"a\" x\n"), "users.toml:2:12: expected the end of the line, found 'x'");
  EXPECT_EQ(parse_error("[[user]]\nname = \"a\"\nname = \"b\"\n"), "users.toml:3:1: name given twice (also on line 2)");
  EXPECT_EQ(parse_error("[[user]]\nallow = [\"*\",\n"), "users.toml:2:9: a list without its closing ']'");
  EXPECT_EQ(parse_error("[[user]]\nname = \"a\\q\"\n"),
            "users.toml:2:10: unsupported escape in a string (use 'single quotes' for text with backslashes)");
  EXPECT_EQ(parse_error("[[user]]\nname = \"a\"\ntoken = \"x\"\n[[user]]\nname = \"a\"\ntoken = \"y\"\n"),
            "users.toml:4:1: user a is defined twice (also on line 1)");
  EXPECT_EQ(parse_error("[[user]]\nname = \"a\"\ntoken = \"x\"\n[[user]]\nname = \"b\"\ntoken = \"x\"\n"),
            "users.toml:4:1: user b has the same token as user a; each user needs a token of their own");
  EXPECT_EQ(parse_error("[[user]]\nname = \"a\"\ntoken = \"x\"\nallow = [\"10.0.0.0/33\"]\n").substr(0, 20),
            "users.toml:4:10: --a");
  EXPECT_NE(parse_error("[[user]]\nname = \"a\"\ntoken = \"x\"\ntoken_file = \"f\"\n")
                .find("users.toml:4:1: a user has one of"),
            std::string::npos);
  EXPECT_EQ(parse_error("[[user]]\nname = \"a\"\n"), "users.toml:1:1: user a has no token, token_sha256 or token_file");
  EXPECT_EQ(parse_error("[[user]]\ntoken = \"x\"\n"), "users.toml:1:1: a [[user]] without a name");
  EXPECT_NE(parse_error("[[user]]\nname = \"a b\"\ntoken = \"x\"\n").find("users.toml:2:1: user name 'a b' is not"),
            std::string::npos);
  EXPECT_NE(parse_error("[[user]]\nname = \"a\"\ntoken_sha256 = \"abc\"\n").find("64 hex digits"), std::string::npos);
  EXPECT_NE(parse_error("[[user]]\nname = \"a\"\ntoken = \"two words\"\n").find("without spaces"), std::string::npos);
  EXPECT_NE(parse_error("[[user]]\nname = [\"a\"]\ntoken = \"x\"\n").find("name must be a string"), std::string::npos);
  EXPECT_EQ(parse_error("user = 3\n"), "users.toml:1:1: 'user' outside a [[user]] table");
  EXPECT_EQ(parse_error("[[user]]\nname = \"a\"\ntoken = 3\n"), "users.toml:3:1: token must be a string");
  EXPECT_EQ(parse_error("[[user]]\nname = \"a\"\ntoken = \"x\"\nallow = [1]\n").substr(0, 36),
            "users.toml:4:1: allow must be a list");
  EXPECT_EQ(parse_error(""), "users.toml: no [[user]] in the file");
  // What fuzz_users found in toml++ 3.3 (an assertion, an unreachable branch): plain errors here.
  EXPECT_EQ(parse_error("# c\n[::1]:\n"), "users.toml:2:2: expected a key, found ':'");
  EXPECT_EQ(parse_error("[[[user]]]\n"), "users.toml:1:3: expected a key, found '['");
  EXPECT_EQ(parse_error("\xEF\xB7\xBF"), "users.toml:1:1: expected a key, found U+FDFF");
  EXPECT_EQ(parse_error("[[user]]\nname = \"\xC3\x28\"\n"), "users.toml:2:9: invalid UTF-8 (the file must be UTF-8 text)");
  // An unterminated string.
  EXPECT_TRUE(parse_error("[[user]]\nname = \"a\ntoken = \"x\"\n").starts_with("users.toml:2:"))
      << "unterminated string";
}

TEST(AllowFileTest, OneRulePerLineWithComments) {
  auto r = parse_allow_file("# office\n10.0.0.0/8:22\n\n  db.internal:5432   # the database\r\n*.example.org:443\n",
                            "allow.txt");
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[1].text, "db.internal:5432");
  auto bad = parse_allow_file("10.0.0.0/8\n10.0.0.0/99\n", "allow.txt");
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().starts_with("allow.txt:2: --allow '10.0.0.0/99'")) << bad.error();
  auto two = parse_allow_file("10.0.0.0/8 192.168.0.0/16\n", "allow.txt");
  ASSERT_FALSE(two);
  EXPECT_TRUE(two.error().starts_with("allow.txt:1: one rule per line")) << two.error();
  auto empty = parse_allow_file("# nothing yet\n", "allow.txt");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() / ("warren-access-" + std::to_string(::getpid()) + "-" +
                                                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text, unsigned mode = 0600) {
    const auto path = (dir / name).string();
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
    return path;
  }
  expected<server_access> load(const access_sources& s) {
    warnings.clear();
    return load_access(s, warnings);
  }
  std::filesystem::path dir;
  std::vector<std::string> warnings;
};

TEST_F(AccessTest, UsersTokenFileAndRules) {
  write("bob.token", "bob-token\n");
  access_sources s;
  s.users_file = write("users.toml", "[[user]]\nname = \"alice\"\ntoken_sha256 = \"" + std::string(k_test_sha256) +
                                         "\"\nallow = [\"127.0.0.1:22\"]\n[[user]]\nname = \"bob\"\n"
                                         "token_file = \"bob.token\"\n");
  s.token_file = write("default.token", "default-token  \n");
  s.allow = {"10.0.0.0/8"};
  s.allow_file = write("allow.txt", "192.168.0.0/16 # lan\n");
  auto a = load(s);
  ASSERT_TRUE(a) << a.error();
  EXPECT_EQ(a->users->users().size(), 3u);
  EXPECT_EQ(a->users->match("test"), "alice");
  EXPECT_EQ(a->users->match("bob-token"), "bob") << "token_file relative to the users file";
  EXPECT_EQ(a->users->match("default-token"), k_default_user) << "--token-file is the user 'default'";
  EXPECT_FALSE(a->users->match("nobody"));
  EXPECT_EQ(a->policy->rules().size(), 2u) << "--allow and --allow-file together";
  EXPECT_EQ(a->policy_for("alice")->rules().size(), 1u) << "alice has her own rules";
  EXPECT_EQ(a->policy_for("bob"), a->policy) << "bob gets the server's";
  EXPECT_TRUE(warnings.empty());
}

TEST_F(AccessTest, PlainTokensNeedAPrivateFile) {
  access_sources s;
  s.users_file = write("users.toml", "[[user]]\nname = \"a\"\ntoken = \"x\"\n", 0644);
  auto a = load(s);
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().find("holds tokens and is readable by other users (mode 0644): chmod 600 it"), std::string::npos)
      << a.error();
  // Digests only: the file may be readable.
  s.users_file =
      write("users.toml", "[[user]]\nname = \"a\"\ntoken_sha256 = \"" + std::string(k_test_sha256) + "\"\n", 0644);
  EXPECT_TRUE(load(s));
  // A token file readable by others: accepted with a warning (as --token-file always was).
  s.users_file.clear();
  s.token_file = write("t", "x\n", 0644);
  ASSERT_TRUE(load(s));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("readable by other users"), std::string::npos);
}

TEST_F(AccessTest, AnyErrorFailsTheWholeLoad) {
  access_sources s;
  s.token_env = "env-token";
  EXPECT_TRUE(load(s));
  s.allow_file = (dir / "missing.txt").string();
  auto a = load(s);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), "cannot read allow file " + s.allow_file + ": No such file or directory");
  s.allow_file.clear();
  s.users_file = write("users.toml", "[[user]]\nname = \"default\"\ntoken = \"other\"\n");
  a = load(s);
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().find("user default is defined twice"), std::string::npos) << a.error();
  s.users_file = write("users.toml", "[[user]]\nname = \"b\"\ntoken = \"env-token\"\n");
  a = load(s);
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().find("has the same token as another user"), std::string::npos) << a.error();
  access_sources none;
  a = load(none);
  ASSERT_FALSE(a);
  EXPECT_TRUE(a.error().starts_with("no users: pass --users-file FILE or --token-file FILE")) << a.error();
  s = {};
  s.token_env = "x";
  s.uses_tls = true;
  s.tls.cert_file = (dir / "none.pem").string();
  s.tls.key_file = (dir / "none.key").string();
  EXPECT_FALSE(load(s)) << "a certificate that cannot be read";
}

TEST_F(AccessTest, DiffSaysWhatAReloadChanges) {
  access_sources s;
  s.users_file = write("users.toml", "[[user]]\nname = \"alice\"\ntoken = \"a1\"\n[[user]]\nname = \"bob\"\n"
                                     "token = \"b1\"\n[[user]]\nname = \"carol\"\ntoken = \"c1\"\n");
  s.allow = {"10.0.0.0/8"};
  auto before = load(s);
  ASSERT_TRUE(before) << before.error();
  EXPECT_EQ(describe_reload(diff_access(*before, *before), *before), "3 users, 1 allow rule (unchanged)");
  // bob removed, carol's token changed, alice gets rules, dave added.
  write("users.toml", "[[user]]\nname = \"alice\"\ntoken = \"a1\"\nallow = [\"127.0.0.1:22\"]\n[[user]]\n"
                      "name = \"carol\"\ntoken = \"c2\"\n[[user]]\nname = \"dave\"\ntoken = \"d1\"\n");
  s.allow_file = write("allow.txt", "192.168.0.0/16\n");
  auto after = load(s);
  ASSERT_TRUE(after) << after.error();
  const auto c = diff_access(*before, *after);
  EXPECT_EQ(c.added, std::vector<std::string>{"dave"});
  EXPECT_EQ(c.revoked, (std::vector<std::string>{"carol", "bob"}));
  EXPECT_EQ(c.rules_changed, std::vector<std::string>{"alice"});
  EXPECT_TRUE(c.policy_changed);
  EXPECT_FALSE(c.certificate_replaced);
  EXPECT_EQ(describe_reload(c, *after),
            "3 users (1 added: dave; 2 revoked: carol, bob; 1 with new rules: alice), 2 allow rules (changed)");
}

namespace {

class FileCheckTest : public AccessTest {
 protected:
  /// The error load() gives for a token file at `path`.
  std::string token_file_error(const std::string& path) {
    access_sources s;
    s.token_file = path;
    auto a = load(s);
    EXPECT_FALSE(a);
    return a ? std::string() : a.error();
  }
};

// A users file's token_file that cannot be read leaves that user out (it is
// revoked until the file can be read) and the rest applies: an unrelated
// user's file never blocks a reload, and so a revocation.
TEST_F(AccessTest, AnUnreadableTokenFileRevokesOnlyItsUser) {
  write("bob.token", "bob-token\n");
  access_sources s;
  s.users_file = write("users.toml", "[[user]]\nname = \"bob\"\ntoken_file = \"bob.token\"\n[[user]]\n"
                                     "name = \"carol\"\ntoken_file = \"gone.token\"\n[[user]]\nname = \"dave\"\n"
                                     "token = \"dave-token\"\n");
  std::vector<std::string> errors;
  auto a = load_access(s, warnings, errors);
  ASSERT_TRUE(a) << a.error();
  EXPECT_EQ(a->users->users().size(), 2u);
  EXPECT_EQ(a->users->match("bob-token"), "bob");
  EXPECT_EQ(a->users->find("carol"), nullptr);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], s.users_file + ":4: user carol: cannot read token file " + (dir / "gone.token").string() +
                           ": No such file or directory: revoked until it can be read");
  // Syntax errors still fail the whole load.
  write("users.toml", "[[user]]\nname = \"bob\"\ntoken_fil = \"bob.token\"\n");
  EXPECT_FALSE(load(s));
  // With nobody left: no users at all.
  write("users.toml", "[[user]]\nname = \"carol\"\ntoken_file = \"gone.token\"\n");
  a = load(s);
  ASSERT_FALSE(a);
  EXPECT_TRUE(a.error().starts_with("no users")) << a.error();
}

// Every file the server reads is opened without waiting and must be a
// regular file: a FIFO would freeze the server, /dev/zero fail every reload.
TEST_F(FileCheckTest, OnlyRegularFiles) {
  const auto fifo = (dir / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(token_file_error(fifo), "token file " + fifo + " is not a regular file (a FIFO, device or socket)");
  const auto zero = (dir / "zero").string();
  std::filesystem::create_symlink("/dev/zero", zero);
  EXPECT_EQ(token_file_error(zero), "token file " + zero + " is not a regular file (a FIFO, device or socket)");
  EXPECT_EQ(token_file_error(dir.string()), "token file " + dir.string() + " is a directory");
  // A symlink to a regular file is followed (certbot's live/ paths).
  const auto real = write("real.token", "tok\n");
  std::filesystem::create_symlink(real, dir / "link.token");
  access_sources s;
  s.token_file = (dir / "link.token").string();
  EXPECT_TRUE(load(s));
  // The users file, allow file and TLS files the same.
  s.users_file = fifo;
  auto a = load(s);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), "users file " + fifo + " is not a regular file (a FIFO, device or socket)");
  s.users_file.clear();
  s.allow_file = zero;
  a = load(s);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), "allow file " + zero + " is not a regular file (a FIFO, device or socket)");
  s.allow_file.clear();
  s.uses_tls = true;
  s.tls.cert_file = fifo;
  s.tls.key_file = fifo;
  a = load(s);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), "TLS file " + fifo + " is not a regular file (a FIFO, device or socket)");
}

// As ssh's StrictModes: a file anyone may write is refused, one its group
// may write is a warning.
TEST_F(FileCheckTest, WritableByOthers) {
  const auto users =
      write("users.toml", "[[user]]\nname = \"a\"\ntoken_sha256 = \"" + std::string(k_test_sha256) + "\"\n", 0666);
  access_sources s;
  s.users_file = users;
  auto a = load(s);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), "users file " + users + " is writable by every user (mode 0666): chmod o-w it");
  ::chmod(users.c_str(), 0664);
  ASSERT_TRUE(load(s));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], "users file " + users + " is writable by its group (mode 0664); chmod g-w it");
  const auto allow = write("allow.txt", "10.0.0.0/8\n", 0602);
  s.allow_file = allow;
  EXPECT_FALSE(load(s));
  EXPECT_NE(token_file_error(write("t.token", "tok\n", 0622)).find("is writable by every user (mode 0622)"),
            std::string::npos);
}

// A token file holds what `token =` may: printable, no spaces, no BOM.
TEST_F(FileCheckTest, TokenFileContentsAreChecked) {
  EXPECT_EQ(token_file_error(write("e.token", "\n")), "token file " + (dir / "e.token").string() + " is empty");
  EXPECT_NE(token_file_error(write("s.token", "two words\n")).find("printable characters without spaces"),
            std::string::npos);
  EXPECT_NE(token_file_error(write("n.token", std::string("to\0k\n", 5))).find("printable characters"),
            std::string::npos);
  EXPECT_NE(token_file_error(write("b.token", "\xEF\xBB\xBFtok\n")).find("byte order mark"), std::string::npos);
  access_sources s;
  s.token_file = write("ok.token", "tok  \r\n");
  EXPECT_TRUE(load(s));
}

// What a file holds is echoed escaped: no line breaks or terminal controls
// reach the log.
TEST_F(AccessTest, ErrorsEchoFileTextEscaped) {
  access_sources s;
  s.users_file = write("users.toml", "[[user]]\nname = \"x\\n2026 INFO forged\\r\u0085\"\ntoken = \"t\"\n");
  auto a = load(s);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().find_first_of("\r\n"), std::string::npos) << a.error();
  EXPECT_NE(a.error().find("x\\x0a2026 INFO forged\\x0d\xc2\\x85"), std::string::npos) << a.error();
  EXPECT_EQ(printable("a\x1b[31m\x9b\x7f\xc3\xa9"), "a\\x1b[31m\\x9b\\x7f\xc3\xa9");
}

// A reload line names at most 10 users of each kind.
TEST_F(AccessTest, ReloadLineListsTenNames) {
  std::string before_text;
  std::string after_text;
  for (int i = 0; i < 25; ++i)
    before_text += "[[user]]\nname = \"u" + std::to_string(i) + "\"\ntoken = \"t" + std::to_string(i) + "\"\n";
  after_text = "[[user]]\nname = \"u0\"\ntoken = \"t0\"\n";
  access_sources s;
  s.users_file = write("users.toml", before_text);
  auto before = load(s);
  ASSERT_TRUE(before) << before.error();
  write("users.toml", after_text);
  auto after = load(s);
  ASSERT_TRUE(after) << after.error();
  EXPECT_EQ(describe_reload(diff_access(*before, *after), *after),
            "1 users (24 revoked: u1, u2, u3, u4, u5, u6, u7, u8, u9, u10 and 14 more), 0 allow rules (unchanged)");
}

} // namespace
