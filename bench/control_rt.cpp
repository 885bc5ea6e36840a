// control_rt: control-API round trips for bench/control_bench.py.
//   control_rt --unix PATH | --tcp HOST:PORT | --tls HOST:PORT
//              [--token-file F] [--clients C] [--count N] [--warmup W]
//              [--method daemon.status]
// C threads, each with its own connection (TCP/TLS: `auth` first), send W
// unmeasured then N measured requests one at a time ("write a frame, read
// its reply") and time each. One machine-readable line at the end:
//   rt_us p50 38.1 p99 71.9 mean 40.2 rps 24810.3 count 80000 clients 16
// rps is every client's measured requests over the wall time from the first
// measured request to the last reply. TLS does not verify the daemon's
// certificate (a loopback measurement, not a client). Every socket
// operation times out after 5 s. POSIX sockets and OpenSSL only: it shares
// no code with the daemon it measures.
#include "bench_util.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

const char* const k_bench_tool = "control_rt";

namespace {

using namespace bench_util;
using clock_type = std::chrono::steady_clock;

struct options {
  enum class kind { unix_socket, tcp, tls } transport = kind::unix_socket;
  std::string path, host, token, method = "daemon.status";
  int port = 0;
  long clients = 1, count = 2000, warmup = 200;
};

class conn {
 public:
  conn(const options& o, SSL_CTX* ctx) {
    if (o.transport == options::kind::unix_socket) {
      fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      if (o.path.size() >= sizeof a.sun_path)
        die("--unix: path too long");
      std::memcpy(a.sun_path, o.path.data(), o.path.size());
      if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        die_errno("connect " + o.path);
    } else {
      const auto e = make_endpoint(o.host, o.port);
      fd_ = ::socket(e.family, SOCK_STREAM, 0);
      if (::connect(fd_, e.addr(), e.length) != 0)
        die_errno("connect " + o.host);
      int one = 1;
      ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (ctx != nullptr) {
      ssl_ = SSL_new(ctx);
      SSL_set_fd(ssl_, fd_);
      if (SSL_connect(ssl_) != 1)
        die("TLS handshake failed");
    }
    if (o.transport != options::kind::unix_socket) {
      if (o.token.empty())
        die("--tcp/--tls need --token-file");
      const auto reply = call("{\"jsonrpc\":\"2.0\",\"method\":\"auth\",\"params\":{\"token\":\"" + o.token +
                              "\"},\"id\":0}");
      if (reply.find("\"result\"") == std::string::npos)
        die("auth refused: " + reply.substr(0, 200));
    }
  }
  ~conn() {
    if (ssl_ != nullptr)
      SSL_free(ssl_);
    ::close(fd_);
  }
  conn(const conn&) = delete;
  conn& operator=(const conn&) = delete;

  std::string call(const std::string& body) {
    std::string out(4, '\0');
    const auto n = static_cast<std::uint32_t>(body.size());
    out[0] = static_cast<char>(n >> 24);
    out[1] = static_cast<char>(n >> 16);
    out[2] = static_cast<char>(n >> 8);
    out[3] = static_cast<char>(n);
    out += body;
    write_all(out.data(), out.size());
    unsigned char head[4];
    read_all(head, 4);
    const std::uint32_t len = (std::uint32_t{head[0]} << 24) | (std::uint32_t{head[1]} << 16) |
                              (std::uint32_t{head[2]} << 8) | std::uint32_t{head[3]};
    if (len > (1u << 20))
      die("reply of " + std::to_string(len) + " bytes");
    std::string reply(len, '\0');
    read_all(reply.data(), len);
    return reply;
  }

 private:
  void write_all(const char* p, std::size_t n) {
    while (n > 0) {
      const long w = ssl_ != nullptr ? SSL_write(ssl_, p, static_cast<int>(n)) : ::write(fd_, p, n);
      if (w <= 0)
        die_errno("write");
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }
  void read_all(void* out, std::size_t n) {
    auto* p = static_cast<char*>(out);
    while (n > 0) {
      const long r = ssl_ != nullptr ? SSL_read(ssl_, p, static_cast<int>(n)) : ::read(fd_, p, n);
      if (r <= 0)
        die(r == 0 ? "the daemon closed the connection" : std::string("read: ") + std::strerror(errno));
      p += r;
      n -= static_cast<std::size_t>(r);
    }
  }
  int fd_ = -1;
  SSL* ssl_ = nullptr;
};

double percentile(std::vector<double>& v, double p) {
  if (v.empty())
    return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

} // namespace

int main(int argc, char** argv) {
  options o;
  std::string token_file;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc)
      die(std::string(flag) + " needs a value");
    const char* value = argv[++i];
    if (flag == "--unix") {
      o.transport = options::kind::unix_socket;
      o.path = value;
    } else if (flag == "--tcp" || flag == "--tls") {
      o.transport = flag == "--tcp" ? options::kind::tcp : options::kind::tls;
      const std::string hp = value;
      const auto colon = hp.rfind(':');
      if (colon == std::string::npos)
        die(std::string(flag) + ": HOST:PORT");
      o.host = hp.substr(0, colon);
      if (o.host.size() > 2 && o.host.front() == '[')
        o.host = o.host.substr(1, o.host.size() - 2);
      o.port = static_cast<int>(number(flag, hp.c_str() + colon + 1, 1, 65535));
    } else if (flag == "--token-file") {
      token_file = value;
    } else if (flag == "--clients") {
      o.clients = number(flag, value, 1, 1024);
    } else if (flag == "--count") {
      o.count = number(flag, value, 1, 100000000);
    } else if (flag == "--warmup") {
      o.warmup = number(flag, value, 0, 100000000);
    } else if (flag == "--method") {
      o.method = value;
    } else {
      die("unknown flag " + std::string(flag));
    }
  }
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    std::getline(in, o.token);
    while (!o.token.empty() && (o.token.back() == ' ' || o.token.back() == '\r'))
      o.token.pop_back();
  }
  SSL_CTX* ctx = nullptr;
  if (o.transport == options::kind::tls) {
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  const std::string request = "{\"jsonrpc\":\"2.0\",\"method\":\"" + o.method + "\",\"id\":1}";
  std::vector<std::vector<double>> samples(static_cast<std::size_t>(o.clients));
  std::mutex m;
  clock_type::time_point first = clock_type::time_point::max(), last{};
  std::vector<std::thread> threads;
  for (long c = 0; c < o.clients; ++c) {
    threads.emplace_back([&, c] {
      conn k(o, ctx);
      for (long i = 0; i < o.warmup; ++i)
        k.call(request);
      auto& mine = samples[static_cast<std::size_t>(c)];
      mine.reserve(static_cast<std::size_t>(o.count));
      const auto begin = clock_type::now();
      for (long i = 0; i < o.count; ++i) {
        const auto t0 = clock_type::now();
        const auto reply = k.call(request);
        mine.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
        if (reply.find("\"result\"") == std::string::npos)
          die("error reply: " + reply.substr(0, 200));
      }
      const auto end = clock_type::now();
      std::lock_guard lock(m);
      first = std::min(first, begin);
      last = std::max(last, end);
    });
  }
  for (auto& t : threads)
    t.join();
  std::vector<double> all;
  for (auto& s : samples)
    all.insert(all.end(), s.begin(), s.end());
  double sum = 0;
  for (const double v : all)
    sum += v;
  const double seconds = std::chrono::duration<double>(last - first).count();
  const double mean = sum / static_cast<double>(all.size());
  const double p50 = percentile(all, 0.50);
  const double p99 = percentile(all, 0.99);
  std::printf("rt_us p50 %.1f p99 %.1f mean %.1f rps %.1f count %zu clients %ld\n", p50, p99, mean,
              static_cast<double>(all.size()) / seconds, all.size(), o.clients);
  if (ctx != nullptr)
    SSL_CTX_free(ctx);
  return 0;
}
