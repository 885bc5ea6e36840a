// The client's --proxy, --proxy-user, --proxy-password-file and
// --server-name: which proxy (transport/proxy_config.hpp chooses between the
// flag and the environment), its credentials, and the start-up log line
// saying where the choice came from (never the password).
#pragma once

#include "transport/transport.hpp"

#include <string>

namespace warren::cli {

struct proxy_args {
  std::string proxy;         // URL, "none", or empty (the environment decides)
  std::string user;          // --proxy-user
  std::string password_file; // --proxy-password-file
  std::string server_name;   // --server-name
};

/// Sets dial.proxy and dial.server_name for `server`; throws user_error.
void apply_proxy_args(const proxy_args& a, const transport::url& server, transport::dial_options& dial);

} // namespace warren::cli
