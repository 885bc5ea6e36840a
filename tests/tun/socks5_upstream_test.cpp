// socks5_upstream against a real dante (danted in the foreground on
// 127.0.0.1, a generated config allowing loopback only) for CONNECT and UDP
// ASSOCIATE, and against a small scripted server on the codec's server side
// for what dante cannot show without system accounts (RFC 1929 user/pass:
// dante checks them against /etc/passwd) or does not do (refuse UDP
// ASSOCIATE as ssh -D does, FRAG ≠ 0, a relay named 0.0.0.0, closing the
// control connection).
#include "tun/socks5_upstream.hpp"

#include "net/resolver.hpp"
#include "proxy/socks5.hpp"
#include "test_process.hpp"
#include "test_util.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::tun;
namespace asio = boost::asio;
namespace s5 = warren::proxy::socks5;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
const auto k_lo = asio::ip::make_address("127.0.0.1");

/// A TCP echo server on 127.0.0.1 (one connection at a time suffices).
asio::awaitable<void> tcp_echo(tcp::acceptor& a) {
  for (;;) {
    auto [ec, s] = co_await a.async_accept(use_tuple);
    if (ec)
      co_return;
    std::array<char, 4096> buf{};
    for (;;) {
      auto [re, n] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
      if (re)
        break;
      co_await asio::async_write(s, asio::buffer(buf.data(), n), use_tuple);
    }
  }
}

asio::awaitable<void> udp_echo(udp::socket& u) {
  std::array<char, 2048> buf{};
  for (;;) {
    udp::endpoint from;
    auto [ec, n] = co_await u.async_receive_from(asio::buffer(buf), from, use_tuple);
    if (ec)
      co_return;
    co_await u.async_send_to(asio::buffer(buf.data(), n), from, use_tuple);
  }
}

struct dante : ::testing::Test {
  asio::io_context io;
  net::system_resolver resolver{1};
  std::unique_ptr<test::child_process> danted;
  std::uint16_t port = 0;
  std::string dir, log;

  void SetUp() override {
    if (!test::have_program("danted"))
      GTEST_SKIP() << "danted is not installed (scripts/deps: dante-server)";
    char tmpl[] = "/tmp/warren-dante-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    for (int i = 0; i < 5 && !danted; ++i) {
      port = test::free_port();
      log = dir + "/danted.log";
      const std::string conf = dir + "/danted.conf";
      std::ofstream f(conf);
      f << "logoutput: " << log << "\ninternal: 127.0.0.1 port = " << port << "\nexternal: 127.0.0.1\n"
        << "socksmethod: none\nclientmethod: none\n";
      if (::geteuid() == 0)
        f << "user.privileged: root\nuser.unprivileged: nobody\n";
      f << "client pass {\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n}\n"
        << "socks pass {\n  from: 127.0.0.0/8 to: 127.0.0.0/8\n  command: connect udpassociate\n  log: error\n}\n"
        << "socks pass {\n  from: 127.0.0.0/8 to: 127.0.0.0/8\n  command: udpreply\n  log: error\n}\n";
      f.close();
      auto p = std::make_unique<test::child_process>(std::vector<std::string>{"danted", "-f", conf, "-N", "1"});
      if (test::wait_tcp_listening(*p, port))
        danted = std::move(p);
    }
    ASSERT_TRUE(danted) << "danted did not start: " << test::read_file(log);
  }
  void TearDown() override {
    danted.reset();
    if (!dir.empty())
      std::system(("rm -rf " + dir).c_str());
  }

  socks5_upstream upstream() {
    socks5_upstream_options o;
    o.server = {"127.0.0.1", port};
    o.connect_timeout = 5s;
    return socks5_upstream(io.get_executor(), resolver, o);
  }
};

TEST_F(dante, connect_carries_bytes_both_ways) {
  tcp::acceptor a(io, tcp::endpoint(k_lo, 0));
  test::spawn(io, tcp_echo(a));
  auto up = upstream();
  bool done = false;
  test::spawn(io, [&]() -> asio::awaitable<void> {
    auto r = co_await up.connect(a.local_endpoint());
    EXPECT_FALSE(r.failure) << r.failure.message;
    if (!r.socket) {
      done = true;
      co_return;
    }
    const std::string msg = "through dante and back";
    co_await asio::async_write(*r.socket, asio::buffer(msg), use_tuple);
    std::string back(msg.size(), '\0');
    auto [ec, n] = co_await asio::async_read(*r.socket, asio::buffer(back), use_tuple);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(back, msg);
    done = true;
  });
  ASSERT_TRUE(test::run_until(io, [&] { return done; }));
}

