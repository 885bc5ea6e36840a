// rtnetlink requests with libmnl. Each request is built in buf_, sent, and
// its answer read until the ACK/error (or NLMSG_DONE for a dump); the error
// handler keeps the errno and the kernel's extended-ACK text for the message.
#include "tun/rtnl.hpp"

#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <arpa/inet.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <utility>

namespace warren::tun {

namespace {

constexpr std::size_t k_buffer_size = 32768; // a dump's multipart datagrams fit (MNL_SOCKET_DUMP_SIZE)

std::string errno_text(int code) {
  return std::strerror(code);
}

std::string hex(std::uint32_t v) {
  char buf[16];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, 16);
  (void)ec;
  return "0x" + std::string(buf, end);
}

std::string table_name(std::uint32_t t) {
  if (t == RT_TABLE_MAIN)
    return "main";
  if (t == RT_TABLE_LOCAL)
    return "local";
  return std::to_string(t);
}

// Attributes of one message (or nest) by type; types above max are ignored.
template <std::size_t N>
struct attr_table {
  std::array<const nlattr*, N> at{};
  static int collect(const nlattr* a, void* data) {
    auto* self = static_cast<attr_table*>(data);
    const auto type = mnl_attr_get_type(a);
    if (type < N)
      self->at[type] = a;
    return MNL_CB_OK;
  }
  const nlattr* operator[](std::size_t i) const { return at[i]; }
};

std::optional<std::uint32_t> get_u32(const nlattr* a) {
  if (a == nullptr || mnl_attr_get_payload_len(a) < sizeof(std::uint32_t))
    return std::nullopt;
  return mnl_attr_get_u32(a);
}

std::optional<std::uint8_t> get_u8(const nlattr* a) {
  if (a == nullptr || mnl_attr_get_payload_len(a) < 1)
    return std::nullopt;
  return mnl_attr_get_u8(a);
}

std::string get_str(const nlattr* a) {
  if (a == nullptr)
    return {};
  const auto* p = static_cast<const char*>(mnl_attr_get_payload(a));
  return std::string(p, strnlen(p, mnl_attr_get_payload_len(a)));
}

// An address attribute of the family's size into a prefix of `length`.
std::optional<ip_prefix> get_prefix(const nlattr* a, int family, unsigned length) {
  ip_prefix p;
  p.family = family;
  p.length = length;
  if (a == nullptr || mnl_attr_get_payload_len(a) != p.address_size())
    return std::nullopt;
  std::memcpy(p.bytes.data(), mnl_attr_get_payload(a), p.address_size());
  return p;
}

void put_prefix(nlmsghdr* nlh, std::uint16_t type, const ip_prefix& p) {
  mnl_attr_put(nlh, type, p.address_size(), p.bytes.data());
}

struct transaction {
  std::function<void(const nlmsghdr*)>* on_message = nullptr;
  int error = 0;
  std::string ext_ack;
};

int on_data(const nlmsghdr* nlh, void* data) {
  auto* t = static_cast<transaction*>(data);
  if (t->on_message != nullptr && *t->on_message)
    (*t->on_message)(nlh);
  return MNL_CB_OK;
}

int on_done(const nlmsghdr* nlh, void* data) {
  // A dump that failed part-way reports its error in NLMSG_DONE's payload.
  auto* t = static_cast<transaction*>(data);
  if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
    int code = 0;
    std::memcpy(&code, mnl_nlmsg_get_payload(nlh), sizeof code);
    if (code < 0)
      t->error = -code;
  }
  return MNL_CB_STOP;
}

