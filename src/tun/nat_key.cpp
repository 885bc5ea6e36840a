#include "tun/nat_key.hpp"

#include <arpa/inet.h>

#include <random>

namespace warren::tun {

std::string ip_addr::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), text, sizeof text) == nullptr)
    return "?";
  return text;
}

std::string endpoint::to_string() const {
  auto a = addr.to_string();
  return (addr.v6 ? "[" + a + "]" : a) + ":" + std::to_string(port);
}

std::string flow_key::to_string() const {
  return app.to_string() + " -> " + dst.to_string();
}

std::uint64_t hash_seed(std::uint64_t fixed) {
  if (fixed != 0)
    return fixed;
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd();
}

} // namespace warren::tun
