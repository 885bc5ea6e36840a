#include "proxy/http_connect.hpp"

#include "core/text.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <utility>
#include <vector>

namespace warren::proxy::http_connect {

namespace {

constexpr std::string_view k_base64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (unsigned(std::uint8_t(in[i])) << 16) | (unsigned(std::uint8_t(in[i + 1])) << 8) |
                       unsigned(std::uint8_t(in[i + 2]));
    out += k_base64[(v >> 18) & 63];
    out += k_base64[(v >> 12) & 63];
    out += k_base64[(v >> 6) & 63];
    out += k_base64[v & 63];
  }
  if (i + 1 == in.size()) {
    const unsigned v = unsigned(std::uint8_t(in[i])) << 16;
    out += k_base64[(v >> 18) & 63];
    out += k_base64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const unsigned v = (unsigned(std::uint8_t(in[i])) << 16) | (unsigned(std::uint8_t(in[i + 1])) << 8);
    out += k_base64[(v >> 18) & 63];
    out += k_base64[(v >> 12) & 63];
    out += k_base64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

/// Printable ASCII only, at most `max` characters (untrusted text for a log line).
std::string printable(std::string_view s, std::size_t max) {
  std::string out;
  for (char c : s.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (s.size() > max)
    out += "...";
  return out;
}

parse_result failed(std::string why) {
  parse_result r;
  r.status = parse_status::failed;
  r.error = std::move(why);
  return r;
}

} // namespace

std::string basic_authorization(const credentials& c) {
  return "Basic " + base64(c.user + ":" + c.password);
}

std::string encode_request(const net::host_port& target, const std::optional<credentials>& auth) {
  const std::string where = net::format_host_port(target.host, target.port);
  std::string out = "CONNECT " + where + " HTTP/1.1\r\nHost: " + where + "\r\nUser-Agent: warren/0.1\r\n";
  if (auth)
    out += "Proxy-Authorization: " + basic_authorization(*auth) + "\r\n";
  out += "\r\n";
  return out;
}

namespace {

/// One reply head starting at `start` of `text`; the head bound counts from
/// the first byte of `text` (interim 1xx replies share it with the final one).
parse_result parse_one(std::string_view text, std::size_t start) {
  const std::string_view here = text.substr(start);
  // A reply that does not start like one fails at its first bytes.
  constexpr std::string_view k_http = "HTTP/";
  if (here.substr(0, k_http.size()) != k_http.substr(0, std::min(here.size(), k_http.size())))
    return failed("its answer is not HTTP (starts with " + quote_untrusted(here.substr(0, 16)) +
                  "); is it a SOCKS proxy? use socks5://");
  // The head ends at an empty line; bare LF line ends are tolerated.
  std::size_t head_end = std::string_view::npos, sep = 0;
  for (std::size_t i = start; i < text.size() && i < k_max_head; ++i) {
    if (text[i] != '\n')
      continue;
    if (i + 1 < text.size() && text[i + 1] == '\n') {
      head_end = i;
      sep = 2;
      break;
    }
    if (i + 2 < text.size() && text[i + 1] == '\r' && text[i + 2] == '\n') {
      head_end = i;
      sep = 3;
      break;
    }
  }
  if (head_end == std::string_view::npos) {
    if (text.size() >= k_max_head)
      return failed("its reply header is longer than " + std::to_string(k_max_head / 1024) + " KiB");
    return {};
  }
  const std::string_view head = text.substr(start, head_end - start);
  const auto status_end = head.find('\n');
  const std::string_view status_line = trim(head.substr(0, status_end));
  // HTTP/1.x SP NNN [SP reason]
  if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.") || status_line[8] != ' ')
    return failed("it sent a malformed status line " + quote_untrusted(status_line));
  const auto code_text = status_line.substr(9, 3);
  int status = 0;
  const auto [ptr, ec] = std::from_chars(code_text.data(), code_text.data() + 3, status);
  if (ec != std::errc() || ptr != code_text.data() + 3 || status < 100 || status > 599 ||
      (status_line.size() > 12 && status_line[12] != ' '))
    return failed("it sent a malformed status line " + quote_untrusted(status_line));
  reply r;
  r.status = status;
  r.reason = printable(trim(status_line.substr(std::min<std::size_t>(13, status_line.size()))), 80);

  // Header fields, a folded line (obs-fold, starting with a space or tab)
  // joined to the one before with a space (RFC 9112 §5.2).
  std::vector<std::pair<std::string_view, std::string>> fields;
  std::string_view rest = status_end == std::string_view::npos ? std::string_view() : head.substr(status_end + 1);
  while (!rest.empty()) {
    const auto nl = rest.find('\n');
    const std::string_view raw = rest.substr(0, nl);
    const std::string_view line = trim(raw);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (line.empty())
      continue;
    if (raw.front() == ' ' || raw.front() == '\t') {
      if (fields.empty())
        return failed("it sent a malformed header line " + quote_untrusted(line));
      fields.back().second += " " + std::string(line);
      continue;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        line.substr(0, colon).find_first_of(" \t") != std::string_view::npos)
      return failed("it sent a malformed header line " + quote_untrusted(line));
    fields.emplace_back(line.substr(0, colon), std::string(trim(line.substr(colon + 1))));
  }
  std::optional<std::size_t> content_length;
  bool chunked = false;
  for (const auto& [name, value] : fields) {
    if (iequals(name, "Content-Length")) {
      std::size_t n = 0;
      const auto [p, e] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || e != std::errc() || p != value.data() + value.size() ||
          (content_length && *content_length != n))
        return failed("it sent a bad Content-Length " + quote_untrusted(value));
      content_length = n;
    } else if (iequals(name, "Transfer-Encoding")) {
      chunked = true;
    } else if (iequals(name, "Proxy-Authenticate")) {
      if (r.proxy_authenticate.size() < 200)
        r.proxy_authenticate += (r.proxy_authenticate.empty() ? "" : ", ") + printable(value, 100);
    }
  }
  r.consumed = head_end + sep;
  parse_result out;
  out.status = parse_status::done;
  if (!r.success() && !r.interim() && content_length && !chunked) {
    // Read an error reply's body whole when it is small, so that the
    // connection closes after a complete reply; a large one is left unread.
    if (*content_length <= k_max_error_body) {
      if (text.size() < r.consumed + *content_length) {
        out.status = parse_status::need_more;
        return out;
      }
      r.consumed += *content_length;
    }
  }
  out.value = std::move(r);
  return out;
}

} // namespace

parse_result parse_reply(std::span<const std::uint8_t> in) {
  const std::string_view text(reinterpret_cast<const char*>(in.data()), in.size());
  // Interim replies (100 Continue, 102, 103) come before the final one and
  // are skipped (RFC 9110 §15.2); 101 is final (and not a success here).
  std::size_t start = 0;
  for (;;) {
    auto r = parse_one(text, start);
    if (r.status != parse_status::done || !r.value.interim())
      return r;
    start = r.value.consumed;
  }
}

std::string describe_failure(const reply& r, std::string_view proxy_shown, const net::host_port& target,
                             bool sent_credentials) {
  const std::string where = net::format_host_port(target.host, target.port);
  const std::string proxy = "the proxy " + std::string(proxy_shown);
  const std::string code = std::to_string(r.status) + (r.reason.empty() ? "" : " " + r.reason);
  switch (r.status) {
  case 401: // tinyproxy answers a CONNECT with wrong credentials so
  case 407: {
    const bool basic = r.proxy_authenticate.empty() || iequals(r.proxy_authenticate.substr(0, 5), "basic") ||
                       r.proxy_authenticate.find("Basic") != std::string::npos;
    const std::string shown_code =
        r.status == 407 ? std::string("407 Proxy Authentication Required") : "401 " + r.reason;
    if (!basic)
      return proxy + " wants credentials of a kind warren cannot send (" + shown_code + ", it offers " +
             r.proxy_authenticate + "; warren sends Basic only): check --proxy-user and --proxy-password-file";
    if (sent_credentials)
      return proxy + " refused the user name or password (" + shown_code +
             "): check --proxy-user and --proxy-password-file";
    return proxy + " wants credentials (" + shown_code + "): pass --proxy-user and --proxy-password-file";
  }
  case 403:
    return proxy + " refused to connect to " + where + " (" + code +
           "): its rules do not allow this destination or port";
  case 400:
  case 405:
  case 501:
    return proxy + " does not allow CONNECT to " + where + " (" + code + "): the proxy refused the request";
  case 500: // tinyproxy's "Unable to connect"
  case 502:
  case 503:
  case 504:
    return proxy + " could not reach " + where + " (" + code + ")";
  default:
    return proxy + " answered the CONNECT to " + where + " with HTTP " + code;
  }
}

bool permanent_refusal(const reply& r) {
  switch (r.status) {
  case 400:
  case 401:
  case 403:
  case 405:
  case 407:
  case 501:
    return true;
  default:
    return false;
  }
}

} // namespace warren::proxy::http_connect
