// idle_streams: holds N concurrent idle TCP connections open through a path
// (for bench/tunnel_bench.sh: 10,000 streams through one warren tunnel), so
// the memory each one costs the tunnel's processes can be read off
// /proc/PID/status.
//
//   idle_streams --port P [--host 127.0.0.1] [--count 10000] [--batch 250] [--hold 120]
//
// Opens --count connections to an echo server (rrlat serve, usually through a
// tunnel's local port), --batch at a time: connect, send 1 byte, then wait for
// every echo of the batch -- so each stream is established end to end, all
// the way to the echo server, before the next batch starts. Then prints
//   ready 10000 seconds 3.21
// and holds every connection open, idle, until a line arrives on standard
// input, SIGUSR1 or SIGTERM arrives, or --hold seconds pass. It
// then checks that every stream still works (1 byte out, its echo back),
// prints
//   verified 10000 failed 0
// and closes them all. Exit status 0 only if every stream was opened and
// verified. Every socket operation times out after 10 s. Raises
// RLIMIT_NOFILE to count + 100 (needs a hard limit that high).
// Dependency-free on purpose (POSIX sockets): it must not share code, or
// bugs, with the program it measures.
#include "bench_util.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

const char* const k_bench_tool = "idle_streams";

namespace {

using namespace bench_util;

using clock_type = std::chrono::steady_clock;

volatile std::sig_atomic_t released = 0;

extern "C" void on_release(int) {
  released = 1;
}

[[noreturn]] void usage() {
  std::fputs("usage: idle_streams --port P [--host 127.0.0.1] [--count 10000] [--batch 250] [--hold 120]\n", stderr);
  std::exit(2);
}

struct options {
  std::string host = "127.0.0.1";
  int port = -1;
  long count = 10000;
  long batch = 250;
  long hold = 120;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc)
      usage();
    const char* value = argv[++i];
    if (flag == "--host")
      o.host = value;
    else if (flag == "--port")
      o.port = static_cast<int>(number(flag, value, 1, 65535));
    else if (flag == "--count")
      o.count = number(flag, value, 1, 1'000'000);
    else if (flag == "--batch")
      o.batch = number(flag, value, 1, 100'000);
    else if (flag == "--hold")
      o.hold = number(flag, value, 0, 86'400);
    else
      usage();
  }
  if (o.port < 0)
    usage();
  return o;
}

void raise_nofile(long count) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0)
    die_errno("getrlimit");
  const auto want = static_cast<rlim_t>(count + 100);
  if (r.rlim_cur >= want)
    return;
  if (r.rlim_max != RLIM_INFINITY && r.rlim_max < want)
    die("RLIMIT_NOFILE hard limit " + std::to_string(r.rlim_max) + " is below the " + std::to_string(want) +
        " needed (run under `prlimit --nofile=N:N` or `ulimit -n N`)");
  r.rlim_cur = want;
  if (::setrlimit(RLIMIT_NOFILE, &r) != 0)
    die_errno("setrlimit(RLIMIT_NOFILE, " + std::to_string(want) + ")");
}

int open_stream(const endpoint& e) {
  const int fd = ::socket(e.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die_errno("socket");
  const timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, e.addr(), e.length) != 0)
    die_errno("connect");
  return fd;
}

bool send_byte(int fd, char byte) {
  return ::send(fd, &byte, 1, MSG_NOSIGNAL) == 1;
}

bool echoed(int fd, char byte) {
  char reply = 0;
  return ::recv(fd, &reply, 1, 0) == 1 && reply == byte;
}

/// Until a line on stdin, a signal, or the deadline. End of file on stdin
/// (or stdin being /dev/null) does not release: only the other two then do.
void hold(long seconds) {
  const auto deadline = clock_type::now() + std::chrono::seconds(seconds);
  bool watch_stdin = true;
  while (!released) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    if (left <= 0) {
      std::fprintf(stderr, "idle_streams: --hold %ld s passed, releasing\n", seconds);
      return;
    }
    pollfd p{};
    p.fd = watch_stdin ? 0 : -1; // poll ignores a negative fd: a plain sleep
    p.events = POLLIN;
    if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, 200))) <= 0 || (p.revents & (POLLIN | POLLHUP)) == 0)
      continue;
    char line[256];
    const ssize_t n = ::read(0, line, sizeof line);
    if (n > 0)
      return;
    if (n == 0 || errno != EINTR)
      watch_stdin = false;
  }
}

} // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  raise_nofile(o.count);
  const endpoint e = make_endpoint(o.host, o.port);
  std::signal(SIGUSR1, on_release);
  std::signal(SIGTERM, on_release);
  std::signal(SIGPIPE, SIG_IGN);

  std::vector<int> fds;
  fds.reserve(static_cast<std::size_t>(o.count));
  const auto start = clock_type::now();
  while (static_cast<long>(fds.size()) < o.count) {
    const std::size_t first = fds.size();
    const long n = std::min(o.batch, o.count - static_cast<long>(first));
    for (long i = 0; i < n; ++i) {
      const int fd = open_stream(e);
      fds.push_back(fd);
      if (!send_byte(fd, 'o'))
        die_errno("send on stream " + std::to_string(fds.size()));
    }
    for (std::size_t i = first; i < fds.size(); ++i)
      if (!echoed(fds[i], 'o'))
        die("no echo on stream " + std::to_string(i + 1) + " of " + std::to_string(o.count) + ": " +
            (errno ? std::strerror(errno) : "closed or wrong byte"));
  }
  const double took = std::chrono::duration<double>(clock_type::now() - start).count();
  std::printf("ready %zu seconds %.2f\n", fds.size(), took);
  std::fflush(stdout);

  hold(o.hold);

  // Still alive after idling? Send on all, then collect all echoes.
  long failed = 0;
  std::vector<bool> sent(fds.size());
  for (std::size_t i = 0; i < fds.size(); ++i)
    sent[i] = send_byte(fds[i], 'v');
  for (std::size_t i = 0; i < fds.size(); ++i)
    if (!sent[i] || !echoed(fds[i], 'v'))
      ++failed;
  std::printf("verified %ld failed %ld\n", static_cast<long>(fds.size()) - failed, failed);
  std::fflush(stdout);
  for (const int fd : fds)
    ::close(fd);
  return failed == 0 ? 0 : 1;
}
