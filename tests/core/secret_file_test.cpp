// The bounded reader of secret files (core/secret_file.hpp): the first
// line without its line end, a bound instead of memory for /dev/zero or a
// huge file, and errors that never show the content.
#include "core/secret_file.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include <cstdio>
#include <fstream>
#include <string>

namespace {

std::string write_temp(const std::string& content) {
  static int n = 0;
  const std::string path =
      ::testing::TempDir() + "warren-secret-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

TEST(SecretFile, FirstLineWithoutItsEnd) {
  for (const char* content : {"s3cret\n", "s3cret\r\nsecond line\n", "s3cret"}) {
    auto r = warren::read_secret_line(write_temp(content), "--token-file");
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r, "s3cret");
  }
  auto empty = warren::read_secret_line(write_temp("\nrest"), "--token-file");
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, "");
}

TEST(SecretFile, TheFirstLineIsBounded) {
  auto r = warren::read_secret_line("/dev/zero", "--proxy-password-file");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "--proxy-password-file /dev/zero: the first line is longer than 4 KiB (is it the right file?)");
  const std::string longest(warren::k_max_secret_line, 'x');
  auto ok = warren::read_secret_line(write_temp(longest + "\n" + std::string(100000, 'y')), "f");
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(*ok, longest);
  auto too_long = warren::read_secret_line(write_temp("pw-Zx81" + longest), "f");
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().find("pw-Zx81"), std::string::npos);
}

TEST(SecretFile, UnreadableSaysWhich) {
  auto r = warren::read_secret_line("/nonexistent/warren-secret", "--socks-password-file");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "cannot read --socks-password-file /nonexistent/warren-secret");
}

// A FIFO (a token_file an API caller named, a mistake in the config) must
// not block the thread that reads it: under the daemon that is a unit's
// event loop, and a loop that never returns hangs every unit on it and the
// daemon's stop.
TEST(SecretFile, AFifoWithoutAWriterIsNotWaitedFor) {
  const std::string path = ::testing::TempDir() + "warren-secret-fifo-" + std::to_string(::getpid());
  ::unlink(path.c_str());
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  const auto start = std::chrono::steady_clock::now();
  auto r = warren::read_secret_line(path, "--token-file");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  ASSERT_TRUE(r) << r.error(); // no writer: end of file at once, an empty line (the caller says what is missing)
  EXPECT_EQ(*r, "");
  ::unlink(path.c_str());
}

TEST(SecretFile, AWriterThatNeverWritesIsABoundedWait) {
  const std::string path = ::testing::TempDir() + "warren-secret-fifo-w-" + std::to_string(::getpid());
  ::unlink(path.c_str());
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  const int writer = ::open(path.c_str(), O_RDWR | O_NONBLOCK); // holds a write end open, writes nothing
  ASSERT_GE(writer, 0);
  const auto start = std::chrono::steady_clock::now();
  auto r = warren::read_secret_line(path, "--token-file");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find(path), std::string::npos) << r.error();
  ::close(writer);
  ::unlink(path.c_str());
}

TEST(SecretFile, APipeWithALineIsRead) { // --token-file <(pass show warren)
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::write(fds[1], "s3cret\n", 7), 7);
  auto r = warren::read_secret_line("/dev/fd/" + std::to_string(fds[0]), "--token-file");
  ::close(fds[0]);
  ::close(fds[1]); // the writer is still open while reading: the line ends the read
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(*r, "s3cret");
}

TEST(SecretFile, ADirectoryIsUnreadable) {
  auto r = warren::read_secret_line(::testing::TempDir(), "--token-file");
  ASSERT_FALSE(r);
}

} // namespace
