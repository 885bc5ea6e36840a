// Lock files, leftover cleanup and the routing session (see ownership.hpp).
#include "tun/ownership.hpp"

#include "tun/connmark.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <sstream>
#include <utility>

namespace warren::tun {

namespace {

std::string errno_text(int code) {
  return std::strerror(code);
}

std::string read_all(int fd) {
  std::string out;
  char buf[1024];
  off_t off = 0;
  for (;;) {
    const auto n = ::pread(fd, buf, sizeof buf, off);
    if (n <= 0 || out.size() > 16384)
      break;
    out.append(buf, static_cast<std::size_t>(n));
    off += n;
  }
  return out;
}

template <class T>
bool parse_number(const std::string& text, T& out) {
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc{} && ptr == end;
}

bool is_lock_name(const std::string& name) {
  return name.size() > 9 && name.starts_with("tun-") && name.ends_with(".lock");
}

} // namespace

// ---- instance_record ----

std::string instance_record::format() const {
  std::string s = "pid " + std::to_string(pid) + "\ndevice " + device + "\ntable " + std::to_string(table) +
                  "\npriority " + std::to_string(priority) + "\ndefault_route " + (default_route ? "1" : "0") +
                  "\ncreated_device " + (created_device ? "1" : "0") + "\n";
  if (old_src_valid_mark)
    s += "old_src_valid_mark " + *old_src_valid_mark + "\n";
  return s;
}

std::optional<instance_record> instance_record::parse(const std::string& text) {
  instance_record r;
  bool have_device = false;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto sp = line.find(' ');
    if (sp == std::string::npos)
      return std::nullopt;
    const std::string key = line.substr(0, sp);
    const std::string value = line.substr(sp + 1);
    bool ok = true;
    if (key == "pid")
      ok = parse_number(value, r.pid);
    else if (key == "device") {
      r.device = value;
      have_device = !value.empty() && value.size() < 16;
    } else if (key == "table")
      ok = parse_number(value, r.table);
    else if (key == "priority")
      ok = parse_number(value, r.priority);
    else if (key == "default_route")
      r.default_route = value == "1";
    else if (key == "created_device")
      r.created_device = value == "1";
    else if (key == "old_src_valid_mark") {
      int v = 0;
      ok = parse_number(value, v);
      r.old_src_valid_mark = value;
    }
    if (!ok)
      return std::nullopt;
  }
  if (!have_device)
    return std::nullopt;
  return r;
}

bool instance_record::owns_priority(std::uint32_t p) const {
  return default_route && p <= priority && p + 2 >= priority;
}

// ---- instance_lock ----

expected<instance_lock> instance_lock::acquire(const std::string& dir, const std::string& device) {
  using result = expected<instance_lock>;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    return result::failure("cannot create the lock directory " + dir + ": " + errno_text(errno));
  instance_lock l;
  l.path_ = dir + "/tun-" + device + ".lock";
  // The previous holder unlinks the file when it exits cleanly; a lock won
  // on an unlinked file is no lock, so check that the path still names it.
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int fd = ::open(l.path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
      return result::failure("cannot open the lock file " + l.path_ + ": " + errno_text(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int code = errno;
      const auto held = instance_record::parse(read_all(fd));
      ::close(fd);
      if (code == EWOULDBLOCK)
        return result::failure("another warren tun is running on " + device +
                               (held ? " (pid " + std::to_string(held->pid) + ")" : std::string()) + "; its lock is " +
                               l.path_);
      return result::failure("cannot lock " + l.path_ + ": " + errno_text(code));
    }
    struct stat by_fd {};
    struct stat by_path {};
    if (::fstat(fd, &by_fd) == 0 && ::stat(l.path_.c_str(), &by_path) == 0 && by_fd.st_ino == by_path.st_ino &&
        by_fd.st_dev == by_path.st_dev) {
      l.fd_ = fd;
      l.previous_ = instance_record::parse(read_all(fd));
      return l;
    }
    ::close(fd);
  }
  return result::failure("cannot lock " + l.path_ + ": it keeps being replaced");
}

instance_lock::instance_lock(instance_lock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)), previous_(std::move(other.previous_)) {}

