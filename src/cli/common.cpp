#include "cli/common.hpp"

#include "core/duration.hpp"
#include "core/log.hpp"
#include "core/secret_file.hpp"

#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string_view>

namespace warren::cli {

void init_logging(const std::string& level) {
  const auto parsed = log::parse_level(level);
  if (!parsed)
    throw user_error("--log-level '" + level + "' is not one of trace, debug, info, warn, error, off");
  log::init(*parsed);
}

std::chrono::milliseconds duration_arg(const std::string& text, const char* option) {
  auto d = parse_duration(text);
  if (!d)
    throw user_error(std::string(option) + ": " + d.error());
  return *d;
}

std::string load_token(const std::string& token_file) {
  std::string token;
  if (!token_file.empty()) {
    auto line = read_secret_line(token_file, "token file");
    if (!line)
      throw user_error(line.error());
    token = std::move(*line);
    struct stat st {};
    if (::stat(token_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      spdlog::warn("token file {} is readable by other users; chmod 600 it", token_file);
  } else if (const char* env = std::getenv("WARREN_TOKEN")) {
    token = env;
  }
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ' || token.back() == '\t'))
    token.pop_back();
  if (token_file.size() && token.empty())
    throw user_error("token file " + token_file + " is empty");
  return token;
}

std::string default_state_dir() {
  if (const char* systemd = std::getenv("STATE_DIRECTORY"); systemd && *systemd == '/') {
    const std::string_view dirs(systemd); // "DIR[:DIR...]" when the unit names several
    return std::string(dirs.substr(0, dirs.find(':')));
  }
  if (::geteuid() == 0)
    return "/var/lib/warren";
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg)
    return std::string(xdg) + "/warren";
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::string(home) + "/.local/state/warren";
  return "/var/lib/warren";
}

const CLI::Validator k_not_negative(
    [](std::string& text) {
      const auto first = text.find_first_not_of(" \t");
      return first != std::string::npos && text[first] == '-' ? std::string("must not be negative") : std::string();
    },
    "", "NOT NEGATIVE");

void refuse_negative_numbers(CLI::App& cmd) {
  for (CLI::Option* opt : cmd.get_options())
    if (opt->get_type_name().starts_with("UINT"))
      opt->check(k_not_negative);
}

} // namespace warren::cli
