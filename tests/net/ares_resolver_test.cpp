// ares_resolver against a real dnsmasq on 127.0.0.1 (pointed at through
// `servers`; production reads resolv.conf), a server that never answers, and
// — as root, in a network namespace the test makes in a forked child — an
// nftables rule that drops unmarked DNS and TCP packets, so only marked
// sockets get through; the connector's marked attempts are checked there too.
#include "net/ares_resolver.hpp"
#include "net/connector.hpp"
#include "net/socket_mark.hpp"

#include "test_process.hpp"
#include "test_util.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ip/udp.hpp>
#include <gtest/gtest.h>

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::net;
namespace asio = boost::asio;

namespace {

struct lookup_result {
  bool done = false;
  error_code ec;
  std::vector<asio::ip::address> addresses;
};

lookup_result lookup(asio::io_context& io, resolver& r, const std::string& host, ip_family f,
                     std::chrono::milliseconds limit = 10s) {
  lookup_result out;
  r.async_resolve(io.get_executor(), host, f,
                  [&](error_code ec, std::vector<asio::ip::address> a) {
                    out.done = true;
                    out.ec = ec;
                    out.addresses = std::move(a);
                  },
                  {});
  test::run_until(
      io, [&] { return out.done; }, limit);
  return out;
}

/// dnsmasq on a free port, or nullopt (with the reason in `why`).
std::unique_ptr<test::child_process> start_dnsmasq(std::uint16_t& port) {
  for (int i = 0; i < 3; ++i) {
    port = test::free_port();
    auto p = std::make_unique<test::child_process>(test::dnsmasq_argv(port));
    if (test::wait_udp_bound(*p, port))
      return p;
  }
  return nullptr;
}

struct ares : ::testing::Test {
  asio::io_context io;
  std::uint16_t port = 0;
  std::unique_ptr<test::child_process> dns;

  void SetUp() override {
    if (!test::have_program("dnsmasq"))
      GTEST_SKIP() << "dnsmasq is not installed (scripts/deps: dnsmasq-base)";
    dns = start_dnsmasq(port);
    ASSERT_TRUE(dns) << "dnsmasq did not start";
  }

