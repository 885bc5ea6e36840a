#include "transport/scheme_mismatch.hpp"

#include <cctype>

namespace warren::transport {

std::string wrong_scheme_reply(scheme listener) {
  const std::string name(to_string(listener));
  const std::string body =
      "this is a warren " + name + ":// tunnel endpoint; connect with warren client " + name + "://\n";
  return "HTTP/1.1 400 Bad Request\r\nServer: warren\r\n" + std::string(k_listener_header) + ": " + name +
         "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

std::optional<scheme> listener_scheme(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
    v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
    v.remove_suffix(1);
  if (v.size() > 3)
    return std::nullopt;
  std::string lower;
  for (char c : v)
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto s : {scheme::tcp, scheme::tls, scheme::ws, scheme::wss})
    if (lower == to_string(s))
      return s;
  return std::nullopt;
}

bool looks_like_http_request(std::string_view start) {
  std::size_t i = 0;
  while (i < start.size() && i < 16 && start[i] >= 'A' && start[i] <= 'Z')
    ++i;
  return i >= 3 && i < start.size() && start[i] == ' ' && i + 1 < start.size() && start[i + 1] != ' ';
}

bool looks_like_tls_record(std::string_view start) {
  return !start.empty() && (start.front() == '\x16' || start.front() == '\x15');
}

preamble_answer classify_preamble_answer(std::string_view answer) {
  if (answer == "OK\n")
    return preamble_answer::ok;
  if (answer == "NO\n")
    return preamble_answer::refused;
  if (answer == "TM\n")
    return preamble_answer::limited;
  if (answer.starts_with("HTT"))
    return preamble_answer::http;
  // A TLS record: type 0x15/0x16, then the major version 3.
  if (answer.size() >= 2 && looks_like_tls_record(answer) && answer[1] == '\x03')
    return preamble_answer::tls;
  return preamble_answer::other;
}

std::string mismatch_hint(scheme used, std::optional<scheme> listener, std::string_view observed) {
  const std::string u(to_string(used));
  if (listener)
    return "the server's listener is " + std::string(to_string(*listener)) + "://, not " + u + "://; use " +
           std::string(to_string(*listener)) + "://";
  if (observed == "plain")
    return "the server does not speak TLS on this port; use " +
           std::string(used == scheme::wss ? "ws:// (or tcp://" : "tcp:// (or ws://") +
           ", as the server's --listen says), or check the port";
  if (observed == "tls")
    return "the server speaks TLS on this port; use " +
           std::string(used == scheme::ws ? "wss://" : "tls:// (or wss://, as the server's --listen says)") +
           " (with --pin or --ca)";
  if (observed == "http")
    return "the server answered in HTTP: its listener is " + std::string(used == scheme::tls ? "wss://" : "ws://") +
           ", not " + u + "://";
  return "the server's listener speaks another scheme than " + u + "://";
}

} // namespace warren::transport
