#include "proxy/socks5_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <vector>

namespace warren::proxy::socks5 {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// Reads until `parse` is done, exactly as many bytes as it asks for (no
/// byte of what follows is taken from the socket).
template <class Parse>
asio::awaitable<std::invoke_result_t<Parse, std::span<const std::uint8_t>>>
read_message(tcp::socket& socket, std::vector<std::uint8_t>& buf, Parse parse, error_code& ec) {
  buf.clear();
  for (;;) {
    auto r = parse(std::span<const std::uint8_t>(buf));
    if (!r.need_more())
      co_return r;
    const std::size_t have = buf.size();
    buf.resize(r.needed());
    auto [e, n] = co_await asio::async_read(socket, asio::buffer(buf.data() + have, buf.size() - have), use_tuple);
    if (e) {
      ec = e;
      co_return r;
    }
  }
}

client_result fail(client_result::outcome what, std::string detail = {}) {
  client_result r;
  r.what = what;
  r.detail = std::move(detail);
  return r;
}

client_result io_failed(error_code ec, bool request_sent = false) {
  client_result r;
  r.what = client_result::outcome::io_error;
  r.ec = ec;
  r.request_sent = request_sent;
  return r;
}

} // namespace

asio::awaitable<client_result> client_handshake(tcp::socket& socket, const request& req,
                                                const std::optional<credentials>& creds) {
  using outcome = client_result::outcome;
  std::vector<std::uint8_t> methods{std::uint8_t(method::no_auth)};
  std::optional<std::vector<std::uint8_t>> userpass;
  if (creds) {
    methods.push_back(std::uint8_t(method::userpass));
    auto up = encode_userpass(*creds);
    if (!up)
      co_return fail(outcome::bad_credentials, up.error());
    userpass = std::move(*up);
  }
  auto greeting = encode_greeting(methods);
  auto [we, wn] = co_await asio::async_write(socket, asio::buffer(*greeting), use_tuple);
  if (we)
    co_return io_failed(we);
  std::vector<std::uint8_t> buf;
  error_code ec;
  auto choice = co_await read_message(socket, buf, parse_method_choice, ec);
  if (ec)
    co_return io_failed(ec);
  if (choice.failed())
    co_return fail(outcome::not_socks5, choice.error());
  const auto m = *choice;
  if (m == method::userpass && userpass) {
    auto [ue, un] = co_await asio::async_write(socket, asio::buffer(*userpass), use_tuple);
    if (ue)
      co_return io_failed(ue);
    auto status = co_await read_message(socket, buf, parse_userpass_status, ec);
    if (ec)
      co_return io_failed(ec);
    if (status.failed())
      co_return fail(outcome::malformed, status.error());
    if (!*status)
      co_return fail(outcome::auth_refused);
  } else if (m == method::none_acceptable && userpass) {
    co_return fail(outcome::no_acceptable_method);
  } else if (m == method::userpass || m == method::none_acceptable) {
    co_return fail(outcome::wants_credentials);
  } else if (m != method::no_auth) {
    co_return fail(outcome::unexpected_method);
  }
  const auto encoded = encode_request(req);
  auto [qe, qn] = co_await asio::async_write(socket, asio::buffer(encoded), use_tuple);
  if (qe)
    co_return io_failed(qe);
  auto rep = co_await read_message(socket, buf, parse_reply, ec);
  if (ec)
    co_return io_failed(ec, true);
  if (rep.failed()) {
    auto r = fail(outcome::malformed, rep.error());
    r.request_sent = true;
    co_return r;
  }
  client_result r;
  r.request_sent = true;
  r.code = rep->code;
  r.bound = rep->bound;
  r.what = rep->code == reply_code::succeeded ? outcome::ok : outcome::refused;
  co_return r;
}

} // namespace warren::proxy::socks5