  ares_resolver_options to_dnsmasq() const {
    ares_resolver_options o;
    o.servers = "127.0.0.1:" + std::to_string(port);
    o.try_timeout = 1000ms;
    o.tries = 2;
    return o;
  }
};

TEST_F(ares, resolves_a_and_aaaa_per_family) {
  ares_resolver r(to_dnsmasq());
  auto v4 = lookup(io, r, "warren.test", ip_family::v4);
  ASSERT_TRUE(v4.done);
  ASSERT_FALSE(v4.ec) << v4.ec.message();
  EXPECT_EQ(v4.addresses, std::vector<asio::ip::address>{asio::ip::make_address("127.0.0.9")});
  auto v6 = lookup(io, r, "warren.test", ip_family::v6);
  ASSERT_TRUE(v6.done);
  ASSERT_FALSE(v6.ec) << v6.ec.message();
  EXPECT_EQ(v6.addresses, std::vector<asio::ip::address>{asio::ip::make_address("fd00::9")});
}

TEST_F(ares, nxdomain_is_host_not_found) {
  ares_resolver r(to_dnsmasq());
  auto res = lookup(io, r, "nx.test", ip_family::v4);
  ASSERT_TRUE(res.done);
  EXPECT_EQ(res.ec, asio::error::host_not_found) << res.ec.message();
  EXPECT_EQ(describe(res.ec), "no such host");
  EXPECT_TRUE(res.addresses.empty());
}

TEST_F(ares, literals_and_localhost_never_ask) {
  ares_resolver_options o;
  o.servers = "127.0.0.1:1"; // nobody: a question would fail
  ares_resolver r(o);
  auto lit = lookup(io, r, "192.0.2.7", ip_family::v4);
  EXPECT_FALSE(lit.ec);
  EXPECT_EQ(lit.addresses, std::vector<asio::ip::address>{asio::ip::make_address("192.0.2.7")});
  auto other = lookup(io, r, "192.0.2.7", ip_family::v6);
  EXPECT_EQ(other.ec, asio::error::no_data);
  auto local = lookup(io, r, "localhost", ip_family::v6);
  EXPECT_FALSE(local.ec);
  EXPECT_EQ(local.addresses, std::vector<asio::ip::address>{asio::ip::address_v6::loopback()});
}

TEST_F(ares, connector_connects_through_it) {
  ares_resolver r(to_dnsmasq());
  asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.9"), 0));
  connect_options o;
  o.he.policy = family_policy::ipv4_only;
  std::optional<connect_result> got;
  start_connect(io.get_executor(), r, {"warren.test", a.local_endpoint().port()}, o,
                [&](connect_result c) { got = std::move(c); }, {});
  ASSERT_TRUE(test::run_until(io, [&] { return got.has_value(); }));
  EXPECT_FALSE(got->ec) << got->detail;
  EXPECT_EQ(got->peer.address(), asio::ip::make_address("127.0.0.9"));
}

struct ares_silent : ::testing::Test {
  asio::io_context io;
  // A server that reads every query and never answers.
  asio::ip::udp::socket silent{io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::string server() const { return "127.0.0.1:" + std::to_string(silent.local_endpoint().port()); }
};

TEST_F(ares_silent, unanswered_query_times_out_by_c_ares_schedule) {
  ares_resolver_options o;
  o.servers = server();
  o.try_timeout = 100ms;
  o.tries = 1;
  o.deadline = 30s; // not this bound: c-ares' own
  ares_resolver r(o);
  const auto started = std::chrono::steady_clock::now();
  auto res = lookup(io, r, "warren.test", ip_family::v4);
  ASSERT_TRUE(res.done);
  EXPECT_EQ(res.ec, ares_timed_out()) << res.ec.message();
  EXPECT_EQ(describe(res.ec), "the DNS servers did not answer in time");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

TEST_F(ares_silent, deadline_bounds_the_lookup) {
  ares_resolver_options o;
  o.servers = server();
  o.try_timeout = 10'000ms;
  o.tries = 5;
  o.deadline = 200ms; // this bound, far before c-ares' 10 s
  ares_resolver r(o);
  const auto started = std::chrono::steady_clock::now();
  auto res = lookup(io, r, "warren.test", ip_family::v4);
  ASSERT_TRUE(res.done);
  EXPECT_EQ(res.ec, ares_timed_out()) << res.ec.message();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

TEST_F(ares_silent, cancellation_ends_the_lookup_at_once) {
  ares_resolver_options o;
  o.servers = server();
  o.try_timeout = 10'000ms;
  ares_resolver r(o);
  asio::cancellation_signal cancel;
  std::optional<error_code> got;
  r.async_resolve(
      io.get_executor(), "warren.test", ip_family::v4, [&](error_code ec, std::vector<asio::ip::address>) { got = ec; },
      cancel.slot());
  io.poll(); // the lookup starts and sends its query
  cancel.emit(asio::cancellation_type::terminal);
  ASSERT_TRUE(test::run_until(
      io, [&] { return got.has_value(); }, 2s));
  EXPECT_EQ(*got, asio::error::operation_aborted);
}

// ---- marks (root) ----

/// Runs `body` in a forked child inside a new network namespace with
/// loopback up; returns its exit status (0: passed), its complaints on stderr.
int in_netns(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNET) != 0) {
      std::perror("unshare(CLONE_NEWNET)");
      ::_exit(90);
    }
    if (std::system("ip link set lo up") != 0)
      ::_exit(91);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int fail(const char* what) {
  std::fprintf(stderr, "mark test: %s\n", what);
  return 1;
}

TEST(ares_mark, only_marked_dns_and_connects_pass_an_nftables_mark_filter) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root (a network namespace and nftables)";
  if (!test::have_program("dnsmasq") || !test::have_program("nft"))
    GTEST_SKIP() << "needs dnsmasq and nft (scripts/deps)";
  const int rc = in_netns([] {
    constexpr std::uint32_t mark = 0x2a;
    const std::uint16_t dns_port = 5353, tcp_port = 8080; // a fresh namespace: both free
    // Unmarked packets to the DNS port are dropped, unmarked SYNs to the TCP
    // port are reset: a missing mark shows as a timeout or a refusal.
    const std::string rules = "nft -f - <<'EOF'\n"
                              "table inet warren_mark_test {\n"
                              "  chain out {\n"
                              "    type filter hook output priority 0;\n"
                              "    udp dport " +
                              std::to_string(dns_port) +
                              " meta mark != 0x2a drop\n"
                              "    tcp dport " +
                              std::to_string(tcp_port) +
                              " meta mark != 0x2a reject with tcp reset\n"
                              "  }\n"
                              "}\nEOF";
    if (std::system(rules.c_str()) != 0)
      return fail("nft rules not loaded");
    test::child_process dns(test::dnsmasq_argv(dns_port));
    if (!test::wait_udp_bound(dns, dns_port))
      return fail("dnsmasq did not start");
    asio::io_context io;
    ares_resolver_options o;
    o.servers = "127.0.0.1:" + std::to_string(dns_port);
    o.try_timeout = 300ms;
    o.tries = 1;
    std::vector<std::uint32_t> seen;
    o.on_socket = [&](int fd) {
      std::uint32_t m = 0;
      get_socket_mark(fd, m);
      seen.push_back(m);
    };
    ares_resolver unmarked(o);
    auto blocked = lookup(io, unmarked, "warren.test", ip_family::v4);
    // (A packet dropped in OUTPUT fails the send with EPERM, which c-ares
    // reports as "connection refused".)
    if (!blocked.ec || blocked.ec == asio::error::host_not_found)
      return fail("an unmarked lookup got through the filter: the test cannot see marks");
    o.mark = mark;
    seen.clear();
    ares_resolver marked(o);
    auto passed = lookup(io, marked, "warren.test", ip_family::v4);
    if (passed.ec || passed.addresses.empty())
      return fail("the marked lookup did not get through");
    if (seen.empty() || seen.front() != mark)
      return fail("the DNS socket's SO_MARK read back is not the mark");

    asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), tcp_port));
    auto connect = [&](std::optional<std::uint32_t> m) {
      connect_options co;
      co.mark = m;
      std::optional<connect_result> got;
      test::fake_resolver none;
      start_connect(io.get_executor(), none, {"127.0.0.1", tcp_port}, co, [&](connect_result c) { got = std::move(c); },
                    {});
      test::run_until(io, [&] { return got.has_value(); });
      return got;
    };
    auto plain = connect(std::nullopt);
    if (!plain || plain->ec != asio::error::connection_refused)
      return fail("an unmarked connect got through the filter");
    auto with = connect(mark);
    if (!with || with->ec)
      return fail("the marked connect did not get through");
    std::uint32_t m = 0;
    get_socket_mark(with->socket->native_handle(), m);
    if (m != mark)
      return fail("the connected socket does not carry the mark");
    return 0;
  });
  EXPECT_EQ(rc, 0) << "see the child's stderr above";
}

