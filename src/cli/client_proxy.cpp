#include "cli/client_proxy.hpp"

#include "cli/command.hpp"
#include "core/secret_file.hpp"
#include "core/text.hpp"

#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <cstdlib>

namespace warren::cli {

namespace {

std::string read_password(const std::string& path) {
  auto line = read_secret_line(path, "--proxy-password-file");
  if (!line)
    throw user_error(line.error());
  std::string password = std::move(*line);
  if (password.empty())
    throw user_error("--proxy-password-file " + path + ": the first line (the password) is empty");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
    spdlog::warn("proxy password file {} is readable by other users; chmod 600 it", path);
  return password;
}

} // namespace

void apply_proxy_args(const proxy_args& a, const transport::url& server, transport::dial_options& dial) {
  if (!a.server_name.empty()) {
    // An absolute name's trailing dot is dropped, as curl does: SNI and the
    // certificate carry the name without it (RFC 6066 §3).
    std::string name = a.server_name;
    if (name.size() > 1 && name.ends_with('.'))
      name.pop_back();
    if (!net::is_valid_hostname(name) && !net::is_ip_literal(name))
      throw user_error("--server-name " + quote_untrusted(a.server_name) + " is not a host name");
    dial.server_name = std::move(name);
  }
  auto choice = transport::choose_proxy(server, a.proxy, [](const char* name) -> std::optional<std::string> {
    if (const char* v = std::getenv(name))
      return std::string(v);
    return std::nullopt;
  });
  if (!choice)
    throw user_error(choice.error());
  if (!choice->proxy) {
    if (!a.user.empty() || !a.password_file.empty()) {
      if (choice->source.empty())
        throw user_error(
            std::string("--proxy-user and --proxy-password-file need a proxy: pass --proxy URL (or set ") +
            (server.uses_tls() ? "https_proxy or HTTPS_PROXY" : "http_proxy, which ws:// and tcp:// read") + ")");
    }
    if (!choice->source.empty())
      spdlog::info("client: no proxy for {} ({})", transport::to_string(server),
                   choice->source == "--proxy none" ? "--proxy none" : choice->source + " lists it");
    return;
  }
  auto p = std::move(*choice->proxy);
  if (!a.user.empty())
    p.user = a.user;
  if (!a.password_file.empty()) {
    if (p.password_in_url && choice->source == "--proxy")
      spdlog::warn("--proxy: the password in the URL is ignored (--proxy-password-file wins) but still visible to "
                   "every user of this machine in the process list; remove it from the URL");
    p.password = read_password(a.password_file);
    p.password_in_url = false;
  }
  if (auto bad = transport::check_credentials(p))
    throw user_error(choice->source + ": " + *bad);
  if (p.user.empty() && !p.password.empty())
    throw user_error("--proxy-password-file needs a user name: --proxy-user NAME or NAME@ in the proxy URL");
  if (!p.user.empty() && p.password.empty())
    throw user_error("the proxy user " + p.user + " needs a password: --proxy-password-file FILE");
  if (p.password_in_url && choice->source == "--proxy")
    spdlog::warn("--proxy: the password in the URL is visible to every user of this machine in the process list; "
                 "use --proxy-password-file instead");
  spdlog::info("client: through the proxy {} (from {}){}", transport::to_string(p), choice->source,
               p.user.empty() ? std::string() : ", as user " + p.user);
  dial.proxy = std::move(p);
}

} // namespace warren::cli
