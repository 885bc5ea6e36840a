// SOCKS5 codec: byte-exact vectors built by hand from RFC 1928/1929, need-more
// at every truncation point, each malformed case with its reply code and
// sentence, and round trips through the encoders.
#include "proxy/socks5.hpp"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

using namespace warren::proxy::socks5;

namespace {

using bytes = std::vector<std::uint8_t>;

bytes operator+(bytes a, const bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

bytes text(std::string_view s) {
  return bytes(s.begin(), s.end());
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// Every strict prefix of a complete message asks for more, with a size hint
// that is above what it has and never beyond the message; the whole message
// parses and consumes exactly its own length.
template <class Parser>
void expect_need_more_at_every_prefix(Parser parse, const bytes& message) {
  for (std::size_t n = 0; n < message.size(); ++n) {
    const auto r = parse(std::span<const std::uint8_t>(message.data(), n));
    ASSERT_TRUE(r.need_more()) << "prefix of " << n << " bytes: " << r.error();
    EXPECT_GT(r.needed(), n) << n;
    EXPECT_LE(r.needed(), message.size()) << n;
  }
  const auto full = parse(std::span<const std::uint8_t>(message));
  ASSERT_TRUE(full) << full.error();
  EXPECT_EQ(full.consumed(), message.size());
}

const bytes k_ipv6_2001_db8_1 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};

} // namespace

// ---- greeting ----

TEST(Socks5Greeting, NoAuth) {
  const bytes in = {0x05, 0x01, 0x00};
  const auto g = parse_greeting(in);
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->methods, bytes{0x00});
  EXPECT_EQ(g.consumed(), 3u);
  EXPECT_TRUE(g->offers(method::no_auth));
  EXPECT_FALSE(g->offers(method::userpass));
}

TEST(Socks5Greeting, LeavesPipelinedBytes) {
  const bytes in = bytes{0x05, 0x02, 0x00, 0x02} + bytes{0x05, 0x01, 0x00, 0x01};
  const auto g = parse_greeting(in);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->methods, (bytes{0x00, 0x02}));
  EXPECT_EQ(g.consumed(), 4u);
}

TEST(Socks5Greeting, NeedMoreAtEveryTruncation) {
  expect_need_more_at_every_prefix(parse_greeting, {0x05, 0x03, 0x00, 0x01, 0x02});
}

TEST(Socks5Greeting, AllMethodBytes) {
  bytes in = {0x05, 0xff};
  for (int i = 0; i < 255; ++i)
    in.push_back(static_cast<std::uint8_t>(i));
  const auto g = parse_greeting(in);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->methods.size(), 255u);
  EXPECT_EQ(g.consumed(), k_max_greeting_size);
}

TEST(Socks5Greeting, SaysWhatTheClientSpeaksInstead) {
  auto expect_error = [](const bytes& in, std::string_view fragment) {
    const auto g = parse_greeting(in);
    ASSERT_TRUE(g.failed());
    EXPECT_TRUE(contains(g.error(), fragment)) << g.error();
  };
  expect_error(text("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "not SOCKS5: looks like an HTTP request");
  expect_error(text("CONNECT example.com:443 HTTP/1.1\r\n"), "not SOCKS5: looks like an HTTP request");
  expect_error(text("POST"), "looks like an HTTP request");
  expect_error({0x04, 0x01, 0x00, 0x50, 192, 0, 2, 1, 0x00}, "SOCKS4");
  expect_error({0x16, 0x03, 0x01, 0x02, 0x00}, "TLS handshake");
  expect_error({0x00}, "first byte is 0x00");
  expect_error(text("Hello"), "first byte is 0x48");
  expect_error({0x05, 0x00}, "offers no authentication methods");
}

TEST(Socks5Greeting, FailsOnTheFirstWrongByte) {
  // No waiting for a method count that a non-SOCKS client never sends.
  const auto g = parse_greeting(bytes{0x47});
  EXPECT_TRUE(g.failed());
  EXPECT_TRUE(contains(g.error(), "HTTP")) << g.error();
}

TEST(Socks5Greeting, ChooseAndEncodeMethod) {
  const greeting both{{0x00, 0x02}};
  const greeting none_only{{0x00}};
  const greeting gssapi_only{{0x01}};
  EXPECT_EQ(choose_method(both, true), method::userpass);
  EXPECT_EQ(choose_method(both, false), method::no_auth);
  EXPECT_EQ(choose_method(none_only, true), method::none_acceptable);
  EXPECT_EQ(choose_method(gssapi_only, false), method::none_acceptable);
  EXPECT_EQ(encode_method_choice(method::no_auth), (std::array<std::uint8_t, 2>{0x05, 0x00}));
  EXPECT_EQ(encode_method_choice(method::userpass), (std::array<std::uint8_t, 2>{0x05, 0x02}));
  EXPECT_EQ(encode_method_choice(method::none_acceptable), (std::array<std::uint8_t, 2>{0x05, 0xff}));
}

TEST(Socks5Greeting, ClientSideRoundTrip) {
  const bytes methods = {0x00, 0x02};
  const auto wire = encode_greeting(methods);
  ASSERT_TRUE(wire);
  EXPECT_EQ(*wire, (bytes{0x05, 0x02, 0x00, 0x02}));
  EXPECT_FALSE(encode_greeting({}));
  const auto choice = encode_method_choice(method::userpass);
  const auto m = parse_method_choice(choice);
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, method::userpass);
  EXPECT_TRUE(parse_method_choice(bytes{0x05}).need_more());
  EXPECT_TRUE(parse_method_choice(bytes{0x04}).failed());
}

// ---- username/password ----

namespace {
const bytes k_userpass = bytes{0x01, 0x04} + text("user") + bytes{0x07} + text("hunter2");
}

TEST(Socks5Userpass, Parses) {
  const auto c = parse_userpass(k_userpass + bytes{0x05, 0x01, 0x00});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->user, "user");
  EXPECT_EQ(c->password, "hunter2");
  EXPECT_EQ(c.consumed(), k_userpass.size());
}

