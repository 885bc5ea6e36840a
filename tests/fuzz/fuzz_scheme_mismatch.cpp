// Fuzzes what a client reads from a server of another scheme
// (src/transport/scheme_mismatch.*): a Warren-Listener header value, a
// preamble answer, the first bytes of a connection. Properties: a parsed
// listener scheme round-trips through wrong_scheme_reply(); an answer
// classified "ok" is exactly "OK\n"; hints are bounded sentences.
#include "transport/scheme_mismatch.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace warren::transport;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto s = listener_scheme(text)) {
    const auto reply = wrong_scheme_reply(*s);
    if (!reply.starts_with("HTTP/1.1 400 ") || reply.find(std::string(to_string(*s)) + "://") == std::string::npos)
      std::abort();
    if (mismatch_hint(scheme::tcp, s).size() > 200)
      std::abort();
  }
  const auto answer = classify_preamble_answer(text.substr(0, 3));
  if (answer == preamble_answer::ok && text.substr(0, 3) != "OK\n")
    std::abort();
  if (looks_like_http_request(text) && (text.size() < 5 || text[0] < 'A' || text[0] > 'Z'))
    std::abort();
  (void)looks_like_tls_record(text);
  for (auto used : {scheme::tcp, scheme::tls, scheme::ws, scheme::wss})
    for (std::string_view observed : {"plain", "tls", "http", ""})
      if (mismatch_hint(used, std::nullopt, observed).size() > 200)
        std::abort();
  return 0;
}
