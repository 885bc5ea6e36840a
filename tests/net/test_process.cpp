#include "test_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace warren::test {

child_process::child_process(std::vector<std::string> argv, const std::string& log) {
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  if (posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ) != 0)
    pid_ = -1;
  posix_spawn_file_actions_destroy(&actions);
}

child_process::~child_process() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

bool child_process::running() {
  if (pid_ <= 0 || reaped_)
    return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped_ = true;
    return false;
  }
  return true;
}

bool have_program(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (::access((dir + "/" + program).c_str(), X_OK) == 0)
      return true;
  return false;
}

namespace {

int bind_loopback(int type, std::uint16_t port) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    const int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

template <class Ready>
bool poll_until(child_process& child, std::chrono::milliseconds limit, Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready())
      return true;
    if (!child.running())
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20)); // readiness poll of a real process
  }
  return ready();
}

} // namespace

std::uint16_t free_port() {
  for (int i = 0; i < 100; ++i) {
    const int t = bind_loopback(SOCK_STREAM, 0);
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    ::getsockname(t, reinterpret_cast<sockaddr*>(&sa), &len);
    const std::uint16_t port = ntohs(sa.sin_port);
    const int u = bind_loopback(SOCK_DGRAM, port);
    ::close(t);
    if (u >= 0) {
      ::close(u);
      return port;
    }
  }
  return 0;
}

bool wait_udp_bound(child_process& child, std::uint16_t port, std::chrono::milliseconds limit) {
  return poll_until(child, limit, [port] {
    const int fd = bind_loopback(SOCK_DGRAM, port);
    if (fd >= 0) {
      ::close(fd);
      return false;
    }
    return errno == EADDRINUSE;
  });
}

bool wait_tcp_listening(child_process& child, std::uint16_t port, std::chrono::milliseconds limit) {
  return poll_until(child, limit, [port] {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    ::close(fd);
    return ok;
  });
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> dnsmasq_argv(std::uint16_t port) {
  // --conf-file=/dev/null, --no-resolv, --no-hosts: reads nothing of the
  // system's; --no-daemon: no fork, no pid file; 127.0.0.1:port only.
  return {"dnsmasq",
          "--no-daemon",
          "--port=" + std::to_string(port),
          "--listen-address=127.0.0.1",
          "--bind-interfaces",
          "--no-resolv",
          "--no-hosts",
          "--conf-file=/dev/null",
          "--log-facility=-",
          "--address=/warren.test/127.0.0.9",
          "--address=/warren.test/fd00::9",
          "--address=/nx.test/"};
}

} // namespace warren::test
