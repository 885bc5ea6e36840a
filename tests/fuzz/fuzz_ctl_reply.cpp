// Fuzzes `warren ctl`'s reply parser (src/daemon/ctl_reply.*): the bytes a
// control socket sends back are untrusted (anything may listen on the path
// or port ctl connects to). The input is split at its first byte into an id
// choice and the reply text. Properties checked, not only "no crash":
// - a reply accepted as a result carries exactly the id asked for;
// - an accepted error has a message of printable ASCII only, at most 200
//   bytes (it is printed to a terminal);
// - a refusal is one line starting "protocol mismatch: ", short, printable
//   (it quotes at most a sanitized excerpt);
// - a notification (`ctl events`) is accepted only without an id, with a
//   printable method and object params;
// - encode_ctl_request() frames a request that the daemon's parser reads
//   back with the same id and method.
#include "daemon/control_frame.hpp"
#include "daemon/ctl_reply.hpp"
#include "daemon/jsonrpc.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace warren::daemon;

bool printable(std::string_view s) {
  for (const char c : s)
    if (c < 0x20 || c >= 0x7f)
      return false;
  return true;
}

void check(bool ok) {
  if (!ok)
    std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const std::int64_t id = data[0] % 4; // 0..3: small ids the corpus can hit
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto reply = parse_reply(text, id);
  if (reply) {
    if (reply->ok) {
      const auto doc = nlohmann::json::parse(text);
      check(doc.at("id").is_number_integer() && doc.at("id").get<std::int64_t>() == id);
    } else {
      check(printable(reply->message) && reply->message.size() <= 200);
    }
  } else {
    const auto& why = reply.error();
    check(why.starts_with("protocol mismatch: ") && why.size() <= 300 && printable(why));
  }

  // A notification (ctl events): accepted only without an id, with a
  // printable method and object params.
  if (const auto n = parse_notification(text)) {
    check(printable(n->method) && n->method.size() <= 128 && n->params.is_object());
    check(!nlohmann::json::parse(text).contains("id"));
  } else {
    check(n.error().starts_with("protocol mismatch: ") && n.error().size() <= 300 && printable(n.error()));
  }

  // The request side: whatever method text the input holds (bounded as the
  // daemon bounds it), the frame ctl writes parses back to the same call.
  const std::string method(text.substr(0, 128));
  if (!method.empty() && valid_utf8(method)) {
    const auto frame = encode_ctl_request(id, method);
    frame_decoder decoder;
    std::string_view in(frame);
    check(decoder.decode(in) == frame_status::frame && in.empty());
    const auto parsed = parse_message(decoder.frame());
    const auto* m = std::get_if<message>(&parsed);
    check(m && m->entries.size() == 1);
    const auto* r = std::get_if<request>(&m->entries[0]);
    check(r && r->method == method && r->id && std::get<std::int64_t>(*r->id) == id);
  }
  return 0;
}