TEST(Socks5Userpass, NeedMoreAtEveryTruncation) {
  expect_need_more_at_every_prefix(parse_userpass, k_userpass);
}

TEST(Socks5Userpass, LongestFields) {
  const std::string user(255, 'u');
  const std::string pass(255, 'p');
  const auto wire = encode_userpass({user, pass});
  ASSERT_TRUE(wire);
  EXPECT_EQ(wire->size(), k_max_userpass_size);
  const auto c = parse_userpass(*wire);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->user, user);
  EXPECT_EQ(c->password, pass);
}

TEST(Socks5Userpass, ErrorsNeverContainThePassword) {
  auto expect_error = [](const bytes& in, std::string_view fragment) {
    const auto c = parse_userpass(in);
    ASSERT_TRUE(c.failed());
    EXPECT_TRUE(contains(c.error(), fragment)) << c.error();
    EXPECT_FALSE(contains(c.error(), "hunter2")) << c.error();
  };
  // Version 5 in the sub-negotiation is a common client bug; the rest of the
  // message (with the password) is there but must not be echoed.
  expect_error(bytes{0x05, 0x04} + text("user") + bytes{0x07} + text("hunter2"), "version 0x05 (expected 0x01");
  expect_error(bytes{0x01, 0x00, 0x07} + text("hunter2"), "empty username");
  expect_error(bytes{0x01, 0x07} + text("hunter2") + bytes{0x00}, "empty password");

  const auto too_long = encode_userpass({"user", "hunter2" + std::string(300, 'x')});
  ASSERT_FALSE(too_long);
  EXPECT_TRUE(contains(too_long.error(), "password must be 1-255 bytes")) << too_long.error();
  EXPECT_FALSE(contains(too_long.error(), "hunter2"));
  EXPECT_FALSE(encode_userpass({"", "hunter2"}));
  EXPECT_FALSE(encode_userpass({"user", ""}));
}

TEST(Socks5Userpass, Status) {
  EXPECT_EQ(encode_userpass_status(true), (std::array<std::uint8_t, 2>{0x01, 0x00}));
  EXPECT_EQ(encode_userpass_status(false), (std::array<std::uint8_t, 2>{0x01, 0x01}));
  auto ok = parse_userpass_status(encode_userpass_status(true));
  ASSERT_TRUE(ok);
  EXPECT_TRUE(*ok);
  auto bad = parse_userpass_status(encode_userpass_status(false));
  ASSERT_TRUE(bad);
  EXPECT_FALSE(*bad);
  EXPECT_TRUE(parse_userpass_status(bytes{0x01}).need_more());
  EXPECT_TRUE(parse_userpass_status(bytes{0x04, 0x00}).failed());
}

TEST(Socks5Userpass, StatusWithTheSocksVersionByteIsAccepted) {
  // Some servers answer RFC 1929 with 0x05 (the SOCKS version); curl ignores the byte.
  auto ok = parse_userpass_status(bytes{0x05, 0x00});
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_TRUE(*ok);
  auto refused = parse_userpass_status(bytes{0x05, 0x01});
  ASSERT_TRUE(refused) << refused.error();
  EXPECT_FALSE(*refused);
}

