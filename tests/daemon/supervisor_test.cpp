// The supervisor (src/daemon/supervisor.*): the reload diff (pure),
// placement over loops, operations with fake units on real loop threads,
// and drop-in files. The control executor is the test's io_context, run
// with run_until (bounded, never sleeps).
#include "daemon/dropin.hpp"
#include "daemon/supervisor.hpp"

#include "../net/test_util.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;
using namespace warren;
namespace asio = boost::asio;

namespace {

using daemon::change;
using daemon::unit_spec;

unit_spec spec(std::string kind, std::string name, std::vector<std::string> args, std::string origin = "file") {
  return {std::move(kind), std::move(name), std::move(args), std::move(origin)};
}

std::map<std::string, change> diff_map(const std::vector<unit_spec>& a, const std::vector<unit_spec>& b,
                                       const std::vector<std::string>& failed = {}) {
  std::map<std::string, change> out;
  for (const auto& s : daemon::diff_units(a, b, failed))
    out[s.name] = s.what;
  return out;
}

TEST(diff, keeps_changes_restarts_stops_and_starts) {
  const std::vector<unit_spec> running = {
      spec("relay", "same", {"--", "127.0.0.1:1", "127.0.0.1:2"}),
      spec("server", "token", {"--listen=ws://127.0.0.1:3", "--token-file=/a"}),
      spec("server", "port", {"--listen=ws://127.0.0.1:4", "--token-file=/a"}),
      spec("client", "gone", {"--local=5:127.0.0.1:6", "--", "ws://127.0.0.1:3"}),
      spec("relay", "kind", {"--", "127.0.0.1:7", "127.0.0.1:8"}),
  };
  const std::vector<unit_spec> wanted = {
      spec("relay", "same", {"--", "127.0.0.1:1", "127.0.0.1:2"}),
      spec("server", "token", {"--listen=ws://127.0.0.1:3", "--token-file=/b", "--allow=127.0.0.1"}),
      spec("server", "port", {"--listen=ws://127.0.0.1:9", "--token-file=/a"}),
      spec("server", "kind", {"--listen=ws://127.0.0.1:7", "--token-file=/a"}),
      spec("relay", "new", {"--", "127.0.0.1:10", "127.0.0.1:2"}),
  };
  const auto d = diff_map(running, wanted);
  EXPECT_EQ(d.at("same"), change::keep);
  EXPECT_EQ(d.at("token"), change::in_place);
  EXPECT_EQ(d.at("port"), change::restart);
  EXPECT_EQ(d.at("gone"), change::stop);
  EXPECT_EQ(d.at("kind"), change::restart);
  EXPECT_EQ(d.at("new"), change::start);
  EXPECT_EQ(d.size(), 6u);
}

TEST(diff, in_place_keys_depend_on_the_kind) {
  // A client's token file changes in place; its forwards do not.
  EXPECT_TRUE(daemon::changes_in_place(spec("client", "c", {"--token-file=/a", "--local=1:h:2", "--", "ws://h"}),
                                       spec("client", "c", {"--token-file=/b", "--local=1:h:2", "--", "ws://h"})));
  EXPECT_FALSE(daemon::changes_in_place(spec("client", "c", {"--token-file=/a", "--local=1:h:2", "--", "ws://h"}),
                                        spec("client", "c", {"--token-file=/a", "--local=3:h:2", "--", "ws://h"})));
  // A client's allow is no key of its; a relay has nothing in place but log_level.
  EXPECT_FALSE(daemon::changes_in_place(spec("relay", "r", {"--", "a:1", "b:2"}), spec("relay", "r", {"--", "a:1", "b:3"})));
  EXPECT_FALSE(daemon::changes_in_place(spec("relay", "r", {"--", "a:1", "b:2"}),
                                        spec("relay", "r", {"--log-level=debug", "--", "a:1", "b:2"})));
  // ...which is kept: log_level is never applied per unit.
  EXPECT_EQ(diff_map({spec("relay", "r", {"--", "a:1", "b:2"})},
                     {spec("relay", "r", {"--log-level=debug", "--", "a:1", "b:2"})})
                .at("r"),
            change::keep);
  EXPECT_TRUE(daemon::changes_in_place(spec("client", "c", {"--token-file=/a", "--", "ws://h"}),
                                       spec("client", "c", {"--token-file=/b", "--log-level=warn", "--", "ws://h"})));
  // A server's certificate: in place between two given ones only.
  EXPECT_TRUE(daemon::changes_in_place(spec("server", "s", {"--cert=/a", "--key=/b"}),
                                       spec("server", "s", {"--cert=/c", "--key=/d"})));
  EXPECT_FALSE(daemon::changes_in_place(spec("server", "s", {}), spec("server", "s", {"--cert=/c", "--key=/d"})));
  // Positionals are compared by place: a relay's listen and target swapped is a change.
  EXPECT_FALSE(daemon::changes_in_place(spec("relay", "r", {"--", "a:1", "b:2"}),
                                        spec("relay", "r", {"--log-level=warn", "--", "b:2", "a:1"})));
  // Equal is not "in place"; a file unit becoming a drop-in is a restart.
  EXPECT_FALSE(daemon::changes_in_place(spec("relay", "r", {}), spec("relay", "r", {})));
  EXPECT_FALSE(daemon::changes_in_place(spec("server", "s", {"--token-file=/a"}),
                                        spec("server", "s", {"--token-file=/b"}, "drop-in")));
}

TEST(diff, a_failed_unit_is_retried) {
  const std::vector<unit_spec> set = {spec("relay", "r", {"--", "a:1", "b:2"}),
                                      spec("server", "s", {"--token-file=/a"})};
  auto changed = set;
  changed[1].args = {"--token-file=/b"};
  const auto d = diff_map(set, changed, {"r", "s"});
  EXPECT_EQ(d.at("r"), change::restart);
  EXPECT_EQ(d.at("s"), change::restart); // not in place: it is not running
}

TEST(placement, least_loaded_first_of_equals) {
  EXPECT_EQ(daemon::least_loaded({0}), 0u);
  EXPECT_EQ(daemon::least_loaded({1, 0}), 1u);
  EXPECT_EQ(daemon::least_loaded({2, 1, 1}), 1u);
  EXPECT_EQ(daemon::least_loaded({0, 0, 0}), 0u);
}

// ---- the supervisor with fake units ----------------------------------------

/// Records the thread it runs on; start fails when its args say so; stop
/// finishes on the next turn of its loop.
class fake_unit final : public warren::unit::unit {
 public:
  fake_unit(asio::any_io_executor ex, unit_spec s, std::atomic<int>* live) : unit(std::move(ex)), spec_(std::move(s)), live_(live) {
    ++*live_;
  }
  ~fake_unit() override { --*live_; }
  std::string_view kind() const override { return "relay"; }
  expected<bool> start() override {
    thread_ = std::this_thread::get_id();
    if (std::find(spec_.args.begin(), spec_.args.end(), "--fail") != spec_.args.end()) {
      fail("port in use");
      return expected<bool>::failure("port in use");
    }
    std::ostringstream id;
    id << thread_;
    mutable_status().listening = {"fake " + name(), id.str()};
    set_state(warren::unit::unit_state::running);
    return true;
  }
  void stop(std::chrono::milliseconds, std::function<void()> done) override {
    set_state(warren::unit::unit_state::draining);
    asio::post(executor(), [this, done] {
      set_state(warren::unit::unit_state::stopped);
      done();
    });
  }
  void abandon() override {}
  warren::unit::reload_result reload(std::string_view) override {
    ++reloads;
    return {true, "reloaded"};
  }
  warren::unit::reload_result reconfigure(warren::unit::unit& replacement, std::string_view) override {
    const auto& to = dynamic_cast<fake_unit&>(replacement).spec_;
    if (std::find(to.args.begin(), to.args.end(), "--token-file=/unreadable") != to.args.end())
      return {false, "cannot read /unreadable"};
    spec_ = to;
    return {true, "changed"};
  }
  std::chrono::milliseconds drain_bound() const override { return 1s; }
  std::string stop_announcement() const override { return {}; }
  warren::unit::unit_counters counters() const override { return {}; }

