// The client's --proxy, --proxy-user, --proxy-password-file and
// --server-name: which proxy (transport/proxy_config.hpp chooses between the
// flag and the environment), its credentials, and the start-up log line
// saying where the choice came from (never the password).
#pragma once

#include "transport/transport.hpp"
#include "unit/client_unit.hpp"

#include <string>

namespace warren::cli {

using proxy_args = unit::proxy_args; // the flags as written (unit/client_unit.hpp)

/// Sets dial.proxy and dial.server_name for `server`; throws user_error.
void apply_proxy_args(const proxy_args& a, const transport::url& server, transport::dial_options& dial);

} // namespace warren::cli
