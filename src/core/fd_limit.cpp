#include "core/fd_limit.hpp"

#include <sys/resource.h>

namespace warren {

fd_limit raise_fd_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0)
    return {};
  fd_limit out{r.rlim_cur, r.rlim_cur};
  if (r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &r) == 0)
      out.now = r.rlim_cur;
  }
  return out;
}

} // namespace warren
