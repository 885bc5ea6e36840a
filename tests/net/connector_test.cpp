// The connector with real sockets on loopback. A listener with a full accept
// queue stands in for a black-holed address (SYNs dropped, no answer), so the
// Happy Eyeballs fallback is exercised without privileges; the network
// namespace version with real packet drops is tests/integration.
#include "net/connector.hpp"

#include "test_util.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>

using namespace std::chrono_literals;
using namespace warren;
using namespace warren::net;
namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using test::v4_loopback;
using test::v6_loopback;

namespace {

struct connector : ::testing::Test {
  asio::io_context io;
  test::fake_resolver resolver;

  tcp::acceptor listen_on(const asio::ip::address& address, std::uint16_t port = 0) {
    tcp::acceptor a(io);
    const tcp::endpoint ep(address, port);
    a.open(ep.protocol());
    if (address.is_v6())
      a.set_option(asio::ip::v6_only(true));
    a.set_option(tcp::acceptor::reuse_address(true));
    a.bind(ep);
    a.listen();
    return a;
  }

  std::uint16_t closed_port(const asio::ip::address& address) {
    auto a = listen_on(address);
    return a.local_endpoint().port(); // closed when `a` goes
  }

  void both_answer() {
    resolver.script[ip_family::v6] = {0ms, {}, {v6_loopback()}};
    resolver.script[ip_family::v4] = {0ms, {}, {v4_loopback()}};
  }

  connect_result connect(const std::string& host, std::uint16_t port, connect_options options = {}) {
    std::optional<connect_result> result;
    async_connect(io.get_executor(), resolver, host_port{host, port}, options,
                  [&](connect_result r) { result = std::move(r); });
    EXPECT_TRUE(test::run_until(
        io, [&] { return result.has_value(); }, 15s));
    return result ? std::move(*result) : connect_result{};
  }
};

} // namespace

TEST_F(connector, LiteralNeedsNoResolver) {
  auto server = listen_on(v4_loopback());
  auto r = connect("127.0.0.1", server.local_endpoint().port());
  ASSERT_FALSE(r.ec) << r.detail;
  ASSERT_TRUE(r.socket);
  EXPECT_TRUE(r.socket->is_open());
  EXPECT_EQ(r.peer, server.local_endpoint());
  EXPECT_TRUE(resolver.asked.empty());
  tcp::no_delay nd;
  r.socket->get_option(nd);
  EXPECT_TRUE(nd.value()) << "TCP_NODELAY on connected sockets";
}

TEST_F(connector, AutoPrefersIpv6WhenBothWork) {
  auto v6 = listen_on(v6_loopback());
  auto v4 = listen_on(v4_loopback(), v6.local_endpoint().port());
  both_answer();
  auto r = connect("dual.test", v6.local_endpoint().port());
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_TRUE(r.peer.address().is_v6());
}

TEST_F(connector, PreferIpv4PicksIpv4WhenBothWork) {
  auto v6 = listen_on(v6_loopback());
  auto v4 = listen_on(v4_loopback(), v6.local_endpoint().port());
  both_answer();
  auto r = connect("dual.test", v6.local_endpoint().port(), {.he = {.policy = family_policy::prefer_ipv4}});
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_TRUE(r.peer.address().is_v4());
}

TEST_F(connector, RefusedIpv4FallsBackToIpv6) {
  auto v6 = listen_on(v6_loopback());
  both_answer();
  auto r = connect("dual.test", v6.local_endpoint().port(), {.he = {.policy = family_policy::prefer_ipv4}});
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_TRUE(r.peer.address().is_v6());
}

TEST_F(connector, SilentIpv6FallsBackToIpv4AfterAttemptDelay) {
  test::hanging_listener hang(io, v6_loopback());
  auto v4 = listen_on(v4_loopback(), hang.port());
  both_answer();
  const int fds_before = test::open_fd_count();
  auto r = connect("dual.test", hang.port());
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_TRUE(r.peer.address().is_v4());
  EXPECT_GE(r.elapsed, 240ms) << "IPv4 must wait for the attempt delay";
  // The losing IPv6 attempt is closed: only the winner remains open.
  EXPECT_EQ(test::open_fd_count(), fds_before + 1);
}

TEST_F(connector, Ipv4PolicyNeverAsksForAaaa) {
  auto v4 = listen_on(v4_loopback());
  both_answer();
  auto r = connect("dual.test", v4.local_endpoint().port(), {.he = {.policy = family_policy::ipv4_only}});
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_EQ(resolver.asked[ip_family::v6], 0);
  EXPECT_EQ(resolver.asked[ip_family::v4], 1);
}

