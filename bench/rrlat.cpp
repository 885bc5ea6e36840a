// rrlat: request/response latency for bench/tunnel_bench.sh (warren tunnel vs
// direct). Three modes:
//   rrlat serve  --port P [--host H]
//       epoll echo server on loopback: persistent connections, every byte
//       echoed back, TCP_NODELAY; one thread, scales to tens of thousands of
//       concurrent connections (bench/idle_streams holds 10,000 through it).
//   rrlat client --port P [--host H] [--count N] [--warmup W]
//       one connection, TCP_NODELAY; W unmeasured then N measured iterations
//       of "write 1 byte, read 1 byte"; prints one machine-readable line:
//         rtt_us mean 41.2 p50 39.8 p99 88.1 count 5000
//   rrlat first  --port P [--host H] [--count N] [--warmup W]
//       N times: a NEW connection, connect + write 1 byte + read the echo,
//       timed from before connect() to the echo; then close. Prints:
//         first_us mean 120.4 p50 110.2 p99 300.9 connect_p50 20.1 count 200
//       Through a tunnel's local port this is the cost of opening a stream on
//       an established tunnel plus its first exchange.
// Every client socket operation times out after 5 s, so nothing hangs.
// Dependency-free on purpose (POSIX sockets): it must not share code, or
// bugs, with the program it measures.
#include "bench_util.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

const char* const k_bench_tool = "rrlat";

namespace {

using namespace bench_util;

using clock_type = std::chrono::steady_clock;

[[noreturn]] void usage() {
  std::fputs("usage: rrlat serve  --port P [--host 127.0.0.1]\n"
             "       rrlat client --port P [--host 127.0.0.1] [--count 5000] [--warmup 200]\n"
             "       rrlat first  --port P [--host 127.0.0.1] [--count 200] [--warmup 20]\n",
             stderr);
  std::exit(2);
}

struct options {
  std::string host = "127.0.0.1";
  int port = -1;
  long count = -1;  // mode-dependent default
  long warmup = -1; // mode-dependent default
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 2; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc)
      usage();
    const char* value = argv[++i];
    if (flag == "--host")
      o.host = value;
    else if (flag == "--port")
      o.port = static_cast<int>(number(flag, value, 0, 65535));
    else if (flag == "--count")
      o.count = number(flag, value, 1, 100'000'000);
    else if (flag == "--warmup")
      o.warmup = number(flag, value, 0, 100'000'000);
    else
      usage();
  }
  if (o.port < 0)
    usage();
  return o;
}

/// Raises the open-file soft limit as far as the hard limit allows.
void raise_nofile() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &r);
  }
}

// ---------------------------------------------------------------- serve

/// Echo server. Level-triggered epoll; a connection whose echo could not be
/// written at once keeps the rest in `pending` and stops reading until it has
/// been flushed (so a slow reader cannot make the server buffer without bound).
[[noreturn]] void serve(const options& o) {
  raise_nofile();
  const int listener = listen_tcp(o.host, o.port);
  const int one = 1;
  std::printf("rrlat: echo server listening on %s port %d\n", o.host.c_str(), o.port);
  std::fflush(stdout);

  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0)
    die_errno("epoll_create1");
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.fd = listener;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &lev) != 0)
    die_errno("epoll_ctl(listener)");

  std::unordered_map<int, std::string> pending;
  auto watch = [ep](int fd, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    (void)::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
  };
  auto drop = [&pending](int fd) {
    pending.erase(fd);
    ::close(fd); // also leaves the epoll set
  };
  // Sends what it can of `data`; keeps the rest for EPOLLOUT. False: connection gone.
  auto send_some = [&](int fd, const char* data, std::size_t size) {
    while (size > 0) {
      const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == EAGAIN) {
        pending[fd].assign(data, size);
        watch(fd, EPOLLOUT);
        return true;
      }
      if (n <= 0)
        return false;
      data += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  };

  std::vector<epoll_event> events(1024);
  std::vector<char> buffer(64 * 1024);
  for (;;) {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die_errno("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const epoll_event& ev = events[static_cast<std::size_t>(i)];
      const int fd = ev.data.fd;
      if (fd == listener) {
        for (;;) {
          const int c = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
              continue;
            if (errno != EAGAIN)
              std::fprintf(stderr, "rrlat serve: accept: %s\n", std::strerror(errno));
            break;
          }
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          if (::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) != 0)
            ::close(c);
        }
        continue;
      }
      if (const auto it = pending.find(fd); it != pending.end()) { // was waiting for EPOLLOUT
        std::string rest = std::move(it->second);
        pending.erase(it);
        if (!send_some(fd, rest.data(), rest.size()))
          drop(fd);
        else if (pending.find(fd) == pending.end())
          watch(fd, EPOLLIN);
        continue;
      }
      const ssize_t got = ::recv(fd, buffer.data(), buffer.size(), 0);
      if (got < 0 && (errno == EAGAIN || errno == EINTR))
        continue;
      if (got <= 0 || !send_some(fd, buffer.data(), static_cast<std::size_t>(got)))
        drop(fd);
    }
  }
}

