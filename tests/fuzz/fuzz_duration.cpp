// Fuzzes the duration parser: a value or an error, never a crash or overflow.
#include "core/duration.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto d = warren::parse_duration(text)) {
    if (d->count() < 0)
      std::abort();
  } else if (d.error().empty()) {
    std::abort();
  }
  return 0;
}
