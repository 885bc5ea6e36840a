// What `warren server` re-reads on SIGHUP, as one unit: the users (users
// file, token file or WARREN_TOKEN), the allow rules (--allow, --allow-file,
// each user's own) and the TLS certificate and key. load_access() reads and
// checks all of it or fails with one sentence, so a reload is all or
// nothing; diff_access() says what a reload changes (server::reload()
// applies it, closing the tunnels of revoked users).
#pragma once

#include "core/expected.hpp"
#include "transport/auth.hpp"
#include "transport/tls.hpp"
#include "tunnel/policy.hpp"

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace boost::asio::ssl {
class context;
}

namespace warren::tunnel {

/// The user a --token-file (or WARREN_TOKEN) stands for.
inline constexpr const char* k_default_user = "default";

/// The access settings a server runs with; swapped whole by a reload.
struct server_access {
  std::shared_ptr<const transport::user_table> users;
  /// --allow and --allow-file: for users without rules of their own.
  std::shared_ptr<const destination_policy> policy = std::make_shared<destination_policy>();
  /// Users whose entry in the users file has `allow`: exactly those rules.
  std::map<std::string, std::shared_ptr<const destination_policy>, std::less<>> user_policies;
  std::shared_ptr<boost::asio::ssl::context> tls; // tls:// and wss:// only
  std::string fingerprint;                        // of the certificate, when tls

  /// The rules that apply to `user`'s new streams.
  std::shared_ptr<const destination_policy> policy_for(std::string_view user) const;
};

/// Where the settings come from.
struct access_sources {
  std::string users_file;         // --users-file
  std::string token_file;         // --token-file: user "default"
  std::string token_env;          // WARREN_TOKEN at start (without --token-file): user "default"
  std::vector<std::string> allow; // --allow (fixed for the process)
  std::string allow_file;         // --allow-file
  bool uses_tls = false;
  transport::tls_server_options tls; // certificate and key files (the generated pair's, if none given)
};

/// Reads and checks everything; any error (a file missing or malformed, a
/// users file holding tokens readable by others, no user at all, a key
/// that does not match its certificate) fails the whole load. One
/// exception: a user whose token_file cannot be read (missing, not a
/// regular file, bad token) is left out, so it is revoked until the file
/// can be read, and the rest applies; that goes to `errors`. `warnings`
/// collects what is accepted but worth a line (a token file readable by
/// others, a file writable by its group).
expected<server_access> load_access(const access_sources& sources, std::vector<std::string>& warnings,
                                    std::vector<std::string>& errors);
/// The same, with the errors appended to the warnings.
expected<server_access> load_access(const access_sources& sources, std::vector<std::string>& warnings);

/// A file the server's access settings come from, read whole.
struct access_file {
  std::string text;
  unsigned mode = 0; // permission bits
};
/// Every file load_access() reads goes through here: opened without
/// waiting (a FIFO does not block the server), followed if a symlink,
/// refused unless a regular file (a directory, FIFO, device), refused if
/// writable by every user (as ssh's StrictModes), a warning if writable by
/// its group, at most `max` bytes. `what` names it in errors ("users file").
expected<access_file> read_access_file(const std::string& path, std::string_view what, std::size_t max,
                                       std::vector<std::string>& warnings);

/// `text` with control characters (C0, DEL, C1 bytes) as \xNN:
/// what a file holds is echoed in log lines only through this.
std::string printable(std::string_view text);

/// What a reload changes.
struct access_change {
  std::vector<std::string> added;
  std::vector<std::string> revoked;       // removed, or their token changed: their tunnels close
  std::vector<std::string> rules_changed; // their own rules, or whether they have any
  bool policy_changed = false;            // --allow / --allow-file rules
  bool certificate_replaced = false;
};
access_change diff_access(const server_access& before, const server_access& after);

/// The one line a reload logs, e.g. "3 users (1 added, 1 revoked: bob), 5
/// allow rules (changed), certificate replaced (fingerprint sha256:...)".
std::string describe_reload(const access_change& change, const server_access& after);

} // namespace warren::tunnel
