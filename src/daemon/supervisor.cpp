#include "daemon/supervisor.hpp"

#include "core/error.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <thread>

namespace warren::daemon {

namespace asio = boost::asio;

std::string_view to_string(change c) {
  switch (c) {
  case change::keep:
    return "keep";
  case change::in_place:
    return "in place";
  case change::restart:
    return "restart";
  case change::stop:
    return "stop";
  case change::start:
    return "start";
  }
  return "?";
}

namespace {

/// One argument as (key, value): "--allow=10.0.0.0/8" -> ("--allow",
/// "10.0.0.0/8"), "--udp" -> ("--udp", ""), a positional -> ("#N", text).
std::multiset<std::pair<std::string, std::string>> split_args(const std::vector<std::string>& args) {
  std::multiset<std::pair<std::string, std::string>> out;
  bool positional = false;
  std::size_t index = 0;
  for (const auto& a : args) {
    if (!positional && a == "--") {
      positional = true;
      continue;
    }
    if (positional || !a.starts_with("--")) {
      out.emplace("#" + std::to_string(index++), a);
      continue;
    }
    const auto eq = a.find('=');
    if (eq == std::string::npos)
      out.emplace(a, "");
    else
      out.emplace(a.substr(0, eq), a.substr(eq + 1));
  }
  return out;
}

bool in_place_key(std::string_view kind, std::string_view key) {
  if (key == "--log-level")
    return true;
  if (kind == "server")
    return key == "--token-file" || key == "--users-file" || key == "--allow-file" || key == "--allow" ||
           key == "--cert" || key == "--key";
  if (kind == "client")
    return key == "--token-file";
  return false;
}

bool same_name(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](unsigned char x, unsigned char y) {
    return std::tolower(x) == std::tolower(y);
  });
}

bool has_key(const std::multiset<std::pair<std::string, std::string>>& args, std::string_view key) {
  return std::any_of(args.begin(), args.end(), [&](const auto& kv) { return kv.first == key; });
}

} // namespace

namespace {

/// The same but for log_level (which the daemon does not apply per unit).
bool same_but_log_level(const unit_spec& from, const unit_spec& to) {
  if (from.kind != to.kind || from.origin != to.origin)
    return false;
  auto a = split_args(from.args);
  auto b = split_args(to.args);
  std::erase_if(a, [](const auto& kv) { return kv.first == "--log-level"; });
  std::erase_if(b, [](const auto& kv) { return kv.first == "--log-level"; });
  return a == b;
}

} // namespace

bool changes_in_place(const unit_spec& from, const unit_spec& to) {
  if (from.kind != to.kind || from.origin != to.origin || same_but_log_level(from, to))
    return false;
  auto a = split_args(from.args);
  auto b = split_args(to.args);
  // A generated certificate is not swapped for a given one in place (nor
  // back): the server would have to make or drop one.
  if (from.kind == "server" && has_key(a, "--cert") != has_key(b, "--cert"))
    return false;
  const auto strip = [&](auto& s) {
    for (auto it = s.begin(); it != s.end();)
      it = in_place_key(from.kind, it->first) ? s.erase(it) : std::next(it);
  };
  strip(a);
  strip(b);
  return a == b;
}

std::vector<diff_step> diff_units(const std::vector<unit_spec>& running, const std::vector<unit_spec>& wanted,
                                  const std::vector<std::string>& failed) {
  std::vector<diff_step> out;
  for (const auto& r : running) {
    const auto w = std::find_if(wanted.begin(), wanted.end(), [&](const unit_spec& s) { return s.name == r.name; });
    if (w == wanted.end())
      out.push_back({r.name, change::stop});
    else if (same_but_log_level(r, *w))
      out.push_back(
          {r.name, std::find(failed.begin(), failed.end(), r.name) != failed.end() ? change::restart : change::keep});
    else if (changes_in_place(r, *w) && std::find(failed.begin(), failed.end(), r.name) == failed.end())
      out.push_back({r.name, change::in_place});
    else
      out.push_back({r.name, change::restart});
  }
  for (const auto& w : wanted)
    if (std::none_of(running.begin(), running.end(), [&](const unit_spec& s) { return s.name == w.name; }))
      out.push_back({w.name, change::start});
  return out;
}

