// Tests of the wire frame codec (src/wire/frame.*): byte-exact encodings
// written out by hand from docs/PROTOCOL.md, round trips of every frame type,
// incremental decoding at every truncation point, limits, and each payload
// parser's malformed cases with the message the session will log.
#include "wire/frame.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace warren::wire;
using bytes = std::vector<std::uint8_t>;

namespace {

bytes b(std::initializer_list<int> values) {
  bytes out;
  for (int v : values)
    out.push_back(static_cast<std::uint8_t>(v));
  return out;
}

bytes text(std::string_view s) {
  return bytes(s.begin(), s.end());
}

bytes cat(bytes a, const bytes& more) {
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

// Decodes exactly one frame that must fill `in`.
decoded_frame decode_one(const bytes& in, std::uint32_t max_payload = k_default_max_payload) {
  auto r = decode(in, max_payload);
  const auto* f = std::get_if<decoded_frame>(&r);
  EXPECT_NE(f, nullptr);
  if (f == nullptr)
    return {};
  EXPECT_EQ(f->consumed, in.size());
  return *f;
}

template <class T>
void expect_error(const warren::expected<T>& r, std::string_view fragment) {
  ASSERT_FALSE(r) << "expected an error containing: " << fragment;
  EXPECT_NE(r.error().find(fragment), std::string::npos) << r.error();
}

std::array<std::uint8_t, 16> v6_loopback() {
  std::array<std::uint8_t, 16> a{};
  a[15] = 1;
  return a;
}

} // namespace

// ---- byte-exact encodings -------------------------------------------------

TEST(WireEncode, HelloBytes) {
  hello h;
  h.initial_window = 262144;
  h.max_payload = 65536;
  bytes out;
  encode_hello(out, h);
  EXPECT_EQ(out,
            cat(b({0x00, 0x00, 0, 0, 0, 0, 0x00, 0x00, 0x10}),
                cat(text("WRN"), b({0x01, 0x00, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00}))));
}

TEST(WireEncode, HelloWithoutSettings) {
  bytes out;
  encode_hello(out, hello{});
  EXPECT_EQ(out, b({0x00, 0x00, 0, 0, 0, 0, 0, 0, 4, 'W', 'R', 'N', 1}));
}

TEST(WireEncode, OpenDomainBytes) {
  auto t = target_address::from_host_port({"example.com", 443});
  ASSERT_TRUE(t) << t.error();
  bytes out;
  encode_open(out, 1, stream_kind::tcp, *t);
  EXPECT_EQ(out, cat(cat(b({0x01, 0x00, 0, 0, 0, 1, 0, 0, 16, 0x01, 0x03, 11}), text("example.com")), b({0x01, 0xbb})));
}

TEST(WireEncode, OpenIpv4Bytes) {
  bytes out;
  encode_open(out, 3, stream_kind::udp, target_address::ipv4({10, 0, 0, 1}, 53));
  EXPECT_EQ(out, b({0x01, 0x00, 0, 0, 0, 3, 0, 0, 8, 0x02, 0x01, 10, 0, 0, 1, 0x00, 0x35}));
}

TEST(WireEncode, OpenIpv6Bytes) {
  bytes out;
  encode_open(out, 5, stream_kind::tcp, target_address::ipv6(v6_loopback(), 80));
  EXPECT_EQ(out, b({0x01, 0x00, 0, 0, 0, 5, 0, 0, 20, 0x01, 0x04, 0, 0,    0,   0,
                    0,    0,    0, 0, 0, 0, 0, 0, 0,  0,    0,    1, 0x00, 0x50}));
}

TEST(WireEncode, OpenOkBytes) {
  bytes out;
  encode_open_ok(out, 1);
  EXPECT_EQ(out, b({0x02, 0x00, 0, 0, 0, 1, 0, 0, 0}));
}

TEST(WireEncode, DataHeaderBytes) {
  bytes out;
  encode_data_header(out, 1, 5, true);
  encode_data_header(out, 0x01020304, 0xabcdef, false);
  EXPECT_EQ(out, b({0x03, 0x01, 0, 0, 0, 1, 0, 0, 5, 0x03, 0x00, 1, 2, 3, 4, 0xab, 0xcd, 0xef}));
}

TEST(WireEncode, WindowBytes) {
  bytes out;
  encode_window(out, 1, 65536);
  EXPECT_EQ(out, b({0x04, 0x00, 0, 0, 0, 1, 0, 0, 4, 0x00, 0x01, 0x00, 0x00}));
}

TEST(WireEncode, ResetBytes) {
  bytes out;
  encode_reset(out, 7, reset_code::refused, "no");
  EXPECT_EQ(out, b({0x05, 0x00, 0, 0, 0, 7, 0, 0, 3, 0x01, 'n', 'o'}));
}

TEST(WireEncode, DatagramHeaderBytes) {
  bytes out;
  encode_datagram_header(out, 3, 2);
  EXPECT_EQ(out, b({0x06, 0x00, 0, 0, 0, 3, 0, 0, 2}));
}

TEST(WireEncode, PingBytes) {
  bytes out;
  encode_ping(out, {1, 2, 3, 4, 5, 6, 7, 8}, true);
  encode_ping(out, {0, 0, 0, 0, 0, 0, 0, 9}, false);
  EXPECT_EQ(out, b({0x07, 0x01, 0, 0, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, //
                    0x07, 0x00, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 9}));
}

TEST(WireEncode, GoawayBytes) {
  bytes out;
  encode_goaway(out, 9, reset_code::protocol_error, "bye");
  EXPECT_EQ(out, b({0x08, 0x00, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 9, 0x06, 'b', 'y', 'e'}));
}

TEST(WireEncode, EncodersAppend) {
  bytes out = b({0xaa});
  encode_open_ok(out, 1);
  ASSERT_EQ(out.size(), 1 + k_header_size);
  EXPECT_EQ(out[0], 0xaa);
  EXPECT_EQ(out[1], 0x02);
}

TEST(WireEncode, ReasonsAreTruncatedTo256Bytes) {
  bytes out;
  encode_reset(out, 1, reset_code::internal_error, std::string(1000, 'x'));
  auto f = decode_one(out);
  EXPECT_EQ(f.header.length, 1 + k_max_reason);
  auto r = parse_reset(f.payload);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->reason, std::string(256, 'x'));