// ---- request ----

namespace {
// RFC 1928 §4 examples, built by hand.
const bytes k_connect_ipv4 = {0x05, 0x01, 0x00, 0x01, 192, 0, 2, 1, 0x00, 0x50}; // 192.0.2.1:80
const bytes k_connect_domain = bytes{0x05, 0x01, 0x00, 0x03, 0x0b} + text("example.com") + bytes{0x01, 0xbb}; // :443
const bytes k_udp_ipv6_port0 = bytes{0x05, 0x03, 0x00, 0x04} + k_ipv6_2001_db8_1 + bytes{0x00, 0x00};
const bytes k_bind_ipv4 = {0x05, 0x02, 0x00, 0x01, 10, 0, 0, 7, 0x1f, 0x90}; // 10.0.0.7:8080
} // namespace

TEST(Socks5Request, ConnectIpv4) {
  const auto r = parse_request(k_connect_ipv4);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->cmd, command::connect);
  EXPECT_EQ(r->destination.kind, address::type::ipv4);
  EXPECT_EQ(r->destination.to_host_port().host, "192.0.2.1");
  EXPECT_EQ(r->destination.port, 80);
  EXPECT_EQ(r.consumed(), 10u);
  EXPECT_EQ(encode_request(*r), k_connect_ipv4);
}

TEST(Socks5Request, ConnectDomainLeavesEarlyData) {
  const auto r = parse_request(k_connect_domain + text("GET / HTTP/1.1\r\n"));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->destination.kind, address::type::domain);
  EXPECT_EQ(r->destination.domain, "example.com");
  EXPECT_EQ(r->destination.port, 443);
  EXPECT_EQ(r.consumed(), k_connect_domain.size());
  EXPECT_EQ(r->destination.to_host_port(), (warren::net::host_port{"example.com", 443}));
  EXPECT_EQ(encode_request(*r), k_connect_domain);
}

TEST(Socks5Request, UdpAssociateIpv6WithPortZero) {
  // Port 0 is returned as is: for UDP ASSOCIATE it means "not known yet".
  const auto r = parse_request(k_udp_ipv6_port0);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->cmd, command::udp_associate);
  EXPECT_EQ(r->destination.kind, address::type::ipv6);
  EXPECT_EQ(r->destination.port, 0);
  EXPECT_EQ(r->destination.to_host_port().host, "2001:db8::1");
  EXPECT_EQ(r->destination.to_string(), "[2001:db8::1]:0");
  EXPECT_EQ(encode_request(*r), k_udp_ipv6_port0);
}

TEST(Socks5Request, Bind) {
  const auto r = parse_request(k_bind_ipv4);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->cmd, command::bind);
  EXPECT_EQ(r->destination.to_string(), "10.0.0.7:8080");
}

TEST(Socks5Request, NeedMoreAtEveryTruncation) {
  for (const auto& m : {k_connect_ipv4, k_connect_domain, k_udp_ipv6_port0, k_bind_ipv4}) {
    SCOPED_TRACE(m.size());
    expect_need_more_at_every_prefix(parse_request, m);
  }
}

TEST(Socks5Request, LongestDomain) {
  const std::string name(255, 'a');
  const bytes in = bytes{0x05, 0x01, 0x00, 0x03, 0xff} + text(name) + bytes{0x00, 0x50};
  ASSERT_EQ(in.size(), k_max_request_size);
  const auto r = parse_request(in);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->destination.domain, name);
}

TEST(Socks5Request, NamesMayBeIpLiterals) {
  const auto v6 = parse_request(bytes{0x05, 0x01, 0x00, 0x03, 0x03} + text("::1") + bytes{0x00, 0x50});
  ASSERT_TRUE(v6) << v6.error();
  EXPECT_EQ(v6->destination.kind, address::type::domain);
  EXPECT_EQ(v6->destination.to_host_port().host, "::1");
  const auto v4 = parse_request(bytes{0x05, 0x01, 0x00, 0x03, 0x07} + text("1.2.3.4") + bytes{0x00, 0x50});
  ASSERT_TRUE(v4) << v4.error();
}

