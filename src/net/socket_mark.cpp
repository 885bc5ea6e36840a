#include "net/socket_mark.hpp"

#include <fmt/format.h>

#include <sys/socket.h>

#include <cctype>
#include <cerrno>

namespace warren::net {

error_code set_socket_mark(int fd, std::uint32_t mark) {
  const unsigned int value = mark;
  if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &value, sizeof value) != 0)
    return error_code(errno, boost::system::system_category());
  return {};
}

error_code get_socket_mark(int fd, std::uint32_t& mark) {
  unsigned int value = 0;
  socklen_t size = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_MARK, &value, &size) != 0)
    return error_code(errno, boost::system::system_category());
  mark = value;
  return {};
}

std::string describe_mark_failure(std::uint32_t mark, const error_code& ec) {
  std::string reason = ec.message();
  if (!reason.empty())
    reason[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(reason[0])));
  std::string out = fmt::format("cannot set the socket mark {:#x} (SO_MARK): {}", mark, reason);
  if (ec == boost::system::errc::operation_not_permitted)
    out += " - it needs CAP_NET_ADMIN (run as root or grant the capability)";
  return out;
}

error_code bind_to_device(int fd, const std::string& name) {
  if (name.empty())
    return {};
  if (::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name.data(), static_cast<socklen_t>(name.size())) != 0)
    return error_code(errno, boost::system::system_category());
  return {};
}

} // namespace warren::net