// ---------------------------------------------------------------- clients

int connect_to(const endpoint& e) {
  const int fd = ::socket(e.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die_errno("socket");
  const timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, e.addr(), e.length) != 0)
    die_errno("connect to port " + std::to_string(ntohs(reinterpret_cast<const sockaddr_in*>(&e.storage)->sin_port)));
  return fd;
}

/// One 1-byte request and its 1-byte response.
void exchange(int fd, char byte) {
  if (::send(fd, &byte, 1, MSG_NOSIGNAL) != 1)
    die_errno("send");
  char reply = 0;
  const ssize_t n = ::recv(fd, &reply, 1, 0);
  if (n < 0)
    die_errno("recv");
  if (n == 0)
    die("recv: connection closed by the peer");
  if (reply != byte)
    die("recv: echo mismatch");
}

double micros(clock_type::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

struct summary {
  double mean = 0, p50 = 0, p99 = 0;
};

summary summarize(std::vector<double> v) {
  summary s;
  if (v.empty())
    return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (const double x : v)
    sum += x;
  s.mean = sum / static_cast<double>(v.size());
  s.p50 = v[v.size() / 2];
  s.p99 = v[std::min(v.size() - 1, v.size() * 99 / 100)];
  return s;
}

int client(const options& o) {
  const endpoint e = make_endpoint(o.host, o.port);
  const long count = o.count > 0 ? o.count : 5000;
  const long warmup = o.warmup >= 0 ? o.warmup : 200;
  const int fd = connect_to(e);
  std::vector<double> rtt;
  rtt.reserve(static_cast<std::size_t>(count));
  for (long i = 0; i < warmup + count; ++i) {
    const auto start = clock_type::now();
    exchange(fd, static_cast<char>('a' + i % 26));
    const auto took = clock_type::now() - start;
    if (i >= warmup)
      rtt.push_back(micros(took));
  }
  ::close(fd);
  const summary s = summarize(std::move(rtt));
  std::printf("rtt_us mean %.1f p50 %.1f p99 %.1f count %ld\n", s.mean, s.p50, s.p99, count);
  return 0;
}

int first(const options& o) {
  const endpoint e = make_endpoint(o.host, o.port);
  const long count = o.count > 0 ? o.count : 200;
  const long warmup = o.warmup >= 0 ? o.warmup : 20;
  std::vector<double> total, connect;
  for (long i = 0; i < warmup + count; ++i) {
    const auto start = clock_type::now();
    const int fd = connect_to(e);
    const auto connected = clock_type::now();
    exchange(fd, 'f');
    const auto done = clock_type::now();
    ::close(fd);
    if (i >= warmup) {
      total.push_back(micros(done - start));
      connect.push_back(micros(connected - start));
    }
  }
  const summary s = summarize(std::move(total));
  const summary c = summarize(std::move(connect));
  std::printf("first_us mean %.1f p50 %.1f p99 %.1f connect_p50 %.1f count %ld\n", s.mean, s.p50, s.p99, c.p50, count);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2)
    usage();
  const std::string_view mode = argv[1];
  const options o = parse(argc, argv);
  if (o.port == 0 && mode != "serve")
    die("--port 0 is not a port to connect to");
  if (mode == "serve")
    serve(o);
  if (mode == "client")
    return client(o);
  if (mode == "first")
    return first(o);
  usage();
}