TEST_F(connector, Ipv6PolicyFailsWhenOnlyIpv4Listens) {
  auto v4 = listen_on(v4_loopback());
  both_answer();
  auto r = connect("dual.test", v4.local_endpoint().port(), {.he = {.policy = family_policy::ipv6_only}});
  EXPECT_EQ(r.ec, asio::error::connection_refused);
  EXPECT_NE(r.detail.find("[::1]"), std::string::npos) << r.detail;
  EXPECT_EQ(r.detail.find("127.0.0.1"), std::string::npos) << r.detail;
  EXPECT_EQ(resolver.asked[ip_family::v4], 0);
}

TEST_F(connector, EveryAttemptRefusedNamesEachAddress) {
  const auto port = closed_port(v4_loopback());
  both_answer();
  auto r = connect("dual.test", port);
  EXPECT_EQ(r.ec, asio::error::connection_refused);
  EXPECT_NE(r.detail.find("[::1]:" + std::to_string(port) + ": connection refused"), std::string::npos) << r.detail;
  EXPECT_NE(r.detail.find("127.0.0.1:" + std::to_string(port) + ": connection refused"), std::string::npos) << r.detail;
}

TEST_F(connector, UnresolvableNameSaysSo) {
  resolver.script[ip_family::v6] = {0ms, asio::error::host_not_found, {}};
  resolver.script[ip_family::v4] = {0ms, asio::error::host_not_found, {}};
  auto r = connect("nosuch.test", 80);
  EXPECT_EQ(r.ec, asio::error::host_not_found);
  EXPECT_NE(r.detail.find("cannot resolve nosuch.test"), std::string::npos) << r.detail;
}

TEST_F(connector, OverallTimeoutWhenNothingAnswers) {
  test::hanging_listener hang(io, v4_loopback());
  resolver.script[ip_family::v4] = {0ms, {}, {v4_loopback()}};
  const int fds_before = test::open_fd_count();
  auto r = connect("slow.test", hang.port(), {.he = {.policy = family_policy::ipv4_only, .timeout = 300ms}});
  EXPECT_EQ(r.ec, warren::errc::timed_out);
  EXPECT_NE(r.detail.find("timed out after 300ms"), std::string::npos) << r.detail;
  EXPECT_EQ(test::open_fd_count(), fds_before) << "the timed-out attempt's socket is closed";
}

TEST_F(connector, ResolverThatNeverAnswersTimesOut) {
  auto r = connect("dead-dns.test", 80, {.he = {.timeout = 200ms}});
  EXPECT_EQ(r.ec, warren::errc::timed_out);
  EXPECT_NE(r.detail.find("name resolution did not finish"), std::string::npos) << r.detail;
  EXPECT_EQ(resolver.pending(), 0) << "the run ended but left its lookups queued";
}

// A run that has its answer cancels the lookup it still waits for, so a
// slow lookup nobody needs any more is skipped instead of holding up the
// lookups queued behind it.
TEST_F(connector, AnEndedRunCancelsTheLookupItStillWaitsFor) {
  auto v4 = listen_on(v4_loopback());
  resolver.script[ip_family::v4] = {0ms, {}, {v4_loopback()}}; // AAAA never answers
  auto r = connect("v4.test", v4.local_endpoint().port());
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_EQ(resolver.cancelled[ip_family::v6], 1);
  EXPECT_EQ(resolver.pending(), 0);
}

// The awaitable async_resolve is cancelled by the losing side of `||`.
TEST_F(connector, AwaitedLookupIsCancelledByTheOtherSideOfOr) {
  std::optional<std::size_t> winner;
  test::spawn(io, [&]() -> asio::awaitable<void> {
    asio::steady_timer t(io, 10ms);
    auto r =
        co_await (async_resolve(resolver, io.get_executor(), "dead-dns.test", ip_family::v6, asio::use_awaitable) ||
                  t.async_wait(asio::use_awaitable));
    winner = r.index();
  });
  ASSERT_TRUE(test::run_until(io, [&] { return winner.has_value(); }));
  EXPECT_EQ(*winner, 1u);
  EXPECT_EQ(resolver.cancelled[ip_family::v6], 1);
  EXPECT_EQ(resolver.pending(), 0);
}

// A system_resolver with one thread whose lookups block until release():
// the first lookup holds the thread, the rest queue behind it.
struct system_resolver_test : ::testing::Test {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work =
      asio::make_work_guard(io); // answers come from the pool
  std::mutex m;
  std::condition_variable cv;
  bool released = false;
  std::atomic<int> looked_up{0};
  system_resolver r{1, [this](const std::string&, ip_family, std::vector<asio::ip::address>& out) {
                      ++looked_up;
                      std::unique_lock lock(m);
                      cv.wait(lock, [&] { return released; });
                      out = {v4_loopback()};
                      return error_code{};
                    }};

