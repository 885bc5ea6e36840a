// The daemon's default paths match what packaging/systemd/warren.service.in
// gives the service (RuntimeDirectory=, ConfigurationDirectory=,
// StateDirectory= and the $STATE_DIRECTORY it sets), as root and not.
#include "cli/command.hpp"
#include "cli/common.hpp"
#include "daemon/control_socket.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

namespace warren::cli {
namespace {

/// The value of `key=` in the unit file (its last setting).
std::string unit_setting(const std::string& key) {
  std::ifstream in(std::string(WARREN_SOURCE_DIR) + "/packaging/systemd/warren.service.in");
  std::string line, value;
  while (std::getline(in, line))
    if (line.rfind(key + "=", 0) == 0)
      value = line.substr(key.size() + 1);
  return value;
}

/// Sets or unsets an environment variable for one test.
class scoped_env {
 public:
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name))
      old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~scoped_env() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(Defaults, AsRootTheyAreTheSystemdUnitsDirectories) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "root's defaults; not root";
  ASSERT_EQ(unit_setting("RuntimeDirectory"), "warren");
  ASSERT_EQ(unit_setting("ConfigurationDirectory"), "warren");
  ASSERT_EQ(unit_setting("StateDirectory"), "warren");
  const scoped_env no_systemd("STATE_DIRECTORY", nullptr);
  const scoped_env home("HOME", "/root"); // ProtectHome= hides it: never used as root
  const scoped_env xdg("XDG_STATE_HOME", "/root/.state");
  const auto control = daemon::default_control_path();
  ASSERT_TRUE(control) << control.error();
  EXPECT_EQ(*control, "/run/warren/control.sock");
  EXPECT_EQ(default_config_path(), "/etc/warren/warren.toml");
  EXPECT_EQ(default_state_dir(), "/var/lib/warren");
}

TEST(Defaults, StateDirectoryFromSystemdComesFirst) {
  {
    const scoped_env systemd("STATE_DIRECTORY", "/var/lib/warren");
    EXPECT_EQ(default_state_dir(), "/var/lib/warren");
  }
  {
    const scoped_env systemd("STATE_DIRECTORY", "/var/lib/a:/var/lib/b"); // StateDirectory=a b
    EXPECT_EQ(default_state_dir(), "/var/lib/a");
  }
  if (::geteuid() == 0)
    return;
  const scoped_env relative("STATE_DIRECTORY", "relative");
  const scoped_env xdg("XDG_STATE_HOME", "/tmp/xdg-state");
  EXPECT_EQ(default_state_dir(), "/tmp/xdg-state/warren") << "not an absolute path: ignored";
}

} // namespace
} // namespace warren::cli
