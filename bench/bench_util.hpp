// Shared by the bench tools (connrate, rrlat, idle_streams): fatal errors,
// numeric flags, numeric endpoints (no name resolution, on purpose) and a
// non-blocking TCP listener.
// Each tool defines k_bench_tool, the name its error lines start with.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

extern const char* const k_bench_tool;

namespace bench_util {

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", k_bench_tool, what.c_str());
  std::exit(2);
}

[[noreturn]] inline void die_errno(const std::string& what) {
  die(what + ": " + std::strerror(errno));
}

inline long number(std::string_view flag, const char* text, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi)
    die(std::string(flag) + ": '" + text + "' is not a number in [" + std::to_string(lo) + ", " + std::to_string(hi) +
        "]");
  return v;
}

/// A numeric IPv4 or IPv6 address and port.
struct endpoint {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_INET;

  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

inline endpoint make_endpoint(const std::string& host, int port) {
  endpoint e;
  sockaddr_in v4{};
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(static_cast<std::uint16_t>(port));
    std::memcpy(&e.storage, &v4, sizeof v4);
    e.length = sizeof v4;
    e.family = AF_INET;
  } else if (::inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(static_cast<std::uint16_t>(port));
    std::memcpy(&e.storage, &v6, sizeof v6);
    e.length = sizeof v6;
    e.family = AF_INET6;
  } else {
    die("--host '" + host + "' is not a numeric IPv4 or IPv6 address");
  }
  return e;
}

/// A non-blocking TCP listener on host:port (port 0: the kernel picks one;
/// `bound_port` says which). Dies on failure.
inline int listen_tcp(const std::string& host, int port, unsigned* bound_port = nullptr) {
  const endpoint e = make_endpoint(host, port);
  const int listener = ::socket(e.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listener < 0)
    die_errno("socket");
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listener, e.addr(), e.length) != 0)
    die_errno("bind " + host + ":" + std::to_string(port));
  if (::listen(listener, 4096) != 0)
    die_errno("listen");
  if (bound_port) {
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len);
    *bound_port = ntohs(e.family == AF_INET ? reinterpret_cast<const sockaddr_in*>(&bound)->sin_port
                                            : reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
  }
  return listener;
}

} // namespace bench_util
