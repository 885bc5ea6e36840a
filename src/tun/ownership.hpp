// Who owns warren's routes and rules, so cleanup never removes another
// running instance's. Each instance holds an flock on a per-device lock file
// (DIR/tun-NAME.lock, DIR = /run/warren by default) for as long as it runs;
// the file records its identity: the device, table T, rule priority p (its
// rules sit at p-2…p), whether it created the device, and the old
// src_valid_mark when it changed it. A killed process leaves the file but
// not the lock (the kernel drops an flock with its last descriptor), so at
// start every lock file that nobody holds is a leftover: its rules (protocol
// k_rt_protocol at its priorities), its table's routes, a TUN it created and
// the sysctl it changed are undone and the file removed. Rules carrying
// warren's protocol that no lock file names are reported, never removed.
//
// routing_session ties it together: lock, clean leftovers, refuse a clash
// with a live instance, record, apply the plan; stop() undoes and unlocks.
//
// Lifetime: instance_lock and routing_session own their descriptor; not
// thread-safe.
#pragma once

#include "core/expected.hpp"
#include "tun/routing.hpp"
#include "tun/rtnl.hpp"

#include <optional>
#include <string>
#include <vector>

namespace warren::tun {

inline constexpr const char* k_default_lock_dir = "/run/warren";

struct instance_record {
  long pid = 0;
  std::string device;
  std::uint32_t table = k_default_table;
  std::uint32_t priority = k_default_priority;
  bool default_route = false;
  bool created_device = false;
  std::optional<std::string> old_src_valid_mark;

  std::string format() const; // "key value" lines
  static std::optional<instance_record> parse(const std::string& text);
  /// Whether a rule at `priority` is one of this instance's (p-2…p).
  bool owns_priority(std::uint32_t priority) const;
};

class instance_lock {
 public:
  /// Creates DIR (0755) if needed and takes DIR/tun-DEVICE.lock without
  /// waiting; held elsewhere: "another warren tun is running on DEVICE …".
  /// What the file held before (a leftover record) is in previous().
  static expected<instance_lock> acquire(const std::string& dir, const std::string& device);
  instance_lock(instance_lock&& other) noexcept;
  instance_lock& operator=(instance_lock&& other) noexcept;
  instance_lock(const instance_lock&) = delete;
  instance_lock& operator=(const instance_lock&) = delete;
  ~instance_lock(); // release()

  expected<bool> write(const instance_record& r);
  /// Removes the file and drops the lock (a clean exit).
  void release();
  /// Drops the lock but leaves the file, as a killed process would (tests).
  void abandon();
  const std::string& path() const { return path_; }
  const std::optional<instance_record>& previous() const { return previous_; }

 private:
  instance_lock() = default;
  int fd_ = -1;
  std::string path_;
  std::optional<instance_record> previous_;
};

struct cleanup_report {
  std::vector<std::string> removed;  // what was deleted, one line each
  std::vector<std::string> errors;
  std::vector<std::string> unowned;  // warren rules no lock file names (left alone)
  std::vector<instance_record> live; // instances whose lock is held
};

/// Undoes what the records of unheld lock files in `lock_dir` name (and
/// `extra`, a leftover record already read from a lock this process holds
/// at `own_lock_path`), removing those files; see the file comment. The
/// device `own_device` (the starting instance's) is never deleted.
cleanup_report cleanup_leftovers(rtnl& nl, const std::string& lock_dir, const std::string& proc_sys = "/proc/sys",
                                 const std::optional<instance_record>& extra = std::nullopt,
                                 const std::string& own_lock_path = {}, const std::string& own_device = {});

struct session_options {
  std::string lock_dir = k_default_lock_dir;
  std::string proc_sys = "/proc/sys";
  bool created_device = true; // false for an adopted --fd device: never deleted by cleanup
};

class routing_session {
 public:
  static expected<routing_session> start(const routing_options& o, const session_options& so);
  routing_session(routing_session&& other) noexcept;
  routing_session& operator=(routing_session&&) = delete;
  ~routing_session(); // stop() if still running

  /// Undoes the plan and releases the lock; the errors, empty when clean.
  std::vector<std::string> stop();
  /// Drops the lock without undoing anything (a simulated kill, for tests).
  void abandon();
  const cleanup_report& leftovers() const { return leftovers_; }
  const applied& state() const { return applied_; }

 private:
  routing_session(rtnl nl, instance_lock lock) : nl_(std::move(nl)), lock_(std::move(lock)) {}
  rtnl nl_;
  instance_lock lock_;
  applied applied_;
  std::string proc_sys_;
  cleanup_report leftovers_;
  bool running_ = false;
};

} // namespace warren::tun
