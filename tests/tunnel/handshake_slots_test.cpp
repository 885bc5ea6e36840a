// handshake_slots: the bound on connections that have not authenticated yet,
// in all and per source (src/tunnel/handshake_slots.hpp).
#include "tunnel/handshake_slots.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

using warren::tunnel::handshake_slots;
namespace ip = boost::asio::ip;

namespace {

ip::address addr(const char* text) {
  return ip::make_address(text);
}

} // namespace

TEST(handshake_slots, OneSourceHoldsAtMostItsShare) {
  handshake_slots slots(10, 3);
  std::vector<handshake_slots::ticket> held;
  for (int i = 0; i < 3; ++i) {
    auto t = slots.admit(addr("192.0.2.1"));
    ASSERT_TRUE(t) << i;
    held.push_back(std::move(*t));
  }
  EXPECT_FALSE(slots.admit(addr("192.0.2.1"))) << "a fourth from the same source";
  EXPECT_TRUE(slots.admit(addr("192.0.2.2"))) << "another source still gets one";
  EXPECT_EQ(slots.held(), 3u) << "the ticket for 192.0.2.2 was dropped at once";
  held.pop_back();
  EXPECT_EQ(slots.held_by(addr("192.0.2.1")), 2u);
  EXPECT_TRUE(slots.admit(addr("192.0.2.1"))) << "a slot given back is free again";
}

TEST(handshake_slots, AllSourcesTogetherHoldAtMostTheTotal) {
  handshake_slots slots(4, 3);
  std::vector<handshake_slots::ticket> held;
  for (const char* a : {"192.0.2.1", "192.0.2.2", "2001:db8:1::1", "2001:db8:2::1"}) {
    auto t = slots.admit(addr(a));
    ASSERT_TRUE(t) << a;
    held.push_back(std::move(*t));
  }
  EXPECT_FALSE(slots.admit(addr("192.0.2.3")));
  EXPECT_EQ(slots.held(), 4u);
  EXPECT_EQ(slots.sources(), 4u);
  held.clear();
  EXPECT_EQ(slots.held(), 0u);
  EXPECT_EQ(slots.sources(), 0u) << "a source with nothing held is forgotten";
  EXPECT_TRUE(slots.admit(addr("192.0.2.3")));
}

// One IPv6 host usually has a whole /64: its addresses count as one source.
// An IPv4-mapped address is its IPv4 address.
TEST(handshake_slots, SourcesAreIpv4AddressesAndIpv6Slash64s) {
  handshake_slots slots(100, 2);
  auto a = slots.admit(addr("2001:db8:0:1::1"));
  auto b = slots.admit(addr("2001:db8:0:1:ffff:ffff:ffff:ffff"));
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(slots.admit(addr("2001:db8:0:1::2"))) << "same /64";
  EXPECT_TRUE(slots.admit(addr("2001:db8:0:2::1"))) << "the next /64 is another source";
  auto c = slots.admit(addr("203.0.113.7"));
  ASSERT_TRUE(c);
  auto d = slots.admit(addr("::ffff:203.0.113.7"));
  ASSERT_TRUE(d);
  EXPECT_FALSE(slots.admit(addr("203.0.113.7"))) << "the mapped address is the same source";
  EXPECT_TRUE(slots.admit(addr("203.0.113.8"))) << "IPv4 sources are single addresses";
}

TEST(handshake_slots, TicketsGiveBackOnceWhetherMovedReleasedOrDestroyed) {
  handshake_slots slots(2, 2);
  auto t = slots.admit(addr("192.0.2.1"));
  ASSERT_TRUE(t);
  handshake_slots::ticket moved = std::move(*t);
  t.reset(); // the moved-from ticket gives back nothing
  EXPECT_EQ(slots.held(), 1u);
  moved.release();
  EXPECT_EQ(slots.held(), 0u);
  moved.release(); // twice: nothing more
  EXPECT_EQ(slots.held(), 0u);
  auto x = slots.admit(addr("192.0.2.1"));
  auto y = slots.admit(addr("192.0.2.1"));
  ASSERT_TRUE(x && y);
  *x = std::move(*y); // x's own slot is given back, y's now held by x
  EXPECT_EQ(slots.held(), 1u);
  y.reset();
  EXPECT_EQ(slots.held(), 1u);
  x.reset();
  EXPECT_EQ(slots.held(), 0u);
}

TEST(handshake_slots, BoundsAreAtLeastOne) {
  handshake_slots slots(0, 0);
  auto t = slots.admit(addr("192.0.2.1"));
  EXPECT_TRUE(t);
  EXPECT_FALSE(slots.admit(addr("192.0.2.2")));
}

// All slots taken by one source: a newcomer from another takes the oldest of
// them (that connection is evicted), until the two hold about the same.
TEST(handshake_slots, ANewcomerEvictsTheOldestOfTheSourceHoldingTheMost) {
  handshake_slots slots(4, 4);
  std::vector<int> evicted;
  std::vector<handshake_slots::ticket> a;
  for (int i = 0; i < 4; ++i) {
    auto t = slots.admit(addr("192.0.2.1"), [&evicted, i] { evicted.push_back(i); });
    ASSERT_TRUE(t);
    a.push_back(std::move(*t));
  }
  auto b1 = slots.admit(addr("198.51.100.1"));
  ASSERT_TRUE(b1) << "one source holding every slot locks nobody out";
  EXPECT_EQ(evicted, std::vector<int>{0}) << "the oldest goes first";
  EXPECT_EQ(slots.held(), 4u);
  EXPECT_EQ(slots.held_by(addr("192.0.2.1")), 3u);
  a[0].release(); // the evicted connection's handshake fails and gives back: nothing to give
  EXPECT_EQ(slots.held(), 4u);
  auto b2 = slots.admit(addr("198.51.100.1"));
  ASSERT_TRUE(b2);
  EXPECT_EQ(evicted, (std::vector<int>{0, 1}));
  EXPECT_FALSE(slots.admit(addr("198.51.100.1"))) << "2 and 2: evicting would only move the imbalance";
  EXPECT_FALSE(slots.admit(addr("192.0.2.1")));
  EXPECT_EQ(slots.evictions(), 2u);
  auto c = slots.admit(addr("203.0.113.1"));
  EXPECT_TRUE(c) << "a third source still gets one, from one of the two";
  EXPECT_EQ(slots.evictions(), 3u);
  EXPECT_EQ(slots.held(), 4u);
}

// A given-back slot is never evicted later: its callback is gone with it.
TEST(handshake_slots, GivenBackSlotsAreNeverEvicted) {
  handshake_slots slots(2, 2);
  int calls = 0;
  {
    auto t = slots.admit(addr("192.0.2.1"), [&calls] { ++calls; });
    ASSERT_TRUE(t);
  }
  auto x = slots.admit(addr("192.0.2.1"), [&calls] { ++calls; });
  auto y = slots.admit(addr("192.0.2.1"), [&calls] { ++calls; });
  ASSERT_TRUE(x && y);
  x->release();
  auto z = slots.admit(addr("198.51.100.1"));
  ASSERT_TRUE(z);
  EXPECT_EQ(calls, 0) << "a free slot was there: no eviction";
}

// Tickets may outlive their slots (a handshake frame destroyed after the
// server at shutdown): giving back is then a no-op.
TEST(handshake_slots, TicketsMayOutliveTheirSlots) {
  auto slots = std::make_unique<handshake_slots>(2, 2);
  auto t = slots->admit(addr("192.0.2.1"));
  ASSERT_TRUE(t);
  slots.reset();
  t->release();
  t.reset();
}
