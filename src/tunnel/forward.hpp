// ssh-style forward specs of `warren client` (pure parsing):
//   -L [udp/][bind:]port:host:port   local port -> target through the tunnel
//   -D [bind:]port                   SOCKS5 server whose destinations go through the tunnel
// bind defaults to `localhost` (127.0.0.1 and ::1, net/listen.hpp); IPv6
// binds and targets go in brackets: -L [::1]:8080:[fd00::5]:80.
#pragma once

#include "core/expected.hpp"
#include "net/address.hpp"

#include <string>
#include <string_view>

namespace warren::tunnel {

struct forward_spec {
  enum class kind { tcp, udp, socks };
  kind type = kind::tcp;
  net::listen_address listen;
  net::host_port target; // tcp and udp
  std::string text;      // as written
};

expected<forward_spec> parse_local_forward(std::string_view text);
expected<forward_spec> parse_dynamic_forward(std::string_view text);

} // namespace warren::tunnel
