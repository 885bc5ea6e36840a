#include "core/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>

namespace warren::log {
namespace {

/// %* in a pattern: the message's syslog priority, one digit.
class priority_flag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    dest.push_back(static_cast<char>('0' + syslog_priority(msg.level)));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<priority_flag>(); }
};

bool parse_decimal(std::string_view text, unsigned long long& out) {
  if (text.empty())
    return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

} // namespace

std::optional<spdlog::level::level_enum> parse_level(std::string_view name) {
  if (name == "trace")
    return spdlog::level::trace;
  if (name == "debug")
    return spdlog::level::debug;
  if (name == "info")
    return spdlog::level::info;
  if (name == "warn" || name == "warning")
    return spdlog::level::warn;
  if (name == "error")
    return spdlog::level::err;
  if (name == "off")
    return spdlog::level::off;
  return std::nullopt;
}

int syslog_priority(spdlog::level::level_enum level) {
  switch (level) {
  case spdlog::level::trace:
  case spdlog::level::debug:
    return 7; // LOG_DEBUG
  case spdlog::level::info:
    return 6; // LOG_INFO
  case spdlog::level::warn:
    return 4; // LOG_WARNING
  case spdlog::level::err:
    return 3; // LOG_ERR
  default:
    return 2; // LOG_CRIT
  }
}

bool journal_stream_matches(std::string_view journal_stream, unsigned long long dev, unsigned long long ino) {
  const auto colon = journal_stream.find(':');
  if (colon == std::string_view::npos)
    return false;
  unsigned long long want_dev = 0, want_ino = 0;
  return parse_decimal(journal_stream.substr(0, colon), want_dev) &&
         parse_decimal(journal_stream.substr(colon + 1), want_ino) && want_dev == dev && want_ino == ino;
}

bool stderr_is_journal() {
  const char* value = std::getenv("JOURNAL_STREAM");
  struct stat st {};
  if (!value || ::fstat(STDERR_FILENO, &st) != 0)
    return false;
  return journal_stream_matches(value, st.st_dev, st.st_ino);
}

std::unique_ptr<spdlog::formatter> make_formatter(bool journal) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (journal)
    formatter->add_flag<priority_flag>('*').set_pattern("<%*>%v");
  else
    formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  return formatter;
}

void init(spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_color_mt("warren");
  logger->set_formatter(make_formatter(stderr_is_journal()));
  logger->set_level(level);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

} // namespace warren::log

namespace warren {

void log_within_budget(line_limiter& limiter, spdlog::level::level_enum level, std::string_view kind,
                       const std::string& line) {
  if (!limiter.allow(steady_clock::now()))
    return;
  const auto left_out = limiter.take_left_out();
  if (left_out == 0)
    spdlog::log(level, "{}", line);
  else
    spdlog::log(level, "{} ({} more {} not logged)", line, left_out, kind);
}

} // namespace warren