  void TearDown() override { release(); } // the pool's destructor waits for the blocked thread

  void release() {
    {
      std::lock_guard lock(m);
      released = true;
    }
    cv.notify_all();
  }

  /// Lookups run in all, counted once a lookup queued now has been answered
  /// (the pool has then passed every lookup queued before it).
  int looked_up_after_a_sentinel() {
    bool sentinel = false;
    r.async_resolve(io.get_executor(), "after.test", ip_family::v4,
                    [&](error_code, std::vector<asio::ip::address>) { sentinel = true; }, {});
    EXPECT_TRUE(test::run_until(io, [&] { return sentinel; }));
    return looked_up.load() - 1;
  }
};

// The system resolver skips a cancelled lookup that is still queued (a
// slow lookup holds its only thread here), and completes each lookup
// exactly once: a cancelled one at once, with operation_aborted.
TEST_F(system_resolver_test, CancelledQueuedLookupsAreSkipped) {
  constexpr int k_lookups = 20;
  std::array<int, k_lookups> calls{};
  std::array<error_code, k_lookups> results;
  std::array<asio::cancellation_signal, k_lookups> signals;
  for (int i = 0; i < k_lookups; ++i) {
    r.async_resolve(
        io.get_executor(), "slow.test", ip_family::v4,
        [&, i](error_code ec, std::vector<asio::ip::address>) {
          ++calls[i];
          results[i] = ec;
        },
        signals[i].slot());
  }
  for (int i = 1; i < k_lookups; ++i)
    signals[i].emit(asio::cancellation_type::terminal);
  // The cancelled ones complete while the first still blocks the pool.
  ASSERT_TRUE(test::run_until(io, [&] { return std::count(calls.begin() + 1, calls.end(), 1) == k_lookups - 1; }));
  for (int i = 1; i < k_lookups; ++i)
    EXPECT_EQ(results[i], asio::error::operation_aborted) << "lookup " << i;
  release();
  ASSERT_TRUE(test::run_until(io, [&] { return calls[0] == 1; }));
  EXPECT_FALSE(results[0]);
  signals[0].emit(asio::cancellation_type::terminal); // late: nothing happens
  io.restart();
  io.poll();
  EXPECT_EQ(looked_up_after_a_sentinel(), 1) << "cancelled lookups still ran";
  for (int i = 0; i < k_lookups; ++i)
    EXPECT_EQ(calls[i], 1) << "lookup " << i;
}

// A total cancellation is honoured only by a lookup not started yet: the
// one running answers when it ends, with its result; queued ones are
// skipped and answer at once.
TEST_F(system_resolver_test, TotalCancellationSkipsOnlyLookupsNotStarted) {
  std::array<std::optional<error_code>, 3> results;
  std::array<asio::cancellation_signal, 3> signals;
  for (std::size_t i = 0; i < results.size(); ++i)
    r.async_resolve(
        io.get_executor(), "slow.test", ip_family::v4,
        [&, i](error_code ec, std::vector<asio::ip::address>) { results[i] = ec; }, signals[i].slot());
  ASSERT_TRUE(test::run_until(io, [&] { return looked_up == 1; })) << "the first lookup started";
  for (auto& s : signals)
    s.emit(asio::cancellation_type::total);
  ASSERT_TRUE(test::run_until(io, [&] { return results[1] && results[2]; }));
  EXPECT_EQ(*results[1], asio::error::operation_aborted);
  EXPECT_EQ(*results[2], asio::error::operation_aborted);
  EXPECT_FALSE(results[0]) << "the running lookup answered before it ended";
  release();
  ASSERT_TRUE(test::run_until(io, [&] { return results[0].has_value(); }));
  EXPECT_FALSE(*results[0]) << "a running lookup ignores a total cancellation and answers as usual";
  EXPECT_EQ(looked_up_after_a_sentinel(), 1) << "a lookup skipped on total cancellation still ran";
}

// An inner resolver that answers only when the test says so.
class manual_resolver final : public resolver {
 public:
  struct lookup {
    std::string host;
    handler h;
  };
  std::deque<lookup> asked;
  std::vector<asio::cancellation_type> cancellations; // what reached us
  bool skip_on_total = false;                         // answer a total cancellation (a lookup not started yet)

