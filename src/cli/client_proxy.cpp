#include "cli/client_proxy.hpp"

#include "cli/command.hpp"

#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

namespace warren::cli {

namespace {

std::string read_password(const std::string& path) {
  std::ifstream in(path);
  std::string password;
  if (!in || !std::getline(in, password))
    throw user_error("cannot read the proxy password from --proxy-password-file " + path);
  while (!password.empty() && (password.back() == '\r' || password.back() == '\n'))
    password.pop_back();
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
    if (!net::is_valid_hostname(a.server_name) && !net::is_ip_literal(a.server_name))
      throw user_error("--server-name '" + a.server_name + "' is not a host name");
    dial.server_name = a.server_name;
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
        throw user_error("--proxy-user and --proxy-password-file need a proxy: pass --proxy URL (or set "
                         "HTTPS_PROXY)");
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
    p.password = read_password(a.password_file);
    p.password_in_url = false;
  }
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