TEST(Socks5Request, EachMalformedCaseHasItsReplyCode) {
  struct error_case {
    bytes in;
    reply_code code;
    std::string_view fragment;
  };
  const std::vector<error_case> cases = {
      {{0x04, 0x01, 0x00, 0x50, 192, 0, 2, 1, 0x00}, reply_code::general_failure, "version 0x04 (expected 0x05)"},
      {{0x05, 0x09}, reply_code::command_not_supported, "command 0x09 is not supported"},
      {{0x05, 0x00, 0x00, 0x01}, reply_code::command_not_supported, "command 0x00 is not supported"},
      {{0x05, 0x01, 0x01}, reply_code::general_failure, "non-zero reserved byte (0x01)"},
      {{0x05, 0x01, 0x00, 0x02}, reply_code::address_type_not_supported, "address type 0x02"},
      {{0x05, 0x01, 0x00, 0x05, 1, 2, 3, 4, 0, 80}, reply_code::address_type_not_supported, "address type 0x05"},
      {{0x05, 0x01, 0x00, 0x03, 0x00, 0x00, 0x50}, reply_code::general_failure, "empty domain name"},
      {bytes{0x05, 0x01, 0x00, 0x03, 0x03} + text("a b") + bytes{0, 80}, reply_code::host_unreachable,
       "names 'a b', which is not a valid host name"},
      {bytes{0x05, 0x01, 0x00, 0x03, 0x0a} + text("evil.com") + bytes{0x00, 'x', 0, 80}, reply_code::host_unreachable,
       "'evil.com?x'"},
      {bytes{0x05, 0x01, 0x00, 0x03, 0x05} + text("::1") + bytes{0x00, 'x', 0, 80}, reply_code::host_unreachable,
       "not a valid host name"},
  };
  for (const auto& c : cases) {
    const auto r = parse_request(c.in);
    ASSERT_TRUE(r.failed()) << c.fragment;
    EXPECT_EQ(r.reply(), c.code) << r.error();
    EXPECT_TRUE(contains(r.error(), c.fragment)) << r.error();
    EXPECT_LT(r.error().size(), 512u);
  }
}

TEST(Socks5Request, FailsWithoutWaitingForTheRest) {
  EXPECT_TRUE(parse_request(bytes{0x06}).failed());
  EXPECT_TRUE(parse_request(bytes{0x05, 0x04}).failed());
  EXPECT_TRUE(parse_request(bytes{0x05, 0x01, 0x02}).failed());
  EXPECT_TRUE(parse_request(bytes{0x05, 0x01, 0x00, 0x07}).failed());
}

TEST(Socks5Request, HostileNamesAreSanitisedAndCut) {
  bytes name(200, 0x07);
  const auto r = parse_request(bytes{0x05, 0x01, 0x00, 0x03, 200} + name + bytes{0, 80});
  ASSERT_TRUE(r.failed());
  EXPECT_EQ(r.error().find('\x07'), std::string::npos);
  EXPECT_TRUE(contains(r.error(), "..."));
  EXPECT_LT(r.error().size(), 200u);
}

TEST(Socks5Handshake, PipelinedMessagesParseInTurn) {
  const bytes in = bytes{0x05, 0x01, 0x02} + k_userpass + k_connect_domain + text("data");
  std::span<const std::uint8_t> rest(in);
  const auto g = parse_greeting(rest);
  ASSERT_TRUE(g);
  rest = rest.subspan(g.consumed());
  const auto c = parse_userpass(rest);
  ASSERT_TRUE(c);
  rest = rest.subspan(c.consumed());
  const auto r = parse_request(rest);
  ASSERT_TRUE(r);
  rest = rest.subspan(r.consumed());
  EXPECT_EQ(bytes(rest.begin(), rest.end()), text("data"));
}

// ---- reply ----

TEST(Socks5Reply, EncodesByteExact) {
  EXPECT_EQ(encode_reply(reply_code::succeeded, address::from_ipv4({10, 0, 0, 1}, 1080)),
            (bytes{0x05, 0x00, 0x00, 0x01, 10, 0, 0, 1, 0x04, 0x38}));
  EXPECT_EQ(encode_reply(reply_code::connection_refused), (bytes{0x05, 0x05, 0x00, 0x01, 0, 0, 0, 0, 0x00, 0x00}));
  std::array<std::uint8_t, 16> v6{};
  std::copy(k_ipv6_2001_db8_1.begin(), k_ipv6_2001_db8_1.end(), v6.begin());
  EXPECT_EQ(encode_reply(reply_code::succeeded, address::from_ipv6(v6, 53)),
            (bytes{0x05, 0x00, 0x00, 0x04} + k_ipv6_2001_db8_1 + bytes{0x00, 0x35}));
  const auto name = address::from_domain("proxy.example", 443);
  ASSERT_TRUE(name);
  EXPECT_EQ(encode_reply(reply_code::succeeded, *name),
            (bytes{0x05, 0x00, 0x00, 0x03, 13} + text("proxy.example") + bytes{0x01, 0xbb}));
}

