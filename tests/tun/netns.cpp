#include "netns.hpp"

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace warren::tun::test {

namespace {
constexpr int k_no_namespace = 77;
}

void in_netns(const std::function<void()>& body) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << "fork failed";
  if (pid == 0) {
    if (::unshare(CLONE_NEWNET) != 0)
      ::_exit(k_no_namespace);
    body();
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the namespace child died of signal " << WTERMSIG(status);
  if (WEXITSTATUS(status) == k_no_namespace)
    GTEST_SKIP() << "cannot create a network namespace (unshare(CLONE_NEWNET))";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "assertions failed inside the network namespace (see above)";
}

std::string sh(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr)
    return out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    out.append(buf, n);
  ::pclose(p);
  return out;
}

temp_dir::temp_dir() {
  char tmpl[] = "/tmp/warren-tun-test.XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  EXPECT_NE(d, nullptr) << "mkdtemp failed";
  path_ = d != nullptr ? d : "/nonexistent";
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

} // namespace warren::tun::test