  void async_resolve(asio::any_io_executor ex, std::string host, ip_family, handler h,
                     asio::cancellation_slot slot) override {
    asked.push_back({host, std::move(h)});
    if (slot.is_connected())
      slot.assign([this, ex, host](asio::cancellation_type type) {
        cancellations.push_back(type);
        if (!skip_on_total)
          return;
        auto it = std::find_if(asked.begin(), asked.end(), [&](const lookup& l) { return l.host == host; });
        if (it == asked.end())
          return;
        asio::post(ex, [h = std::move(it->h)] { h(asio::error::operation_aborted, {}); });
        asked.erase(it);
      });
  }
  /// Answers the oldest lookup still unanswered with 127.0.0.1.
  std::string answer_oldest() {
    auto l = std::move(asked.front());
    asked.pop_front();
    l.h({}, {v4_loopback()});
    return l.host;
  }
};

struct bounded_lookups : ::testing::Test {
  asio::io_context io;
  manual_resolver inner;
  std::shared_ptr<bounded_resolver> bounded = bounded_resolver::create(inner, 2);
  std::map<std::string, std::vector<error_code>> answers; // host -> every answer it got
  std::map<std::string, asio::cancellation_signal> signals;

  void ask(const std::string& host) {
    bounded->async_resolve(
        io.get_executor(), host, ip_family::v4,
        [this, host](error_code ec, std::vector<asio::ip::address>) { answers[host].push_back(ec); },
        signals[host].slot());
  }
  void settle() {
    io.restart();
    io.poll();
  }
  std::vector<std::string> inner_hosts() const {
    std::vector<std::string> out;
    for (const auto& l : inner.asked)
      out.push_back(l.host);
    return out;
  }
};