int on_error(const nlmsghdr* nlh, void* data) {
  auto* t = static_cast<transaction*>(data);
  if (mnl_nlmsg_get_payload_len(nlh) < sizeof(nlmsgerr)) {
    t->error = EBADMSG;
    return MNL_CB_STOP;
  }
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  t->error = -err->error; // 0: the ACK
  if (t->error != 0 && (nlh->nlmsg_flags & NLM_F_ACK_TLVS) != 0) {
    // The TLVs follow the echoed request, or only its header when capped.
    std::size_t offset = sizeof(nlmsgerr);
    if ((nlh->nlmsg_flags & NLM_F_CAPPED) == 0 && err->msg.nlmsg_len >= sizeof(nlmsghdr))
      offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
    if (MNL_ALIGN(offset) <= mnl_nlmsg_get_payload_len(nlh)) {
      attr_table<NLMSGERR_ATTR_MAX + 1> tb;
      if (mnl_attr_parse(nlh, static_cast<unsigned>(offset), attr_table<NLMSGERR_ATTR_MAX + 1>::collect, &tb) >= 0)
        t->ext_ack = get_str(tb[NLMSGERR_ATTR_MSG]);
    }
  }
  return MNL_CB_STOP;
}

nlmsghdr* start(std::vector<char>& buf, std::uint16_t type, std::uint16_t flags, unsigned seq) {
  std::memset(buf.data(), 0, 256);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = static_cast<std::uint16_t>(NLM_F_REQUEST | flags);
  nlh->nlmsg_seq = seq;
  return nlh;
}

template <class T>
T* extra(nlmsghdr* nlh) {
  return static_cast<T*>(mnl_nlmsg_put_extra_header(nlh, sizeof(T)));
}

} // namespace

// ---- ip_prefix ----

expected<ip_prefix> ip_prefix::parse(std::string_view text, bool host_bits) {
  using result = expected<ip_prefix>;
  const auto slash = text.find('/');
  const std::string addr(text.substr(0, slash));
  ip_prefix p;
  if (inet_pton(AF_INET, addr.c_str(), p.bytes.data()) == 1)
    p.family = AF_INET;
  else if (inet_pton(AF_INET6, addr.c_str(), p.bytes.data()) == 1)
    p.family = AF_INET6;
  else
    return result::failure("not an IP address: " + std::string(text.substr(0, 64)));
  const unsigned max = static_cast<unsigned>(p.address_size() * 8);
  p.length = max;
  if (slash != std::string_view::npos) {
    const auto len = text.substr(slash + 1);
    const auto* end = len.data() + len.size();
    auto [ptr, ec] = std::from_chars(len.data(), end, p.length);
    if (len.empty() || ec != std::errc{} || ptr != end || p.length > max || (len.size() > 1 && len[0] == '0'))
      return result::failure("bad prefix length in " + std::string(text.substr(0, 64)) + " (0-" +
                             std::to_string(max) + ")");
  }
  if (!host_bits) {
    for (unsigned bit = p.length; bit < max; ++bit)
      if ((p.bytes[bit / 8] & (0x80u >> (bit % 8))) != 0)
        return result::failure(std::string(text.substr(0, 64)) + " has bits set past its /" +
                               std::to_string(p.length) + " prefix");
  }
  return p;
}

ip_prefix ip_prefix::any(int family) {
  ip_prefix p;
  p.family = family;
  return p;
}

std::string ip_prefix::str() const {
  if (length == 0)
    return "default";
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(length);
}

std::string family_name(int family) {
  return family == AF_INET6 ? "IPv6" : "IPv4";
}

std::string route::describe() const {
  return dst.str() + " dev #" + std::to_string(oif) + " table " + table_name(table) + " (" + family_name(family) +
         ")";
}

std::string rule::describe() const {
  std::string s = std::to_string(priority) + ": ";
  if (invert)
    s += "not ";
  s += "from all";
  if (dst)
    s += " to " + dst->str();
  if (fwmark)
    s += " fwmark " + hex(*fwmark) + (fwmask == 0xffffffff ? "" : "/" + hex(fwmask));
  s += " lookup " + table_name(table);
  if (suppress_prefixlength)
    s += " suppress_prefixlength " + std::to_string(*suppress_prefixlength);
  return s + " (" + family_name(family) + ")";
}

// ---- rtnl ----

rtnl::rtnl(mnl_socket* s) : sock_(s), portid_(mnl_socket_get_portid(s)), buf_(k_buffer_size) {}