TEST_F(dante, connect_to_a_closed_port_is_refused) {
  std::uint16_t closed = 0;
  {
    tcp::acceptor a(io, tcp::endpoint(k_lo, 0));
    closed = a.local_endpoint().port();
  }
  auto up = upstream();
  std::optional<socks5_upstream::connect_result> got;
  test::spawn(io, [&]() -> asio::awaitable<void> { got = co_await up.connect(tcp::endpoint(k_lo, closed)); });
  ASSERT_TRUE(test::run_until(io, [&] { return got.has_value(); }));
  EXPECT_EQ(got->failure.kind, upstream_error::refused) << got->failure.message;
  EXPECT_FALSE(got->socket);
  EXPECT_NE(got->failure.message.find("connection refused"), std::string::npos) << got->failure.message;
}

TEST_F(dante, udp_associate_carries_datagrams_both_ways) {
  udp::socket echo(io, udp::endpoint(k_lo, 0));
  test::spawn(io, udp_echo(echo));
  auto up = upstream();
  bool done = false;
  test::spawn(io, [&]() -> asio::awaitable<void> {
    auto r = co_await up.udp_associate();
    EXPECT_FALSE(r.failure) << r.failure.message;
    if (!r.association) {
      done = true;
      co_return;
    }
    for (int i = 0; i < 3; ++i) {
      const std::string msg = "datagram " + std::to_string(i);
      auto ec = co_await r.association->send(echo.local_endpoint(),
                                             {reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size()});
      EXPECT_FALSE(ec) << ec.message();
      auto got = co_await r.association->receive();
      EXPECT_FALSE(got.ec) << got.ec.message();
      EXPECT_EQ(got.source, echo.local_endpoint());
      EXPECT_EQ(std::string(got.payload.begin(), got.payload.end()), msg);
    }
    r.association->close();
    done = true;
  });
  ASSERT_TRUE(test::run_until(io, [&] { return done; })) << test::read_file(log);
}

TEST(socks5_upstream_down, unreachable_server_is_proxy_down) {
  asio::io_context io;
  net::system_resolver resolver{1};
  std::uint16_t closed = 0;
  {
    tcp::acceptor a(io, tcp::endpoint(k_lo, 0));
    closed = a.local_endpoint().port();
  }
  socks5_upstream_options o;
  o.server = {"127.0.0.1", closed};
  socks5_upstream up(io.get_executor(), resolver, o);
  std::optional<socks5_upstream::connect_result> got;
  test::spawn(io, [&]() -> asio::awaitable<void> { got = co_await up.connect(tcp::endpoint(k_lo, 9)); });
  ASSERT_TRUE(test::run_until(io, [&] { return got.has_value(); }));
  EXPECT_EQ(got->failure.kind, upstream_error::proxy_down) << got->failure.message;
  EXPECT_NE(got->failure.message.find("cannot reach the SOCKS5 server socks5://127.0.0.1:"), std::string::npos)
      << got->failure.message;
}

// ---- a scripted server (the codec's server side) ----

struct script {
  std::optional<s5::credentials> required; // user/pass the server insists on
  s5::reply_code code = s5::reply_code::succeeded;
  s5::address bound;                   // BND in the reply
  bool close_instead_of_reply = false; // what some servers do to UDP ASSOCIATE
  bool close_after_reply = false;
  std::optional<s5::request> seen;
};

template <class Parse>
asio::awaitable<std::optional<std::invoke_result_t<Parse, std::span<const std::uint8_t>>>>
read_msg(tcp::socket& s, std::vector<std::uint8_t>& buf, Parse parse) {
  buf.clear();
  for (;;) {
    auto r = parse(std::span<const std::uint8_t>(buf));
    if (!r.need_more())
      co_return r;
    const auto have = buf.size();
    buf.resize(r.needed());
    auto [ec, n] = co_await asio::async_read(s, asio::buffer(buf.data() + have, buf.size() - have), use_tuple);
    if (ec)
      co_return std::nullopt;
  }
}

asio::awaitable<void> scripted_server(tcp::acceptor& a, script& sc) {
  auto [ec, s] = co_await a.async_accept(use_tuple);
  if (ec)
    co_return;
  std::vector<std::uint8_t> buf;
  auto g = co_await read_msg(s, buf, s5::parse_greeting);
  if (!g || !*g)
    co_return;
  const auto m = s5::choose_method(**g, sc.required.has_value());
  co_await asio::async_write(s, asio::buffer(s5::encode_method_choice(m)), use_tuple);
  if (m == s5::method::none_acceptable)
    co_return;
  if (m == s5::method::userpass) {
    auto up = co_await read_msg(s, buf, s5::parse_userpass);
    if (!up || !*up)
      co_return;
    const bool ok = **up == *sc.required;
    co_await asio::async_write(s, asio::buffer(s5::encode_userpass_status(ok)), use_tuple);
    if (!ok)
      co_return;
  }
  auto req = co_await read_msg(s, buf, s5::parse_request);
  if (!req || !*req)
    co_return;
  sc.seen = **req;
  if (sc.close_instead_of_reply)
    co_return;
  co_await asio::async_write(s, asio::buffer(s5::encode_reply(sc.code, sc.bound)), use_tuple);
  if (sc.close_after_reply)
    co_return;
  std::array<char, 64> sink{};
  for (;;) {
    auto [re, n] = co_await s.async_read_some(asio::buffer(sink), use_tuple);
    if (re)
      co_return;
  }
}

