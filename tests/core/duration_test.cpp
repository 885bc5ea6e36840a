#include "core/duration.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using warren::parse_duration;

TEST(Duration, ParsesUnits) {
  EXPECT_EQ(*parse_duration("250ms"), 250ms);
  EXPECT_EQ(*parse_duration("10s"), 10s);
  EXPECT_EQ(*parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(*parse_duration("2m"), 120s);
  EXPECT_EQ(*parse_duration("1h"), 3600s);
  EXPECT_EQ(*parse_duration("0ms"), 0ms);
}

TEST(Duration, RejectsWithReason) {
  EXPECT_NE(parse_duration("10").error().find("needs a unit"), std::string::npos);
  EXPECT_NE(parse_duration("ms").error().find("must start with a number"), std::string::npos);
  EXPECT_NE(parse_duration("5 parsecs").error().find("unknown unit"), std::string::npos);
  EXPECT_NE(parse_duration("99999999999999999999s").error().find("too large"), std::string::npos);
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("-1s"));
}

TEST(Duration, Formats) {
  EXPECT_EQ(warren::format_duration(250ms), "250ms");
  EXPECT_EQ(warren::format_duration(10s), "10s");
}