TEST(Socks5Reply, CodesAreTheRfcValues) {
  const std::vector<std::pair<reply_code, std::uint8_t>> codes = {{reply_code::succeeded, 0},
                                                                  {reply_code::general_failure, 1},
                                                                  {reply_code::not_allowed, 2},
                                                                  {reply_code::network_unreachable, 3},
                                                                  {reply_code::host_unreachable, 4},
                                                                  {reply_code::connection_refused, 5},
                                                                  {reply_code::ttl_expired, 6},
                                                                  {reply_code::command_not_supported, 7},
                                                                  {reply_code::address_type_not_supported, 8}};
  for (auto [code, value] : codes) {
    EXPECT_EQ(encode_reply(code)[1], value);
    EXPECT_NE(to_string(code), "unknown reply code");
  }
  EXPECT_EQ(to_string(reply_code::connection_refused), "connection refused");
  EXPECT_EQ(to_string(static_cast<reply_code>(0x42)), "unknown reply code");
  EXPECT_EQ(to_string(command::udp_associate), "UDP ASSOCIATE");
}

TEST(Socks5Reply, ClientSideRoundTrip) {
  const auto wire = encode_reply(reply_code::host_unreachable, address::from_ipv4({127, 0, 0, 1}, 9));
  expect_need_more_at_every_prefix(parse_reply, wire);
  const auto r = parse_reply(wire);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, reply_code::host_unreachable);
  EXPECT_EQ(r->bound.to_string(), "127.0.0.1:9");
  EXPECT_TRUE(parse_reply(bytes{0x05, 0x00, 0x01}).failed());
}

TEST(Socks5Reply, ShortDomainsAskForNoByteBeyondTheReply) {
  // A bound address "a" makes a 9-byte reply; a 2-byte name a 10-byte one.
  for (const bytes& wire :
       {bytes{0x05, 0x00, 0x00, 0x03, 0x01, 'a', 0x00, 0x50}, bytes{0x05, 0x00, 0x00, 0x03, 0x02, 'a', 'b', 0x00, 0x50},
        bytes{0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x50}}) {
    expect_need_more_at_every_prefix(parse_reply, wire);
    const auto r = parse_reply(wire);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r.consumed(), wire.size());
    EXPECT_EQ(r->code, reply_code::succeeded);
  }
}

// ---- UDP ----

TEST(Socks5Udp, ParsesHeaderAndPayload) {
  const bytes in = bytes{0x00, 0x00, 0x00, 0x01, 192, 0, 2, 1, 0x00, 0x35} + text("query");
  const auto d = parse_udp_datagram(in);
  ASSERT_TRUE(d) << d.error();
  EXPECT_EQ(d->destination.to_string(), "192.0.2.1:53");
  EXPECT_EQ(d->header_size, 10u);
  EXPECT_EQ(bytes(d->payload.begin(), d->payload.end()), text("query"));
}

TEST(Socks5Udp, EmptyPayload) {
  const bytes in = bytes{0x00, 0x00, 0x00, 0x03, 0x01, 'h', 0x00, 0x07};
  const auto d = parse_udp_datagram(in);
  ASSERT_TRUE(d) << d.error();
  EXPECT_EQ(d->destination.domain, "h");
  EXPECT_TRUE(d->payload.empty());
}

TEST(Socks5Udp, Errors) {
  auto expect_error = [](const bytes& in, std::string_view fragment) {
    const auto d = parse_udp_datagram(in);
    ASSERT_FALSE(d);
    EXPECT_TRUE(contains(d.error(), fragment)) << d.error();
  };
  expect_error({0x00, 0x00, 0x01, 0x01, 1, 2, 3, 4, 0, 53}, "fragmented SOCKS5 UDP datagrams are not supported");
  expect_error({0x00, 0x00, 0x80, 0x01, 1, 2, 3, 4, 0, 53}, "fragmented SOCKS5 UDP datagrams are not supported");
  expect_error({0x00, 0x01, 0x00, 0x01, 1, 2, 3, 4, 0, 53}, "non-zero reserved bytes");
  expect_error({0x00, 0x00, 0x00}, "too short for its header (3 bytes)");
  expect_error({}, "too short for its header (0 bytes)");
  expect_error({0x00, 0x00, 0x00, 0x01, 1, 2, 3, 4, 0}, "too short for its address (9 bytes)");
  expect_error({0x00, 0x00, 0x00, 0x04, 1, 2, 3}, "too short for its address");
  expect_error({0x00, 0x00, 0x00, 0x03}, "too short for its address");
  expect_error({0x00, 0x00, 0x00, 0x09, 1, 2}, "address type 0x09");
  expect_error({0x00, 0x00, 0x00, 0x03, 0x00, 0, 53}, "empty domain name");
}

