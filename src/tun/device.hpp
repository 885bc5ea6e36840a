// The TUN device: opened by name through /dev/net/tun (IFF_TUN | IFF_NO_PI),
// or adopted from a descriptor a parent passed (`--fd N`). With a virtio-net
// header (IFF_VNET_HDR) the kernel hands over and takes whole 64 KiB TCP
// segments (TSO) with partial checksums, so the engine rewrites per segment
// rather than per packet: the offloads are negotiated here, USO (UDP
// segmentation, Linux 6.2) only when the kernel accepts it — the request is
// tried with it and again without, and `offloads` says what was enabled.
//
// Every descriptor is non-blocking and close-on-exec. A device warren created
// is not persistent: it disappears with its last descriptor, taking its
// addresses and routes with it.
//
// Lifetime: owns its descriptors (closed in the destructor). Move-only; not
// thread-safe (each queue's descriptor may be used by its own thread).
#pragma once

#include "core/expected.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace warren::tun {

/// sizeof(struct virtio_net_hdr) (linux/virtio_net.h, which C++ cannot
/// include: a member is named `class`): flags, gso_type, hdr_len, gso_size,
/// csum_start, csum_offset. Every packet on a vnet_hdr device starts with it.
inline constexpr std::size_t k_virtio_net_hdr_size = 10;

struct offloads {
  bool csum = false;
  bool tso4 = false;
  bool tso6 = false;
  bool uso4 = false;
  bool uso6 = false;
  /// "csum tso4 tso6 uso4 uso6", "none".
  std::string describe() const;
};

struct device_options {
  std::string name;            // empty: the kernel picks (tun0, tun1, …)
  bool vnet_hdr = true;        // IFF_VNET_HDR and the offloads
  unsigned queues = 1;         // more than one: IFF_MULTI_QUEUE, one descriptor per queue
  bool try_uso = true;         // tests turn it off to see the fallback
  std::string path = "/dev/net/tun";
};

class device {
 public:
  /// Creates (or attaches to) the TUN named in `o`. Errors are one line:
  /// the CAP_NET_ADMIN hint, a missing /dev/net/tun, a name held by a device
  /// that is not a TUN.
  static expected<device> open(const device_options& o);
  /// Takes over a TUN descriptor opened by a parent: checks it is a TUN with
  /// TUNGETIFF, reads its name and flags, makes it non-blocking and, if it
  /// has a virtio-net header, negotiates the offloads like open().
  static expected<device> adopt(int fd, bool try_uso = true);

  device(device&& other) noexcept;
  device& operator=(device&& other) noexcept;
  device(const device&) = delete;
  device& operator=(const device&) = delete;
  ~device();

  const std::string& name() const { return name_; }
  /// One descriptor per queue; fds()[0] is the first.
  std::span<const int> fds() const { return fds_; }
  bool vnet_hdr() const { return vnet_hdr_; }
  bool multi_queue() const { return multi_queue_; }
  const struct offloads& offloads() const { return offloads_; }
  /// Opens one more queue of a multi-queue device.
  expected<bool> add_queue();

 private:
  device() = default;
  void close_all();

  std::string name_;
  std::string path_;
  std::vector<int> fds_;
  bool vnet_hdr_ = false;
  bool multi_queue_ = false;
  struct offloads offloads_;
};

} // namespace warren::tun
