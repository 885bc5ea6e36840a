// The config schema (cli/config_schema.*): keys read from the subcommands'
// own CLI11 options, a section turned into the argv those options parse,
// CLI11's errors mapped back to the key's line:column, secrets refused.
#include "cli/config_schema.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace warren::cli {
namespace {

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(ConfigSchemaTest, KeysComeFromTheCommands) {
  const auto client = config_keys("client");
  for (const char* k : {"url", "token_file", "local", "dynamic", "insecure_token", "proxy_password_file"})
    EXPECT_TRUE(has(client, k)) << k;
  EXPECT_FALSE(has(client, "help"));
  const auto relay = config_keys("relay");
  EXPECT_TRUE(has(relay, "listen") && has(relay, "target") && has(relay, "udp"));
  EXPECT_TRUE(has(config_keys("server"), "max_streams_per_client"));
}

TEST(ConfigSchemaTest, SectionBecomesArgv) {
  const auto r = check_config("[[client]]\nname = \"a\"\nurl = \"wss://h:1/\"\ntoken-file = \"/t\"\n"
                              "local = [\"1:h:2\", \"3:h:4\"]\ninsecure_token = false\n"
                              "[[relay]]\nname = \"r\"\nlisten = \"localhost:1\"\ntarget = \"h:2\"\nudp = true\n"
                              "[[server]]\nname = \"s\"\nmax_clients = 5\n",
                              "c.toml");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front();
  ASSERT_EQ(r.units.size(), 3u);
  EXPECT_EQ(r.units[0].args,
            (std::vector<std::string>{"--token-file=/t", "--local=1:h:2", "--local=3:h:4", "--", "wss://h:1/"}));
  EXPECT_EQ(r.units[1].args, (std::vector<std::string>{"--udp", "--", "localhost:1", "h:2"}));
  EXPECT_EQ(r.units[2].args, (std::vector<std::string>{"--max-clients=5"}));
  EXPECT_EQ(config_summary(r.units), "3 units: client a, relay r, server s");
}

TEST(ConfigSchemaTest, Errors) {
  const auto errors = [](std::string_view text) { return check_config(text, "c.toml").errors; };
  EXPECT_EQ(errors("[[server]]\nname = \"s\"\nmax_clients = 0\n").at(0).substr(0, 13), "c.toml:3:15: ")
      << "CLI11's range check, at the value";
  EXPECT_EQ(errors("[[client]]\nname = \"c\"\ntoken_fil = \"/t\"\n").at(0),
            "c.toml:3:1: unknown key 'token_fil' in [[client]]; did you mean `token_file`?");
  const auto secret = errors("[[client]]\nname = \"c\"\npassword = \"hunter22\"\n");
  EXPECT_EQ(secret.at(0), "c.toml:3:1: password: secrets are not written in the config; put it in a file and use "
                          "token_file");
  EXPECT_EQ(errors("[[client]]\nname = \"c\"\nsocks_password = \"x\"\n").at(0).find("use socks_password_file") !=
                std::string::npos,
            true);
  EXPECT_EQ(errors("[[client]]\nurl = \"wss://h/\"\nlocal = [\"1:h:2\"]\n").at(0),
            "c.toml:1:1: [[client]] without a name (name = \"...\": letters, digits, '.', '_', '-')");
  EXPECT_EQ(errors("[[client]]\nname = \"c\"\nurl = \"wss://h/\"\n").at(0),
            "c.toml:1:1: [[client]] c forwards nothing: give local = [...] or dynamic = [...]");
  EXPECT_EQ(errors("[[relay]]\nname = \"r\"\nlisten = \"localhost:1\"\n").at(0), "c.toml:1:1: target is required");
  EXPECT_EQ(errors("[[relay]]\nname = \"r\"\nlisten = \"x:1\"\ntarget = \"h:1\"\nconnect_timeout = \"9q\"\n")
                .at(0)
                .substr(0, 28),
            "c.toml:5:19: connect_timeout");
  EXPECT_EQ(errors("[relay]\nname = \"r\"\n").at(0),
            "c.toml:1:1: write [[relay]] (each unit is one [[relay]] section)");
  EXPECT_EQ(errors("x = 1\n").at(0), "c.toml:1:1: 'x' outside a unit section ([[relay]], [[client]], [[server]], [[tun]])");
  EXPECT_EQ(errors("[[relay]]\nname = \"r\"\nname = \"s\"\n").at(0), "c.toml:3:1: name given twice (also on line 2)");
  const auto twice = errors("[[relay]]\nname = \"r\"\nlisten = \"x:1\"\ntarget = \"h:1\"\ntarget = \"h:2\"\n");
  EXPECT_EQ(twice.at(0), "c.toml:5:1: target given twice (also on line 4)");
  const auto spelled_twice = errors("[[client]]\nname = \"c\"\ntoken_file = \"a\"\ntoken-file = \"b\"\n");
  EXPECT_EQ(spelled_twice.at(0), "c.toml:4:1: token-file given twice (also on line 3)");
}

// Review findings: positionals in the command's order, not the file's; a
// password in a proxy URL is a secret; names safe as paths, unique by case;
// a stray token line is never quoted back.
TEST(ConfigSchemaTest, ReviewFindings) {
  const auto swapped = check_config("[[relay]]\nname = \"r\"\ntarget = \"h:2\"\nlisten = \"localhost:1\"\n", "c.toml");
  ASSERT_TRUE(swapped.errors.empty()) << swapped.errors.front();
  EXPECT_EQ(swapped.units.at(0).args, (std::vector<std::string>{"--", "localhost:1", "h:2"}));
  EXPECT_EQ(check_config("[[relay]]\nname = \"r\"\ntarget = \"h:2\"\n", "c.toml").errors.at(0),
            "c.toml:1:1: [[relay]] has target but no listen; listen is required");
  const auto proxy = check_config("[[client]]\nname = \"c\"\nurl = \"wss://h:1/\"\nlocal = [\"1:h:2\"]\n"
                                  "proxy = \"http://u:hunter22@127.0.0.1:3128\"\n",
                                  "c.toml");
  ASSERT_EQ(proxy.errors.size(), 1u);
  EXPECT_NE(proxy.errors[0].find("c.toml:5:9: proxy holds a password"), std::string::npos) << proxy.errors[0];
  EXPECT_EQ(proxy.errors[0].find("hunter22"), std::string::npos);
  for (const char* bad : {".", "..", "-rf", "_x"})
    EXPECT_FALSE(
        check_config(std::string("[[relay]]\nname = \"") + bad + "\"\nlisten = \"x:1\"\ntarget = \"h:1\"\n", "c.toml")
            .errors.empty())
        << bad;
  const auto cased = check_config("[[relay]]\nname = \"X\"\nlisten = \"x:1\"\ntarget = \"h:1\"\n"
                                  "[[relay]]\nname = \"x\"\nlisten = \"x:2\"\ntarget = \"h:1\"\n",
                                  "c.toml");
  ASSERT_EQ(cased.errors.size(), 1u);
  EXPECT_NE(cased.errors[0].find("the name x is taken (line 1)"), std::string::npos) << cased.errors[0];
  const auto token = check_config("Zm9vYmFyX3NlY3JldF90b2tlbg\n", "c.toml");
  ASSERT_EQ(token.errors.size(), 1u);
  EXPECT_EQ(token.errors[0].find("Zm9v"), std::string::npos) << token.errors[0];
}

// CLI11 reads "-1" into an unsigned option as 2^64-1: refused, on the
// command line and so in the config; a size takes a unit.
TEST(ConfigSchemaTest, NegativeNumbersAndSizes) {
  const auto negative = check_config("[[server]]\nname = \"s\"\nmax_buffer_per_client = -1\n", "c.toml");
  ASSERT_EQ(negative.errors.size(), 1u);
  EXPECT_NE(negative.errors[0].find("must not be negative"), std::string::npos) << negative.errors[0];
  const auto size = check_config("[[server]]\nname = \"s\"\nmax_buffer_per_client = \"64M\"\n", "c.toml");
  EXPECT_TRUE(size.errors.empty()) << size.errors.front();
  EXPECT_TRUE(check_config("[[server]]\nname = \"s\"\nmax_buffer_per_client = 67108864\n", "c.toml").errors.empty());
}

// A CLI11 error lands on the key it names, the longest that matches (the
// message of --max-handshakes-per-source holds --max-handshakes too), and
// integers are not blanked out of it.
TEST(ConfigSchemaTest, CliErrorsOnTheirKey) {
  const auto r =
      check_config("[[server]]\nname = \"s\"\nmax_handshakes = 10\nmax_handshakes_per_source = 0\n", "c.toml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0], "c.toml:4:29: --max-handshakes-per-source: Value 0 not in range 1 to 100000");
}

} // namespace
} // namespace warren::cli

TEST(ConfigSchemaTest, BoundedSectionsAndErrors) {
  // Over warren::cli::k_max_units sections: one error, no section is parsed.
  std::string many;
  for (std::size_t i = 0; i <= warren::cli::k_max_units; ++i)
    many += "[[relay]]\n";
  const auto big = warren::cli::check_config(many, "c.toml");
  ASSERT_EQ(big.errors.size(), 1U);
  EXPECT_EQ(big.errors[0], "c.toml: 1025 sections; a file holds at most 1024 units");
  // Within it, errors are listed up to warren::cli::k_max_errors and the rest counted.
  std::string bad;
  for (int i = 0; i < 300; ++i)
    bad += "[[relay]]\nname = \"r" + std::to_string(i) + "\"\nbogus = 1\n";
  const auto r = warren::cli::check_config(bad, "c.toml");
  ASSERT_EQ(r.errors.size(), warren::cli::k_max_errors + 1);
  EXPECT_NE(r.errors.back().find("more errors not shown"), std::string::npos) << r.errors.back();
  EXPECT_TRUE(r.units.empty());
}
