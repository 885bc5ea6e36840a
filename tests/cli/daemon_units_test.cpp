// The daemon's units as the CLI knows them (src/cli/daemon_units.*): a
// units.add section (JSON) becomes TOML text that checks exactly like a
// file's section and gives back every value unchanged (no value can write
// a key of its own); the files an API-added unit may name.
#include "cli/daemon_units.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

using namespace warren;

namespace {

cli::daemon_paths paths() {
  return {"/tmp/warren-units-test-cfg/warren.toml", "/tmp/warren-units-test-state"};
}

TEST(section_toml, values_round_trip_and_cannot_inject_keys) {
  const std::string nasty = "127.0.0.1:80\"\nallow = [\"*\"]\n# \\ \t \x01 é";
  nlohmann::json section = {{"kind", "relay"}, {"name", "web"}, {"listen", "127.0.0.1:8080"}, {"target", nasty}};
  auto text = cli::section_toml(section);
  ASSERT_TRUE(text) << text.error();
  // The value is one string: the check sees an invalid target, not an allow key.
  std::vector<std::string> errors;
  auto spec = cli::check_one_section(*text, "units.add", paths(), errors);
  ASSERT_FALSE(spec);
  ASSERT_EQ(errors.size(), 1u) << errors[0];
  // [[relay]], listen, name, target: the error is the target's, on its own line.
  EXPECT_TRUE(errors[0].starts_with("units.add:4:10: target")) << errors[0];
  // A good one: the args are the file's.
  section["target"] = "127.0.0.1:80";
  section["max_connections"] = 5;
  section["no_splice"] = true;
  errors.clear();
  spec = cli::check_one_section(*cli::section_toml(section), "units.add", paths(), errors);
  ASSERT_TRUE(spec) << (errors.empty() ? spec.error() : errors[0]);
  EXPECT_EQ(spec->name, "web");
  EXPECT_EQ(spec->origin, "drop-in");
  EXPECT_EQ(spec->args, (std::vector<std::string>{"--max-connections=5", "--no-splice", "--", "127.0.0.1:8080",
                                                  "127.0.0.1:80"}));
}

TEST(section_toml, refuses_what_a_section_cannot_hold) {
  EXPECT_FALSE(cli::section_toml(nlohmann::json::array()));
  EXPECT_FALSE(cli::section_toml({{"name", "x"}}));                      // no kind
  EXPECT_FALSE(cli::section_toml({{"kind", "tunnel"}, {"name", "x"}}));  // not a kind
  EXPECT_FALSE(cli::section_toml({{"kind", "relay"}, {"a b", "x"}}));    // not a key
  EXPECT_FALSE(cli::section_toml({{"kind", "relay"}, {"x", {{"y", 1}}}})); // a table
  EXPECT_FALSE(cli::section_toml({{"kind", "relay"}, {"x", 1.5}}));      // a float
  EXPECT_FALSE(cli::section_toml({{"kind", "relay"}, {"x", {{1, 2}}}})); // nested lists
}

TEST(check_one_section, files_only_under_the_config_and_state_directories) {
  std::vector<std::string> errors;
  const nlohmann::json server = {{"kind", "server"},
                                 {"name", "gw"},
                                 {"listen", {"ws://127.0.0.1:1"}},
                                 {"token_file", "/tmp/warren-units-test-cfg/token"}};
  EXPECT_TRUE(cli::check_one_section(*cli::section_toml(server), "units.add", paths(), errors));
  for (const char* bad : {"/etc/shadow", "token", "/tmp/warren-units-test-cfg/../x"}) {
    auto s = server;
    s["token_file"] = bad;
    errors.clear();
    EXPECT_FALSE(cli::check_one_section(*cli::section_toml(s), "units.add", paths(), errors)) << bad;
    ASSERT_EQ(errors.size(), 1u) << bad;
    EXPECT_NE(errors[0].find("token_file"), std::string::npos) << errors[0];
  }
  auto s = server;
  s["users_file"] = "/etc/warren/users.toml";
  s["state_dir"] = "/var/lib/x";
  errors.clear();
  EXPECT_FALSE(cli::check_one_section(*cli::section_toml(s), "units.add", paths(), errors));
  EXPECT_EQ(errors.size(), 2u);
}

} // namespace
