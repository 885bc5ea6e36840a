// Where the Unix control socket lives and who owns it: the default path,
// its directory (0700, or 0750 with the --control-group group), the lock
// file beside it (flock: a second daemon fails at once naming the first
// one's pid), the stale socket a crashed daemon left (replaced), and the
// peer judgement of SO_PEERCRED.
#pragma once

#include "core/expected.hpp"
#include "daemon/dispatch.hpp"

#include <sys/types.h>

#include <optional>
#include <string>

namespace warren::daemon {

/// $XDG_RUNTIME_DIR/warren/control.sock, or /run/warren/control.sock as
/// root; failure (with a sentence asking for --control) when neither applies.
expected<std::string> default_control_path();

/// Holds the lock file `SOCKET.lock` (its pid written in it) for as long as
/// it lives; removes the socket and the lock file when destroyed.
class control_lock {
 public:
  control_lock() = default;
  control_lock(control_lock&& other) noexcept;
  control_lock& operator=(control_lock&& other) noexcept;
  ~control_lock();
  const std::string& socket_path() const noexcept { return socket_path_; }

  /// Prepares `socket_path` (absolute): creates its directory (mode 0700;
  /// 0750 and group `group` when given) or checks an existing one, which
  /// is never changed (a real directory of ours or root's that nobody else
  /// may write to); takes the lock PATH.lock (made here, or a warren lock
  /// left behind; any other file of that name is refused, never removed)
  /// or fails with "warren daemon is already running (pid N, PATH)", and
  /// removes a stale socket file.
  static expected<control_lock> acquire(const std::string& socket_path, std::optional<gid_t> group);

 private:
  int fd_ = -1;
  std::string socket_path_;
  std::string lock_path_;
};

/// What a Unix peer with these credentials may do: the daemon's own uid
/// and root are admin, a member of `read_only_gid` read-only, anyone else
/// none.
access_level judge_peer(uid_t uid, gid_t gid, std::optional<gid_t> read_only_gid);

/// The group id of a group name or number; failure says which is unknown.
expected<gid_t> lookup_group(const std::string& name);

} // namespace warren::daemon
