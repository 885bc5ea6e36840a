// connect_slots (src/tunnel/connect_slots.hpp): the bound on one client's
// connects in flight, without sockets. Slots are handed over in order, a
// waiter that gives up leaves the queue, and nobody is locked out.
#include "tunnel/connect_slots.hpp"

#include <gtest/gtest.h>

#include <vector>

using warren::tunnel::connect_slots;

TEST(ConnectSlots, AtMostTheLimitThenWaitersInOrder) {
  connect_slots slots(2);
  auto a = slots.try_take();
  auto b = slots.try_take();
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(slots.try_take()) << "both taken";
  std::vector<connect_slots::ticket> granted;
  std::vector<int> order;
  for (int i = 0; i < 3; ++i)
    slots.wait([&, i](connect_slots::ticket t) {
      order.push_back(i);
      granted.push_back(std::move(t));
    });
  EXPECT_EQ(slots.waiting(), 3u);
  a->release();
  EXPECT_EQ(order, std::vector<int>{0}) << "the first waiter gets the slot given back";
  EXPECT_EQ(slots.held(), 2u) << "handed over, not freed";
  EXPECT_FALSE(slots.try_take()) << "a newcomer does not jump the queue";
  b.reset();
  EXPECT_EQ(order, (std::vector<int>{0, 1}));
  auto ending = std::move(granted); // (waiter 2 pushes into `granted` as they end)
  granted.clear();
  ending.clear(); // both connects end: waiter 2 gets one, the other is free
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(slots.held(), 1u);
  EXPECT_EQ(slots.waiting(), 0u);
  EXPECT_TRUE(slots.try_take());
}

TEST(ConnectSlots, AWaiterThatGivesUpLeavesTheQueue) {
  connect_slots slots(1);
  auto a = slots.try_take();
  int first = 0;
  int second = 0;
  std::optional<connect_slots::ticket> kept;
  const auto id = slots.wait([&](connect_slots::ticket) { ++first; });
  slots.wait([&](connect_slots::ticket t) {
    ++second;
    kept = std::move(t);
  });
  slots.cancel(id); // its stream was reset while it waited
  a.reset();
  EXPECT_EQ(first, 0);
  EXPECT_EQ(second, 1);
  slots.cancel(id); // again, and after the grant: nothing
  EXPECT_EQ(slots.held(), 1u);
  kept.reset();
  EXPECT_EQ(slots.held(), 0u);
}

TEST(ConnectSlots, AGrantNobodyKeepsGoesToTheNext) {
  connect_slots slots(1);
  auto a = slots.try_take();
  int dropped = 0;
  std::optional<connect_slots::ticket> kept;
  slots.wait([&](connect_slots::ticket) { ++dropped; }); // its stream ended just before: drops the slot
  slots.wait([&](connect_slots::ticket t) { kept = std::move(t); });
  a.reset();
  EXPECT_EQ(dropped, 1);
  ASSERT_TRUE(kept && kept->held());
  EXPECT_EQ(slots.held(), 1u);
}

TEST(ConnectSlots, ManyStreamsAllConnectEventually) {
  // 1,000 streams through 8 slots, each connect ending when the next
  // starts: every one gets its turn, and the slots are all free at the end.
  connect_slots slots(8);
  std::vector<connect_slots::ticket> running;
  int connected = 0;
  for (int i = 0; i < 1000; ++i) {
    if (auto t = slots.try_take()) {
      running.push_back(std::move(*t));
      continue;
    }
    slots.wait([&](connect_slots::ticket t) { running.push_back(std::move(t)); });
  }
  EXPECT_EQ(running.size(), 8u);
  while (!running.empty()) {
    auto t = std::move(running.back());
    running.pop_back();
    ++connected;
    t.release();
  }
  EXPECT_EQ(connected, 1000);
  EXPECT_EQ(slots.held(), 0u);
  EXPECT_EQ(slots.waiting(), 0u);
}
