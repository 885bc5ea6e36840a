// Descriptor budgets: how tables are sized under an open-file limit, the
// ticket count, and raising the soft limit (on this process).
#include "core/fd_limit.hpp"

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <vector>

namespace warren {
namespace {

TEST(FdLimit, ReserveIsAnEighthBetween16And256) {
  EXPECT_EQ(fd_reserve(64), 16u);
  EXPECT_EQ(fd_reserve(1024), 128u);
  EXPECT_EQ(fd_reserve(1u << 20), 256u);
}

TEST(FdLimit, TableFitsUnderTheLimitWithTheReserveKeptFree) {
  // relay --udp, 4,096 sessions wanted, one socket each, under 1,024: 896.
  EXPECT_EQ(fit_in_descriptors(1024, 1, 4096), 896u);
  // TCP relay: two sockets and two pipes per connection under 64: (64-16)/6.
  EXPECT_EQ(fit_in_descriptors(64, 6, 10000), 8u);
  // Plenty of descriptors: what was asked for.
  EXPECT_EQ(fit_in_descriptors(1u << 20, 1, 4096), 4096u);
  EXPECT_EQ(fit_in_descriptors(1u << 20, 6, 10000), 10000u);
}

TEST(FdLimit, TinyOrUnknownLimits) {
  EXPECT_EQ(fit_in_descriptors(10, 1, 4096), 1u);   // below the reserve: still one
  EXPECT_EQ(fit_in_descriptors(0, 1, 4096), 4096u); // unknown: as asked
  EXPECT_EQ(fit_in_descriptors(1024, 1, 0), 1u);
}

TEST(FdBudget, TicketsAreCountedUntilDestroyed) {
  fd_budget budget(2);
  std::vector<fd_budget::ticket> held;
  for (int i = 0; i < 2; ++i) {
    auto t = budget.take();
    ASSERT_TRUE(t);
    held.push_back(std::move(*t));
  }
  EXPECT_EQ(budget.held(), 2u);
  EXPECT_FALSE(budget.take()); // full
  held.pop_back();
  EXPECT_EQ(budget.held(), 1u);
  auto again = budget.take();
  ASSERT_TRUE(again);
  fd_budget::ticket moved = std::move(*again); // a moved-from ticket gives nothing back
  again.reset();
  EXPECT_EQ(budget.held(), 2u);
  moved = std::move(held.front()); // assignment gives the old one back
  EXPECT_EQ(budget.held(), 1u);
}

TEST(FdBudget, TicketsOutliveTheBudget) {
  std::optional<fd_budget::ticket> t;
  {
    fd_budget budget(1);
    t = budget.take();
  }
  t.reset(); // no use of a freed count (asan)
}

TEST(FdBudget, ZeroIsUnbounded) {
  fd_budget budget(0);
  std::vector<fd_budget::ticket> held;
  for (int i = 0; i < 100; ++i)
    held.push_back(std::move(*budget.take()));
  EXPECT_EQ(budget.held(), 100u);
}

TEST(FdLimit, RaiseSetsTheSoftLimitToTheHardOne) {
  rlimit r{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &r), 0);
  if (r.rlim_max == RLIM_INFINITY || r.rlim_max < 128)
    GTEST_SKIP() << "hard open-file limit unusable for this test";
  const rlimit original = r;
  r.rlim_cur = 64;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &r), 0);
  const auto got = raise_fd_limit();
  EXPECT_EQ(got.before, 64u);
  EXPECT_EQ(got.now, r.rlim_max);
  rlimit after{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &after), 0);
  EXPECT_EQ(after.rlim_cur, r.rlim_max);
  ::setrlimit(RLIMIT_NOFILE, &original);
}

} // namespace
} // namespace warren