struct scripted : ::testing::Test {
  asio::io_context io;
  net::system_resolver resolver{1};
  tcp::acceptor acceptor{io, tcp::endpoint(k_lo, 0)};
  script sc;

  socks5_upstream upstream(std::optional<s5::credentials> creds = {}) {
    socks5_upstream_options o;
    o.server = {"127.0.0.1", acceptor.local_endpoint().port()};
    o.credentials = std::move(creds);
    o.connect_timeout = 5s;
    return socks5_upstream(io.get_executor(), resolver, o);
  }

  socks5_upstream::connect_result connect(socks5_upstream& up) {
    test::spawn(io, scripted_server(acceptor, sc));
    std::optional<socks5_upstream::connect_result> got;
    test::spawn(io, [&]() -> asio::awaitable<void> { got = co_await up.connect(tcp::endpoint(k_lo, 80)); });
    EXPECT_TRUE(test::run_until(io, [&] { return got.has_value(); }));
    return got ? std::move(*got) : socks5_upstream::connect_result{};
  }

  socks5_upstream::associate_result associate(socks5_upstream& up) {
    test::spawn(io, scripted_server(acceptor, sc));
    std::optional<socks5_upstream::associate_result> got;
    test::spawn(io, [&]() -> asio::awaitable<void> { got = co_await up.udp_associate(); });
    EXPECT_TRUE(test::run_until(io, [&] { return got.has_value(); }));
    return got ? std::move(*got) : socks5_upstream::associate_result{};
  }
};

TEST_F(scripted, user_and_password_accepted) {
  sc.required = s5::credentials{"alice", "s3cret"};
  auto up = upstream(s5::credentials{"alice", "s3cret"});
  auto r = connect(up);
  EXPECT_FALSE(r.failure) << r.failure.message;
  EXPECT_TRUE(r.socket);
  ASSERT_TRUE(sc.seen);
  EXPECT_EQ(sc.seen->destination.to_string(), "127.0.0.1:80");
}

TEST_F(scripted, wrong_password_is_auth_failed) {
  sc.required = s5::credentials{"alice", "s3cret"};
  auto up = upstream(s5::credentials{"alice", "wrong"});
  auto r = connect(up);
  EXPECT_EQ(r.failure.kind, upstream_error::auth_failed) << r.failure.message;
  EXPECT_EQ(r.failure.message.find("wrong"), std::string::npos) << "a password in a message";
}

TEST_F(scripted, missing_credentials_is_auth_failed) {
  sc.required = s5::credentials{"alice", "s3cret"};
  auto up = upstream();
  EXPECT_EQ(connect(up).failure.kind, upstream_error::auth_failed);
}

TEST_F(scripted, unreachable_replies_are_unreachable) {
  for (auto code :
       {s5::reply_code::network_unreachable, s5::reply_code::host_unreachable, s5::reply_code::ttl_expired}) {
    sc.code = code;
    auto up = upstream();
    EXPECT_EQ(connect(up).failure.kind, upstream_error::unreachable) << to_string(code);
  }
  sc.code = s5::reply_code::not_allowed;
  auto up = upstream();
  EXPECT_EQ(connect(up).failure.kind, upstream_error::other);
}

TEST_F(scripted, udp_refused_like_ssh_is_its_own_kind) {
  sc.code = s5::reply_code::command_not_supported;
  auto up = upstream();
  auto r = associate(up);
  EXPECT_EQ(r.failure.kind, upstream_error::udp_not_supported) << r.failure.message;
  EXPECT_FALSE(r.association);
}

TEST_F(scripted, udp_closed_instead_of_reply_is_udp_not_supported) {
  sc.close_instead_of_reply = true;
  auto up = upstream();
  EXPECT_EQ(associate(up).failure.kind, upstream_error::udp_not_supported);
}

