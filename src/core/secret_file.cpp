#include "core/secret_file.hpp"

#include <algorithm>
#include <fstream>

namespace warren {

expected<std::string> read_secret_line(const std::string& path, std::string_view what) {
  using result = expected<std::string>;
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return result::failure("cannot read " + std::string(what) + " " + path);
  std::string text(k_max_secret_line + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad())
    return result::failure("cannot read " + std::string(what) + " " + path);
  text.resize(static_cast<std::size_t>(in.gcount()));
  const auto nl = text.find('\n');
  if (nl == std::string::npos && text.size() > k_max_secret_line)
    return result::failure(std::string(what) + " " + path + ": the first line is longer than " +
                           std::to_string(k_max_secret_line / 1024) + " KiB (is it the right file?)");
  text.resize(std::min(nl, text.size()));
  if (!text.empty() && text.back() == '\r')
    text.pop_back();
  return text;
}

} // namespace warren
