// connrate: measures how many new TCP connections per second a path can carry,
// for bench/relay_bench.sh (warren relay vs socat vs direct). `serve` is an
// epoll echo server on loopback that accepts, echoes one byte and closes;
// `client` runs C threads that each loop connect, send 1 byte, read the echo,
// wait for the server's close, close -- one full connection lifecycle per
// round trip -- for S seconds, then prints one machine-readable line:
//   connections_per_second 12345.6 errors 0 connections 61728 seconds 5.000
// The server closes first, so TIME_WAIT lands on the server's (fixed) port
// and the client's ephemeral ports are not exhausted at high rates.
// Dependency-free on purpose (POSIX sockets + std::thread): it must not share
// code, or bugs, with the program it measures.
#include "bench_util.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

const char* const k_bench_tool = "connrate";

namespace {

using namespace bench_util;

using clock_type = std::chrono::steady_clock;

void usage() {
  std::fputs("usage: connrate serve  --port P [--host 127.0.0.1] [--threads N]\n"
             "       connrate client --port P [--host 127.0.0.1] [--seconds S] [--concurrency C]\n",
             stderr);
  std::exit(2);
}

struct options {
  std::string host = "127.0.0.1";
  int port = -1;
  double seconds = 5;
  int concurrency = 8;
  int threads = 2;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 2; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc)
      usage();
    const char* value = argv[++i];
    if (flag == "--host") {
      o.host = value;
    } else if (flag == "--port") {
      o.port = static_cast<int>(number(flag, value, 0, 65535));
    } else if (flag == "--seconds") {
      char* end = nullptr;
      o.seconds = std::strtod(value, &end);
      if (end == value || *end != '\0' || !(o.seconds > 0 && o.seconds <= 3600))
        die("--seconds: '" + std::string(value) + "' is not in (0, 3600]");
    } else if (flag == "--concurrency") {
      o.concurrency = static_cast<int>(number(flag, value, 1, 4096));
    } else if (flag == "--threads") {
      o.threads = static_cast<int>(number(flag, value, 1, 64));
    } else {
      usage();
    }
  }
  if (o.port < 0)
    usage();
  return o;
}

// ---------------------------------------------------------------- serve

[[noreturn]] void serve_loop(int listener) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0)
    die_errno("epoll_create1");
  // One listener shared by every thread; EPOLLEXCLUSIVE wakes one of them per
  // connection (plain EPOLLIN where unsupported: a thundering herd, still correct).
  epoll_event lev{};
  lev.data.fd = listener;
  lev.events = EPOLLIN | EPOLLEXCLUSIVE;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &lev) != 0) {
    lev.events = EPOLLIN;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &lev) != 0)
      die_errno("epoll_ctl(listener)");
  }

  // Echoes what is there and closes; false if the byte has not arrived yet.
  auto answer = [](int fd) {
    char buf[64];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return false;
    if (n > 0)
      (void)::send(fd, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL);
    ::close(fd); // we close first: TIME_WAIT stays on the server side
    return true;
  };

  std::vector<epoll_event> events(256);
  for (;;) {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die_errno("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[static_cast<std::size_t>(i)].data.fd;
      if (fd != listener) {
        answer(fd); // close() also removes it from the epoll set
        continue;
      }
      // A bounded batch: a thread that only accepted would starve the
      // connections parked in its own epoll set (their clients would time
      // out); what is left makes the listener ready again.
      for (int batch = 0; batch < 32; ++batch) {
        const int c = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
          const int err = errno;
          if (err == EINTR || err == ECONNABORTED)
            continue;
          if (err != EAGAIN)
            std::fprintf(stderr, "connrate serve: accept: %s\n", std::strerror(err));
          if (err == EMFILE || err == ENFILE)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          break;
        }
        if (answer(c))
          continue;
        epoll_event cev{};
        cev.events = EPOLLIN | EPOLLRDHUP;
        cev.data.fd = c;
        if (::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) != 0)
          ::close(c);
      }
    }
  }
}

int serve(const options& o) {
  unsigned port = 0;
  const int listener = listen_tcp(o.host, o.port, &port);
  std::printf("connrate: echo server listening on %s port %u, %d threads\n", o.host.c_str(), port, o.threads);
  std::fflush(stdout);

  std::vector<std::thread> pool;
  for (int i = 1; i < o.threads; ++i)
    pool.emplace_back(serve_loop, listener);
  serve_loop(listener); // runs until killed
}

// ---------------------------------------------------------------- client

struct worker_result {
  std::uint64_t completed = 0;
  std::uint64_t errors = 0;
  std::map<std::string, std::uint64_t> reasons; // first word of each error, counted
};

/// One connection lifecycle; `failed` is null on success, else the step that failed.
struct outcome {
  const char* failed = nullptr;
  int error = 0; // errno of the failed step; 0 if it returned unexpected data
};

outcome round_trip(const endpoint& e) {
  const int fd = ::socket(e.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return {"socket", errno};
  // Bounded: a stuck connection costs at most 2 s, never hangs the run.
  const timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  outcome r;
  char byte = 'x';
  char reply = 0;
  char extra = 0;
  errno = 0;
  if (::connect(fd, e.addr(), e.length) != 0)
    r = {"connect", errno};
  else if (::send(fd, &byte, 1, MSG_NOSIGNAL) != 1)
    r = {"send", errno};
  else if (::recv(fd, &reply, 1, 0) != 1 || reply != byte)
    r = {"recv", errno};
  else if (::recv(fd, &extra, 1, 0) != 0) // the server's FIN: our close is then passive
    r = {"eof", errno};
  ::close(fd);
  return r;
}

void client_loop(const endpoint& e, clock_type::time_point deadline, worker_result& out) {
  while (clock_type::now() < deadline) {
    const outcome r = round_trip(e);
    if (!r.failed) {
      ++out.completed;
      continue;
    }
    ++out.errors;
    ++out.reasons[std::string(r.failed) + ": " + (r.error ? std::strerror(r.error) : "unexpected data or EOF")];
    // Back off a little so a dead target does not turn into a busy loop.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

int client(const options& o) {
  const endpoint e = make_endpoint(o.host, o.port);
  if (o.port == 0)
    die("client: --port 0 is not a port to connect to");
  std::vector<worker_result> results(static_cast<std::size_t>(o.concurrency));
  std::vector<std::thread> workers;
  const auto start = clock_type::now();
  const auto deadline =
      start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o.seconds));
  for (auto& r : results)
    workers.emplace_back(client_loop, std::cref(e), deadline, std::ref(r));
  for (auto& w : workers)
    w.join();
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();

  worker_result total;
  for (const auto& r : results) {
    total.completed += r.completed;
    total.errors += r.errors;
    for (const auto& [why, count] : r.reasons)
      total.reasons[why] += count;
  }
  for (const auto& [why, count] : total.reasons)
    std::fprintf(stderr, "connrate client: %llu x %s\n", static_cast<unsigned long long>(count), why.c_str());
  const double rate = elapsed > 0 ? static_cast<double>(total.completed) / elapsed : 0.0;
  std::printf("connections_per_second %.1f errors %llu connections %llu seconds %.3f\n", rate,
              static_cast<unsigned long long>(total.errors), static_cast<unsigned long long>(total.completed), elapsed);
  return total.completed > 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2)
    usage();
  const std::string_view mode = argv[1];
  const options o = parse(argc, argv);
  if (mode == "serve")
    return serve(o);
  if (mode == "client")
    return client(o);
  usage();
}
