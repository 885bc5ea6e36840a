// Fuzzes the server's access files (src/tunnel/users.*): the users file
// (TOML) and the allow file. Properties: parsing never crashes; an accepted
// users file has at least one user, valid unique names, exactly one
// credential each (a sha256 one is 64 lowercase hex digits), and an error
// names its source; an accepted allow file yields one rule per rule line.
#include "tunnel/users.hpp"

#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  using warren::tunnel::user_entry;
  if (auto users = warren::tunnel::parse_users_file(text, "users.toml")) {
    if (users->users.empty())
      std::abort();
    std::set<std::string> names;
    for (const auto& u : users->users) {
      if (!warren::tunnel::valid_user_name(u.name) || !names.insert(u.name).second || u.secret.empty())
        std::abort();
      if (u.kind == user_entry::credential::sha256 &&
          (u.secret.size() != 64 || u.secret.find_first_not_of("0123456789abcdef") != std::string::npos))
        std::abort();
      if (u.kind == user_entry::credential::token && (!users->holds_tokens || u.secret.find(' ') != std::string::npos))
        std::abort();
    }
  } else if (!users.error().starts_with("users.toml")) {
    std::abort();
  }
  if (auto rules = warren::tunnel::parse_allow_file(text, "allow.txt")) {
    for (const auto& r : *rules)
      if (r.text.empty() || r.text.find('#') != std::string::npos)
        std::abort();
  } else if (!rules.error().starts_with("allow.txt:")) {
    std::abort();
  }
  return 0;
}