rtnl::rtnl(rtnl&& other) noexcept
    : sock_(std::exchange(other.sock_, nullptr)), portid_(other.portid_), seq_(other.seq_),
      last_errno_(other.last_errno_), buf_(std::move(other.buf_)) {}

rtnl& rtnl::operator=(rtnl&& other) noexcept {
  if (this != &other) {
    if (sock_ != nullptr)
      mnl_socket_close(sock_);
    sock_ = std::exchange(other.sock_, nullptr);
    portid_ = other.portid_;
    seq_ = other.seq_;
    last_errno_ = other.last_errno_;
    buf_ = std::move(other.buf_);
  }
  return *this;
}

rtnl::~rtnl() {
  if (sock_ != nullptr)
    mnl_socket_close(sock_);
}

expected<rtnl> rtnl::open() {
  mnl_socket* s = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (s == nullptr)
    return expected<rtnl>::failure("cannot open a netlink socket: " + errno_text(errno));
  if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) {
    const int code = errno;
    mnl_socket_close(s);
    return expected<rtnl>::failure("cannot bind a netlink socket: " + errno_text(code));
  }
  int on = 1; // extended ACKs: the kernel says which attribute it refused
  mnl_socket_setsockopt(s, NETLINK_EXT_ACK, &on, sizeof on);
  return rtnl(s);
}

template <class F>
int rtnl::transact(F&& on_message) {
  std::function<void(const nlmsghdr*)> handler = std::forward<F>(on_message);
  transaction t;
  t.on_message = &handler;
  ext_ack_.clear();
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(buf_.data());
  const unsigned seq = nlh->nlmsg_seq;
  if (mnl_socket_sendto(sock_, nlh, nlh->nlmsg_len) < 0)
    return last_errno_ = errno;
  mnl_cb_t ctl[NLMSG_MIN_TYPE] = {};
  ctl[NLMSG_ERROR] = on_error;
  ctl[NLMSG_DONE] = on_done;
  for (;;) {
    const auto n = mnl_socket_recvfrom(sock_, buf_.data(), buf_.size());
    if (n < 0)
      return last_errno_ = errno;
    const int ret = mnl_cb_run2(buf_.data(), static_cast<std::size_t>(n), seq, portid_, on_data, &t, ctl,
                                NLMSG_MIN_TYPE);
    if (ret < 0) {
      last_errno_ = errno != 0 ? errno : EPROTO;
      return last_errno_;
    }
    if (ret == MNL_CB_STOP)
      break;
  }
  ext_ack_ = std::move(t.ext_ack);
  return last_errno_ = t.error;
}

expected<bool> rtnl::change(std::string_view what) {
  const int code = transact(nullptr);
  if (code == 0)
    return true;
  if (code == EPERM)
    return expected<bool>::failure(std::string(k_need_cap_net_admin));
  std::string msg = "cannot " + std::string(what) + ": " + errno_text(code);
  if (!ext_ack_.empty())
    msg += " (" + ext_ack_ + ")";
  return expected<bool>::failure(std::move(msg));
}

namespace {

link_info parse_link(const nlmsghdr* nlh) {
  link_info info;
  const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
  info.index = static_cast<unsigned>(ifi->ifi_index);
  info.up = (ifi->ifi_flags & IFF_UP) != 0;
  attr_table<IFLA_MAX + 1> tb;
  mnl_attr_parse(nlh, sizeof(ifinfomsg), attr_table<IFLA_MAX + 1>::collect, &tb);
  info.name = get_str(tb[IFLA_IFNAME]);
  info.mtu = get_u32(tb[IFLA_MTU]).value_or(0);
  if (tb[IFLA_LINKINFO] != nullptr) {
    attr_table<IFLA_INFO_MAX + 1> li;
    mnl_attr_parse_nested(tb[IFLA_LINKINFO], attr_table<IFLA_INFO_MAX + 1>::collect, &li);
    info.kind = get_str(li[IFLA_INFO_KIND]);
  }
  return info;
}

} // namespace

