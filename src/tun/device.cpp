// TUN open/adopt and the offload negotiation (see device.hpp).
#include "tun/device.hpp"

#include "tun/rtnl.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

// Linux 6.2 added UDP segmentation offload to TUN; Debian 12's headers
// (6.1) do not name the flags yet.
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

namespace warren::tun {

namespace {

std::string errno_text(int code) {
  return std::strerror(code);
}

// What TUNSETIFF's EINVAL means for this name: another kind of device holds
// it, or a TUN/TAP with other flags does.
std::string name_conflict(const std::string& name) {
  auto nl = rtnl::open();
  if (nl) {
    auto l = nl.value().link(name);
    if (l && l->kind != "tun")
      return "network device '" + name + "' exists and is " +
             (l->kind.empty() ? std::string("not a TUN device") : "a " + l->kind + " device, not a TUN") +
             ": choose another --name";
    if (l)
      return "network device '" + name +
             "' is a TUN/TAP device with other flags (a TAP, or multi-queue where single-queue is asked or the "
             "reverse)";
  }
  return "cannot create TUN device '" + name + "': " + errno_text(EINVAL);
}

// Asks for the offloads, with USO first when wanted; returns what the kernel took.
offloads negotiate(int fd, bool try_uso) {
  const unsigned base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
  const unsigned attempts[] = {base | TUN_F_USO4 | TUN_F_USO6, base, TUN_F_CSUM};
  for (const unsigned flags : attempts) {
    if (!try_uso && (flags & TUN_F_USO4) != 0)
      continue;
    if (::ioctl(fd, TUNSETOFFLOAD, static_cast<unsigned long>(flags)) == 0) {
      offloads o;
      o.csum = (flags & TUN_F_CSUM) != 0;
      o.tso4 = (flags & TUN_F_TSO4) != 0;
      o.tso6 = (flags & TUN_F_TSO6) != 0;
      o.uso4 = (flags & TUN_F_USO4) != 0;
      o.uso6 = (flags & TUN_F_USO6) != 0;
      return o;
    }
  }
  return {};
}

expected<offloads> setup_vnet(int fd, bool try_uso) {
  int size = static_cast<int>(k_virtio_net_hdr_size);
  if (::ioctl(fd, TUNSETVNETHDRSZ, &size) != 0)
    return expected<offloads>::failure("cannot set the TUN's virtio-net header size: " + errno_text(errno));
  return negotiate(fd, try_uso);
}

int set_iff(int fd, const std::string& name, short flags) {
  ifreq ifr{};
  ifr.ifr_flags = flags;
  std::memcpy(ifr.ifr_name, name.data(), name.size()); // size checked < IFNAMSIZ
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0)
    return -errno;
  return 0;
}

expected<std::string> attached_name(int fd) {
  ifreq ifr{};
  if (::ioctl(fd, TUNGETIFF, &ifr) != 0)
    return expected<std::string>::failure(errno_text(errno));
  return std::string(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
}

} // namespace

std::string offloads::describe() const {
  std::string s;
  const std::pair<bool, const char*> all[] = {{csum, "csum"}, {tso4, "tso4"}, {tso6, "tso6"}, {uso4, "uso4"},
                                              {uso6, "uso6"}};
  for (const auto& [on, text] : all)
    if (on)
      s += s.empty() ? text : std::string(" ") + text;
  return s.empty() ? "none" : s;
}

device::device(device&& other) noexcept
    : name_(std::move(other.name_)), path_(std::move(other.path_)), fds_(std::exchange(other.fds_, {})),
      vnet_hdr_(other.vnet_hdr_), multi_queue_(other.multi_queue_), offloads_(other.offloads_) {}

device& device::operator=(device&& other) noexcept {
  if (this != &other) {
    close_all();
    name_ = std::move(other.name_);
    path_ = std::move(other.path_);
    fds_ = std::exchange(other.fds_, {});
    vnet_hdr_ = other.vnet_hdr_;
    multi_queue_ = other.multi_queue_;
    offloads_ = other.offloads_;
  }
  return *this;
}

device::~device() {
  close_all();
}

void device::close_all() {
  for (const int fd : fds_)
    ::close(fd);
  fds_.clear();
}

expected<device> device::open(const device_options& o) {
  using result = expected<device>;
  if (o.name.size() >= IFNAMSIZ || o.name.find_first_of("/ \t\n:") != std::string::npos)
    return result::failure("bad TUN device name '" + o.name.substr(0, 32) + "' (at most " +
                           std::to_string(IFNAMSIZ - 1) + " characters, no '/', ':' or spaces)");
  if (o.queues == 0)
    return result::failure("a TUN device needs at least one queue");
  device d;
  d.path_ = o.path;
  d.vnet_hdr_ = o.vnet_hdr;
  d.multi_queue_ = o.queues > 1;
  const int fd = ::open(o.path.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int code = errno;
    if (code == ENOENT)
    {
      // Appended, not `path + "..."`: GCC 12's -Warray-bounds misfires on that form here.
      std::string message = o.path;
      message += " is missing: load the tun module (modprobe tun), or in a container pass the device in "
                 "(--device /dev/net/tun)";
      return result::failure(std::move(message));
    }
    if (code == EACCES || code == EPERM)
      return result::failure(std::string(k_need_cap_net_admin) + " (cannot open " + o.path + ")");
    return result::failure("cannot open " + o.path + ": " + errno_text(code));
  }
  d.fds_.push_back(fd);
  short flags = IFF_TUN | IFF_NO_PI;
  if (o.vnet_hdr)
    flags |= IFF_VNET_HDR;
  if (d.multi_queue_)
    flags |= IFF_MULTI_QUEUE;
  if (const int err = set_iff(fd, o.name, flags); err != 0) {
    const std::string shown = o.name.empty() ? std::string("a TUN device") : "TUN device '" + o.name + "'";
    if (-err == EPERM)
      return result::failure(std::string(k_need_cap_net_admin));
    if (-err == EINVAL && !o.name.empty())
      return result::failure(name_conflict(o.name));
    if (-err == EBUSY)
      return result::failure(shown + " is in use by another process");
    return result::failure("cannot create " + shown + ": " + errno_text(-err));
  }
  auto name = attached_name(fd);
  if (!name)
    return result::failure("cannot read the TUN device's name: " + name.error());
  d.name_ = *name;
  if (o.vnet_hdr) {
    auto off = setup_vnet(fd, o.try_uso);
    if (!off)
      return result::failure(off.error());
    d.offloads_ = *off;
  }
  for (unsigned i = 1; i < o.queues; ++i) {
    auto q = d.add_queue();
    if (!q)
      return result::failure(q.error());
  }
  return d;
}

expected<bool> device::add_queue() {
  if (!multi_queue_)
    return expected<bool>::failure("TUN device '" + name_ + "' is not multi-queue");
  const int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return expected<bool>::failure("cannot open " + path_ + " for another queue: " + errno_text(errno));
  short flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE;
  if (vnet_hdr_)
    flags |= IFF_VNET_HDR;
  if (const int err = set_iff(fd, name_, flags); err != 0) {
    ::close(fd);
    if (-err == EPERM)
      return expected<bool>::failure(std::string(k_need_cap_net_admin));
    return expected<bool>::failure("cannot open queue " + std::to_string(fds_.size() + 1) + " of TUN device '" +
                                   name_ + "': " + errno_text(-err));
  }
  fds_.push_back(fd);
  return true;
}

expected<device> device::adopt(int fd, bool try_uso) {
  using result = expected<device>;
  const std::string which = "descriptor " + std::to_string(fd);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0)
    return result::failure(which + " (--fd) is not open");
  ifreq ifr{};
  if (::ioctl(fd, TUNGETIFF, &ifr) != 0) {
    if (errno == EBADFD)
      return result::failure(which + " (--fd) is /dev/net/tun but attached to no device (TUNSETIFF first)");
    return result::failure(which + " (--fd) is not a TUN device");
  }
  if ((ifr.ifr_flags & (IFF_TUN | IFF_TAP)) != IFF_TUN)
    return result::failure(which + " (--fd) is a TAP device; warren tun needs a TUN (IFF_TUN)");
  if ((ifr.ifr_flags & IFF_NO_PI) == 0)
    return result::failure(which + " (--fd) carries packet information headers; open it with IFF_NO_PI");
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
    return result::failure("cannot make " + which + " (--fd) non-blocking: " + errno_text(errno));
  device d;
  d.name_ = std::string(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
  d.path_ = "/dev/net/tun";
  d.vnet_hdr_ = (ifr.ifr_flags & IFF_VNET_HDR) != 0;
  d.multi_queue_ = (ifr.ifr_flags & IFF_MULTI_QUEUE) != 0;
  d.fds_.push_back(fd);
  if (d.vnet_hdr_) {
    auto off = setup_vnet(fd, try_uso);
    if (!off) {
      d.fds_.clear(); // the caller still owns fd on failure
      return result::failure(off.error());
    }
    d.offloads_ = *off;
  }
  return d;
}

} // namespace warren::tun
