// The server's access files, parsed (pure: text in, entries or an error
// naming the line and column out; no file access, no hashing).
//
// The users file (--users-file, TOML), one [[user]] table per user:
//
//   [[user]]
//   name = "alice"                     # letters, digits, . _ - @; unique
//   token_sha256 = "9f86d0...0a08"     # sha256sum of the token (64 hex digits)
//   allow = ["10.0.0.0/8:22", "db.internal:5432"]   # optional
//
//   [[user]]
//   name = "bob"
//   token_file = "/etc/warren/bob.token"   # or token = "..." (then the file must be 0600)
//
// Each user has exactly one of token, token_sha256, token_file. A user
// with `allow` may reach exactly those destinations (an empty list: none);
// one without gets the server's --allow / --allow-file rules. Unknown keys,
// a missing name or credential, duplicate names and duplicate credentials
// written in the file are errors.
//
// The allow file (--allow-file): one --allow rule per line; blank lines and
// everything after '#' are ignored.
#pragma once

#include "core/expected.hpp"
#include "tunnel/policy.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace warren::tunnel {

struct user_entry {
  enum class credential { token, sha256, file };
  std::string name;
  credential kind = credential::token;
  std::string secret;                           // the token; 64 lowercase hex digits; or a path
  std::optional<std::vector<allow_rule>> allow; // nullopt: the server's rules
  int line = 0;                                 // of the user's [[user]] header
};

struct users_file {
  std::vector<user_entry> users;
  bool holds_tokens = false; // some user has token = "..." (the file is a secret)
};

/// `source` names the file in errors ("users.toml:3:9: ...").
expected<users_file> parse_users_file(std::string_view text, std::string_view source);

/// Rules of an --allow-file; errors as "FILE:LINE: ...".
expected<std::vector<allow_rule>> parse_allow_file(std::string_view text, std::string_view source);

/// A user name as the users file accepts it.
bool valid_user_name(std::string_view name);

} // namespace warren::tunnel