  out.clear();
  encode_goaway(out, 1, reset_code::closed, std::string(300, 'y'));
  auto g = parse_goaway(decode_one(out).payload);
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->reason.size(), 256u);
}

TEST(WireEncode, TruncationKeepsUtf8Whole) {
  // 255 ASCII bytes then "é" (2 bytes): cutting at 256 would split it.
  const std::string reason = std::string(255, 'a') + "\xc3\xa9" + "tail";
  EXPECT_EQ(truncate_reason(reason), std::string(255, 'a'));
  // A 4-byte sequence straddling the cut.
  const std::string four = std::string(254, 'a') + "\xf0\x9f\x98\x80";
  EXPECT_EQ(truncate_reason(four), std::string(254, 'a'));
  // Not UTF-8 at all: plain byte cut.
  const std::string junk(300, '\x80');
  EXPECT_EQ(truncate_reason(junk).size(), 256u);
  EXPECT_EQ(truncate_reason("short"), "short");
}

// ---- round trips ----------------------------------------------------------

TEST(WireRoundTrip, Hello) {
  hello h;
  h.initial_window = 1 << 20;
  h.max_payload = 1 << 17;
  h.max_streams = 0;
  h.ping_interval_ms = 15000;
  bytes out;
  encode_hello(out, h);
  auto f = decode_one(out);
  EXPECT_EQ(f.header.type, frame_type::hello);
  EXPECT_EQ(f.header.stream, 0u);
  auto p = parse_hello(f.payload);
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(*p, h);
}

