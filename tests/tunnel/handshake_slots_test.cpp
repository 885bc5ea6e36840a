// handshake_slots: the bound on connections that have not authenticated yet,
// per source and in all, and who is evicted when all are taken
// (src/tunnel/handshake_slots.hpp).
#include "tunnel/handshake_slots.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

using warren::tunnel::handshake_slots;
namespace ip = boost::asio::ip;

namespace {

ip::address addr(const char* text) {
  return ip::make_address(text);
}

/// Admits connections, each with an evict callback that records its name.
struct recorder {
  handshake_slots& slots;
  std::vector<std::string> evicted;
  std::optional<handshake_slots::ticket> admit(const char* source, std::string name) {
    return slots.admit(addr(source), [this, name = std::move(name)] { evicted.push_back(name); });
  }
};

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
  EXPECT_EQ(slots.evictions(), 0u) << "slots were free: nobody evicted";
}

// All slots taken by one source: a newcomer from another takes the oldest of
// them (that connection is evicted), until the two hold about the same.
TEST(handshake_slots, ANewcomerEvictsTheOldestOfTheSourceHoldingTheMost) {
  handshake_slots slots(4, 4);
  recorder r{slots};
  std::vector<handshake_slots::ticket> a;
  for (int i = 0; i < 4; ++i)
    a.push_back(std::move(*r.admit("192.0.2.1", "a" + std::to_string(i))));
  auto b0 = r.admit("198.51.100.1", "b0");
  ASSERT_TRUE(b0) << "one source holding every slot locks nobody out";
  EXPECT_EQ(r.evicted, std::vector<std::string>{"a0"}) << "the oldest goes first";
  EXPECT_FALSE(a[0].held());
  EXPECT_TRUE(a[1].held());
  EXPECT_EQ(slots.held(), 4u);
  EXPECT_EQ(slots.held_by(addr("192.0.2.1")), 3u);
  a[0].release(); // the evicted connection's handshake fails and gives back: nothing to give
  EXPECT_EQ(slots.held(), 4u);
  auto b1 = r.admit("198.51.100.1", "b1");
  ASSERT_TRUE(b1);
  EXPECT_EQ(r.evicted, (std::vector<std::string>{"a0", "a1"}));
  EXPECT_EQ(slots.evictions(), 2u);
  EXPECT_EQ(slots.held_by(addr("198.51.100.1")), 2u);
}

// With the slots spread evenly (here one per source, as an attacker with
// many addresses would hold them), the oldest of all is evicted: a newcomer
// is never locked out, and a stuck connection lives only until displaced.
TEST(handshake_slots, SpreadEvenlyTheOldestOfAllIsEvicted) {
  handshake_slots slots(3, 2);
  recorder r{slots};
  auto x = r.admit("192.0.2.1", "x");
  auto y = r.admit("192.0.2.2", "y");
  auto z = r.admit("192.0.2.3", "z");
  auto n = r.admit("203.0.113.9", "n");
  ASSERT_TRUE(n);
  EXPECT_EQ(r.evicted, std::vector<std::string>{"x"});
  auto m = r.admit("192.0.2.2", "m"); // y's source: holds 1, the most is 1
  ASSERT_TRUE(m);
  EXPECT_EQ(r.evicted, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(slots.held(), 3u);
  EXPECT_EQ(slots.sources(), 3u);
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
  EXPECT_TRUE(moved.held());
  moved.release();
  EXPECT_EQ(slots.held(), 0u);
  EXPECT_FALSE(moved.held());
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
  EXPECT_EQ(slots.sources(), 0u) << "a source with nothing held is forgotten";
}

// A given-back slot is never evicted later: its callback is gone with it.
TEST(handshake_slots, GivenBackSlotsAreNeverEvicted) {
  handshake_slots slots(2, 2);
  recorder r{slots};
  auto first = r.admit("192.0.2.1", "given back");
  auto second = r.admit("192.0.2.1", "second");
  ASSERT_TRUE(first && second);
  first->release();
  auto third = r.admit("192.0.2.1", "third"); // takes the free slot: no eviction
  ASSERT_TRUE(third);
  EXPECT_TRUE(r.evicted.empty());
  auto newcomer = r.admit("198.51.100.1", "newcomer"); // full: evicts the oldest held
  ASSERT_TRUE(newcomer);
  EXPECT_EQ(r.evicted, std::vector<std::string>{"second"});
}

// Tickets may outlive their slots (a handshake frame destroyed after the
// server at shutdown): giving back is then a no-op.
TEST(handshake_slots, TicketsMayOutliveTheirSlots) {
  auto slots = std::make_unique<handshake_slots>(2, 2);
  auto t = slots->admit(addr("192.0.2.1"));
  ASSERT_TRUE(t);
  slots.reset();
  EXPECT_FALSE(t->held());
  t->release();
  t.reset();
}

TEST(handshake_slots, BoundsAreAtLeastOne) {
  handshake_slots slots(0, 0);
  auto t = slots.admit(addr("192.0.2.1"));
  ASSERT_TRUE(t);
  EXPECT_FALSE(slots.admit(addr("192.0.2.1"))) << "one per source";
  auto u = slots.admit(addr("192.0.2.2"));
  ASSERT_TRUE(u);
  EXPECT_FALSE(t->held()) << "one in all: the newcomer took it";
}

TEST(handshake_slots, ATrustedProxyMayHoldMoreThanOneSourcesShare) {
  // nginx in front speaks for many clients: the server admits it with the
  // whole table as its bound, and --max-handshakes still bounds it.
  handshake_slots slots(6, 2);
  std::vector<handshake_slots::ticket> held;
  for (int i = 0; i < 6; ++i) {
    auto t = slots.admit(addr("127.0.0.1"), {}, 6);
    ASSERT_TRUE(t) << i;
    held.push_back(std::move(*t));
  }
  EXPECT_FALSE(slots.admit(addr("127.0.0.1"), {}, 6)) << "the whole table is its bound";
  EXPECT_FALSE(slots.admit(addr("127.0.0.1"))) << "without the override, the per-source bound";
  EXPECT_TRUE(slots.admit(addr("192.0.2.1"))) << "another source evicts the proxy's oldest";
}
