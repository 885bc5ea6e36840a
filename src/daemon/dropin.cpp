#include "daemon/dropin.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace warren::daemon {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t k_max_dropin = 1 << 20;

std::string errno_text(int e) { return std::strerror(e); }

} // namespace

std::string dropin_dir(const std::string& state_dir) { return (fs::path(state_dir) / "units.d").string(); }

expected<bool> write_dropin(const std::string& dir, const std::string& name, const std::string& text) {
  using result = expected<bool>;
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec)
      return result::failure("cannot create " + dir + ": " + ec.message());
    ::chmod(dir.c_str(), 0700);
  }
  const std::string file = (fs::path(dir) / (name + ".toml")).string();
  const std::string tmp = (fs::path(dir) / ("." + name + ".toml.tmp")).string();
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return result::failure("cannot write " + tmp + ": " + errno_text(errno));
  std::size_t done = 0;
  while (done < text.size()) {
    const auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return result::failure("cannot write " + tmp + ": " + errno_text(e));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return result::failure("cannot write " + tmp + ": " + errno_text(e));
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return result::failure("cannot rename " + tmp + " to " + file + ": " + errno_text(e));
  }
  return true;
}

expected<bool> remove_dropin(const std::string& dir, const std::string& name) {
  const std::string file = (fs::path(dir) / (name + ".toml")).string();
  if (::unlink(file.c_str()) != 0 && errno != ENOENT)
    return expected<bool>::failure("cannot remove " + file + ": " + errno_text(errno));
  return true;
}

std::vector<dropin_file> read_dropins(const std::string& dir, std::vector<std::string>& errors) {
  std::vector<dropin_file> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return out;
  for (const auto& de : fs::directory_iterator(dir, ec)) {
    const auto p = de.path();
    const auto file_name = p.filename().string();
    if (p.extension() != ".toml" || file_name.starts_with("."))
      continue;
    const int fd = ::open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::size_t>(st.st_size) > k_max_dropin) {
      errors.push_back(p.string() + ": not a regular file of at most 1 MiB (or unreadable)");
      if (fd >= 0)
        ::close(fd);
      continue;
    }
    std::string text(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < text.size()) {
      const auto n = ::read(fd, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    text.resize(got);
    out.push_back({p.string(), p.stem().string(), std::move(text)});
  }
  if (ec)
    errors.push_back(dir + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

expected<bool> path_allowed(const std::string& path, const std::vector<std::string>& dirs) {
  using result = expected<bool>;
  std::string listed;
  for (const auto& d : dirs)
    listed += (listed.empty() ? "" : " or ") + d;
  const fs::path p(path);
  if (!p.is_absolute())
    return result::failure(path + ": give an absolute path (under " + listed + ")");
  for (const auto& part : p)
    if (part == "..")
      return result::failure(path + ": '..' is not allowed in a path (files must be under " + listed + ")");
  std::error_code ec;
  const auto real = fs::weakly_canonical(p, ec);
  if (ec)
    return result::failure(path + ": " + ec.message());
  for (const auto& d : dirs) {
    const auto base = fs::weakly_canonical(d, ec);
    if (ec || base.empty())
      continue;
    auto rel = real.lexically_relative(base);
    if (!rel.empty() && rel != "." && *rel.begin() != "..")
      return true;
  }
  return result::failure(path + " is outside the directories a unit added through the API may name (" + listed +
                         ")");
}

} // namespace warren::daemon
