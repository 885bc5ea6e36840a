// Internet checksums: see checksum.hpp.
#include "tun/checksum.hpp"
#include "tun/packet.hpp"

namespace warren::tun {

csum_acc ones_sum(std::span<const std::uint8_t> data, csum_acc seed) noexcept {
  csum_acc sum = seed;
  const std::uint8_t* p = data.data();
  std::size_t n = data.size();
  // Four words per step; a 64-bit accumulator cannot overflow below 2^47 bytes.
  for (; n >= 8; p += 8, n -= 8)
    sum += load16(p) + load16(p + 2) + load16(p + 4) + load16(p + 6);
  for (; n >= 2; p += 2, n -= 2)
    sum += load16(p);
  if (n == 1)
    sum += static_cast<csum_acc>(p[0]) << 8;
  return sum;
}

std::uint16_t fold(csum_acc sum) noexcept {
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

std::uint16_t ipv4_header_checksum(std::span<const std::uint8_t> header) noexcept {
  const csum_acc sum = ones_sum(header.subspan(12), ones_sum(header.first(10)));
  return static_cast<std::uint16_t>(~fold(sum));
}

csum_acc pseudo_header_sum(const ip_address& src, const ip_address& dst, std::uint8_t protocol,
                           std::uint32_t l4_length) noexcept {
  csum_acc sum = ones_sum(src.view(), ones_sum(dst.view()));
  return sum + protocol + (l4_length >> 16) + (l4_length & 0xffff);
}

std::uint16_t partial_seed(const ip_address& src, const ip_address& dst, std::uint8_t protocol,
                           std::uint32_t l4_length) noexcept {
  return fold(pseudo_header_sum(src, dst, protocol, l4_length));
}

std::uint16_t l4_checksum(const ip_address& src, const ip_address& dst, std::uint8_t protocol,
                          std::span<const std::uint8_t> segment, std::size_t csum_offset) noexcept {
  csum_acc sum = pseudo_header_sum(src, dst, protocol, static_cast<std::uint32_t>(segment.size()));
  sum = ones_sum(segment.first(csum_offset), sum);
  sum = ones_sum(segment.subspan(csum_offset + 2), sum); // csum_offset is even: word alignment is kept
  return static_cast<std::uint16_t>(~fold(sum));
}

std::uint16_t icmp4_checksum(std::span<const std::uint8_t> message) noexcept {
  const csum_acc sum = ones_sum(message.subspan(4), ones_sum(message.first(2)));
  return static_cast<std::uint16_t>(~fold(sum));
}

csum_acc replace_sum(std::span<const std::uint8_t> before, std::span<const std::uint8_t> after) noexcept {
  csum_acc sum = 0;
  for (std::size_t i = 0; i + 1 < before.size(); i += 2)
    sum += replace_sum16(load16(&before[i]), load16(&after[i]));
  return sum;
}

csum_acc replace_sum16(std::uint16_t before, std::uint16_t after) noexcept {
  return csum_acc{static_cast<std::uint16_t>(~before)} + after;
}

std::uint16_t update_full(std::uint16_t checksum, csum_acc diff) noexcept {
  return static_cast<std::uint16_t>(~fold(csum_acc{static_cast<std::uint16_t>(~checksum)} + diff));
}

std::uint16_t update_partial(std::uint16_t seed, csum_acc diff) noexcept {
  return fold(csum_acc{seed} + diff);
}

} // namespace warren::tun
