// The logger's line format: journald's "<N>" priorities when stderr is the
// journal's stream (the $JOURNAL_STREAM check), timestamps otherwise.
#include "core/log.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <spdlog/formatter.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace warren::log {
namespace {

std::string format(bool journal, spdlog::level::level_enum level, std::string_view text) {
  const spdlog::details::log_msg msg("warren", level, text);
  spdlog::memory_buf_t out;
  make_formatter(journal)->format(msg, out);
  return fmt::to_string(out);
}

TEST(Log, JournalLinesCarryTheSyslogPriorityAndNoTimestamp) {
  EXPECT_EQ(format(true, spdlog::level::info, "daemon: pid 7 ready"), "<6>daemon: pid 7 ready\n");
  EXPECT_EQ(format(true, spdlog::level::trace, "t"), "<7>t\n");
  EXPECT_EQ(format(true, spdlog::level::debug, "d"), "<7>d\n");
  EXPECT_EQ(format(true, spdlog::level::warn, "w"), "<4>w\n");
  EXPECT_EQ(format(true, spdlog::level::err, "e"), "<3>e\n");
  EXPECT_EQ(format(true, spdlog::level::critical, "c"), "<2>c\n");
}

TEST(Log, OtherLinesKeepTheirTimestamp) {
  const auto line = format(false, spdlog::level::warn, "careful");
  // "YYYY-MM-DDTHH:MM:SS.mmm warning careful\n", checked by shape (no
  // <regex>: GCC 12 warns maybe-uninitialized inside it at -O1 -fsanitize).
  const std::string shape = "dddd-dd-ddTdd:dd:dd.ddd";
  ASSERT_GT(line.size(), shape.size()) << line;
  for (std::size_t i = 0; i < shape.size(); ++i)
    EXPECT_TRUE(shape[i] == 'd' ? std::isdigit(static_cast<unsigned char>(line[i])) != 0 : line[i] == shape[i])
        << line;
  EXPECT_EQ(line.substr(shape.size()), " warning careful\n");
}

TEST(Log, SyslogPriorities) {
  EXPECT_EQ(syslog_priority(spdlog::level::trace), 7);
  EXPECT_EQ(syslog_priority(spdlog::level::debug), 7);
  EXPECT_EQ(syslog_priority(spdlog::level::info), 6);
  EXPECT_EQ(syslog_priority(spdlog::level::warn), 4);
  EXPECT_EQ(syslog_priority(spdlog::level::err), 3);
  EXPECT_EQ(syslog_priority(spdlog::level::critical), 2);
}

TEST(Log, JournalStreamMustNameThisDeviceAndInode) {
  EXPECT_TRUE(journal_stream_matches("8:1234", 8, 1234));
  EXPECT_FALSE(journal_stream_matches("8:1235", 8, 1234));
  EXPECT_FALSE(journal_stream_matches("9:1234", 8, 1234));
  EXPECT_FALSE(journal_stream_matches("", 8, 1234));
  EXPECT_FALSE(journal_stream_matches("8", 8, 1234));
  EXPECT_FALSE(journal_stream_matches("8:", 8, 1234));
  EXPECT_FALSE(journal_stream_matches(":1234", 8, 1234));
  EXPECT_FALSE(journal_stream_matches("8:1234x", 8, 1234));
  EXPECT_FALSE(journal_stream_matches("8:1234:5", 8, 1234));
  EXPECT_FALSE(journal_stream_matches("-8:1234", 8, 1234));
  EXPECT_FALSE(journal_stream_matches("8:99999999999999999999999", 8, 1234)); // overflow
}

TEST(Log, StderrIsJournalOnlyWhenTheVariableNamesFd2) {
  struct stat st {};
  ASSERT_EQ(::fstat(STDERR_FILENO, &st), 0);
  const std::string mine = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  const std::string other = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
  ::setenv("JOURNAL_STREAM", mine.c_str(), 1);
  EXPECT_TRUE(stderr_is_journal());
  ::setenv("JOURNAL_STREAM", other.c_str(), 1);
  EXPECT_FALSE(stderr_is_journal()); // a child handed another stderr by the service
  ::unsetenv("JOURNAL_STREAM");
  EXPECT_FALSE(stderr_is_journal());
}

} // namespace
} // namespace warren::log