TEST(WireRoundTrip, OpenEveryAddressType) {
  std::vector<target_address> targets = {target_address::ipv4({192, 168, 1, 2}, 8080),
                                         target_address::ipv6(v6_loopback(), 65535)};
  auto d = target_address::from_host_port({"a-b_c.example", 1});
  ASSERT_TRUE(d) << d.error();
  targets.push_back(*d);
  auto longest = target_address::from_host_port({std::string(63, 'a') + "." + std::string(63, 'b'), 22});
  ASSERT_TRUE(longest);
  targets.push_back(*longest);
  for (auto kind : {stream_kind::tcp, stream_kind::udp}) {
    for (const auto& t : targets) {
      bytes out;
      encode_open(out, 0xfffffffd, kind, t);
      auto f = decode_one(out);
      EXPECT_EQ(f.header.type, frame_type::open);
      EXPECT_EQ(f.header.stream, 0xfffffffdu);
      auto o = parse_open(f.payload);
      ASSERT_TRUE(o) << o.error();
      EXPECT_EQ(o->kind, kind);
      EXPECT_EQ(o->target, t) << t.to_string();
    }
  }
}

TEST(WireRoundTrip, OpenOkDataDatagram) {
  const bytes payload = text("hello, world");
  bytes out;
  encode_open_ok(out, 11);
  encode_data_header(out, 11, static_cast<std::uint32_t>(payload.size()), false);
  out.insert(out.end(), payload.begin(), payload.end());
  encode_data_header(out, 11, 0, true);
  encode_datagram_header(out, 13, static_cast<std::uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());

  std::span<const std::uint8_t> in(out);
  std::vector<decoded_frame> frames;
  while (!in.empty()) {
    auto r = decode(in);
    auto* f = std::get_if<decoded_frame>(&r);
    ASSERT_NE(f, nullptr);
    // Zero copy: the payload points into the input.
    if (!f->payload.empty()) {
      EXPECT_EQ(f->payload.data(), in.data() + k_header_size);
    }
    frames.push_back(*f);
    in = in.subspan(f->consumed);
  }
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_EQ(frames[0].header, (frame_header{frame_type::open_ok, 0, 11, 0}));
  EXPECT_EQ(frames[1].header, (frame_header{frame_type::data, 0, 11, 12}));
  EXPECT_EQ(bytes(frames[1].payload.begin(), frames[1].payload.end()), payload);
  EXPECT_EQ(frames[2].header, (frame_header{frame_type::data, k_flag_fin, 11, 0}));
  EXPECT_EQ(frames[3].header, (frame_header{frame_type::datagram, 0, 13, 12}));
  EXPECT_EQ(bytes(frames[3].payload.begin(), frames[3].payload.end()), payload);
}

TEST(WireRoundTrip, Window) {
  for (std::uint32_t inc : {1u, 65536u, 0xffffffffu}) {
    bytes out;
    encode_window(out, 5, inc);
    auto f = decode_one(out);
    EXPECT_EQ(f.header.type, frame_type::window);
    auto w = parse_window(f.payload);
    ASSERT_TRUE(w) << w.error();
    EXPECT_EQ(*w, inc);
  }
}

TEST(WireRoundTrip, ResetKeepsBytesAndUnknownCodes) {
  const std::string reason = std::string("bad\x01\xff", 5) + "é";
  for (auto code : {reset_code::closed, reset_code::flow_control_error, static_cast<reset_code>(200)}) {
    bytes out;
    encode_reset(out, 9, code, reason);
    auto f = decode_one(out);
    EXPECT_EQ(f.header.type, frame_type::reset);
    EXPECT_EQ(f.header.stream, 9u);
    auto r = parse_reset(f.payload);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r, (reset_info{code, reason}));
  }
  EXPECT_EQ(reset_code_name(static_cast<reset_code>(200)), "unknown error");
  EXPECT_EQ(reset_code_name(reset_code::denied), "denied by policy");
}

TEST(WireRoundTrip, Ping) {
  const ping_payload p = {0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3};
  for (bool ack : {false, true}) {
    bytes out;
    encode_ping(out, p, ack);
    auto f = decode_one(out);
    EXPECT_EQ(f.header.type, frame_type::ping);
    EXPECT_EQ((f.header.flags & k_flag_ack) != 0, ack);
    auto r = parse_ping(f.payload);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r, p);
  }
}