  int reloads = 0;
  std::thread::id thread_;

 private:
  unit_spec spec_;
  std::atomic<int>* live_;
};

class supervisor_test : public ::testing::Test {
 protected:
  asio::io_context control;
  // The loops answer by posting here: without work, run_one_for would
  // return at once, stopped, and never see their answers.
  asio::executor_work_guard<asio::io_context::executor_type> work{control.get_executor()};
  std::atomic<int> live{0};
  std::vector<nlohmann::json> events;
  std::atomic<int> made{0};

  std::unique_ptr<daemon::supervisor> make(std::size_t threads) {
    // spdlog's registry is made on first use; the daemon makes it (log::init)
    // before any loop runs. Do the same here: made by two loop threads at
    // once inside uninstrumented libspdlog, TSan reports a race.
    spdlog::default_logger_raw();
    return std::make_unique<daemon::supervisor>(
        control.get_executor(), threads,
        [this](const unit_spec& s, asio::any_io_executor ex) -> expected<std::unique_ptr<unit::unit>> {
          ++made;
          if (s.kind == "bad")
            return expected<std::unique_ptr<unit::unit>>::failure("cannot read the token file");
          return std::unique_ptr<unit::unit>(std::make_unique<fake_unit>(std::move(ex), s, &live));
        },
        [this](nlohmann::json e) { events.push_back(std::move(e)); });
  }

