// Fuzzes who a connection is taken to come from behind a reverse proxy
// (src/transport/forwarded.*): X-Forwarded-For from a trusted and from an
// untrusted peer, and --trust-proxy's CIDR syntax. Properties: an untrusted
// peer is always its own client (the header is ignored); an address taken
// from the header is not a trusted proxy unless every hop is one; an
// unreadable header leaves the peer the client, with a bounded reason; a
// parsed block contains its own base.
#include "transport/forwarded.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace ip = boost::asio::ip;
  using namespace warren::transport;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::vector<ip_network> trusted{{ip::make_address("127.0.0.0"), 8}, {ip::make_address("fd00::"), 8}};
  const auto proxy = ip::make_address("127.0.0.1");
  const auto stranger = ip::make_address("192.0.2.9");

  const auto direct = real_client(text, stranger, trusted);
  if (direct.address != stranger || direct.forwarded || !direct.error.empty())
    std::abort();
  const auto behind = real_client(text, proxy, trusted);
  if (!behind.error.empty() && (behind.forwarded || behind.address != proxy || behind.error.size() > 300))
    std::abort();
  if (behind.forwarded && is_trusted(trusted, behind.address)) {
    // Only when every hop is trusted: then it is the left-most one.
    const auto first = text.find(',');
    if (first != std::string_view::npos &&
        !is_trusted(trusted, real_client(text.substr(0, first), proxy, trusted).address))
      std::abort();
  }
  if (auto n = parse_ip_network(text)) {
    if (!n->contains(n->base) || n->prefix > (n->base.is_v4() ? 32u : 128u))
      std::abort();
  }
  return 0;
}