expected<link_info> rtnl::get_link(unsigned index, std::string_view name) {
  nlmsghdr* nlh = start(buf_, RTM_GETLINK, NLM_F_ACK, ++seq_);
  auto* ifi = extra<ifinfomsg>(nlh);
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = static_cast<int>(index);
  if (index == 0)
    mnl_attr_put_strz(nlh, IFLA_IFNAME, std::string(name).c_str());
  std::optional<link_info> found;
  const int code = transact([&](const nlmsghdr* m) {
    if (m->nlmsg_type == RTM_NEWLINK && mnl_nlmsg_get_payload_len(m) >= sizeof(ifinfomsg))
      found = parse_link(m);
  });
  const std::string who = index == 0 ? "'" + std::string(name) + "'" : "#" + std::to_string(index);
  if (code == ENODEV || (code == 0 && !found))
    return expected<link_info>::failure("no network device " + who);
  if (code != 0)
    return expected<link_info>::failure("cannot look up network device " + who + ": " + errno_text(code));
  return std::move(*found);
}

expected<link_info> rtnl::link(std::string_view name) {
  if (name.empty() || name.size() >= IFNAMSIZ)
    return expected<link_info>::failure("bad network device name '" + std::string(name.substr(0, 32)) + "'");
  return get_link(0, name);
}

expected<link_info> rtnl::link(unsigned index) {
  return get_link(index, {});
}

expected<bool> rtnl::set_mtu(unsigned index, unsigned mtu) {
  nlmsghdr* nlh = start(buf_, RTM_NEWLINK, NLM_F_ACK, ++seq_);
  auto* ifi = extra<ifinfomsg>(nlh);
  ifi->ifi_index = static_cast<int>(index);
  mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
  return change("set MTU " + std::to_string(mtu) + " on device #" + std::to_string(index));
}

expected<bool> rtnl::set_up(unsigned index) {
  nlmsghdr* nlh = start(buf_, RTM_NEWLINK, NLM_F_ACK, ++seq_);
  auto* ifi = extra<ifinfomsg>(nlh);
  ifi->ifi_index = static_cast<int>(index);
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  return change("bring device #" + std::to_string(index) + " up");
}

expected<bool> rtnl::delete_link(unsigned index) {
  nlmsghdr* nlh = start(buf_, RTM_DELLINK, NLM_F_ACK, ++seq_);
  auto* ifi = extra<ifinfomsg>(nlh);
  ifi->ifi_index = static_cast<int>(index);
  return change("delete device #" + std::to_string(index));
}

namespace {

void put_address(nlmsghdr* nlh, unsigned index, const ip_prefix& local) {
  auto* ifa = extra<ifaddrmsg>(nlh);
  ifa->ifa_family = static_cast<std::uint8_t>(local.family);
  ifa->ifa_prefixlen = static_cast<std::uint8_t>(local.length);
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = index;
  // No duplicate address detection: the address is usable at once (a TUN
  // has no neighbours to collide with).
  const std::uint32_t flags = local.family == AF_INET6 ? IFA_F_NODAD : 0;
  ifa->ifa_flags = static_cast<std::uint8_t>(flags);
  put_prefix(nlh, IFA_LOCAL, local);
  put_prefix(nlh, IFA_ADDRESS, local);
  mnl_attr_put_u32(nlh, IFA_FLAGS, flags);
}

} // namespace

expected<bool> rtnl::add_address(unsigned index, const ip_prefix& local) {
  nlmsghdr* nlh = start(buf_, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ++seq_);
  put_address(nlh, index, local);
  return change("add address " + local.str() + " to device #" + std::to_string(index));
}

expected<bool> rtnl::delete_address(unsigned index, const ip_prefix& local) {
  nlmsghdr* nlh = start(buf_, RTM_DELADDR, NLM_F_ACK, ++seq_);
  put_address(nlh, index, local);
  return change("delete address " + local.str() + " from device #" + std::to_string(index));
}

