// Tests of the control API's framing (src/daemon/control_frame.*): frames
// split at every byte, several in one read, the length limit and zero
// length reported as soon as the length is in, EOF inside a frame, memory
// that grows with the bytes received (not the announced length), and the
// encoder's bytes.
#include "daemon/control_frame.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace warren::daemon;

namespace {

std::string be32(std::uint32_t n) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(n >> 24);
  s[1] = static_cast<char>((n >> 16) & 0xFF);
  s[2] = static_cast<char>((n >> 8) & 0xFF);
  s[3] = static_cast<char>(n & 0xFF);
  return s;
}

// Feeds `chunks` in order and collects every frame; stops at an error.
struct fed {
  std::vector<std::string> frames;
  frame_status last = frame_status::need_more;
};

fed feed_all(frame_decoder& d, const std::vector<std::string>& chunks) {
  fed out;
  for (const auto& chunk : chunks) {
    std::string_view in = chunk;
    while ((out.last = d.decode(in)) == frame_status::frame)
      out.frames.emplace_back(d.frame());
    if (out.last != frame_status::need_more)
      return out;
  }
  return out;
}

} // namespace

TEST(ControlFrame, EncodesBigEndianLengthThenMessage) {
  EXPECT_EQ(encode_frame("{}"), std::string("\0\0\0\x02{}", 6));
  const std::string big(300, 'x');
  EXPECT_EQ(encode_frame(big).substr(0, 4), std::string("\0\0\x01\x2c", 4));
  EXPECT_EQ(encode_frame(big).size(), 304U);
}

TEST(ControlFrame, EncoderRefusesEmptyAndOversizeMessages) {
  std::string out = "keep";
  EXPECT_FALSE(append_frame(out, ""));
  EXPECT_FALSE(append_frame(out, std::string(11, 'x'), 10));
  EXPECT_EQ(out, "keep");
  EXPECT_TRUE(append_frame(out, std::string(10, 'x'), 10));
  EXPECT_EQ(out.size(), 4U + 4 + 10);
}

TEST(ControlFrame, OneFrameSplitAtEveryByte) {
  const std::string msg = R"({"jsonrpc":"2.0","method":"daemon.status","id":1})";
  const std::string wire = encode_frame(msg);
  frame_decoder d;
  for (std::size_t i = 0; i + 1 < wire.size(); ++i) {
    std::string_view in(wire.data() + i, 1);
    ASSERT_EQ(d.decode(in), frame_status::need_more) << "at byte " << i;
    EXPECT_TRUE(in.empty());
    EXPECT_EQ(d.finish(), eof_status::truncated) << "EOF after byte " << i;
  }
  std::string_view last(wire.data() + wire.size() - 1, 1);
  ASSERT_EQ(d.decode(last), frame_status::frame);
  EXPECT_EQ(d.frame(), msg);
  EXPECT_EQ(d.finish(), eof_status::clean);
}

TEST(ControlFrame, EverySplitOfThreeFramesYieldsTheSameFrames) {
  const std::vector<std::string> msgs = {"[1]", std::string(5000, 'a'), "{\"x\":2}"};
  std::string wire;
  for (const auto& m : msgs)
    wire += encode_frame(m);
  for (std::size_t cut = 0; cut <= wire.size(); cut += 7) {
    frame_decoder d;
    const auto r = feed_all(d, {wire.substr(0, cut), wire.substr(cut)});
    EXPECT_EQ(r.frames, msgs) << "cut at " << cut;
    EXPECT_EQ(d.finish(), eof_status::clean);
  }
}

TEST(ControlFrame, SeveralFramesInOneReadComeOneAtATime) {
  const std::string wire = encode_frame("a") + encode_frame("bc") + encode_frame("def") + std::string("\0\0", 2);
  frame_decoder d;
  std::string_view in = wire;
  ASSERT_EQ(d.decode(in), frame_status::frame);
  EXPECT_EQ(d.frame(), "a");
  EXPECT_EQ(in.size(), wire.size() - 5); // only the first frame was taken
  ASSERT_EQ(d.decode(in), frame_status::frame);
  EXPECT_EQ(d.frame(), "bc");
  ASSERT_EQ(d.decode(in), frame_status::frame);
  EXPECT_EQ(d.frame(), "def");
  ASSERT_EQ(d.decode(in), frame_status::need_more);
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(d.finish(), eof_status::truncated); // half a length is a cut frame too
}