TEST_F(scripted, silent_server_times_out) {
  // Accepts and never speaks: the handshake's bound ends it.
  std::optional<socks5_upstream::connect_result> got;
  socks5_upstream_options o;
  o.server = {"127.0.0.1", acceptor.local_endpoint().port()};
  o.connect_timeout = 200ms;
  socks5_upstream up(io.get_executor(), resolver, o);
  test::spawn(io, [&]() -> asio::awaitable<void> { got = co_await up.connect(tcp::endpoint(k_lo, 80)); });
  ASSERT_TRUE(test::run_until(
      io, [&] { return got.has_value(); }, 5s));
  EXPECT_EQ(got->failure.kind, upstream_error::timeout) << got->failure.message;
}

TEST_F(scripted, relay_at_any_address_means_the_server_and_fragments_are_dropped) {
  udp::socket relay(io, udp::endpoint(k_lo, 0));
  sc.bound = s5::address::from_ipv4({0, 0, 0, 0}, relay.local_endpoint().port());
  auto up = upstream();
  auto r = associate(up);
  ASSERT_FALSE(r.failure) << r.failure.message;
  ASSERT_TRUE(r.association);
  EXPECT_EQ(r.association->relay(), relay.local_endpoint());
  ASSERT_TRUE(sc.seen);
  EXPECT_EQ(sc.seen->cmd, s5::command::udp_associate);

  bool done = false;
  test::spawn(io, [&]() -> asio::awaitable<void> {
    const std::array<std::uint8_t, 3> payload{1, 2, 3};
    const udp::endpoint dst(asio::ip::make_address("192.0.2.1"), 53);
    co_await r.association->send(dst, payload);
    std::array<std::uint8_t, 512> buf{};
    udp::endpoint client;
    auto [ec, n] = co_await relay.async_receive_from(asio::buffer(buf), client, use_tuple);
    auto d = s5::parse_udp_datagram({buf.data(), n});
    EXPECT_TRUE(d);
    if (d) {
      EXPECT_EQ(d->destination.to_string(), "192.0.2.1:53");
      EXPECT_EQ(std::vector<std::uint8_t>(d->payload.begin(), d->payload.end()), std::vector<std::uint8_t>({1, 2, 3}));
    }
    // A fragment, then garbage, then a whole datagram: only the last arrives.
    auto header = s5::encode_udp_header(s5::address::from_ipv4({192, 0, 2, 1}, 53));
    auto frag = header;
    frag[2] = 1;
    frag.push_back(9);
    co_await relay.async_send_to(asio::buffer(frag), client, use_tuple);
    const std::array<std::uint8_t, 2> junk{0, 0};
    co_await relay.async_send_to(asio::buffer(junk), client, use_tuple);
    header.push_back(7);
    co_await relay.async_send_to(asio::buffer(header), client, use_tuple);
    auto got = co_await r.association->receive();
    EXPECT_FALSE(got.ec);
    EXPECT_EQ(got.source, dst);
    EXPECT_EQ(std::vector<std::uint8_t>(got.payload.begin(), got.payload.end()), std::vector<std::uint8_t>({7}));
    EXPECT_EQ(r.association->fragments_dropped(), 1u);
    EXPECT_EQ(r.association->malformed_dropped(), 1u);
    done = true;
  });
  ASSERT_TRUE(test::run_until(io, [&] { return done; }));
}

TEST_F(scripted, association_ends_with_its_control_connection) {
  udp::socket relay(io, udp::endpoint(k_lo, 0));
  sc.bound = s5::address::from_ipv4({127, 0, 0, 1}, relay.local_endpoint().port());
  sc.close_after_reply = true;
  auto up = upstream();
  auto r = associate(up);
  ASSERT_TRUE(r.association) << r.failure.message;
  std::optional<error_code> closed, receive_ec;
  test::spawn(io, [&]() -> asio::awaitable<void> { closed = co_await r.association->wait_closed(); });
  test::spawn(io, [&]() -> asio::awaitable<void> { receive_ec = (co_await r.association->receive()).ec; });
  ASSERT_TRUE(test::run_until(io, [&] { return closed && receive_ec; }));
  EXPECT_EQ(*closed, asio::error::eof);
  EXPECT_EQ(*receive_ec, asio::error::operation_aborted);
}

TEST(socks5_upstream_url, credentials_come_from_the_url) {
  auto o = socks5_upstream_options_from_url("socks5://bob:pw@127.0.0.1:1081");
  ASSERT_TRUE(o) << o.error();
  EXPECT_EQ(o->server.host, "127.0.0.1");
  EXPECT_EQ(o->server.port, 1081);
  ASSERT_TRUE(o->credentials);
  EXPECT_EQ(o->credentials->user, "bob");
  EXPECT_EQ(o->credentials->password, "pw");
  EXPECT_FALSE(socks5_upstream_options_from_url("http://127.0.0.1:3128"));
}

} // namespace