expected<std::vector<address>> rtnl::addresses(unsigned index) {
  nlmsghdr* nlh = start(buf_, RTM_GETADDR, NLM_F_DUMP, ++seq_);
  extra<ifaddrmsg>(nlh)->ifa_family = AF_UNSPEC;
  std::vector<address> out;
  const int code = transact([&](const nlmsghdr* m) {
    if (m->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(m) < sizeof(ifaddrmsg))
      return;
    const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(m));
    if (ifa->ifa_index != index)
      return;
    attr_table<IFA_MAX + 1> tb;
    mnl_attr_parse(m, sizeof(ifaddrmsg), attr_table<IFA_MAX + 1>::collect, &tb);
    // IPv4 names the local address IFA_LOCAL (IFA_ADDRESS may be a peer);
    // IPv6 sends IFA_ADDRESS alone.
    auto p = get_prefix(tb[IFA_LOCAL] != nullptr ? tb[IFA_LOCAL] : tb[IFA_ADDRESS], ifa->ifa_family,
                        ifa->ifa_prefixlen);
    if (p)
      out.push_back({index, *p});
  });
  if (code != 0)
    return expected<std::vector<address>>::failure("cannot list addresses: " + errno_text(code));
  return out;
}

namespace {

void put_route(nlmsghdr* nlh, const route& r, bool add) {
  auto* rtm = extra<rtmsg>(nlh);
  rtm->rtm_family = static_cast<std::uint8_t>(r.family);
  rtm->rtm_dst_len = static_cast<std::uint8_t>(r.dst.length);
  rtm->rtm_table = r.table < 256 ? static_cast<std::uint8_t>(r.table) : std::uint8_t{RT_TABLE_UNSPEC};
  rtm->rtm_protocol = r.protocol;
  // A route through a device without a gateway is on-link; a delete with
  // scope "nowhere" matches any scope.
  rtm->rtm_scope = add ? RT_SCOPE_LINK : RT_SCOPE_NOWHERE;
  rtm->rtm_type = RTN_UNICAST;
  mnl_attr_put_u32(nlh, RTA_TABLE, r.table);
  if (r.dst.length > 0)
    put_prefix(nlh, RTA_DST, r.dst);
  if (r.oif != 0)
    mnl_attr_put_u32(nlh, RTA_OIF, r.oif);
}

} // namespace

expected<bool> rtnl::add_route(const route& r) {
  nlmsghdr* nlh = start(buf_, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ++seq_);
  put_route(nlh, r, true);
  return change("add route " + r.describe());
}

expected<bool> rtnl::delete_route(const route& r) {
  nlmsghdr* nlh = start(buf_, RTM_DELROUTE, NLM_F_ACK, ++seq_);
  put_route(nlh, r, false);
  return change("delete route " + r.describe());
}

expected<std::vector<route>> rtnl::routes(int family, std::uint8_t protocol) {
  nlmsghdr* nlh = start(buf_, RTM_GETROUTE, NLM_F_DUMP, ++seq_);
  extra<rtmsg>(nlh)->rtm_family = static_cast<std::uint8_t>(family);
  std::vector<route> out;
  const int code = transact([&](const nlmsghdr* m) {
    if (m->nlmsg_type != RTM_NEWROUTE || mnl_nlmsg_get_payload_len(m) < sizeof(rtmsg))
      return;
    const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(m));
    if (rtm->rtm_protocol != protocol || rtm->rtm_family != family)
      return;
    attr_table<RTA_MAX + 1> tb;
    mnl_attr_parse(m, sizeof(rtmsg), attr_table<RTA_MAX + 1>::collect, &tb);
    route r;
    r.family = family;
    r.protocol = rtm->rtm_protocol;
    r.table = get_u32(tb[RTA_TABLE]).value_or(rtm->rtm_table);
    r.oif = get_u32(tb[RTA_OIF]).value_or(0);
    r.dst = rtm->rtm_dst_len == 0 ? ip_prefix::any(family)
                                  : get_prefix(tb[RTA_DST], family, rtm->rtm_dst_len).value_or(ip_prefix::any(family));
    out.push_back(r);
  });
  if (code != 0)
    return expected<std::vector<route>>::failure("cannot list " + family_name(family) + " routes: " + errno_text(code));
  return out;
}

