// Fuzzes the wire frame codec (src/wire/frame.*) the way a session uses it:
// decode frames one after another from the input, parse each known payload,
// and check the codec's invariants: a frame consumes at least its header and
// no more than the input, its payload lies inside the input, headers
// re-encode to the same bytes, and every accepted control payload re-encodes
// to a frame that parses to the same value (byte for byte where the encoding
// is canonical). Any violation aborts.
#include "wire/frame.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

namespace {

using namespace warren::wire;

void check(bool ok) {
  if (!ok)
    std::abort();
}

// Re-encodes with `encode`, decodes the result as one frame of `type`, and
// returns its payload (which lives in `buf`).
template <class Encode>
std::span<const std::uint8_t> reencode(std::vector<std::uint8_t>& buf, frame_type type, Encode encode) {
  buf.clear();
  encode(buf);
  auto r = decode(buf, k_max_length);
  const auto* f = std::get_if<decoded_frame>(&r);
  check(f != nullptr && f->consumed == buf.size() && f->header.type == type);
  return f->payload;
}

bool same_bytes(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

void check_parsed(const decoded_frame& f, std::vector<std::uint8_t>& buf) {
  const auto& h = f.header;
  switch (h.type) {
  case frame_type::hello:
    if (auto v = parse_hello(f.payload)) {
      check(v->version == k_version);
      check(!v->initial_window || *v->initial_window >= k_min_initial_window);
      check(!v->max_payload || *v->max_payload >= k_default_max_payload);
      auto again = parse_hello(reencode(buf, h.type, [&](auto& out) { encode_hello(out, *v); }));
      check(again && *again == *v);
    } else {
      check(!v.error().empty());
    }
    break;
  case frame_type::open:
    if (auto v = parse_open(f.payload)) {
      const auto& t = v->target;
      check(t.port != 0);
      check(t.kind != target_address::type::domain || (!t.domain.empty() && t.domain.size() <= 255));
      const auto p = reencode(buf, h.type, [&](auto& out) { encode_open(out, h.stream, v->kind, t); });
      check(same_bytes(p, f.payload));
      auto again = parse_open(p);
      check(again && *again == *v);
      // IP targets survive the trip through host:port text.
      if (t.kind != target_address::type::domain) {
        auto back = target_address::from_host_port(t.to_host_port());
        check(back && *back == t);
      }
    } else {
      check(!v.error().empty());
    }
    break;
  case frame_type::window:
    if (auto v = parse_window(f.payload)) {
      check(*v > 0);
      const auto p = reencode(buf, h.type, [&](auto& out) { encode_window(out, h.stream, *v); });
      check(same_bytes(p, f.payload));
      auto again = parse_window(p);
      check(again && *again == *v);
    }
    break;
  case frame_type::reset:
    if (auto v = parse_reset(f.payload)) {
      check(v->reason.size() <= k_max_reason);
      const auto p = reencode(buf, h.type, [&](auto& out) { encode_reset(out, h.stream, v->code, v->reason); });
      check(same_bytes(p, f.payload));
      auto again = parse_reset(p);
      check(again && *again == *v);
    }
    break;
  case frame_type::ping:
    if (auto v = parse_ping(f.payload)) {
      const bool ack = (h.flags & k_flag_ack) != 0;
      const auto p = reencode(buf, h.type, [&](auto& out) { encode_ping(out, *v, ack); });
      check(same_bytes(p, f.payload));
      auto again = parse_ping(p);
      check(again && *again == *v);
    }
    break;
  case frame_type::goaway:
    if (auto v = parse_goaway(f.payload)) {
      check(v->reason.size() <= k_max_reason);
      const auto p = reencode(buf, h.type, [&](auto& out) { encode_goaway(out, v->last_stream, v->code, v->reason); });
      check(same_bytes(p, f.payload));
      auto again = parse_goaway(p);
      check(again && *again == *v);
    }
    break;
  case frame_type::open_ok:
  case frame_type::data:
  case frame_type::datagram:
    break; // no payload structure
  }
  // The names never fail, whatever the value.
  check(!frame_type_name(h.type).empty());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> in(data, size);
  std::vector<std::uint8_t> buf;
  while (true) {
    auto r = decode(in, k_default_max_payload);
    if (const auto* more = std::get_if<need_more>(&r)) {
      check(more->missing > 0);
      // Whatever is missing, the frame fits the limit.
      check(in.size() + more->missing <= k_header_size + k_default_max_payload);
      break;
    }
    if (const auto* e = std::get_if<decode_error>(&r)) {
      check(in.size() >= k_header_size && e->code == reset_code::frame_too_large && !e->message.empty());
      check(decode_header(in.first<k_header_size>()).length > k_default_max_payload);
      break;
    }
    const auto& f = std::get<decoded_frame>(r);
    check(f.consumed >= k_header_size && f.consumed <= in.size());
    check(f.consumed == k_header_size + f.header.length && f.payload.size() == f.header.length);
    check(f.payload.data() == in.data() + k_header_size);
    // The header re-encodes to the bytes it came from.
    buf.clear();
    encode_header(buf, f.header);
    check(same_bytes(buf, in.first(k_header_size)));
    if (f.header.known())
      check_parsed(f, buf);
    in = in.subspan(f.consumed);
  }
  return 0;
}
