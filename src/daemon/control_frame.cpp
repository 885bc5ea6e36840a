// The control API's framing (control_frame.hpp): the incremental decoder and
// the encoder.
#include "daemon/control_frame.hpp"

#include <algorithm>

namespace warren::daemon {

namespace {

// A buffer left this large after a frame is released, so an idle connection
// that once sent a big request does not keep its buffer.
constexpr std::size_t k_keep_capacity = std::size_t{64} * 1024;
// The first allocation for a body; then the buffer doubles, capped at the
// announced length.
constexpr std::size_t k_first_capacity = 4096;

} // namespace

std::string_view frame_status_name(frame_status s) noexcept {
  switch (s) {
  case frame_status::need_more:
    return "incomplete frame";
  case frame_status::frame:
    return "frame";
  case frame_status::too_large:
    return "frame length over the limit";
  case frame_status::zero_length:
    return "frame of length 0";
  }
  return "unknown";
}

void frame_decoder::append(const std::uint8_t* data, std::size_t n) {
  const std::size_t need = body_.size() + n;
  if (need > body_.capacity()) {
    // Grow with what arrived, never past the announced length (itself at
    // most the limit): the peer pays in bytes sent for what we allocate.
    const std::size_t grown = std::max({need, body_.capacity() * 2, k_first_capacity});
    body_.reserve(std::min<std::size_t>(grown, length_)); // exact: vector never rounds up
  }
  const auto* chars = reinterpret_cast<const char*>(data);
  body_.insert(body_.end(), chars, chars + n);
}

frame_status frame_decoder::decode(std::span<const std::uint8_t>& input) {
  if (failed_ != frame_status::need_more)
    return failed_;
  if (delivered_) {
    delivered_ = false;
    have_length_ = 0;
    length_ = 0;
    if (body_.capacity() > k_keep_capacity)
      std::vector<char>().swap(body_);
    else
      body_.clear();
  }
  while (have_length_ < k_length_size) {
    if (input.empty())
      return frame_status::need_more;
    length_bytes_[have_length_++] = input.front();
    input = input.subspan(1);
  }
  if (body_.empty()) {
    length_ = (std::uint32_t{length_bytes_[0]} << 24) | (std::uint32_t{length_bytes_[1]} << 16) |
              (std::uint32_t{length_bytes_[2]} << 8) | std::uint32_t{length_bytes_[3]};
    if (length_ == 0)
      return failed_ = frame_status::zero_length;
    if (length_ > max_frame_)
      return failed_ = frame_status::too_large;
  }
  const std::size_t take = std::min<std::size_t>(input.size(), length_ - body_.size());
  if (take > 0) {
    append(input.data(), take);
    input = input.subspan(take);
  }
  if (body_.size() < length_)
    return frame_status::need_more;
  delivered_ = true;
  return frame_status::frame;
}

frame_status frame_decoder::decode(std::string_view& input) {
  std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
  const auto status = decode(bytes);
  input.remove_prefix(input.size() - bytes.size());
  return status;
}

eof_status frame_decoder::finish() const noexcept {
  if (failed_ != frame_status::need_more)
    return eof_status::clean; // the error was reported already
  if (delivered_ || have_length_ == 0)
    return eof_status::clean;
  return eof_status::truncated;
}

bool append_frame(std::string& out, std::string_view message, std::uint32_t max_frame) {
  if (message.empty() || message.size() > max_frame)
    return false;
  const auto n = static_cast<std::uint32_t>(message.size());
  out.push_back(static_cast<char>((n >> 24) & 0xFF));
  out.push_back(static_cast<char>((n >> 16) & 0xFF));
  out.push_back(static_cast<char>((n >> 8) & 0xFF));
  out.push_back(static_cast<char>(n & 0xFF));
  out.append(message);
  return true;
}

std::string encode_frame(std::string_view message, std::uint32_t max_frame) {
  std::string out;
  append_frame(out, message, max_frame);
  return out;
}

} // namespace warren::daemon