namespace {

void put_rule(nlmsghdr* nlh, const rule& r) {
  auto* frh = extra<fib_rule_hdr>(nlh);
  frh->family = static_cast<std::uint8_t>(r.family);
  frh->dst_len = r.dst ? static_cast<std::uint8_t>(r.dst->length) : 0;
  frh->table = r.table < 256 ? static_cast<std::uint8_t>(r.table) : std::uint8_t{RT_TABLE_UNSPEC};
  frh->action = FR_ACT_TO_TBL;
  frh->flags = r.invert ? FIB_RULE_INVERT : 0;
  mnl_attr_put_u32(nlh, FRA_PRIORITY, r.priority);
  mnl_attr_put_u32(nlh, FRA_TABLE, r.table);
  if (r.fwmark) {
    mnl_attr_put_u32(nlh, FRA_FWMARK, *r.fwmark);
    mnl_attr_put_u32(nlh, FRA_FWMASK, r.fwmask);
  }
  if (r.dst)
    put_prefix(nlh, FRA_DST, *r.dst);
  if (r.suppress_prefixlength)
    mnl_attr_put_u32(nlh, FRA_SUPPRESS_PREFIXLEN, *r.suppress_prefixlength);
  mnl_attr_put_u8(nlh, FRA_PROTOCOL, r.protocol);
}

} // namespace

expected<bool> rtnl::add_rule(const rule& r) {
  nlmsghdr* nlh = start(buf_, RTM_NEWRULE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ++seq_);
  put_rule(nlh, r);
  return change("add rule " + r.describe());
}

expected<bool> rtnl::delete_rule(const rule& r) {
  nlmsghdr* nlh = start(buf_, RTM_DELRULE, NLM_F_ACK, ++seq_);
  put_rule(nlh, r);
  return change("delete rule " + r.describe());
}

expected<std::vector<rule>> rtnl::rules(int family, std::uint8_t protocol) {
  nlmsghdr* nlh = start(buf_, RTM_GETRULE, NLM_F_DUMP, ++seq_);
  extra<fib_rule_hdr>(nlh)->family = static_cast<std::uint8_t>(family);
  std::vector<rule> out;
  const int code = transact([&](const nlmsghdr* m) {
    if (m->nlmsg_type != RTM_NEWRULE || mnl_nlmsg_get_payload_len(m) < sizeof(fib_rule_hdr))
      return;
    const auto* frh = static_cast<const fib_rule_hdr*>(mnl_nlmsg_get_payload(m));
    attr_table<FRA_MAX + 1> tb;
    mnl_attr_parse(m, sizeof(fib_rule_hdr), attr_table<FRA_MAX + 1>::collect, &tb);
    if (frh->family != family || get_u8(tb[FRA_PROTOCOL]).value_or(0) != protocol)
      return;
    rule r;
    r.family = family;
    r.protocol = protocol;
    r.priority = get_u32(tb[FRA_PRIORITY]).value_or(0);
    r.table = get_u32(tb[FRA_TABLE]).value_or(frh->table);
    r.invert = (frh->flags & FIB_RULE_INVERT) != 0;
    r.fwmark = get_u32(tb[FRA_FWMARK]);
    r.fwmask = get_u32(tb[FRA_FWMASK]).value_or(0xffffffff);
    if (frh->dst_len > 0)
      r.dst = get_prefix(tb[FRA_DST], family, frh->dst_len);
    // The kernel sends -1 for "not set".
    r.suppress_prefixlength = get_u32(tb[FRA_SUPPRESS_PREFIXLEN]);
    if (r.suppress_prefixlength == 0xffffffff)
      r.suppress_prefixlength.reset();
    out.push_back(r);
  });
  if (code != 0)
    return expected<std::vector<rule>>::failure("cannot list " + family_name(family) + " rules: " + errno_text(code));
  return out;
}

} // namespace warren::tun
