// Test helpers for code that changes the kernel's network state: the body
// runs in a forked child inside a fresh network namespace (unshare), so the
// host's links, routes and rules are never touched; the child's gtest
// failures come back as its exit status. Without root the test is skipped.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace warren::tun::test {

/// Runs `body` in a child process in a new network namespace and fails the
/// calling test if any assertion inside failed. Call it as the whole test
/// body, after WARREN_NEED_ROOT().
void in_netns(const std::function<void()>& body);

/// A shell command's standard output (stderr merged); for reading state with `ip`.
std::string sh(const std::string& command);

/// A fresh directory under /tmp (for lock files), removed with its contents
/// when this goes out of scope; converts to its path.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  operator const std::string&() const { return path_; } // NOLINT(google-explicit-constructor)
  std::string operator+(const std::string& tail) const { return path_ + tail; }

 private:
  std::string path_;
};

} // namespace warren::tun::test

#define WARREN_NEED_ROOT()                                                                                             \
  do {                                                                                                                 \
    if (::geteuid() != 0)                                                                                              \
      GTEST_SKIP() << "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for a network namespace of its own)";              \
  } while (0)
