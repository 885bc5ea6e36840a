// In-place rewriting: see rewrite.hpp. The changes are summed once as
// Σ(~m + m') per checksum (addresses count for the IPv4 header and the
// pseudo-header; ports only for a finished L4 checksum), then each checksum
// field gets one update.
#include "tun/rewrite.hpp"

#include <algorithm>

namespace warren::tun {
namespace {

// Replaces the address at `at` and returns the difference it makes to a sum.
csum_acc replace_address(std::uint8_t* at, const ip_address& to) noexcept {
  const auto diff = replace_sum({at, to.size}, to.view());
  std::copy_n(to.bytes.data(), to.size, at);
  return diff;
}

csum_acc replace_port(std::uint8_t* at, std::uint16_t to) noexcept {
  const auto diff = replace_sum16(load16(at), to);
  store16(at, to);
  return diff;
}

} // namespace

bool rewrite(std::span<std::uint8_t> packet, packet_view& view, csum_form form, const rewrite_spec& spec) noexcept {
  const std::uint8_t size = view.is_v4() ? 4 : 16;
  if ((spec.src && spec.src->size != size) || (spec.dst && spec.dst->size != size))
    return false;
  if ((spec.src_port || spec.dst_port) && !view.has_ports())
    return false;

  std::uint8_t* ip = packet.data();
  std::uint8_t* l4 = ip + view.l4_offset;
  const std::size_t src_at = view.is_v4() ? 12 : 8;
  const std::size_t dst_at = view.is_v4() ? 16 : 24;
  csum_acc address_diff = 0;
  if (spec.src) {
    address_diff += replace_address(ip + src_at, *spec.src);
    view.src = *spec.src;
  }
  if (spec.dst) {
    address_diff += replace_address(ip + dst_at, *spec.dst);
    view.dst = *spec.dst;
  }
  csum_acc port_diff = 0;
  if (spec.src_port) {
    port_diff += replace_port(l4, *spec.src_port);
    view.src_port = *spec.src_port;
  }
  if (spec.dst_port) {
    port_diff += replace_port(l4 + 2, *spec.dst_port);
    view.dst_port = *spec.dst_port;
  }

  if (view.is_v4() && address_diff != 0)
    store16(ip + 10, update_full(load16(ip + 10), address_diff));

  std::uint8_t* field = ip + view.csum_offset;
  const std::uint16_t old = load16(field);
  if (form == csum_form::partial) {
    // Ports are not in the pseudo-header; the kernel sums them when it finishes.
    if (view.protocol != k_proto_icmp && address_diff != 0)
      store16(field, update_partial(old, address_diff));
    return true;
  }
  const csum_acc diff = (view.protocol == k_proto_icmp ? 0 : address_diff) + port_diff;
  const bool udp = view.protocol == k_proto_udp;
  if (diff == 0 || (udp && view.is_v4() && old == 0))
    return true;
  std::uint16_t updated = update_full(old, diff);
  if (udp && updated == 0)
    updated = 0xffff;
  store16(field, updated);
  return true;
}

} // namespace warren::tun