TEST(ControlFrame, OversizeLengthIsAnErrorAsSoonAsTheLengthIsIn) {
  frame_decoder d(1024);
  std::string wire = be32(1025);
  std::string_view in = wire;
  EXPECT_EQ(d.decode(in), frame_status::too_large);
  EXPECT_EQ(d.announced_length(), 1025U);
  EXPECT_TRUE(d.failed());
  EXPECT_EQ(d.buffered_capacity(), 0U); // nothing allocated for it
  // Failed for good: later bytes are not taken.
  std::string more = encode_frame("{}");
  std::string_view rest = more;
  EXPECT_EQ(d.decode(rest), frame_status::too_large);
  EXPECT_EQ(rest.size(), more.size());
}

TEST(ControlFrame, DefaultLimitIsOneMebibyte) {
  frame_decoder d;
  EXPECT_EQ(d.max_frame(), 1U << 20);
  std::string at_limit = be32(1U << 20);
  std::string_view in = at_limit;
  EXPECT_EQ(d.decode(in), frame_status::need_more);
  frame_decoder d2;
  std::string over = be32((1U << 20) + 1);
  std::string_view in2 = over;
  EXPECT_EQ(d2.decode(in2), frame_status::too_large);
  frame_decoder d3;
  std::string huge = be32(0xFFFFFFFFU);
  std::string_view in3 = huge;
  EXPECT_EQ(d3.decode(in3), frame_status::too_large);
}

TEST(ControlFrame, ZeroLengthIsAnError) {
  frame_decoder d;
  std::string wire = encode_frame("{}") + be32(0) + encode_frame("[]");
  std::string_view in = wire;
  ASSERT_EQ(d.decode(in), frame_status::frame);
  EXPECT_EQ(d.decode(in), frame_status::zero_length);
  EXPECT_EQ(in.size(), 6U); // the frame after it is left alone
  EXPECT_EQ(d.decode(in), frame_status::zero_length);
}

TEST(ControlFrame, EofInsideTheBodyIsTruncated) {
  frame_decoder d;
  std::string wire = encode_frame("{\"id\":1}");
  std::string_view in = std::string_view(wire).substr(0, wire.size() - 1);
  EXPECT_EQ(d.decode(in), frame_status::need_more);
  EXPECT_EQ(d.finish(), eof_status::truncated);
  frame_decoder fresh;
  EXPECT_EQ(fresh.finish(), eof_status::clean);
}

TEST(ControlFrame, MemoryGrowsWithBytesReceivedNotTheAnnouncedLength) {
  frame_decoder d; // 1 MiB limit
  std::string wire = be32(1U << 20) + std::string(10, 'x');
  std::string_view in = wire;
  ASSERT_EQ(d.decode(in), frame_status::need_more);
  EXPECT_LE(d.buffered_capacity(), 4096U);
  // Feed the rest in 1000-byte pieces: capacity never passes the limit.
  const std::string piece(1000, 'y');
  std::size_t left = (1U << 20) - 10;
  frame_status st = frame_status::need_more;
  while (left > 0) {
    std::string_view p(piece.data(), std::min<std::size_t>(left, piece.size()));
    left -= p.size();
    st = d.decode(p);
    ASSERT_LE(d.buffered_capacity(), 1U << 20);
  }
  ASSERT_EQ(st, frame_status::frame);
  EXPECT_EQ(d.frame().size(), 1U << 20);
  // The next frame releases the big buffer.
  std::string small = encode_frame("{}");
  std::string_view s = small;
  ASSERT_EQ(d.decode(s), frame_status::frame);
  EXPECT_LE(d.buffered_capacity(), 4096U);
}

TEST(ControlFrame, ConfigurableLimit) {
  frame_decoder d(8);
  std::string ok = encode_frame("12345678");
  std::string_view in = ok;
  ASSERT_EQ(d.decode(in), frame_status::frame);
  std::string bad = encode_frame("123456789");
  std::string_view in2 = bad;
  EXPECT_EQ(d.decode(in2), frame_status::too_large);
  EXPECT_EQ(frame_status_name(frame_status::too_large), "frame length over the limit");
}

TEST(ControlFrame, CapacityNeverPassesTheAnnouncedLength) {
  // 600000 is not a power of two: a buffer that doubles (std::string's
  // reserve in libstdc++ does) would reach 1 MiB here.
  frame_decoder d(600000);
  std::string wire = be32(600000);
  std::string_view in = wire;
  ASSERT_EQ(d.decode(in), frame_status::need_more);
  const std::string piece(7000, 'z');
  frame_status st = frame_status::need_more;
  for (std::size_t left = 600000; left > 0;) {
    std::string_view p(piece.data(), std::min<std::size_t>(left, piece.size()));
    left -= p.size();
    st = d.decode(p);
    ASSERT_LE(d.buffered_capacity(), 600000U);
  }
  EXPECT_EQ(st, frame_status::frame);
}
