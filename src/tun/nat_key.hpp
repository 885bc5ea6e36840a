// The keys of the TUN engine's NAT tables (tcp_nat, udp_flows): an IP
// address as 16 bytes and a family, an address:port endpoint, and a flow
// (application endpoint -> destination endpoint), with a seeded hash for
// unordered_map. No Asio: the packet codec hands over raw address bytes.
//
// The hash is seeded per table (a random seed unless a test fixes one): the
// keys come from packets any local application can craft, and a fixed hash
// would let one pick thousands of flows in one bucket and turn every O(1)
// lookup into a list walk. It is a multiply-xorshift mix over the key's
// 64-bit words (not a cryptographic MAC: the attacker never sees a hash value).
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

namespace warren::tun {

/// An IPv4 or IPv6 address. IPv4 uses the first 4 bytes, the rest stay zero
/// (so comparing and hashing all 16 bytes is right for both families).
struct ip_addr {
  std::array<std::uint8_t, 16> bytes{};
  bool v6 = false;

  static ip_addr v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
    ip_addr r;
    r.bytes[0] = a;
    r.bytes[1] = b;
    r.bytes[2] = c;
    r.bytes[3] = d;
    return r;
  }
  /// From 4 bytes (IPv4) or 16 bytes (IPv6) in network order; any other
  /// size gives the IPv4 address 0.0.0.0.
  static ip_addr from_bytes(std::span<const std::uint8_t> b) {
    ip_addr r;
    if (b.size() == 16) {
      r.v6 = true;
      std::memcpy(r.bytes.data(), b.data(), 16);
    } else if (b.size() == 4) {
      std::memcpy(r.bytes.data(), b.data(), 4);
    }
    return r;
  }
  std::span<const std::uint8_t> span() const { return {bytes.data(), v6 ? 16u : 4u}; }
  /// "192.0.2.1" or "2001:db8::1" (for logs and test messages).
  std::string to_string() const;

  friend bool operator==(const ip_addr&, const ip_addr&) = default;
  friend auto operator<=>(const ip_addr&, const ip_addr&) = default;
};

struct endpoint {
  ip_addr addr;
  std::uint16_t port = 0;
  /// "192.0.2.1:80" or "[2001:db8::1]:80".
  std::string to_string() const;
  friend bool operator==(const endpoint&, const endpoint&) = default;
  friend auto operator<=>(const endpoint&, const endpoint&) = default;
};

/// A flow as the application sent it: its own endpoint -> the destination.
struct flow_key {
  endpoint app;
  endpoint dst;
  std::string to_string() const; // "app -> dst"
  friend bool operator==(const flow_key&, const flow_key&) = default;
  friend auto operator<=>(const flow_key&, const flow_key&) = default;
};

namespace detail {

inline std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ULL;
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ULL;
  x ^= x >> 32;
  return x;
}

inline std::uint64_t hash_into(std::uint64_t h, const endpoint& e) {
  std::uint64_t w[2];
  std::memcpy(w, e.addr.bytes.data(), 16);
  h = mix64(h ^ w[0]);
  h = mix64(h ^ w[1]);
  return mix64(h ^ (std::uint64_t{e.port} << 1 | std::uint64_t{e.addr.v6}));
}

} // namespace detail

/// unordered_map hasher for endpoint and flow_key, seeded by its table.
struct seeded_hash {
  std::uint64_t seed = 0;
  std::size_t operator()(const endpoint& e) const { return detail::hash_into(seed, e); }
  std::size_t operator()(const flow_key& k) const { return detail::hash_into(detail::hash_into(seed, k.app), k.dst); }
};

/// A seed for a table: `fixed` if not 0 (tests), else one from std::random_device.
std::uint64_t hash_seed(std::uint64_t fixed);

} // namespace warren::tun
