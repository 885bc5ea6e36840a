// Fuzzes the SOCKS5 codec (proxy/socks5.hpp). The first byte's low three
// bits pick a parser (7: UDP datagrams), the rest is its input. Any input must give need-more, a value or an error,
// never a crash, and:
//   - consumed is 1..size; the consumed prefix alone parses to the same value,
//     one byte less asks for more; need-more asks for more than it was given;
//   - parsing is prefix-consistent: an error on some bytes is the same error
//     with one byte less (the greeting's wording may differ) or asks for
//     more, and need-more stays need-more;
//   - re-encoding a request, reply, address, greeting, credentials or UDP
//     header gives back exactly the bytes consumed;
//   - error messages are non-empty, shorter than 512 characters and printable.
#include "proxy/socks5.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

namespace {

using namespace warren::proxy::socks5;
using span = std::span<const std::uint8_t>;

void check(bool ok) {
  if (!ok)
    std::abort();
}

void check_message(const std::string& m) {
  check(!m.empty() && m.size() < 512);
  for (char c : m)
    check(c >= 0x20 && c < 0x7f);
}

template <class T>
bool same(const parse_result<T>& a, const parse_result<T>& b) {
  if (a.status() != b.status())
    return false;
  switch (a.status()) {
  case parse_status::need_more:
    return a.needed() == b.needed();
  case parse_status::failed:
    return a.error() == b.error() && a.reply() == b.reply();
  case parse_status::done:
    return a.consumed() == b.consumed() && *a == *b;
  }
  return false;
}

// The invariants every incremental parser keeps; returns the result for
// message-specific checks.
template <class Parse>
auto check_incremental(Parse parse, span in, std::size_t max_size, bool stable_errors = true) {
  const auto r = parse(in);
  switch (r.status()) {
  case parse_status::need_more:
    check(r.needed() > in.size() && r.needed() <= max_size);
    if (!in.empty())
      check(parse(in.first(in.size() - 1)).need_more());
    break;
  case parse_status::failed: {
    check_message(r.error());
    if (!in.empty()) {
      // The greeting's guess at what a non-SOCKS5 client speaks (HTTP?) may
      // sharpen with more bytes; every other message fails on one byte.
      const auto shorter = parse(in.first(in.size() - 1));
      check(shorter.need_more() ||
            (shorter.failed() && shorter.reply() == r.reply() && (!stable_errors || shorter.error() == r.error())));
    }
    break;
  }
  case parse_status::done:
    check(r.consumed() > 0 && r.consumed() <= in.size() && r.consumed() <= max_size);
    check(same(parse(in.first(r.consumed())), r));
    check(parse(in.first(r.consumed() - 1)).need_more());
    break;
  }
  return r;
}

bool equal_bytes(span a, span b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

void check_address(const address& a) {
  const auto hp = a.to_host_port();
  check(!hp.host.empty() && hp.port == a.port);
  check(!a.to_string().empty());
  if (a.kind == address::type::domain) {
    check(hp.host == a.domain && address::from_domain(a.domain, a.port));
  } else {
    const auto back = address::from_host_port(hp);
    check(back && *back == a);
  }
}

void fuzz_stream_parsers(unsigned which, bool require_userpass, span in) {
  switch (which) {
  case 0:
    if (auto g = check_incremental(parse_greeting, in, k_max_greeting_size, false)) {
      const auto wire = encode_greeting(g->methods);
      check(wire && equal_bytes(*wire, in.first(g.consumed())));
      (void)choose_method(*g, require_userpass);
    }
    break;
  case 1:
    if (auto c = check_incremental(parse_userpass, in, k_max_userpass_size)) {
      const auto wire = encode_userpass(*c);
      check(wire && equal_bytes(*wire, in.first(c.consumed())));
    }
    break;
  case 2:
    if (auto r = check_incremental(parse_request, in, k_max_request_size)) {
      check(equal_bytes(encode_request(*r), in.first(r.consumed())));
      check(r->destination == parse_request(encode_request(*r))->destination);
      check_address(r->destination);
    } else if (r.failed()) {
      check(r.reply() != reply_code::succeeded);
    }
    break;
  case 3:
    if (auto r = check_incremental(parse_reply, in, k_max_request_size)) {
      check(equal_bytes(encode_reply(r->code, r->bound), in.first(r.consumed())));
      (void)to_string(r->code);
    }
    break;
  case 4:
    if (auto a = check_incremental(parse_address, in, k_max_request_size - 3)) {
      std::vector<std::uint8_t> wire;
      a->encode_to(wire);
      check(wire.size() == a->encoded_size() && equal_bytes(wire, in.first(a.consumed())));
      check_address(*a);
    }
    break;
  case 5:
    (void)check_incremental(parse_method_choice, in, 2);
    break;
  default:
    (void)check_incremental(parse_userpass_status, in, 2);
    break;
  }
}

void fuzz_udp(span in) {
  const auto d = parse_udp_datagram(in);
  if (!d) {
    check_message(d.error());
    return;
  }
  check(d->header_size >= 3 + 5 && d->header_size <= k_max_udp_header_size);
  check(d->header_size + d->payload.size() == in.size());
  check(d->payload.data() == in.data() + d->header_size);
  const auto header = encode_udp_header(d->destination);
  check(equal_bytes(header, in.first(d->header_size)));
  // Re-parse header + payload from a fresh buffer: equal address and payload.
  std::vector<std::uint8_t> again = header;
  again.insert(again.end(), d->payload.begin(), d->payload.end());
  const auto e = parse_udp_datagram(again);
  check(e && e->destination == d->destination && equal_bytes(e->payload, d->payload));
  check_address(d->destination);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const span in(data + 1, size - 1);
  const unsigned which = data[0] & 0x07u;
  if (which == 7)
    fuzz_udp(in);
  else
    fuzz_stream_parsers(which, (data[0] & 0x80u) != 0, in);
  return 0;
}