std::size_t least_loaded(const std::vector<std::size_t>& loads) {
  return static_cast<std::size_t>(std::min_element(loads.begin(), loads.end()) - loads.begin());
}

nlohmann::json apply_report::to_json() const {
  nlohmann::json f = nlohmann::json::array();
  for (const auto& [name, error] : failed)
    f.push_back({{"name", name}, {"error", error}});
  return {{"kept", kept},         {"reloaded", reloaded}, {"in_place", in_place}, {"restarted", restarted},
          {"stopped", stopped},   {"started", started},   {"failed", f}};
}

std::string apply_report::summary() const {
  std::string out = std::to_string(started.size()) + " started, " + std::to_string(kept.size()) + " kept (" +
                    std::to_string(reloaded.size()) + " reloaded), " + std::to_string(in_place.size()) +
                    " changed in place, " + std::to_string(restarted.size()) + " restarted, " +
                    std::to_string(stopped.size()) + " stopped";
  if (!failed.empty()) {
    out += "; " + std::to_string(failed.size()) + " failed:";
    for (const auto& [name, error] : failed)
      out += " " + name + " (" + error + ")";
  }
  return out;
}

// ---- the supervisor ---------------------------------------------------------

struct supervisor::loop {
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::thread thread;
};

namespace {

/// What lives on a unit's loop and is touched only there.
struct holder {
  std::unique_ptr<unit::unit> u;
  std::unique_ptr<asio::steady_timer> stop_guard;
  /// Set while start() has returned but the unit is still `starting` (a
  /// relay checks its target before it binds): called when it leaves it.
  std::function<void(std::string error)> on_started;
};

std::int64_t unix_seconds(unit::wall_time t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

/// The unit's status and counters, read on its loop.
nlohmann::json read_status(const holder& h) {
  nlohmann::json j;
  if (!h.u)
    return j;
  const auto s = h.u->status();
  const auto c = h.u->counters();
  j["state"] = std::string(unit::to_string(s.state));
  j["since"] = unix_seconds(s.since);
  j["listening"] = s.listening;
  j["peer"] = s.peer;
  j["last_error"] = s.last_error;
  j["last_error_at"] = s.last_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(unix_seconds(s.last_error_at));
  j["counters"] = {{"bytes_up", c.bytes_up},
                   {"bytes_down", c.bytes_down},
                   {"connections_open", c.connections_open},
                   {"connections_total", c.connections_total},
                   {"streams_open", c.streams_open},
                   {"streams_total", c.streams_total},
                   {"reconnects", c.reconnects}};
  if (c.tunnel_rtt_us != 0)
    j["counters"]["tunnel_rtt_us"] = c.tunnel_rtt_us;
  return j;
}

} // namespace

struct supervisor::entry {
  unit_spec spec;
  std::size_t loop = 0;
  std::shared_ptr<holder> h = std::make_shared<holder>(); // its contents: on the loop only
  // As last seen on the control executor (events, start results):
  std::string state = "starting";
  std::string last_error; // a start failure without a unit (the factory's)
  std::int64_t since = 0;
};

supervisor::supervisor(asio::any_io_executor control, std::size_t threads, unit_maker make, event_sink sink)
    : control_(std::move(control)), loads_(std::max<std::size_t>(threads, 1), 0), make_(std::move(make)),
      sink_(std::move(sink)) {
  for (std::size_t i = 0; i < loads_.size(); ++i) {
    auto l = std::make_unique<loop>();
    l->thread = std::thread([io = &l->io] { io->run(); });
    loops_.push_back(std::move(l));
  }
}

supervisor::~supervisor() {
  alive_.reset();
  for (auto& [name, e] : units_)
    asio::post(loops_[e->loop]->io, [h = e->h] {
      if (h->u)
        h->u->abandon();
      h->stop_guard.reset();
      h->u.reset();
    });
  for (auto& l : loops_) {
    // After the resets above (handlers run in order): whatever the units
    // left queued is destroyed with the io_context, on this thread.
    asio::post(l->io, [io = &l->io] { io->stop(); });
    l->guard.reset();
  }
  for (auto& l : loops_)
    if (l->thread.joinable())
      l->thread.join();
  units_.clear();
}

std::vector<boost::asio::any_io_executor> supervisor::executors() const {
  std::vector<boost::asio::any_io_executor> out;
  for (const auto& l : loops_)
    out.emplace_back(l->io.get_executor());
  return out;
}

void supervisor::publish(nlohmann::json event) {
  if (!event.contains("at"))
    event["at"] = unix_seconds(std::chrono::system_clock::now());
  if (sink_)
    sink_(std::move(event));
}

void supervisor::enqueue(op o) {
  queue_.push_back(std::move(o));
  if (!busy_)
    run_next();
}

void supervisor::run_next() {
  if (queue_.empty()) {
    busy_ = false;
    return;
  }
  busy_ = true;
  auto o = std::move(queue_.front());
  queue_.erase(queue_.begin());
  o([this, alive = std::weak_ptr<int>(alive_)] {
    // Never re-entrantly: the next operation starts from the executor.
    asio::post(control_, [this, alive] {
      if (!alive.expired())
        run_next();
    });
  });
}

bool supervisor::has(const std::string& name) const { return units_.contains(name); }

const unit_spec* supervisor::spec(const std::string& name) const {
  const auto it = units_.find(name);
  return it == units_.end() ? nullptr : &it->second->spec;
}

std::vector<unit_spec> supervisor::specs() const {
  std::vector<unit_spec> out;
  for (const auto& [name, e] : units_)
    out.push_back(e->spec);
  return out;
}

std::size_t supervisor::loop_of(const std::string& name) const {
  const auto it = units_.find(name);
  return it == units_.end() ? loops_.size() : it->second->loop;
}

nlohmann::json supervisor::counts() const {
  nlohmann::json out = {{"total", units_.size()}};
  for (std::string_view s : {"starting", "running", "draining", "stopped", "failed"})
    out[std::string(s)] = 0;
  for (const auto& [name, e] : units_)
    out[e->state] = out.value(e->state, 0) + 1;
  return out;
}

void supervisor::start_unit(const unit_spec& spec, std::function<void(std::string)> done) {
  auto e = std::make_shared<entry>();
  e->spec = spec;
  e->loop = least_loaded(loads_);
  e->since = unix_seconds(std::chrono::system_clock::now());
  ++loads_[e->loop];
  units_[spec.name] = e;
  auto& io = loops_[e->loop]->io;
  asio::post(io, [this, alive = std::weak_ptr<int>(alive_), e, ex = io.get_executor(), spec, done = std::move(done)] {
    std::string error;
    auto made = make_(spec, ex);
    if (!made) {
      error = made.error();
    } else {
      e->h->u = std::move(made).value();
      auto& u = *e->h->u;
      u.set_name(spec.name);
      u.set_events([this, alive, we = std::weak_ptr<entry>(e), name = spec.name, &u](const unit::unit_event& ev) {
        // On the unit's loop: a copy of what happened goes to the control executor.
        nlohmann::json j = {{"unit", name}, {"at", unix_seconds(ev.at)}};
        switch (ev.what) {
        case unit::unit_event::kind::state_changed:
          j["event"] = "unit.state";
          j["state"] = std::string(unit::to_string(ev.state));
          if (ev.state == unit::unit_state::failed)
            j["error"] = u.status().last_error;
          break;
        case unit::unit_event::kind::tunnel_connected:
        case unit::unit_event::kind::tunnel_disconnected:
          j["event"] = "unit.tunnel";
          j["connected"] = ev.what == unit::unit_event::kind::tunnel_connected;
          j["detail"] = ev.detail;
          break;
        case unit::unit_event::kind::reloaded:
        case unit::unit_event::kind::reload_failed:
          j["event"] = "unit.reload";
          j["ok"] = ev.what == unit::unit_event::kind::reloaded;
          j["detail"] = ev.detail;
          break;
        case unit::unit_event::kind::error:
          j["event"] = "unit.error";
          j["detail"] = ev.detail;
          break;
        }
        asio::post(control_, [this, alive, we, j = std::move(j)]() mutable {
          if (alive.expired())
            return;
          if (auto ent = we.lock(); ent && j["event"] == "unit.state") {
            ent->state = j["state"].get<std::string>();
            ent->since = j["at"].get<std::int64_t>();
          }
          publish(std::move(j));
        });
        // After the event: its subscribers see the unit running before the
        // operation that started it reports.
        if (ev.what == unit::unit_event::kind::state_changed && ev.state != unit::unit_state::starting)
          if (auto ent = we.lock(); ent && ent->h->on_started) // (`we` is only read here: the entry outlives its unit)
            std::exchange(ent->h->on_started, nullptr)(
                ev.state == unit::unit_state::running  ? std::string()
                : ev.state == unit::unit_state::failed ? u.status().last_error
                                                       : std::string("stopped before it started"));
      });
      if (auto prepared = u.prepare(); !prepared)
        error = prepared.error();
      else if (auto started = u.start(); !started)
        error = started.error();
    }
    auto report = [this, alive, e, name = spec.name, done = std::move(done)](std::string why) {
      if (!why.empty())
        spdlog::error("daemon: unit {} did not start: {}", name, why);
      asio::post(control_, [alive, e, why = std::move(why), done] {
        if (alive.expired())
          return;
        e->state = why.empty() ? "running" : "failed";
        e->last_error = why;
        done(why);
      });
    };
    // Started means serving: a unit still `starting` (a relay checking its
    // target before it binds) reports when it leaves that state.
    if (error.empty() && e->h->u->status().state == unit::unit_state::starting)
      e->h->on_started = std::move(report);
    else
      report(std::move(error));
  });
}

void supervisor::stop_unit(const std::string& name, std::function<void()> done) {
  const auto it = units_.find(name);
  if (it == units_.end())
    return done();
  auto e = it->second;
  auto& io = loops_[e->loop]->io;
  auto finished = [this, alive = std::weak_ptr<int>(alive_), e, &io, done = std::move(done)] {
    // On the loop, from the unit's `done` (or the guard): destroy it from a
    // fresh handler, never inside its own callback.
    asio::post(io, [this, alive, e, done] {
      e->h->stop_guard.reset();
      e->h->u.reset();
      asio::post(control_, [this, alive, e, done] {
        if (alive.expired())
          return;
        --loads_[e->loop];
        e->state = "stopped";
        done();
      });
    });
  };
  asio::post(io, [e, name, &io, finished = std::move(finished)]() mutable {
    auto& h = *e->h;
    if (!h.u)
      return finished();
    auto once = std::make_shared<bool>(false);
    auto finish_once = [once, finished = std::move(finished)] {
      if (!std::exchange(*once, true))
        finished();
    };
    // The unit bounds its own drain; this guard is the daemon's word that
    // a stop ends: past the bound and a margin, abandon() cuts the rest.
    h.stop_guard = std::make_unique<asio::steady_timer>(io, h.u->drain_bound() + std::chrono::seconds(2));
    h.stop_guard->async_wait([e, name, finish_once](error_code ec) {
      if (ec || !e->h->u)
        return;
      spdlog::warn("daemon: unit {} did not stop within its drain bound; cutting what is open", name);
      e->h->u->abandon();
      finish_once();
    });
    h.u->stop(h.u->drain_bound(), finish_once);
  });
}

void supervisor::reload_unit(const std::string& name, std::string cause,
                             std::function<void(unit::reload_result)> done) {
  auto e = units_.at(name);
  asio::post(loops_[e->loop]->io, [this, alive = std::weak_ptr<int>(alive_), e, cause = std::move(cause),
                                   done = std::move(done)] {
    unit::reload_result r{false, "the unit is not running"};
    if (e->h->u && e->h->u->status().state == unit::unit_state::running)
      r = e->h->u->reload(cause);
    asio::post(control_, [alive, r = std::move(r), done = std::move(done)] {
      if (!alive.expired())
        done(r);
    });
  });
}

void supervisor::reconfigure_unit(const std::string& name, const unit_spec& to,
                                  std::function<void(unit::reload_result)> done) {
  auto e = units_.at(name);
  auto& io = loops_[e->loop]->io;
  asio::post(io, [this, alive = std::weak_ptr<int>(alive_), e, to, ex = io.get_executor(), done = std::move(done)] {
    unit::reload_result r{false, "the unit is not running"};
    if (e->h->u && e->h->u->status().state == unit::unit_state::running) {
      // The new settings through the same factory, never started: the
      // running unit takes what it can from them, all or nothing.
      auto fresh = make_(to, ex);
      if (!fresh)
        r = {false, fresh.error()};
      else
        r = e->h->u->reconfigure(*fresh.value(), "config changed");
    }
    asio::post(control_, [alive, e, to, r = std::move(r), done = std::move(done)] {
      if (alive.expired())
        return;
      if (r.ok)
        e->spec = to;
      done(r);
    });
  });
}

namespace {

/// Calls `then` once `n` completions have arrived (at once when n is 0).
std::function<void()> countdown(std::size_t n, std::function<void()> then) {
  if (n == 0) {
    then();
    return [] {};
  }
  auto left = std::make_shared<std::size_t>(n);
  return [left, then = std::move(then)] {
    if (--*left == 0)
      then();
  };
}

} // namespace

void supervisor::apply(std::vector<unit_spec> wanted, std::string cause, std::function<void(apply_report)> done) {
  enqueue([this, wanted = std::move(wanted), cause = std::move(cause), done = std::move(done)](
              std::function<void()> next) mutable {
    run_apply(std::move(wanted), std::move(cause), std::move(done), std::move(next));
  });
}

void supervisor::reload(std::function<std::optional<std::vector<unit_spec>>()> load, std::string cause,
                        std::function<void(apply_report)> done) {
  enqueue([this, load = std::move(load), cause = std::move(cause), done = std::move(done)](
              std::function<void()> next) mutable {
    auto wanted = load();
    if (!wanted)
      return next();
    run_apply(std::move(*wanted), std::move(cause), std::move(done), std::move(next));
  });
}

void supervisor::run_apply(std::vector<unit_spec> wanted, std::string cause, std::function<void(apply_report)> done,
                           std::function<void()> next) {
  {
    std::vector<unit_spec> running;
    std::vector<std::string> failed;
    for (const auto& [name, e] : units_) {
      running.push_back(e->spec);
      if (e->state == "failed")
        failed.push_back(name);
    }
    auto steps = diff_units(running, wanted, failed);
    auto report = std::make_shared<apply_report>();
    auto by_name = std::make_shared<std::map<std::string, unit_spec>>();
    for (const auto& w : wanted)
      (*by_name)[w.name] = w;

    // 3: start the new and the restarted ones.
    auto phase3 = [this, steps, report, by_name, cause, done, next] {
      std::vector<const diff_step*> starts;
      for (const auto& s : steps)
        if (s.what == change::start || s.what == change::restart)
          starts.push_back(&s);
      auto finish = [this, report, cause, done, next] {
        spdlog::log(report->failed.empty() ? spdlog::level::info : spdlog::level::warn, "daemon: {}: {}", cause,
                    report->summary());
        nlohmann::json ev = report->to_json();
        ev["event"] = report->failed.empty() ? "reload.done" : "reload.failed";
        ev["cause"] = cause;
        ev["summary"] = report->summary();
        publish(std::move(ev));
        done(*report);
        next();
      };
      auto one = countdown(starts.size(), finish);
      for (const auto* s : starts) {
        const bool restarted = s->what == change::restart;
        start_unit((*by_name)[s->name], [report, one, restarted, name = s->name](const std::string& error) {
          if (!error.empty())
            report->failed.emplace_back(name, error);
          else
            (restarted ? report->restarted : report->started).push_back(name);
          one();
        });
      }
    };
    // 2: reload the unchanged ones, change the others in place.
    auto phase2 = [this, steps, report, by_name, cause, phase3] {
      std::size_t n = 0;
      for (const auto& s : steps)
        n += s.what == change::keep || s.what == change::in_place;
      auto one = countdown(n, phase3);
      for (const auto& s : steps) {
        if (s.what == change::keep) {
          units_.at(s.name)->spec = (*by_name)[s.name]; // a new log_level is recorded, not applied
          reload_unit(s.name, cause, [report, one, name = s.name](const unit::reload_result& r) {
            report->kept.push_back(name);
            if (r.ok)
              report->reloaded.push_back(name);
            one();
          });
        } else if (s.what == change::in_place) {
          reconfigure_unit(s.name, (*by_name)[s.name], [report, one, name = s.name](const unit::reload_result& r) {
            if (r.ok)
              report->in_place.push_back(name);
            else
              report->failed.emplace_back(name, "not changed in place: " + r.summary);
            one();
          });
        }
      }
    };
    // 1: stop the removed ones and the old side of every restart, so their
    // listeners are closed before anything new binds.
    std::size_t n = 0;
    for (const auto& s : steps)
      n += s.what == change::stop || s.what == change::restart;
    auto one = countdown(n, phase2);
    for (const auto& s : steps)
      if (s.what == change::stop || s.what == change::restart)
        stop_unit(s.name, [this, report, one, s] {
          units_.erase(s.name);
          if (s.what == change::stop) {
            report->stopped.push_back(s.name);
            publish({{"event", "unit.removed"}, {"unit", s.name}});
          }
          one();
        });
  }
}

void supervisor::add(unit_spec spec, std::function<void(expected<nlohmann::json>)> done) {
  enqueue([this, spec = std::move(spec), done = std::move(done)](std::function<void()> next) {
    // Regardless of case, as the config and the drop-ins are checked (two
    // units.add of "Web" and "web" queued together would both pass the
    // caller's check; their drop-ins would then refuse every reload and boot).
    const auto taken = std::find_if(units_.begin(), units_.end(), [&](const auto& u) { return same_name(u.first, spec.name); });
    if (taken != units_.end()) {
      done(expected<nlohmann::json>::failure("the name " + spec.name + " is taken (by " + taken->first + ")"));
      return next();
    }
    start_unit(spec, [this, spec, done, next](const std::string& error) {
      if (error.empty()) {
        publish({{"event", "unit.added"}, {"unit", spec.name}, {"kind", spec.kind}});
        get(spec.name, [done, next](nlohmann::json status) {
          done(std::move(status));
          next();
        });
        return;
      }
      // All or nothing: a unit that cannot start is not kept.
      stop_unit(spec.name, [this, spec, error, done, next] {
        units_.erase(spec.name);
        done(expected<nlohmann::json>::failure(error));
        next();
      });
    });
  });
}

void supervisor::remove(const std::string& name, std::function<void(bool)> done) {
  enqueue([this, name, done = std::move(done)](std::function<void()> next) {
    if (!units_.contains(name)) {
      done(false);
      return next();
    }
    stop_unit(name, [this, name, done, next] {
      units_.erase(name);
      publish({{"event", "unit.removed"}, {"unit", name}});
      done(true);
      next();
    });
  });
}

void supervisor::restart(const std::string& name, std::function<void(expected<nlohmann::json>)> done) {
  enqueue([this, name, done = std::move(done)](std::function<void()> next) {
    if (!units_.contains(name)) {
      done(expected<nlohmann::json>::failure("no unit " + name));
      return next();
    }
    const unit_spec spec = units_.at(name)->spec;
    stop_unit(name, [this, spec, done, next] {
      units_.erase(spec.name);
      start_unit(spec, [this, spec, done, next](const std::string& error) {
        publish({{"event", "unit.restarted"}, {"unit", spec.name}, {"ok", error.empty()}});
        if (!error.empty()) {
          done(expected<nlohmann::json>::failure(error)); // the unit stays, failed
          return next();
        }
        get(spec.name, [done, next](nlohmann::json status) {
          done(std::move(status));
          next();
        });
      });
    });
  });
}

void supervisor::stop_all(std::function<void()> done) {
  enqueue([this, done = std::move(done)](std::function<void()> next) {
    std::vector<std::string> names;
    for (const auto& [name, e] : units_)
      names.push_back(name);
    auto one = countdown(names.size(), [done, next] {
      done();
      next();
    });
    for (const auto& name : names)
      stop_unit(name, [this, name, one] {
        units_.erase(name);
        one();
      });
  });
}

void supervisor::get(const std::string& name, std::function<void(nlohmann::json)> done) const {
  const auto it = units_.find(name);
  if (it == units_.end())
    return done(nullptr);
  auto e = it->second;
  nlohmann::json base = {{"name", e->spec.name},
                         {"kind", e->spec.kind},
                         {"origin", e->spec.origin},
                         {"loop", e->loop},
                         {"state", e->state},
                         {"since", e->since},
                         {"listening", nlohmann::json::array()},
                         {"peer", ""},
                         {"last_error", e->last_error},
                         {"last_error_at", nullptr},
                         {"counters", nlohmann::json::object()}};
  asio::post(loops_[e->loop]->io, [this, alive = std::weak_ptr<int>(alive_), e, base = std::move(base),
                                   done = std::move(done)]() mutable {
    auto read = read_status(*e->h);
    asio::post(control_, [alive, base = std::move(base), read = std::move(read), done = std::move(done)]() mutable {
      if (alive.expired())
        return;
      for (auto& [k, v] : read.items())
        base[k] = std::move(v);
      done(std::move(base));
    });
  });
}

void supervisor::snapshot(std::function<void(std::vector<unit_snapshot>)> done) const {
  auto out = std::make_shared<std::vector<unit_snapshot>>();
  out->reserve(units_.size());
  for (const auto& [name, e] : units_) {
    unit_snapshot u;
    u.name = e->spec.name;
    u.kind = e->spec.kind;
    u.status.state = e->state == "failed" ? unit::unit_state::failed : unit::unit_state::starting;
    u.status.last_error = e->last_error;
    out->push_back(std::move(u));
  }
  auto finish = countdown(units_.size(), [out, done = std::move(done)] { done(std::move(*out)); });
  std::size_t i = 0;
  for (const auto& [name, e] : units_) {
    asio::post(loops_[e->loop]->io, [this, alive = std::weak_ptr<int>(alive_), h = e->h, out, finish, i = i++] {
      std::optional<std::pair<unit::unit_status, unit::unit_counters>> read;
      if (h->u)
        read.emplace(h->u->status(), h->u->counters());
      asio::post(control_, [alive, out, finish, i, read = std::move(read)] {
        if (alive.expired())
          return;
        if (read) {
          (*out)[i].status = read->first;
          (*out)[i].counters = read->second;
        }
        finish();
      });
    });
  }
}

void supervisor::list(std::function<void(nlohmann::json)> done) const {
  auto out = std::make_shared<std::vector<nlohmann::json>>(units_.size());
  auto finish = countdown(units_.size(), [out, done] {
    std::sort(out->begin(), out->end(),
              [](const auto& a, const auto& b) { return a["name"].template get<std::string>() < b["name"].template get<std::string>(); });
    done(nlohmann::json(*out));
  });
  std::size_t i = 0;
  for (const auto& [name, e] : units_)
    get(name, [out, finish, i = i++](nlohmann::json j) {
      (*out)[i] = std::move(j);
      finish();
    });
}

} // namespace warren::daemon
