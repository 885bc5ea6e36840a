// struct virtio_net_hdr: see vnet_hdr.hpp.
#include "tun/vnet_hdr.hpp"
#include "tun/packet.hpp"

namespace warren::tun {
namespace {

std::uint16_t load_le16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}

void store_le16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}

} // namespace

std::string_view to_string(vnet_reject reason) noexcept {
  switch (reason) {
  case vnet_reject::bad_flags:
    return "vnet_bad_flags";
  case vnet_reject::bad_csum:
    return "vnet_bad_csum";
  case vnet_reject::bad_gso:
    return "vnet_bad_gso";
  case vnet_reject::gso_mismatch:
    return "vnet_gso_mismatch";
  case vnet_reject::bad_hdr_len:
    return "vnet_bad_hdr_len";
  }
  return "unknown";
}

std::optional<vnet_header> parse_vnet_header(std::span<const std::uint8_t> in) noexcept {
  if (in.size() < k_vnet_hdr_size)
    return std::nullopt;
  vnet_header h;
  h.flags = in[0];
  h.gso_type = in[1];
  h.hdr_len = load_le16(&in[2]);
  h.gso_size = load_le16(&in[4]);
  h.csum_start = load_le16(&in[6]);
  h.csum_offset = load_le16(&in[8]);
  return h;
}

void encode_vnet_header(std::span<std::uint8_t> out, const vnet_header& h) noexcept {
  out[0] = h.flags;
  out[1] = h.gso_type;
  store_le16(&out[2], h.hdr_len);
  store_le16(&out[4], h.gso_size);
  store_le16(&out[6], h.csum_start);
  store_le16(&out[8], h.csum_offset);
}

csum_form form_of(const vnet_header& h) noexcept {
  if (h.flags & k_vnet_needs_csum)
    return csum_form::partial;
  if (h.flags & k_vnet_data_valid)
    return csum_form::verified;
  return csum_form::full;
}

std::optional<vnet_reject> validate(const vnet_header& h, const packet_view& p) noexcept {
  if (h.flags & ~(k_vnet_needs_csum | k_vnet_data_valid))
    return vnet_reject::bad_flags;
  if (h.flags & k_vnet_needs_csum) {
    // ICMPv4 has no pseudo-header: a PARTIAL seed there is not something
    // Linux produces, and rewrite.hpp could not adjust it.
    if (p.protocol == k_proto_icmp || h.csum_start != p.l4_offset ||
        std::size_t{h.csum_start} + h.csum_offset != p.csum_offset)
      return vnet_reject::bad_csum;
  }
  if (h.hdr_len > p.size)
    return vnet_reject::bad_hdr_len;
  const std::uint8_t kind = h.gso_kind();
  if (kind == k_gso_none) {
    if (h.gso_type != k_gso_none)
      return vnet_reject::bad_gso; // ECN alone
    return std::nullopt;
  }
  if (kind != k_gso_tcpv4 && kind != k_gso_tcpv6 && kind != k_gso_udp_l4)
    return vnet_reject::bad_gso;
  if (h.gso_size == 0 || !(h.flags & k_vnet_needs_csum))
    return vnet_reject::bad_gso;
  if ((h.gso_type & k_gso_ecn) && kind == k_gso_udp_l4)
    return vnet_reject::bad_gso;
  const bool fits = (kind == k_gso_tcpv4 && p.is_v4() && p.protocol == k_proto_tcp) ||
                    (kind == k_gso_tcpv6 && !p.is_v4() && p.protocol == k_proto_tcp) ||
                    (kind == k_gso_udp_l4 && p.protocol == k_proto_udp);
  if (!fits)
    return vnet_reject::gso_mismatch;
  return std::nullopt;
}

} // namespace warren::tun