instance_lock& instance_lock::operator=(instance_lock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
    previous_ = std::move(other.previous_);
  }
  return *this;
}

instance_lock::~instance_lock() {
  release();
}

expected<bool> instance_lock::write(const instance_record& r) {
  const std::string text = r.format();
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    return expected<bool>::failure("cannot write the lock file " + path_ + ": " + errno_text(errno));
  return true;
}

void instance_lock::release() {
  if (fd_ < 0)
    return;
  ::unlink(path_.c_str()); // while still holding it: nobody can lock the old inode in between
  ::close(std::exchange(fd_, -1));
}

void instance_lock::abandon() {
  if (fd_ >= 0)
    ::close(std::exchange(fd_, -1));
}

// ---- cleanup ----

namespace {

bool owned_by_any(const std::vector<instance_record>& records, std::uint32_t priority) {
  for (const auto& r : records)
    if (r.owns_priority(priority))
      return true;
  return false;
}

bool table_of_any(const std::vector<instance_record>& records, std::uint32_t table) {
  for (const auto& r : records)
    if (r.default_route && r.table == table)
      return true;
  return false;
}

void clean_record(rtnl& nl, const instance_record& rec, const std::vector<instance_record>& live,
                  const std::string& own_device, const std::string& proc_sys, cleanup_report& report) {
  const auto note = [&](const expected<bool>& r, std::string what) {
    if (r)
      report.removed.push_back(std::move(what));
    else if (nl.last_errno() != ENOENT && nl.last_errno() != ESRCH)
      report.errors.push_back(r.error());
  };
  auto dev = nl.link(rec.device);
  for (const int family : {AF_INET, AF_INET6}) {
    if (auto rules = nl.rules(family, k_rt_protocol)) {
      for (const auto& r : *rules)
        if (rec.owns_priority(r.priority) && !owned_by_any(live, r.priority))
          note(nl.delete_rule(r), "rule " + r.describe());
    } else {
      report.errors.push_back(rules.error());
    }
    if (auto routes = nl.routes(family, k_rt_protocol)) {
      for (const auto& r : *routes) {
        const bool in_table = rec.default_route && r.table == rec.table && !table_of_any(live, r.table);
        const bool on_device = dev && r.oif == dev->index && rec.device != own_device;
        if (in_table || on_device)
          note(nl.delete_route(r), "route " + r.describe());
      }
    } else {
      report.errors.push_back(routes.error());
    }
  }
  // A TUN warren created vanishes with its process; one still there under
  // the record's name is deleted unless it is the starting instance's own
  // (a new TUN of the same name) or a live instance's.
  const auto in_use = [&](const std::string& name) {
    for (const auto& l : live)
      if (l.device == name)
        return true;
    return name == own_device;
  };
  if (dev && rec.created_device && dev->kind == "tun" && !in_use(rec.device))
    note(nl.delete_link(dev->index), "device " + rec.device);
  if (rec.default_route && !in_use(rec.device)) {
    if (auto c = delete_connmark(rec.device); !c)
      report.errors.push_back(c.error());
    else if (*c)
      report.removed.push_back("nftables table inet " + connmark_table(rec.device));
  }
  if (rec.old_src_valid_mark && read_sysctl(proc_sys, k_src_valid_mark) == std::optional<std::string>("1")) {
    auto w = write_sysctl(proc_sys, k_src_valid_mark, *rec.old_src_valid_mark);
    if (w)
      report.removed.push_back("src_valid_mark=1 (restored to " + *rec.old_src_valid_mark + ")");
    else
      report.errors.push_back(w.error());
  }
}

} // namespace

