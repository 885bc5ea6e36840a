// Tests of core::stored_handler (src/core/stored_handler.hpp): the moves that
// overflow the stack with Boost 1.81's any_completion_handler (assignment,
// std::swap, vector::erase in the middle, self-assignment) work and run each
// handler exactly once; assignment destroys the handler it replaces.
#include "core/stored_handler.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <utility>
#include <vector>

using namespace warren;

namespace {

TEST(stored_handler, MoveAssignmentRunsTheMovedHandler) {
  int a = 0;
  int b = 0;
  core::stored_handler<void(int)> ha([&a](int v) { a += v; });
  core::stored_handler<void(int)> hb([&b](int v) { b += v; });
  ha = std::move(hb); // any_completion_handler: endless recursion
  EXPECT_FALSE(hb);   // NOLINT(bugprone-use-after-move): moved-from is empty, by contract
  ASSERT_TRUE(ha);
  std::move(ha)(5);
  EXPECT_EQ(a, 0);
  EXPECT_EQ(b, 5);
  EXPECT_FALSE(ha);
}

TEST(stored_handler, AssignmentDestroysTheReplacedHandler) {
  auto token = std::make_shared<int>(0);
  core::stored_handler<void()> h([token] {});
  EXPECT_EQ(token.use_count(), 2);
  h = core::stored_handler<void()>([] {});
  EXPECT_EQ(token.use_count(), 1);
  core::stored_handler<void()> g([token] {});
  g = nullptr;
  EXPECT_EQ(token.use_count(), 1);
  EXPECT_FALSE(g);
}

TEST(stored_handler, SelfAssignmentKeepsTheHandler) {
  int runs = 0;
  core::stored_handler<void()> h([&runs] { ++runs; });
  auto& same = h;
  h = std::move(same);
  ASSERT_TRUE(h);
  std::move(h)();
  EXPECT_EQ(runs, 1);
}

TEST(stored_handler, SwapAndEraseInTheMiddleOfAVector) {
  std::vector<int> ran;
  std::vector<core::stored_handler<void()>> v;
  for (int i = 0; i < 5; ++i)
    v.emplace_back([&ran, i] { ran.push_back(i); });
  std::swap(v[0], v[4]);
  v.erase(v.begin() + 1); // moves 2, 3, 0 down by assignment
  for (auto& h : v)
    std::move(h)();
  EXPECT_EQ(ran, (std::vector<int>{4, 2, 3, 0}));
}

TEST(stored_handler, AnEmptyOneHasNoCancellationSlot) {
  // Asked of an empty handler (default-constructed, moved from, or run),
  // any_completion_handler dereferences null.
  core::stored_handler<void()> empty;
  EXPECT_FALSE(boost::asio::get_associated_cancellation_slot(empty).is_connected());
  core::stored_handler<void()> h([] {});
  core::stored_handler<void()> taken(std::move(h));
  EXPECT_FALSE(boost::asio::get_associated_cancellation_slot(h).is_connected()); // NOLINT(bugprone-use-after-move)
  std::move(taken)();
  EXPECT_FALSE(boost::asio::get_associated_cancellation_slot(taken).is_connected()); // NOLINT(bugprone-use-after-move)
}

} // namespace