  daemon::apply_report apply(daemon::supervisor& s, std::vector<unit_spec> wanted) {
    std::optional<daemon::apply_report> report;
    s.apply(std::move(wanted), "test", [&](daemon::apply_report r) { report = std::move(r); });
    EXPECT_TRUE(test::run_until(control, [&] { return report.has_value(); }));
    return report.value_or(daemon::apply_report{});
  }

  nlohmann::json list(daemon::supervisor& s) {
    std::optional<nlohmann::json> out;
    s.list([&](nlohmann::json j) { out = std::move(j); });
    EXPECT_TRUE(test::run_until(control, [&] { return out.has_value(); }));
    return out.value_or(nlohmann::json());
  }
};

TEST_F(supervisor_test, places_units_on_the_least_loaded_loop) {
  auto s = make(2);
  const auto r = apply(*s, {spec("relay", "a", {}), spec("relay", "b", {}), spec("relay", "c", {})});
  EXPECT_EQ(r.started.size(), 3u);
  EXPECT_EQ(s->loads(), (std::vector<std::size_t>{2, 1}));
  EXPECT_EQ(s->loop_of("a"), 0u);
  EXPECT_EQ(s->loop_of("b"), 1u);
  EXPECT_EQ(s->loop_of("c"), 0u);
  const auto units = list(*s);
  ASSERT_EQ(units.size(), 3u);
  EXPECT_EQ(units[0]["name"], "a");
  EXPECT_EQ(units[0]["state"], "running");
  EXPECT_EQ(units[1]["loop"], 1);
  EXPECT_EQ(units[1]["listening"][0], "fake b");
  // Removing one frees its loop's slot; the next goes there.
  std::optional<bool> removed;
  s->remove("b", [&](bool ok) { removed = ok; });
  ASSERT_TRUE(test::run_until(control, [&] { return removed.has_value(); }));
  EXPECT_TRUE(*removed);
  EXPECT_EQ(s->loads(), (std::vector<std::size_t>{2, 0}));
  std::optional<expected<nlohmann::json>> added;
  s->add(spec("relay", "d", {}, "drop-in"), [&](expected<nlohmann::json> j) { added = std::move(j); });
  ASSERT_TRUE(test::run_until(control, [&] { return added.has_value(); }));
  ASSERT_TRUE(*added);
  EXPECT_EQ((**added)["loop"], 1);
  EXPECT_EQ((**added)["origin"], "drop-in");
  EXPECT_EQ(live.load(), 3);
}

TEST_F(supervisor_test, units_run_on_their_loop_threads_not_the_control_thread) {
  auto s = make(2);
  apply(*s, {spec("relay", "a", {}), spec("relay", "b", {})});
  // Each unit reports its start thread through its status: its own loop's,
  // not this (the control) thread.
  const auto units = list(*s);
  std::ostringstream here;
  here << std::this_thread::get_id();
  ASSERT_EQ(units.size(), 2u);
  EXPECT_NE(units[0]["listening"][1], here.str());
  EXPECT_NE(units[1]["listening"][1], here.str());
  EXPECT_NE(units[0]["listening"][1], units[1]["listening"][1]);
  // The events for "running" came through the control executor, in order.
  int running = 0;
  for (const auto& e : events)
    running += e["event"] == "unit.state" && e["state"] == "running";
  EXPECT_EQ(running, 2);
  EXPECT_EQ(s->counts()["running"], 2);
  EXPECT_EQ(s->counts()["total"], 2);
}

TEST_F(supervisor_test, reload_diff_reloads_kept_changes_in_place_restarts_and_stops) {
  auto s = make(1);
  apply(*s, {spec("relay", "keep", {}), spec("server", "tok", {"--token-file=/a"}),
             spec("relay", "port", {"--", "a:1"}), spec("relay", "gone", {})});
  const int before = made.load();
  const auto r = apply(*s, {spec("relay", "keep", {}), spec("server", "tok", {"--token-file=/b"}),
                            spec("relay", "port", {"--", "a:2"}), spec("relay", "new", {})});
  EXPECT_EQ(r.kept, std::vector<std::string>{"keep"});
  EXPECT_EQ(r.reloaded, std::vector<std::string>{"keep"});
  EXPECT_EQ(r.in_place, std::vector<std::string>{"tok"});
  EXPECT_EQ(r.restarted, std::vector<std::string>{"port"});
  EXPECT_EQ(r.stopped, std::vector<std::string>{"gone"});
  EXPECT_EQ(r.started, std::vector<std::string>{"new"});
  EXPECT_TRUE(r.failed.empty());
  // in place builds a replacement it never starts; restart and new build one each.
  EXPECT_EQ(made.load() - before, 3);
  EXPECT_EQ(s->spec("tok")->args, std::vector<std::string>{"--token-file=/b"});
  EXPECT_EQ(live.load(), 4);
  EXPECT_EQ(events.back()["event"], "reload.done");
}

TEST_F(supervisor_test, an_in_place_change_is_all_or_nothing_and_restart_starts_anew) {
  auto s = make(1);
  apply(*s, {spec("server", "tok", {"--token-file=/a"})});
  const auto r = apply(*s, {spec("server", "tok", {"--token-file=/unreadable"})});
  ASSERT_EQ(r.failed.size(), 1u);
  EXPECT_NE(r.failed[0].second.find("cannot read /unreadable"), std::string::npos);
  EXPECT_EQ(s->spec("tok")->args, std::vector<std::string>{"--token-file=/a"}); // the running settings stay
  EXPECT_EQ(events.back()["event"], "reload.failed");
  EXPECT_EQ(s->counts()["running"], 1);
  const int before = made.load();
  std::optional<expected<nlohmann::json>> restarted;
  s->restart("tok", [&](expected<nlohmann::json> j) { restarted = std::move(j); });
  ASSERT_TRUE(test::run_until(control, [&] { return restarted.has_value(); }));
  ASSERT_TRUE(*restarted);
  EXPECT_EQ((**restarted)["state"], "running");
  EXPECT_EQ(made.load() - before, 1);
  EXPECT_EQ(live.load(), 1);
  std::optional<expected<nlohmann::json>> missing;
  s->restart("nope", [&](expected<nlohmann::json> j) { missing = std::move(j); });
  ASSERT_TRUE(test::run_until(control, [&] { return missing.has_value(); }));
  EXPECT_FALSE(*missing);
}

TEST_F(supervisor_test, a_unit_that_cannot_start_is_reported_and_the_others_run) {
  auto s = make(2);
  const auto r = apply(*s, {spec("relay", "ok", {}), spec("relay", "busy", {"--fail"}), spec("bad", "tokenless", {})});
  EXPECT_EQ(r.started, std::vector<std::string>{"ok"});
  ASSERT_EQ(r.failed.size(), 2u);
  EXPECT_EQ(s->counts()["failed"], 2);
  EXPECT_EQ(s->counts()["running"], 1);
  const auto units = list(*s);
  EXPECT_EQ(units[0]["name"], "busy");
  EXPECT_EQ(units[0]["state"], "failed");
  EXPECT_EQ(units[0]["last_error"], "port in use");
  EXPECT_EQ(units[2]["name"], "tokenless");
  EXPECT_EQ(units[2]["last_error"], "cannot read the token file");
  // add is all or nothing: a unit that cannot start is not kept.
  std::optional<expected<nlohmann::json>> added;
  s->add(spec("relay", "x", {"--fail"}), [&](expected<nlohmann::json> j) { added = std::move(j); });
  ASSERT_TRUE(test::run_until(control, [&] { return added.has_value(); }));
  EXPECT_FALSE(*added);
  EXPECT_FALSE(s->has("x"));
}

// Two units.add of "Web" and "web" asked together both pass the caller's
// check (neither is running yet); the supervisor must refuse the second, or
// their two drop-ins make every later reload and boot fail.
TEST_F(supervisor_test, add_refuses_a_name_taken_regardless_of_case_by_an_add_before_it) {
  auto s = make(1);
  std::optional<expected<nlohmann::json>> first, second;
  s->add(spec("relay", "Web", {}, "drop-in"), [&](expected<nlohmann::json> j) { first = std::move(j); });
  s->add(spec("relay", "web", {}, "drop-in"), [&](expected<nlohmann::json> j) { second = std::move(j); });
  ASSERT_TRUE(test::run_until(control, [&] { return first.has_value() && second.has_value(); }));
  ASSERT_TRUE(*first);
  ASSERT_FALSE(*second);
  EXPECT_EQ(second->error(), "the name web is taken (by Web)");
  EXPECT_FALSE(s->has("web"));
  EXPECT_EQ(live.load(), 1);
}

// A reload asked while an add is queued reads the set (the drop-ins) when
// its turn comes: it keeps the unit the add started, instead of stopping it
// because its drop-in did not exist yet when the reload was asked.
TEST_F(supervisor_test, a_reload_reads_its_set_when_its_turn_comes) {
  auto s = make(1);
  apply(*s, {spec("relay", "file", {})});
  std::vector<unit_spec> on_disk = {spec("relay", "file", {})}; // the config file and the drop-ins
  std::optional<expected<nlohmann::json>> added;
  std::optional<daemon::apply_report> report;
  s->add(spec("relay", "late", {}, "drop-in"), [&](expected<nlohmann::json> j) {
    if (j)
      on_disk.push_back(spec("relay", "late", {}, "drop-in")); // as units.add writes its drop-in
    added = std::move(j);
  });
  s->reload([&]() -> std::optional<std::vector<unit_spec>> { return on_disk; }, "test",
            [&](daemon::apply_report r) { report = std::move(r); });
  ASSERT_TRUE(test::run_until(control, [&] { return added.has_value() && report.has_value(); }));
  ASSERT_TRUE(*added);
  EXPECT_TRUE(report->stopped.empty());
  EXPECT_EQ(report->kept, (std::vector<std::string>{"file", "late"}));
  EXPECT_TRUE(s->has("late"));
  // A set with errors changes nothing and reports nothing here (the loader did).
  bool called = false, answered = false;
  s->reload([&]() -> std::optional<std::vector<unit_spec>> {
    called = true;
    return std::nullopt;
  }, "test", [&](daemon::apply_report) { answered = true; });
  std::optional<bool> removed; // an operation after it still runs
  s->remove("late", [&](bool ok) { removed = ok; });
  ASSERT_TRUE(test::run_until(control, [&] { return removed.has_value(); }));
  EXPECT_TRUE(called);
  EXPECT_FALSE(answered);
  EXPECT_TRUE(*removed);
  EXPECT_EQ(live.load(), 1);
}

TEST_F(supervisor_test, stop_all_stops_every_unit_and_destroys_it_on_its_loop) {
  auto s = make(2);
  apply(*s, {spec("relay", "a", {}), spec("relay", "b", {}), spec("relay", "c", {})});
  EXPECT_EQ(live.load(), 3);
  bool stopped = false;
  s->stop_all([&] { stopped = true; });
  ASSERT_TRUE(test::run_until(control, [&] { return stopped; }));
  EXPECT_EQ(live.load(), 0);
  EXPECT_EQ(s->counts()["total"], 0);
  EXPECT_EQ(s->loads(), (std::vector<std::size_t>{0, 0}));
}

TEST_F(supervisor_test, destroying_the_supervisor_destroys_running_units) {
  auto s = make(2);
  apply(*s, {spec("relay", "a", {}), spec("relay", "b", {})});
  s.reset();
  EXPECT_EQ(live.load(), 0);
}

// ---- drop-ins -----------------------------------------------------------------

class dropin_test : public ::testing::Test {
 protected:
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("warren-dropin-" + std::to_string(::getpid()));
  void TearDown() override { std::filesystem::remove_all(dir); }
};

TEST_F(dropin_test, written_0600_atomically_read_back_in_name_order_and_removed) {
  const auto d = daemon::dropin_dir(dir.string());
  ASSERT_TRUE(daemon::write_dropin(d, "web", "[[relay]]\nname = \"web\"\n"));
  ASSERT_TRUE(daemon::write_dropin(d, "api", "[[relay]]\nname = \"api\"\n"));
  struct stat st {};
  ASSERT_EQ(::stat((std::filesystem::path(d) / "web.toml").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(d.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // Overwritten whole; no temporary left behind.
  ASSERT_TRUE(daemon::write_dropin(d, "web", "[[relay]]\nname = \"web\"\n# v2\n"));
  std::ofstream(std::filesystem::path(d) / "notes.txt") << "ignored";
  std::vector<std::string> errors;
  const auto files = daemon::read_dropins(d, errors);
  EXPECT_TRUE(errors.empty());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].name, "api");
  EXPECT_EQ(files[1].name, "web");
  EXPECT_EQ(files[1].text, "[[relay]]\nname = \"web\"\n# v2\n");
  ASSERT_TRUE(daemon::remove_dropin(d, "web"));
  ASSERT_TRUE(daemon::remove_dropin(d, "web")); // already gone: fine
  EXPECT_EQ(daemon::read_dropins(d, errors).size(), 1u);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(d), {}), 2); // api.toml, notes.txt
}