TEST(WireRoundTrip, Goaway) {
  bytes out;
  encode_goaway(out, 0x7fffffff, reset_code::limit_reached, "");
  auto f = decode_one(out);
  EXPECT_EQ(f.header.type, frame_type::goaway);
  auto g = parse_goaway(f.payload);
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(*g, (goaway_info{0x7fffffff, reset_code::limit_reached, ""}));
}

// ---- incremental decoding and limits ---------------------------------------

TEST(WireDecode, NeedMoreAtEveryTruncationPoint) {
  std::vector<bytes> frames;
  auto add = [&](auto&& encode) {
    bytes out;
    encode(out);
    frames.push_back(std::move(out));
  };
  hello h;
  h.max_streams = 10;
  add([&](bytes& o) { encode_hello(o, h); });
  add([](bytes& o) { encode_open(o, 1, stream_kind::tcp, target_address::ipv4({1, 2, 3, 4}, 5)); });
  add([](bytes& o) { encode_open_ok(o, 1); });
  add([](bytes& o) {
    encode_data_header(o, 1, 3, true);
    o.insert(o.end(), {'a', 'b', 'c'});
  });
  add([](bytes& o) { encode_window(o, 1, 100); });
  add([](bytes& o) { encode_reset(o, 1, reset_code::timed_out, "slow"); });
  add([](bytes& o) {
    encode_datagram_header(o, 3, 1);
    o.push_back('x');
  });
  add([](bytes& o) { encode_ping(o, {}, false); });
  add([](bytes& o) { encode_goaway(o, 1, reset_code::closed, "done"); });
  for (const auto& full : frames) {
    for (std::size_t n = 0; n < full.size(); ++n) {
      const std::span<const std::uint8_t> prefix(full.data(), n);
      auto r = decode(prefix);
      const auto* more = std::get_if<need_more>(&r);
      ASSERT_NE(more, nullptr) << "prefix " << n << " of " << full.size();
      // Before the header is in, only the header is known to be missing.
      const std::size_t expected_missing = n < k_header_size ? k_header_size - n : full.size() - n;
      EXPECT_EQ(more->missing, expected_missing) << "prefix " << n;
    }
    // A trailing partial frame does not disturb the complete one.
    bytes with_tail = cat(full, b({0x03, 0x00}));
    auto r = decode(with_tail);
    const auto* f = std::get_if<decoded_frame>(&r);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->consumed, full.size());
  }
}

TEST(WireDecode, OversizeIsRejectedFromTheHeaderAlone) {
  const bytes header = b({0x03, 0x00, 0, 0, 0, 1, 0x10, 0x00, 0x00}); // length 1048576
  auto r = decode(header);
  const auto* e = std::get_if<decode_error>(&r);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->code, reset_code::frame_too_large);
  EXPECT_EQ(e->message, "frame too large: 1048576 bytes (limit 65536)");

  // Exactly the limit is fine (waits for the payload); one more is not.
  bytes at_limit;
  encode_data_header(at_limit, 1, k_default_max_payload, false);
  auto ok = decode(at_limit);
  ASSERT_TRUE(std::holds_alternative<need_more>(ok));
  EXPECT_EQ(std::get<need_more>(ok).missing, k_default_max_payload);
  bytes over;
  encode_data_header(over, 1, k_default_max_payload + 1, false);
  EXPECT_TRUE(std::holds_alternative<decode_error>(decode(over)));
  // A larger negotiated limit accepts it; the 24-bit maximum fits any limit.
  EXPECT_TRUE(std::holds_alternative<need_more>(decode(over, 1 << 20)));
  bytes max_len;
  encode_data_header(max_len, 1, k_max_length, false);
  EXPECT_TRUE(std::holds_alternative<need_more>(decode(max_len, 0xffffffff)));
}

