#include "tun/connmark.hpp"

#include <nftables/libnftables.h>

#include <cctype>
#include <cstdio>
#include <memory>

namespace warren::tun {

namespace {

struct context_deleter {
  void operator()(nft_ctx* c) const { nft_ctx_free(c); }
};

/// Runs `commands` as one nft transaction; the error is nft's own text.
expected<bool> run(const std::string& commands) {
  std::unique_ptr<nft_ctx, context_deleter> ctx(nft_ctx_new(NFT_CTX_DEFAULT));
  if (!ctx)
    return expected<bool>::failure("nftables: cannot create a context");
  nft_ctx_buffer_output(ctx.get());
  nft_ctx_buffer_error(ctx.get());
  if (nft_run_cmd_from_buffer(ctx.get(), commands.c_str()) != 0) {
    std::string why = nft_ctx_get_error_buffer(ctx.get());
    while (!why.empty() && (why.back() == '\n' || why.back() == ' '))
      why.pop_back();
    return expected<bool>::failure("nftables: " + (why.empty() ? std::string("command failed") : why));
  }
  return true;
}

std::string hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

} // namespace

std::string connmark_table(const std::string& device) {
  std::string name = "warren_";
  for (unsigned char c : device)
    name += std::isalnum(c) != 0 ? static_cast<char>(c) : '_';
  return name;
}

expected<bool> add_connmark(const std::string& device, std::uint32_t mark) {
  const auto t = "inet " + connmark_table(device);
  const auto m = hex(mark);
  // Deleting first makes a re-add after a crash idempotent ("add table" of
  // an existing one would keep its old chains).
  (void)delete_connmark(device);
  return run("add table " + t + "\n" +
             "add chain " + t + " out { type route hook output priority mangle; }\n" +
             "add rule " + t + " out meta mark " + m + " ct mark set meta mark\n" +
             "add chain " + t + " pre { type filter hook prerouting priority mangle; }\n" +
             "add rule " + t + " pre ct mark " + m + " meta mark set ct mark\n");
}

expected<bool> delete_connmark(const std::string& device) {
  auto r = run("delete table inet " + connmark_table(device) + "\n");
  if (!r) {
    if (r.error().find("No such file or directory") != std::string::npos)
      return false;
    return r;
  }
  return true;
}

} // namespace warren::tun
