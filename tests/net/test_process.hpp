// Real peers for tests (dnsmasq, danted): a child process killed and reaped
// when the test ends, and readiness waits that poll the port it binds
// (bounded; a peer that died is reported at once instead of waited for).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace warren::test {

/// A child process; destruction sends SIGKILL and reaps it.
class child_process {
 public:
  /// Runs argv[0] (PATH lookup) with stdout and stderr to `log` (or /dev/null).
  explicit child_process(std::vector<std::string> argv, const std::string& log = "/dev/null");
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  bool running();
  int pid() const { return pid_; }

 private:
  int pid_ = -1;
  bool reaped_ = false;
};

/// True when `program` is on PATH.
bool have_program(const std::string& program);

/// A port free for both TCP and UDP on 127.0.0.1 right now.
std::uint16_t free_port();

/// Waits until something binds UDP 127.0.0.1:port (our own bind fails) or
/// TCP 127.0.0.1:port accepts; false if `child` exits first or `limit` passes.
bool wait_udp_bound(child_process& child, std::uint16_t port,
                    std::chrono::milliseconds limit = std::chrono::seconds(10));
bool wait_tcp_listening(child_process& child, std::uint16_t port,
                        std::chrono::milliseconds limit = std::chrono::seconds(10));

/// The whole file, or "" (for a peer's log in a failure message).
std::string read_file(const std::string& path);

/// dnsmasq on 127.0.0.1:port reading nothing of the system's, answering
/// warren.test with 127.0.0.9 and fd00::9, and NXDOMAIN for nx.test.
std::vector<std::string> dnsmasq_argv(std::uint16_t port);

} // namespace warren::test