TEST(WireDecode, UnknownTypeIsReturnedForSkipping) {
  bytes in = b({0x42, 0xff, 0, 0, 0, 7, 0, 0, 3, 'x', 'y', 'z'});
  encode_ping(in, {}, true);
  auto r = decode(in);
  const auto* f = std::get_if<decoded_frame>(&r);
  ASSERT_NE(f, nullptr);
  EXPECT_FALSE(f->header.known());
  EXPECT_EQ(static_cast<int>(f->header.type), 0x42);
  EXPECT_EQ(f->header.flags, 0xff);
  EXPECT_EQ(f->header.stream, 7u);
  EXPECT_EQ(f->consumed, 12u);
  EXPECT_EQ(frame_type_name(f->header.type), "UNKNOWN");
  auto next = decode(std::span<const std::uint8_t>(in).subspan(f->consumed));
  const auto* ping = std::get_if<decoded_frame>(&next);
  ASSERT_NE(ping, nullptr);
  EXPECT_TRUE(ping->header.known());
  EXPECT_EQ(ping->header.type, frame_type::ping);
  EXPECT_EQ(frame_type_name(ping->header.type), "PING");
}

TEST(WireDecode, UnknownFlagsAreKept) {
  auto f = decode_one(b({0x03, 0xfe, 0, 0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(f.header.flags, 0xfe);
  EXPECT_EQ(f.header.flags & k_flag_fin, 0);
}

TEST(WireDecode, HeaderRoundTrip) {
  const frame_header h{static_cast<frame_type>(0x99), 0x5a, 0xdeadbeef, 0x123456};
  bytes out;
  encode_header(out, h);
  ASSERT_EQ(out.size(), k_header_size);
  EXPECT_EQ(decode_header(std::span<const std::uint8_t, k_header_size>(out.data(), k_header_size)), h);
}

// ---- malformed payloads ---------------------------------------------------

TEST(WireParse, HelloErrors) {
  expect_error(parse_hello(b({})), "HELLO payload is 0 bytes");
  expect_error(parse_hello(text("WRN")), "expected at least 4");
  expect_error(parse_hello(cat(text("XYZ"), b({1}))), "magic");
  expect_error(parse_hello(cat(text("WRN"), b({2}))), "version 2");
  expect_error(parse_hello(cat(text("WRN"), b({1, 0, 1, 0, 1, 0}))), "5 bytes, not a multiple of 6");
  expect_error(parse_hello(cat(text("WRN"), b({1, 0, 1, 0, 0, 0xff, 0xff}))), "initial stream window 65535 is below");
  expect_error(parse_hello(cat(text("WRN"), b({1, 0, 2, 0, 0, 0x04, 0x00}))), "max frame payload 1024 is below");
}

TEST(WireParse, HelloIgnoresUnknownSettingsAndLastWins) {
  auto h = parse_hello(cat(text("WRN"), b({1,                                //
                                           0x12, 0x34, 0, 0, 0,    0,        // unknown id
                                           0,    3,    0, 0, 0,    5,        // max_streams 5
                                           0,    3,    0, 0, 0,    6,        // max_streams 6 (last wins)
                                           0,    4,    0, 0, 0x3a, 0x98}))); // ping 15000 ms
  ASSERT_TRUE(h) << h.error();
  EXPECT_EQ(h->version, 1);
  EXPECT_FALSE(h->initial_window);
  EXPECT_FALSE(h->max_payload);
  EXPECT_EQ(h->max_streams, 6u);
  EXPECT_EQ(h->ping_interval_ms, 15000u);
}

TEST(WireParse, OpenErrors) {
  expect_error(parse_open(b({})), "OPEN payload is 0 bytes");
  expect_error(parse_open(b({1})), "OPEN payload is 1 byte;");
  expect_error(parse_open(b({3, 1, 1, 2, 3, 4, 0, 80})), "unknown stream kind 3");
  expect_error(parse_open(b({1, 2, 1, 2, 3, 4, 0, 80})), "unknown address type 2");
  expect_error(parse_open(b({1, 1, 1, 2, 3, 4, 0})), "IPv4 address is truncated");
  expect_error(parse_open(b({1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0})), "IPv6 address is truncated");
  expect_error(parse_open(b({1, 3})), "no length byte");
  expect_error(parse_open(b({1, 3, 0, 0, 80})), "domain name is empty");
  expect_error(parse_open(b({1, 3, 5, 'a', 'b', 0, 80})), "truncated");
  expect_error(parse_open(b({1, 3, 3, 'a', '/', 'b', 0, 80})), "invalid byte 0x2f at offset 1");
  expect_error(parse_open(b({1, 3, 1, 0, 0, 80})), "invalid byte 0x00 at offset 0");
  expect_error(parse_open(b({1, 1, 1, 2, 3, 4, 0, 0})), "port 0");
  expect_error(parse_open(b({1, 1, 1, 2, 3, 4, 0, 80, 9, 9})), "OPEN has 2 bytes after the address");
}

TEST(WireParse, OpenAcceptsTheSpecCharsetAndLength) {
  bytes name(255, 'a');
  name[10] = '_';
  name[20] = '-';
  name[30] = '.';
  auto o = parse_open(cat(cat(b({2, 3, 255}), name), b({0x30, 0x39})));
  ASSERT_TRUE(o) << o.error();
  EXPECT_EQ(o->kind, stream_kind::udp);
  EXPECT_EQ(o->target.kind, target_address::type::domain);
  EXPECT_EQ(o->target.domain.size(), 255u);
  EXPECT_EQ(o->target.port, 12345);
}

TEST(WireParse, WindowErrors) {
  expect_error(parse_window(b({0, 0, 1})), "WINDOW payload is 3 bytes; expected 4");
  expect_error(parse_window(b({0, 0, 0, 1, 0})), "WINDOW payload is 5 bytes");
  expect_error(parse_window(b({0, 0, 0, 0})), "WINDOW increment is 0");
}

TEST(WireParse, ResetErrors) {
  expect_error(parse_reset(b({})), "RESET payload is empty");
  expect_error(parse_reset(cat(b({1}), bytes(257, 'x'))), "RESET reason is 257 bytes (limit 256)");
  auto ok = parse_reset(cat(b({1}), bytes(256, 'x')));
  ASSERT_TRUE(ok) << ok.error();
  auto bare = parse_reset(b({4}));
  ASSERT_TRUE(bare) << bare.error();
  EXPECT_EQ(*bare, (reset_info{reset_code::timed_out, ""}));
}

TEST(WireParse, PingErrors) {
  expect_error(parse_ping(b({})), "PING payload is 0 bytes; expected 8");
  expect_error(parse_ping(bytes(9, 0)), "PING payload is 9 bytes");
}

TEST(WireParse, GoawayErrors) {
  expect_error(parse_goaway(b({0, 0, 0, 1})), "GOAWAY payload is 4 bytes; expected at least 5");
  expect_error(parse_goaway(cat(b({0, 0, 0, 1, 6}), bytes(300, 'r'))), "GOAWAY reason is 300 bytes (limit 256)");
}

// ---- target addresses -----------------------------------------------------

TEST(WireTarget, FromHostPort) {
  auto v4 = target_address::from_host_port({"10.1.2.3", 80});
  ASSERT_TRUE(v4) << v4.error();
  EXPECT_EQ(v4->kind, target_address::type::ipv4);
  EXPECT_EQ(v4->to_string(), "10.1.2.3:80");
  EXPECT_EQ(*v4, target_address::ipv4({10, 1, 2, 3}, 80));

  auto v6 = target_address::from_host_port({"::1", 53});
  ASSERT_TRUE(v6) << v6.error();
  EXPECT_EQ(v6->kind, target_address::type::ipv6);
  EXPECT_EQ(v6->to_string(), "[::1]:53");
  EXPECT_EQ(v6->to_host_port(), (warren::net::host_port{"::1", 53}));

  auto name = target_address::from_host_port({"app.internal", 8080});
  ASSERT_TRUE(name) << name.error();
  EXPECT_EQ(name->kind, target_address::type::domain);
  EXPECT_EQ(name->domain, "app.internal");
  EXPECT_EQ(name->ip, (std::array<std::uint8_t, 16>{}));
  EXPECT_EQ(name->to_string(), "app.internal:8080");

  expect_error(target_address::from_host_port({"app.internal", 0}), "port 0");
  expect_error(target_address::from_host_port({"bad host\n", 80}), "'bad host?' is not a host name");
  expect_error(target_address::from_host_port({"", 80}), "is not a host name");
  expect_error(target_address::from_host_port({std::string(64, 'a'), 80}), "is not a host name");
}
