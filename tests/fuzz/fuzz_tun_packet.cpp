// Fuzzes the TUN packet codec (src/tun/) the way the engine uses it: an
// optional vnet header, the packet parsed in the form the header gives, then
// (if it parsed and the header fits it) rewritten in place — addresses and
// ports chosen by the input — and answered with every builder that applies.
// Checked: a rewrite of the wrong family changes nothing; the rewritten
// packet parses again with the same lengths and offsets and the new values;
// a FULL checksum that was valid stays valid; a PARTIAL seed that was right
// for the old addresses is right for the new ones; every built packet parses
// with its checksums verified, within the ICMP error size limits. Any
// violation aborts.
//
// Input: mode byte, 16 + 16 address bytes, 2 + 2 port bytes, [10 vnet
// header bytes if mode bit 0], then the packet.
#include "tun/build.hpp"
#include "tun/packet.hpp"
#include "tun/rewrite.hpp"
#include "tun/vnet_hdr.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

namespace {

using namespace warren::tun;

void check(bool ok) {
  if (!ok)
    std::abort();
}

ip_address address(const std::uint8_t* raw, bool v4) {
  return ip_address::from({raw, v4 ? std::size_t{4} : std::size_t{16}});
}

// The seed a PARTIAL field should hold for the packet as it is.
bool seed_is_right(std::span<const std::uint8_t> p, const packet_view& v) {
  const std::uint16_t field = load16(&p[v.csum_offset]);
  const std::uint16_t seed = partial_seed(v.src, v.dst, v.protocol, static_cast<std::uint32_t>(v.l4_size()));
  return field == seed;
}

void check_builders(std::span<const std::uint8_t> p, const packet_view& v) {
  static std::vector<std::uint8_t> out(70000);
  const parse_options verify{.verify_checksums = true, .form = csum_form::full};
  if (const std::size_t n = build_tcp_rst(out, v)) {
    const auto r = parse({out.data(), n}, verify);
    check(r && r->tcp_flags == (k_tcp_rst | k_tcp_ack) && r->src == v.dst && r->dst_port == v.src_port);
  }
  if (const std::size_t n = build_icmp_unreachable(out, p, v, 1)) {
    const auto r = parse({out.data(), n}, verify);
    check(r && n <= (v.is_v4() ? k_icmp4_error_max : k_icmp6_error_max) && r->src == v.dst && r->dst == v.src);
  }
  if (const std::size_t n = build_echo_reply(out, p, v)) {
    const auto r = parse({out.data(), n}, verify);
    check(r && !r->is_echo_request() && r->icmp_id == v.icmp_id && r->icmp_seq == v.icmp_seq);
  }
  if (v.has_ports()) {
    const auto payload = p.subspan(v.payload_offset, v.payload_size());
    if (const std::size_t n = build_udp(out, v.dst, v.dst_port, v.src, v.src_port, payload)) {
      const auto r = parse({out.data(), n}, verify);
      check(r && r->payload_size() == payload.size() && r->src_port == v.dst_port);
    }
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::size_t k_prefix = 1 + 16 + 16 + 2 + 2;
  if (size < k_prefix)
    return 0;
  const std::uint8_t mode = data[0];
  const std::uint8_t* a = data + 1;
  const std::uint8_t* b = data + 17;
  const std::uint16_t port_a = load16(data + 33);
  const std::uint16_t port_b = load16(data + 35);
  std::span<const std::uint8_t> rest(data + k_prefix, size - k_prefix);

  std::optional<vnet_header> vnet;
  if (mode & 1) {
    vnet = parse_vnet_header(rest);
    if (!vnet)
      return 0;
    std::vector<std::uint8_t> again(k_vnet_hdr_size);
    encode_vnet_header(again, *vnet);
    check(std::memcmp(again.data(), rest.data(), k_vnet_hdr_size) == 0);
    rest = rest.subspan(k_vnet_hdr_size);
  }
  const csum_form form = vnet ? form_of(*vnet) : csum_form::full;
  const auto parsed = parse(rest, {.verify_checksums = (mode & 2) != 0, .form = form});
  if (!parsed) {
    check(static_cast<std::size_t>(parsed.reason()) < k_reject_reason_count);
    return 0;
  }
  const packet_view before = parsed.view();
  check(before.l4_offset <= before.payload_offset && before.payload_offset <= before.size &&
        before.size <= rest.size() && before.csum_offset + 2 <= before.size);
  if (vnet && validate(*vnet, before))
    return 0;

  std::vector<std::uint8_t> p(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(before.size));
  check_builders(p, before);

  const bool finished = form != csum_form::partial;
  const bool full_valid = finished && parse(p, {.verify_checksums = true, .form = csum_form::full});
  const bool seed_valid = !finished && seed_is_right(p, before);

  // The wrong family is refused and nothing is touched.
  packet_view view = before;
  const std::vector<std::uint8_t> kept = p;
  check(!rewrite(p, view, form, {.src = address(a, !before.is_v4())}));
  check(p == kept && view.src == before.src);

  rewrite_spec spec;
  if (mode & 4)
    spec.src = address(a, before.is_v4());
  if (mode & 8)
    spec.dst = address(b, before.is_v4());
  if ((mode & 16) && before.has_ports())
    spec.src_port = port_a;
  if ((mode & 32) && before.has_ports())
    spec.dst_port = port_b;
  check(rewrite(p, view, form, spec));

  const auto again = parse(p, {.verify_checksums = false, .form = form});
  check(static_cast<bool>(again));
  const packet_view& after = again.view();
  check(after.size == before.size && after.l4_offset == before.l4_offset &&
        after.payload_offset == before.payload_offset && after.protocol == before.protocol);
  check(after.src == view.src && after.dst == view.dst && after.src_port == view.src_port &&
        after.dst_port == view.dst_port);
  check(!spec.src || after.src == *spec.src);
  check(!spec.dst_port || after.dst_port == *spec.dst_port);
  if (vnet)
    check(!validate(*vnet, after));
  if (full_valid)
    check(static_cast<bool>(parse(p, {.verify_checksums = true, .form = csum_form::full})));
  if (seed_valid)
    check(seed_is_right(p, after));
  check_builders(p, after);
  return 0;
}
