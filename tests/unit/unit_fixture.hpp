// What the unit tests share: one io_context driven by run_until (bounded,
// never sleeps), a test-owned target listener on loopback, the events the
// unit under test reports, and helpers to open a connection through a
// unit's local port and carry bytes over it.
#pragma once

#include "../net/test_util.hpp"
#include "unit/unit.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace warren::test {

/// The port at the end of "TCP 127.0.0.1:PORT" (or of "HOST:PORT").
inline std::uint16_t port_after_colon(const std::string& text) {
  return static_cast<std::uint16_t>(std::stoi(text.substr(text.rfind(':') + 1)));
}

class unit_fixture : public ::testing::Test {
 protected:
  using tcp = boost::asio::ip::tcp;

  boost::asio::io_context io;
  tcp::acceptor target{io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)};
  std::vector<unit::unit_event> events;

  /// Records `u`'s events in `events`.
  void watch(unit::unit& u) {
    u.set_events([this](const unit::unit_event& e) { events.push_back(e); });
  }

  /// A connection to 127.0.0.1:`port` (a unit's local port), and the
  /// target's end of it once the unit has connected through.
  std::pair<tcp::socket, tcp::socket> connect_via(std::uint16_t port) {
    tcp::socket near(io);
    near.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
    tcp::socket far(io);
    bool accepted = false;
    target.async_accept(far, [&](error_code ec) { accepted = !ec; });
    EXPECT_TRUE(run_until(io, [&] { return accepted; }));
    return {std::move(near), std::move(far)};
  }

  /// Writes n bytes on `from` and reads them on `to`.
  void carry(tcp::socket& from, tcp::socket& to, std::size_t n) {
    std::vector<char> out(n, 'x');
    std::vector<char> in(n);
    boost::asio::write(from, boost::asio::buffer(out));
    bool got = false;
    boost::asio::async_read(to, boost::asio::buffer(in), [&](error_code ec, std::size_t) { got = !ec; });
    ASSERT_TRUE(run_until(io, [&] { return got; }));
    EXPECT_EQ(in, out);
  }

  /// The states the unit entered, in order.
  std::vector<unit::unit_state> states() const {
    std::vector<unit::unit_state> s;
    for (const auto& e : events)
      if (e.what == unit::unit_event::kind::state_changed)
        s.push_back(e.state);
    return s;
  }
};

} // namespace warren::test
