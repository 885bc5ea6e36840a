#include "daemon/control_socket.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace warren::daemon {
namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

/// Whether something accepts connections on the Unix socket at `path`.
bool socket_alive(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path))
    return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  const bool alive = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return alive;
}

std::string read_pid(int fd) {
  char buf[32] = {};
  const auto n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' '))
    pid.pop_back();
  return pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos ? "unknown" : pid;
}

} // namespace

expected<std::string> default_control_path() {
  if (::geteuid() == 0)
    return std::string("/run/warren/control.sock");
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (!runtime || runtime[0] != '/')
    return expected<std::string>::failure(
        "XDG_RUNTIME_DIR is not set (or not an absolute path), so there is no default control socket; "
        "pass --control PATH");
  return std::string(runtime) + "/warren/control.sock";
}

control_lock::control_lock(control_lock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), socket_path_(std::move(other.socket_path_)),
      lock_path_(std::move(other.lock_path_)) {}

control_lock& control_lock::operator=(control_lock&& other) noexcept {
  if (this != &other) {
    this->~control_lock();
    fd_ = std::exchange(other.fd_, -1);
    socket_path_ = std::move(other.socket_path_);
    lock_path_ = std::move(other.lock_path_);
  }
  return *this;
}

control_lock::~control_lock() {
  if (fd_ < 0)
    return;
  ::unlink(socket_path_.c_str());
  ::unlink(lock_path_.c_str());
  ::close(fd_);
  fd_ = -1;
}

expected<control_lock> control_lock::acquire(const std::string& socket_path, std::optional<gid_t> group) {
  using result = expected<control_lock>;
  if (socket_path.empty() || socket_path.size() >= sizeof(sockaddr_un{}.sun_path))
    return result::failure("control socket path '" + socket_path + "' is empty or longer than " +
                           std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes");
  if (socket_path.front() != '/')
    return result::failure("control socket path '" + socket_path + "' is relative; give an absolute path");
  // The directory: made here (0700, or 0750 for --control-group), or one
  // that already exists, which is never changed (it may be /tmp, a shared
  // directory or a symlink to one): it must be a real directory of the
  // daemon's user or root that nobody else may write to.
  const std::string dir = parent_of(socket_path);
  const mode_t dir_mode = group ? 0750 : 0700;
  if (::mkdir(dir.c_str(), dir_mode) == 0) {
    if (group && ::chown(dir.c_str(), static_cast<uid_t>(-1), *group) != 0)
      return result::failure("cannot give " + dir + " to the --control-group group: " + errno_text(errno));
    if (::chmod(dir.c_str(), dir_mode) != 0) // the umask may have narrowed it
      return result::failure("cannot set the mode of " + dir + ": " + errno_text(errno));
  } else if (errno != EEXIST) {
    return result::failure("cannot create the control socket's directory " + dir + ": " + errno_text(errno));
  } else {
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0)
      return result::failure("cannot inspect " + dir + ": " + errno_text(errno));
    if (S_ISLNK(st.st_mode))
      return result::failure("the control socket's directory " + dir +
                             " is a symbolic link; give the real path in --control");
    if (!S_ISDIR(st.st_mode))
      return result::failure("the control socket's directory " + dir + " is not a directory");
    if (st.st_uid != ::geteuid() && st.st_uid != 0)
      return result::failure("the control socket's directory " + dir + " belongs to uid " +
                             std::to_string(st.st_uid) + ", who could replace the socket; choose another --control");
    if ((st.st_mode & 022) != 0)
      return result::failure("the control socket's directory " + dir +
                             " may be written by others (mode " + std::to_string((st.st_mode >> 6) & 7) +
                             std::to_string((st.st_mode >> 3) & 7) + std::to_string(st.st_mode & 7) +
                             "); choose a directory of your own (e.g. the default under $XDG_RUNTIME_DIR)");
    if (group && (st.st_gid != *group || (st.st_mode & 050) != 050))
      return result::failure("with --control-group, the existing directory " + dir +
                             " must belong to that group with mode 0750 (chgrp, chmod 0750)");
  }

  // The lock file: made here, or a warren lock left by an earlier daemon
  // (a pid or nothing). Anything else of that name is not ours to touch.
  control_lock lock;
  lock.socket_path_ = socket_path;
  lock.lock_path_ = socket_path + ".lock";
  lock.fd_ = ::open(lock.lock_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock.fd_ < 0 && errno == EEXIST) {
    lock.fd_ = ::open(lock.lock_path_.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat lst {};
    if (lock.fd_ >= 0 && (::fstat(lock.fd_, &lst) != 0 || !S_ISREG(lst.st_mode) || lst.st_size > 24 ||
                          (lst.st_size > 0 && read_pid(lock.fd_) == "unknown"))) {
      ::close(std::exchange(lock.fd_, -1));
      return result::failure(lock.lock_path_ + " exists and is not a warren lock file; choose another --control");
    }
  }
  if (lock.fd_ < 0)
    return result::failure("cannot open the lock file " + lock.lock_path_ + ": " + errno_text(errno));
  if (::flock(lock.fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string pid = read_pid(lock.fd_);
    ::close(lock.fd_);
    lock.fd_ = -1; // not ours: the destructor must not remove the other daemon's files
    if (err == EWOULDBLOCK)
      return result::failure("warren daemon is already running (pid " + pid + ", " + socket_path + ")");
    return result::failure("cannot lock " + lock.lock_path_ + ": " + errno_text(err));
  }
  // The lock is ours. A socket file that something still accepts on belongs
  // to a daemon that lost its lock file (removed by hand): leave it alone.
  struct stat sst {};
  if (::lstat(socket_path.c_str(), &sst) == 0) {
    if (!S_ISSOCK(sst.st_mode)) {
      ::close(std::exchange(lock.fd_, -1));
      ::unlink(lock.lock_path_.c_str()); // a warren lock (checked above), held by us
      return result::failure(socket_path + " exists and is not a socket; remove it or choose another --control");
    }
    if (socket_alive(socket_path)) {
      ::close(std::exchange(lock.fd_, -1));
      return result::failure("warren daemon is already running (pid unknown, " + socket_path +
                             "; its lock file was removed)");
    }
    ::unlink(socket_path.c_str()); // stale: its daemon is gone
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock.fd_, 0) != 0 || ::pwrite(lock.fd_, pid.data(), pid.size(), 0) < 0)
    return result::failure("cannot write " + lock.lock_path_ + ": " + errno_text(errno));
  return lock;
}

access_level judge_peer(uid_t uid, gid_t gid, std::optional<gid_t> read_only_gid) {
  if (uid == 0 || uid == ::geteuid())
    return access_level::admin;
  if (!read_only_gid)
    return access_level::none;
  if (gid == *read_only_gid)
    return access_level::read_only;
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found)
    return access_level::none;
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0)
      return access_level::none;
  }
  groups.resize(static_cast<std::size_t>(n));
  return std::find(groups.begin(), groups.end(), *read_only_gid) != groups.end() ? access_level::read_only
                                                                                 : access_level::none;
}

expected<gid_t> lookup_group(const std::string& name) {
  group gr{};
  group* found = nullptr;
  std::vector<char> buf(16384);
  if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) == 0 && found)
    return found->gr_gid;
  if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos)
    return static_cast<gid_t>(std::strtoul(name.c_str(), nullptr, 10));
  return expected<gid_t>::failure("--control-group: no group named '" + name + "'");
}

} // namespace warren::daemon
