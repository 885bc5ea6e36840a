// Fuzzes the address parsers (command line, and later configs and control
// API requests): any input must give a value or an error, never a crash, and
// accepted values must satisfy the parser's own invariants.
#include "net/address.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto hp = warren::net::parse_host_port(text)) {
    if (hp->port == 0 || hp->host.empty())
      std::abort();
    // Formatting and re-parsing must round-trip.
    auto again = warren::net::parse_host_port(warren::net::format_host_port(hp->host, hp->port));
    if (!again || !(*again == *hp))
      std::abort();
  } else if (hp.error().empty()) {
    std::abort();
  }
  if (auto la = warren::net::parse_listen_address(text)) {
    if (la->kind == warren::net::listen_kind::unix_path && la->path.empty())
      std::abort();
  } else if (la.error().empty() || la.error().size() > 1024) {
    std::abort();
  }
  return 0;
}
