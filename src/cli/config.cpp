// `warren config check [FILE]` and `warren config example`: the daemon's
// config file checked without starting anything (cli/config_schema.*).
#include "cli/command.hpp"
#include "cli/config_schema.hpp"
#include "tunnel/server_access.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace warren::cli {

constexpr std::size_t k_max_config = 1 << 20;

/// $XDG_CONFIG_HOME/warren/warren.toml, ~/.config/... when unset,
/// /etc/warren/warren.toml as root.
std::string default_config_path() {
  if (::geteuid() == 0)
    return "/etc/warren/warren.toml";
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg && *xdg == '/')
    return std::string(xdg) + "/warren/warren.toml";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "") + "/.config/warren/warren.toml";
}

/// The file's text, or one line saying why not (never its contents).
std::string read_config(const std::string& path, std::string& text) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT)
      return path + ": no such file";
    if (e == EACCES)
      return path + ": permission denied (cannot read it as uid " + std::to_string(::geteuid()) + ")";
    return path + ": cannot open: " + std::strerror(e);
  }
  struct stat st {};
  std::string why;
  if (::fstat(fd, &st) != 0)
    why = path + ": cannot stat: " + std::strerror(errno);
  else if (S_ISDIR(st.st_mode))
    why = path + ": is a directory, not a config file";
  else if (!S_ISREG(st.st_mode))
    why = path + ": not a regular file";
  else if (static_cast<std::size_t>(st.st_size) > k_max_config)
    why = path + ": larger than 1 MiB";
  char buf[65536];
  while (why.empty()) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      why = path + ": cannot read: " + std::strerror(errno);
    } else if (n == 0) {
      break;
    } else if (text.size() + static_cast<std::size_t>(n) > k_max_config) {
      why = path + ": larger than 1 MiB";
    } else {
      text.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return why;
}

namespace {

int check(const std::optional<std::string>& given) {
  if (given && given->empty()) { // an unset $CONF, say: not the default file
    std::fprintf(stderr, "warren: error: config check: FILE is empty (omit it for %s)\n", default_config_path().c_str());
    return 2;
  }
  const std::string path = given ? *given : default_config_path();
  std::string text;
  if (auto why = read_config(path, text); !why.empty()) {
    std::fprintf(stderr, "warren: error: %s\n", why.c_str());
    return 1;
  }
  const auto result = check_config(text, path);
  for (const auto& e : result.errors) // a hostile file's escapes stay \xNN on the terminal
    std::fprintf(stderr, "%s\n", tunnel::printable(e).c_str());
  if (!result.errors.empty()) {
    std::fprintf(stderr, "warren: %zu error%s in %s\n", result.errors.size(), result.errors.size() == 1 ? "" : "s",
                 path.c_str());
    return 1;
  }
  std::printf("%s: %s\n", path.c_str(), config_summary(result.units).c_str());
  return 0;
}

} // namespace

std::function<int()> add_config_command(CLI::App& app) {
  auto file = std::make_shared<std::optional<std::string>>();
  auto* cmd = app.add_subcommand("config", "Check the daemon's config file, or print an annotated example");
  cmd->require_subcommand(1);
  cmd->fallthrough(false);
  auto* check_cmd = cmd->add_subcommand(
      "check", "Report every error in FILE with its line and column (default: $XDG_CONFIG_HOME/warren/warren.toml, "
               "~/.config/warren/warren.toml when unset, /etc/warren/warren.toml as root)");
  check_cmd->add_option("FILE", *file, "The config file");
  auto* example_cmd = cmd->add_subcommand("example", "Print an annotated example config that passes check");
  return [file, check_cmd, example_cmd]() -> int {
    if (example_cmd->parsed()) {
      const auto text = config_example();
      std::fwrite(text.data(), 1, text.size(), stdout);
      return 0;
    }
    (void)check_cmd;
    return check(*file);
  };
}

} // namespace warren::cli