// At most `limit` lookups reach the inner resolver; the rest wait, and each
// starts, in the order asked, when one before it ends.
TEST_F(bounded_lookups, PassesTheLimitThenQueuesInOrder) {
  for (const auto* h : {"a", "b", "c", "d"})
    ask(h);
  EXPECT_EQ(inner_hosts(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(bounded->running(), 2u);
  EXPECT_EQ(bounded->waiting(), 2u);
  EXPECT_EQ(inner.answer_oldest(), "a");
  EXPECT_EQ(inner_hosts(), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(answers["a"], std::vector<error_code>{error_code{}});
  inner.answer_oldest();
  inner.answer_oldest();
  EXPECT_EQ(inner_hosts(), (std::vector<std::string>{"d"}));
  inner.answer_oldest();
  EXPECT_EQ(bounded->running(), 0u);
  EXPECT_EQ(bounded->waiting(), 0u);
  for (const auto* h : {"a", "b", "c", "d"})
    EXPECT_EQ(answers[h], std::vector<error_code>{error_code{}}) << h;
  EXPECT_TRUE(inner.cancellations.empty());
}

// A lookup cancelled while it waits ends at once, with operation_aborted,
// and never reaches the inner resolver.
TEST_F(bounded_lookups, CancelledWhileWaitingNeverReachesTheResolver) {
  for (const auto* h : {"a", "b", "c", "d"})
    ask(h);
  signals["c"].emit(asio::cancellation_type::terminal);
  settle();
  EXPECT_EQ(answers["c"], std::vector<error_code>{asio::error::operation_aborted});
  EXPECT_EQ(bounded->waiting(), 1u);
  inner.answer_oldest();
  EXPECT_EQ(inner_hosts(), (std::vector<std::string>{"b", "d"})) << "c was skipped";
  inner.answer_oldest();
  inner.answer_oldest();
  settle();
  EXPECT_EQ(answers["c"].size(), 1u) << "answered exactly once";
  EXPECT_TRUE(inner.cancellations.empty());
}

// A lookup cancelled while it runs ends at once, but its place stays taken
// until the inner resolver is done with it (the thread is still busy): the
// inner one gets a total cancellation, which a running lookup ignores.
TEST_F(bounded_lookups, CancelledWhileRunningKeepsItsPlaceUntilTheResolverEnds) {
  for (const auto* h : {"a", "b", "c"})
    ask(h);
  signals["a"].emit(asio::cancellation_type::terminal);
  settle();
  EXPECT_EQ(answers["a"], std::vector<error_code>{asio::error::operation_aborted});
  EXPECT_EQ(inner.cancellations, std::vector<asio::cancellation_type>{asio::cancellation_type::total});
  EXPECT_EQ(bounded->running(), 2u);
  EXPECT_EQ(inner_hosts(), (std::vector<std::string>{"a", "b"})) << "c waits: a still holds a thread";
  inner.answer_oldest(); // a's late answer: it frees the place, and goes nowhere
  EXPECT_EQ(inner_hosts(), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(answers["a"].size(), 1u) << "answered exactly once";
  signals["a"].emit(asio::cancellation_type::terminal); // late: nothing happens
  settle();
  EXPECT_EQ(answers["a"].size(), 1u);
  EXPECT_EQ(inner.cancellations.size(), 1u);
}

// One the inner resolver had not started yet (queued in its pool) is
// skipped there on the total cancellation, and its place is free at once.
TEST_F(bounded_lookups, CancelledBeforeTheResolverStartedItFreesItsPlaceAtOnce) {
  inner.skip_on_total = true;
  for (const auto* h : {"a", "b", "c"})
    ask(h);
  signals["a"].emit(asio::cancellation_type::terminal);
  settle();
  EXPECT_EQ(answers["a"], std::vector<error_code>{asio::error::operation_aborted});
  EXPECT_EQ(inner_hosts(), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(bounded->running(), 2u);
  EXPECT_EQ(bounded->waiting(), 0u);
}

// A total cancellation (only) keeps the resolver's contract: a waiting lookup
// has not started, so it ends at once; a running one is answered as the
// inner resolver answers it (here: it ran, so with its result).
TEST_F(bounded_lookups, TotalCancellationEndsOnlyWhatHasNotStarted) {
  for (const auto* h : {"a", "b", "c"})
    ask(h);
  signals["a"].emit(asio::cancellation_type::total);
  signals["c"].emit(asio::cancellation_type::total);
  settle();
  EXPECT_TRUE(answers["a"].empty()) << "a runs: it is answered when it ends";
  EXPECT_EQ(answers["c"], std::vector<error_code>{asio::error::operation_aborted});
  EXPECT_EQ(inner.cancellations, std::vector<asio::cancellation_type>{asio::cancellation_type::total});
  inner.answer_oldest();
  EXPECT_EQ(answers["a"], std::vector<error_code>{error_code{}});
}

// A client gone with lookups in flight: the bounded resolver lives until
// the inner one has answered, and answering then is safe.
TEST_F(bounded_lookups, OutlivesItsOwnerWhileLookupsRun) {
  ask("a");
  ask("b");
  ask("c");
  signals["c"].emit(asio::cancellation_type::terminal);
  settle();
  std::weak_ptr<bounded_resolver> weak = bounded;
  bounded.reset();
  EXPECT_FALSE(weak.expired()) << "running lookups hold it";
  inner.answer_oldest();
  inner.answer_oldest();
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(answers["a"].size(), 1u);
  EXPECT_EQ(answers["b"].size(), 1u);
}

TEST_F(connector, CancellationClosesEveryAttempt) {
  test::hanging_listener hang6(io, v6_loopback());
  resolver.script[ip_family::v6] = {0ms, {}, {v6_loopback()}};
  resolver.script[ip_family::v4] = {0ms, {}, {v4_loopback()}}; // refused: nothing listens there
  const int fds_before = test::open_fd_count();
  asio::cancellation_signal signal;
  std::optional<connect_result> result;
  async_connect(io.get_executor(), resolver, host_port{"hang.test", hang6.port()}, {},
                asio::bind_cancellation_slot(signal.slot(), [&](connect_result r) { result = std::move(r); }));
  // Let the first attempt start and the second become due.
  test::run_until(
      io, [] { return false; }, 400ms);
  EXPECT_GT(test::open_fd_count(), fds_before) << "attempts are in flight";
  signal.emit(asio::cancellation_type::terminal);
  ASSERT_TRUE(test::run_until(io, [&] { return result.has_value(); }));
  EXPECT_EQ(result->ec, warren::errc::cancelled);
  EXPECT_FALSE(result->socket);
  EXPECT_EQ(test::open_fd_count(), fds_before);
}

TEST_F(connector, SourceAddressPinsTheFamily) {
  auto v4 = listen_on(v4_loopback());
  both_answer();
  auto r = connect("dual.test", v4.local_endpoint().port(), {.source = v4_loopback()});
  ASSERT_FALSE(r.ec) << r.detail;
  EXPECT_EQ(r.socket->local_endpoint().address(), v4_loopback());
  EXPECT_EQ(resolver.asked[ip_family::v6], 0);
}

TEST_F(connector, LocalhostIsLoopbackWithoutAsking) {
  auto v4 = listen_on(v4_loopback());
  system_resolver real;
  std::optional<connect_result> result;
  async_connect(io.get_executor(), real, host_port{"localhost", v4.local_endpoint().port()}, {},
                [&](connect_result r) { result = std::move(r); });
  ASSERT_TRUE(test::run_until(io, [&] { return result.has_value(); }));
  ASSERT_FALSE(result->ec) << result->detail;
  EXPECT_TRUE(result->peer.address().is_loopback());
}
