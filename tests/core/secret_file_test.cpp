// The bounded reader of secret files (core/secret_file.hpp): the first
// line without its line end, a bound instead of memory for /dev/zero or a
// huge file, and errors that never show the content.
#include "core/secret_file.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

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

} // namespace