TEST_F(dropin_test, a_symlink_or_directory_is_reported_not_read) {
  const auto d = daemon::dropin_dir(dir.string());
  ASSERT_TRUE(daemon::write_dropin(d, "ok", "x"));
  std::filesystem::create_symlink("/etc/passwd", std::filesystem::path(d) / "link.toml");
  std::filesystem::create_directory(std::filesystem::path(d) / "dir.toml");
  std::vector<std::string> errors;
  const auto files = daemon::read_dropins(d, errors);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(errors.size(), 2u);
  for (const auto& e : errors)
    EXPECT_EQ(e.find("root:"), std::string::npos) << e;
}

TEST_F(dropin_test, paths_only_under_the_allowed_directories) {
  const auto cfg = dir / "config";
  const auto state = dir / "state";
  std::filesystem::create_directories(cfg);
  std::filesystem::create_directories(state);
  const std::vector<std::string> dirs = {cfg.string(), state.string()};
  EXPECT_TRUE(daemon::path_allowed((cfg / "token").string(), dirs));
  EXPECT_TRUE(daemon::path_allowed((state / "sub" / "cert.pem").string(), dirs)); // need not exist yet
  EXPECT_FALSE(daemon::path_allowed("/etc/shadow", dirs));
  EXPECT_FALSE(daemon::path_allowed("token", dirs)); // relative
  EXPECT_FALSE(daemon::path_allowed((cfg / ".." / "config" / "token").string(), dirs));
  EXPECT_FALSE(daemon::path_allowed(cfg.string(), dirs)); // the directory itself is no file
  std::filesystem::create_symlink("/etc", cfg / "escape");
  EXPECT_FALSE(daemon::path_allowed((cfg / "escape" / "shadow").string(), dirs));
  // A sibling sharing the prefix is not inside.
  std::filesystem::create_directories(dir / "config2");
  EXPECT_FALSE(daemon::path_allowed((dir / "config2" / "token").string(), dirs));
  const auto why = daemon::path_allowed("/etc/shadow", dirs);
  EXPECT_NE(why.error().find("outside"), std::string::npos);
}

} // namespace