TEST(ares_mark, without_cap_net_admin_the_error_says_so) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "as root, a child in a user namespace stands for an unprivileged user";
  const pid_t pid = ::fork();
  if (pid == 0) {
    // A new user namespace: CAP_NET_ADMIN there, not over the host's
    // network namespace the sockets live in, so SO_MARK fails with EPERM.
    if (::unshare(CLONE_NEWUSER) != 0)
      ::_exit(90);
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    connect_options co;
    co.mark = 0x2a;
    std::optional<connect_result> got;
    test::fake_resolver none;
    start_connect(io.get_executor(), none, {"127.0.0.1", a.local_endpoint().port()}, co,
                  [&](connect_result c) { got = std::move(c); }, {});
    test::run_until(io, [&] { return got.has_value(); });
    if (!got || !got->ec || got->detail.find("CAP_NET_ADMIN") == std::string::npos) {
      std::fprintf(stderr, "detail: %s\n", got ? got->detail.c_str() : "(none)");
      ::_exit(1);
    }
    ares_resolver_options o;
    o.servers = "127.0.0.1:" + std::to_string(a.local_endpoint().port());
    o.mark = 0x2a;
    ares_resolver r(o);
    auto res = lookup(io, r, "warren.test", ip_family::v4);
    if (res.ec != ares_mark_failed()) {
      std::fprintf(stderr, "lookup: %s\n", res.ec.message().c_str());
      ::_exit(2);
    }
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

} // namespace