cleanup_report cleanup_leftovers(rtnl& nl, const std::string& lock_dir, const std::string& proc_sys,
                                 const std::optional<instance_record>& extra, const std::string& own_lock_path,
                                 const std::string& own_device) {
  cleanup_report report;
  struct leftover {
    instance_record record;
    std::string path;
    int fd = -1;
  };
  std::vector<leftover> leftovers;
  if (extra)
    leftovers.push_back({*extra, {}, -1});
  if (DIR* d = ::opendir(lock_dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      const std::string path = lock_dir + "/" + name;
      if (!is_lock_name(name) || path == own_lock_path)
        continue;
      const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0)
        continue;
      const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
      auto rec = instance_record::parse(read_all(fd));
      if (held) {
        if (rec)
          report.live.push_back(*rec);
        ::close(fd);
      } else if (rec) {
        leftovers.push_back({*rec, path, fd});
      } else {
        // Unreadable and unheld: a run killed before it wrote its record
        // had added nothing yet.
        ::unlink(path.c_str());
        ::close(fd);
      }
    }
    ::closedir(d);
  }
  for (auto& l : leftovers) {
    clean_record(nl, l.record, report.live, own_device, proc_sys, report);
    if (l.fd >= 0) {
      ::unlink(l.path.c_str());
      ::close(l.fd);
    }
  }
  for (const int family : {AF_INET, AF_INET6})
    if (auto rules = nl.rules(family, k_rt_protocol))
      for (const auto& r : *rules)
        if (!owned_by_any(report.live, r.priority))
          report.unowned.push_back("rule " + r.describe());
  return report;
}

// ---- routing_session ----

routing_session::routing_session(routing_session&& other) noexcept
    : nl_(std::move(other.nl_)), lock_(std::move(other.lock_)), applied_(std::move(other.applied_)),
      proc_sys_(std::move(other.proc_sys_)), leftovers_(std::move(other.leftovers_)),
      running_(std::exchange(other.running_, false)) {}

routing_session::~routing_session() {
  stop();
}

expected<routing_session> routing_session::start(const routing_options& o, const session_options& so) {
  using result = expected<routing_session>;
  auto p = make_plan(o);
  if (!p)
    return result::failure(p.error());
  auto nl = rtnl::open();
  if (!nl)
    return result::failure(nl.error());
  auto lock = instance_lock::acquire(so.lock_dir, o.device);
  if (!lock)
    return result::failure(lock.error());
  rtnl& n = nl.value();
  instance_lock& held = lock.value();
  auto report = cleanup_leftovers(n, so.lock_dir, so.proc_sys, held.previous(), held.path(), o.device);
  for (const auto& other : report.live) {
    if (!o.default_route || !other.default_route)
      continue;
    const auto gap = o.priority > other.priority ? o.priority - other.priority : other.priority - o.priority;
    if (other.table == o.table || gap <= 2)
      return result::failure("table " + std::to_string(o.table) + " or rule priorities " +
                             std::to_string(o.priority - 2) + "-" + std::to_string(o.priority) +
                             " are in use by warren tun on " + other.device + " (pid " + std::to_string(other.pid) +
                             "): choose another table or priority");
  }
  instance_record rec;
  rec.pid = ::getpid();
  rec.device = o.device;
  rec.table = o.table;
  rec.priority = o.priority;
  rec.default_route = o.default_route;
  rec.created_device = so.created_device;
  if (auto w = held.write(rec); !w)
    return result::failure(w.error());
  auto a = apply(n, *p, so.proc_sys, [&](const std::string& old) {
    rec.old_src_valid_mark = old;
    held.write(rec);
  });
  if (!a)
    return result::failure(a.error());
  routing_session s(std::move(n), std::move(held));
  s.applied_ = std::move(a.value());
  s.proc_sys_ = so.proc_sys;
  s.leftovers_ = std::move(report);
  s.running_ = true;
  return s;
}

std::vector<std::string> routing_session::stop() {
  if (!running_)
    return {};
  running_ = false;
  auto errors = undo(nl_, applied_, proc_sys_);
  if (errors.empty())
    lock_.release();
  else
    lock_.abandon(); // the record stays: the next start retries the cleanup
  return errors;
}

void routing_session::abandon() {
  running_ = false;
  lock_.abandon();
}

} // namespace warren::tun
