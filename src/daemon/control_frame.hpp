// The framing of the daemon's control API (docs/CONTROL.md, "Framing"): a
// 4-byte big-endian length, then that many bytes of one JSON-RPC 2.0 message.
// Pure: no I/O, no Asio, no exceptions on hostile input (fuzzed by
// tests/fuzz/fuzz_control.cpp).
//
// Design: one `frame_decoder` per connection, fed whatever a read returned
// (any split, several frames in one read). It takes bytes from the front of
// the caller's span only up to the end of the current frame, so the caller
// loops and never has to keep a second buffer. The body is copied into the
// decoder as it arrives and its buffer grows with the bytes actually
// received, never from the announced length, so a peer that announces 1 MiB
// and sends 10 bytes costs 10 bytes (plus growth slack, never past the
// announced length, itself at most the limit). A bad length (zero, or over
// the limit) is reported as soon as the 4 length bytes are in; the decoder
// then stays failed. EOF is reported through finish(), which tells an EOF
// between frames (clean) from one inside a frame (truncated).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace warren::daemon {

inline constexpr std::size_t k_length_size = 4;
inline constexpr std::uint32_t k_default_max_frame = 1U << 20; // 1 MiB of JSON per message

/// What decode() found.
enum class frame_status {
  need_more,   // the input ran out inside a frame (or before one): feed more
  frame,       // one whole frame: read it with frame() before the next decode()
  too_large,   // the announced length is over the limit: answer, then close
  zero_length, // a frame of length 0: answer, then close
};

/// What an EOF meant.
enum class eof_status {
  clean,     // between frames
  truncated, // inside a frame (or its length): close this connection only
};

/// "frame length over the limit", ... (for logs and error replies).
std::string_view frame_status_name(frame_status s) noexcept;

/// Incremental decoder for one connection. Not thread-safe (one per
/// connection, used by its reader). Holds at most the current frame: its
/// buffer's capacity never exceeds the limit.
class frame_decoder {
 public:
  explicit frame_decoder(std::uint32_t max_frame = k_default_max_frame) noexcept : max_frame_(max_frame) {}

  /// Takes bytes from the front of `input` (advancing it) until one frame is
  /// complete or `input` is empty. After `frame`, frame() holds the message
  /// until the next call; after an error the decoder stays failed and takes
  /// nothing more.
  frame_status decode(std::span<const std::uint8_t>& input);
  frame_status decode(std::string_view& input);

  /// The message of the last `frame` result.
  std::string_view frame() const noexcept { return {body_.data(), body_.size()}; }

  /// At EOF: whether it cut a frame. After a decode error it answers
  /// `clean`: the error, reported already, is why the connection closes.
  eof_status finish() const noexcept;

  /// The length the peer announced for the current (or refused) frame, 0
  /// before its length is in.
  std::uint32_t announced_length() const noexcept { return length_; }
  std::uint32_t max_frame() const noexcept { return max_frame_; }
  bool failed() const noexcept { return failed_ != frame_status::need_more; }

  /// Bytes this decoder holds allocated (for tests and the fuzzer's bound).
  std::size_t buffered_capacity() const noexcept { return body_.capacity(); }

 private:
  void append(const std::uint8_t* data, std::size_t n);

  std::uint32_t max_frame_;
  std::uint8_t length_bytes_[k_length_size] = {};
  std::size_t have_length_ = 0; // length bytes in so far
  std::uint32_t length_ = 0;
  std::vector<char> body_;                        // not std::string: its reserve() may round up past the limit
  bool delivered_ = false;                        // body_ was handed out; clear it on the next decode()
  frame_status failed_ = frame_status::need_more; // need_more: not failed
};

/// Appends one frame holding `message` to `out`. Returns false (and appends
/// nothing) when `message` is empty or longer than `max_frame`.
bool append_frame(std::string& out, std::string_view message, std::uint32_t max_frame = k_default_max_frame);

/// `message` as one frame; empty when append_frame() would refuse it.
std::string encode_frame(std::string_view message, std::uint32_t max_frame = k_default_max_frame);

} // namespace warren::daemon
