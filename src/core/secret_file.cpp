#include "core/secret_file.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

namespace warren {

namespace {

/// How long a pipe or a FIFO (--token-file <(pass show x)) may take to give
/// its line: never forever, since under the daemon the reader is a unit's
/// event loop, and a FIFO nobody writes to would hang it and every unit on it.
constexpr auto k_pipe_wait = std::chrono::seconds(2);

struct fd_closer {
  int fd;
  ~fd_closer() {
    if (fd >= 0)
      ::close(fd);
  }
};

} // namespace

expected<std::string> read_secret_line(const std::string& path, std::string_view what) {
  using result = expected<std::string>;
  const auto unreadable = [&] { return result::failure("cannot read " + std::string(what) + " " + path); };
  // O_NONBLOCK: opening a FIFO does not wait for a writer (and reading one
  // without a writer is an end of file at once).
  const fd_closer f{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)};
  struct stat st {};
  if (f.fd < 0 || ::fstat(f.fd, &st) != 0 || S_ISDIR(st.st_mode))
    return unreadable();
  const bool regular = S_ISREG(st.st_mode);
  const auto deadline = std::chrono::steady_clock::now() + k_pipe_wait;
  std::string text(k_max_secret_line + 1, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const auto n = ::read(f.fd, text.data() + got, text.size() - got);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
      if (!regular && std::find(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(got), '\n') !=
                          text.begin() + static_cast<std::ptrdiff_t>(got))
        break; // a pipe's writer may stay open: the first line is all we read
      continue;
    }
    if (n == 0)
      break;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return unreadable();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{f.fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0)
      return result::failure(std::string(what) + " " + path + ": no line within " +
                             std::to_string(std::chrono::duration_cast<std::chrono::seconds>(k_pipe_wait).count()) +
                             " s (a FIFO or pipe that nothing writes to?)");
  }
  text.resize(got);
  const auto nl = text.find('\n');
  if (nl == std::string::npos && text.size() > k_max_secret_line)
    return result::failure(std::string(what) + " " + path + ": the first line is longer than " +
                           std::to_string(k_max_secret_line / 1024) + " KiB (is it the right file?)");
  text.resize(std::min(nl, text.size()));
  if (!text.empty() && text.back() == '\r')
    text.pop_back();
  return text;
}

} // namespace warren