TEST(Socks5Udp, HeaderRoundTrip) {
  std::array<std::uint8_t, 16> v6{};
  std::copy(k_ipv6_2001_db8_1.begin(), k_ipv6_2001_db8_1.end(), v6.begin());
  const std::vector<address> addresses = {address::from_ipv4({192, 0, 2, 1}, 53), address::from_ipv6(v6, 443),
                                          address::from_domain("dns.example", 853).value(),
                                          address::from_ipv4({0, 0, 0, 0}, 0)};
  for (const auto& a : addresses) {
    const auto header = encode_udp_header(a);
    EXPECT_EQ(header.size(), 3 + a.encoded_size());
    const bytes datagram = header + text("payload"); // the payload span points into it
    const auto d = parse_udp_datagram(datagram);
    ASSERT_TRUE(d) << d.error();
    EXPECT_EQ(d->destination, a) << a.to_string();
    EXPECT_EQ(d->header_size, header.size());
    EXPECT_EQ(bytes(d->payload.begin(), d->payload.end()), text("payload"));
  }
  EXPECT_EQ(encode_udp_header(address::from_ipv4({192, 0, 2, 1}, 53)),
            (bytes{0x00, 0x00, 0x00, 0x01, 192, 0, 2, 1, 0x00, 0x35}));
}

// ---- address ----

TEST(Socks5Address, FromIpBytes) {
  const bytes v4 = {127, 0, 0, 1};
  const auto a = address::from_ip_bytes(v4, 80);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->kind, address::type::ipv4);
  EXPECT_EQ(a->to_string(), "127.0.0.1:80");

  const bytes mapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 9};
  const auto m = address::from_ip_bytes(mapped, 1080);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, address::type::ipv4);
  EXPECT_EQ(m->to_host_port().host, "192.0.2.9");

  const auto b = address::from_ip_bytes(k_ipv6_2001_db8_1, 443);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->kind, address::type::ipv6);
  EXPECT_EQ(b->to_host_port(), (warren::net::host_port{"2001:db8::1", 443}));
  EXPECT_EQ(b->ip_bytes().size(), 16u);

  EXPECT_FALSE(address::from_ip_bytes(bytes{1, 2, 3}, 80));
  EXPECT_FALSE(address::from_ip_bytes(bytes{}, 80));
}

TEST(Socks5Address, FromHostPort) {
  const auto v4 = address::from_host_port({"10.1.2.3", 80});
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->kind, address::type::ipv4);
  const auto v6 = address::from_host_port({"::1", 53});
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->kind, address::type::ipv6);
  EXPECT_EQ(v6->to_string(), "[::1]:53");
  const auto name = address::from_host_port({"app.internal", 8080});
  ASSERT_TRUE(name);
  EXPECT_EQ(name->kind, address::type::domain);
  EXPECT_EQ(name->to_host_port(), (warren::net::host_port{"app.internal", 8080}));

  EXPECT_FALSE(address::from_host_port({"bad host", 80}));
  EXPECT_FALSE(address::from_host_port({"", 80}));
  EXPECT_FALSE(address::from_domain(std::string(256, 'a'), 80));
  EXPECT_FALSE(address::from_domain(std::string("a\0b", 3), 80));
}

TEST(Socks5Address, EqualityIgnoresUnusedBytes) {
  auto a = address::from_ipv4({1, 2, 3, 4}, 5);
  auto b = a;
  b.ip[10] = 0xff; // not part of an IPv4 address
  EXPECT_EQ(a, b);
  b.port = 6;
  EXPECT_NE(a, b);
  EXPECT_EQ(address{}.to_string(), "0.0.0.0:0");
}

TEST(Socks5Address, ParseAlone) {
  const bytes in = bytes{0x03, 0x03} + text("a.b") + bytes{0x00, 0x16};
  expect_need_more_at_every_prefix(parse_address, in);
  const auto a = parse_address(in);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->to_string(), "a.b:22");
}
