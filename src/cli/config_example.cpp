// The annotated example `warren config example` prints (and `cmake
// --install` installs as share/doc/warren/warren.toml.example). A test
// checks that it passes `warren config check`.
#include "cli/config_schema.hpp"

namespace warren::cli {

std::string_view config_example() {
  return R"toml(# warren.toml: the units `warren daemon` runs.
#
# Each section is one unit: [[relay]], [[client]], [[server]] or [[tun]]
# (`warren tun`: a TUN device, needs CAP_NET_ADMIN; not in this example). Its keys
# are the long options of that command (`warren client --help`), written
# with '_' or '-' (token_file = token-file); a flag is `key = true`; an
# option given several times is a list. Every unit has a `name`: letters,
# digits, '.', '_', '-', unique in the file.
#
# Secrets are never written here: name a file that holds them
# (token_file, socks_password_file, proxy_password_file).
#
# Check a file with: warren config check FILE

# A relay forwards a local port to a target, like `warren relay LISTEN TARGET`.
[[relay]]
name = "web"
listen = "localhost:8080"      # localhost binds 127.0.0.1 and ::1
target = "127.0.0.1:80"
connect_timeout = "5s"         # durations: 500ms, 10s, 2m, 1h

# A client keeps a tunnel to a warren server and serves forwards through
# it, like `warren client URL -L ... -D ...`.
[[client]]
name = "office"
url = "wss://gw.example.net:8443/"
token_file = "/etc/warren/office.token"  # the token, on the first line
pin = "sha256:5fd3b3a4e0a38c6c4b4e8a5b2d8f5f1b9ae0bcd0c2cf3b6b0e9d1a6f2c3b4d5e"
local = ["localhost:2222:git.internal:22",  # -L [udp/][bind:]port:host:port
         "udp/localhost:5353:10.0.0.53:53"]
dynamic = ["localhost:1080"]             # -D: a SOCKS5 server
ping_interval = "15s"

# A server accepts tunnels and connects their streams where --allow lets
# them, like `warren server --listen ...`.
[[server]]
name = "gw"
listen = ["wss://0.0.0.0:8443"]   # a certificate is made in state_dir unless cert/key are given
users_file = "/etc/warren/users.toml"  # named users and their tokens (or token_file for one)
allow = ["10.0.0.0/8", "*.internal:22", "db.internal:5432"]  # where tunnels may connect
max_clients = 256
log_level = "info"
)toml";
}

} // namespace warren::cli
