// The routing plan, its application and its undo (see routing.hpp).
#include "tun/routing.hpp"

#include "tun/connmark.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace warren::tun {

namespace {

std::string table_text(std::uint32_t t) {
  return t == 254 ? "main" : std::to_string(t);
}

step route_step(int family, const ip_prefix& dst, std::uint32_t table) {
  step s;
  s.kind = step_kind::add_route;
  s.rt.family = family;
  s.rt.dst = dst;
  s.rt.table = table;
  return s;
}

step rule_step(rule r) {
  step s;
  s.kind = step_kind::add_rule;
  s.ru = std::move(r);
  return s;
}

} // namespace

std::string step::describe(const std::string& device) const {
  switch (kind) {
  case step_kind::set_mtu:
    return "set MTU " + std::to_string(mtu) + " on " + device;
  case step_kind::add_address:
    return "add address " + address.str() + " to " + device;
  case step_kind::set_up:
    return "bring " + device + " up";
  case step_kind::add_route:
    return "add route " + rt.dst.str() + " dev " + device + " table " + table_text(rt.table) + " (" +
           family_name(rt.family) + ")";
  case step_kind::add_rule:
    return "add rule " + ru.describe();
  case step_kind::src_valid_mark:
    return "set net.ipv4.conf.all.src_valid_mark=1 if rp_filter is strict";
  }
  return "?";
}

expected<plan> make_plan(const routing_options& o) {
  using result = expected<plan>;
  if (o.device.empty())
    return result::failure("the routing plan needs a device name");
  if (o.mtu != 0 && (o.mtu < 576 || o.mtu > 65535))
    return result::failure("--mtu " + std::to_string(o.mtu) + " is out of range (576-65535)");
  plan p;
  p.device = o.device;
  p.default_route = o.default_route;
  p.fwmark = o.fwmark;
  if (o.mtu != 0) {
    step s;
    s.kind = step_kind::set_mtu;
    s.mtu = o.mtu;
    p.steps.push_back(s);
  }
  for (const auto& a : o.addresses) {
    if (a.family == AF_INET6 && o.mtu != 0 && o.mtu < 1280)
      return result::failure("IPv6 address " + a.str() + " needs --mtu 1280 or more");
    step s;
    s.kind = step_kind::add_address;
    s.address = a;
    p.steps.push_back(s);
  }
  if (o.set_up)
    p.steps.push_back(step{});
  for (const auto& r : o.routes)
    p.steps.push_back(route_step(r.family, r, 254));
  if (!o.default_route) {
    if (!o.excludes.empty())
      return result::failure("--exclude only means something with --default-route");
    return p;
  }
  if (o.priority < 3 || o.priority > 32765)
    return result::failure("rule priority " + std::to_string(o.priority) +
                           " is out of range (3-32765: its three rules sit before the main table's 32766)");
  if (o.table == 0 || (o.table >= 253 && o.table <= 255))
    return result::failure("table " + std::to_string(o.table) + " is reserved (0, 253 default, 254 main, 255 local)");
  if ((o.fwmark & o.fwmask) != o.fwmark || o.fwmark == 0)
    return result::failure("the mark must be non-zero and inside its mask");
  for (const int family : {AF_INET, AF_INET6})
    p.steps.push_back(route_step(family, ip_prefix::any(family), o.table));
  for (const int family : {AF_INET, AF_INET6}) {
    for (const auto& x : o.excludes) {
      if (x.family != family)
        continue;
      rule r;
      r.family = family;
      r.priority = o.priority - 2;
      r.table = 254;
      r.dst = x;
      p.steps.push_back(rule_step(r));
    }
    rule suppress;
    suppress.family = family;
    suppress.priority = o.priority - 1;
    suppress.table = 254;
    suppress.suppress_prefixlength = 0;
    p.steps.push_back(rule_step(suppress));
    rule marked;
    marked.family = family;
    marked.priority = o.priority;
    marked.table = o.table;
    marked.fwmark = o.fwmark;
    marked.fwmask = o.fwmask;
    marked.invert = true;
    p.steps.push_back(rule_step(marked));
  }
  step s;
  s.kind = step_kind::src_valid_mark;
  p.steps.push_back(s);
  return p;
}

std::optional<std::string> read_sysctl(const std::string& proc_sys, const std::string& key) {
  std::ifstream in(proc_sys + "/" + key);
  std::string v;
  if (!in || !std::getline(in, v))
    return std::nullopt;
  return v;
}

expected<bool> write_sysctl(const std::string& proc_sys, const std::string& key, const std::string& value) {
  const std::string path = proc_sys + "/" + key;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_TRUNC);
  if (fd < 0)
    return expected<bool>::failure("cannot open " + path + ": " + std::strerror(errno));
  const std::string line = value + "\n";
  const auto n = ::write(fd, line.data(), line.size());
  const int code = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(line.size()))
    return expected<bool>::failure("cannot write " + path + ": " + std::strerror(code));
  return true;
}

bool rp_filter_strict(const std::string& proc_sys) {
  const std::string conf = proc_sys + "/net/ipv4/conf";
  const auto value = [&](const std::string& dev) {
    const auto v = read_sysctl(proc_sys, "net/ipv4/conf/" + dev + "/rp_filter");
    return v ? std::atoi(v->c_str()) : 0;
  };
  const int all = value("all");
  DIR* d = ::opendir(conf.c_str());
  if (d == nullptr)
    return all == 1;
  bool strict = false;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || name == "all")
      continue;
    if (std::max(all, value(name)) == 1)
      strict = true;
  }
  ::closedir(d);
  return strict;
}

namespace {

// Runs one step; the undo of a failed apply and undo() share the inverse.
expected<bool> do_step(rtnl& nl, const step& s, unsigned ifindex) {
  switch (s.kind) {
  case step_kind::set_mtu:
    return nl.set_mtu(ifindex, s.mtu);
  case step_kind::add_address:
    return nl.add_address(ifindex, s.address);
  case step_kind::set_up:
    return nl.set_up(ifindex);
  case step_kind::add_route: {
    route r = s.rt;
    r.oif = ifindex;
    return nl.add_route(r);
  }
  case step_kind::add_rule:
    return nl.add_rule(s.ru);
  case step_kind::src_valid_mark:
    return true; // apply() handles it: it needs the old value
  }
  return true;
}

bool already_gone(int code) {
  return code == ENOENT || code == ESRCH || code == ENODEV || code == EADDRNOTAVAIL;
}

} // namespace

expected<applied> apply(rtnl& nl, const plan& p, const std::string& proc_sys,
                        const std::function<void(const std::string&)>& before_sysctl) {
  using result = expected<applied>;
  auto l = nl.link(p.device);
  if (!l)
    return result::failure(l.error());
  applied a;
  a.device = p.device;
  a.ifindex = l->index;
  for (const auto& s : p.steps) {
    if (s.kind == step_kind::src_valid_mark) {
      const auto old = read_sysctl(proc_sys, k_src_valid_mark);
      if (old && *old != "1" && rp_filter_strict(proc_sys)) {
        if (before_sysctl)
          before_sysctl(*old);
        auto w = write_sysctl(proc_sys, k_src_valid_mark, "1");
        if (!w) {
          undo(nl, a, proc_sys);
          return result::failure(w.error());
        }
        a.old_src_valid_mark = *old;
      }
      // The replies to marked connections carry the mark again (connmark.hpp).
      if (p.default_route && rp_filter_strict(proc_sys)) {
        if (auto c = add_connmark(p.device, p.fwmark); !c) {
          undo(nl, a, proc_sys);
          return result::failure(c.error());
        }
        a.connmark = true;
      }
      a.done.push_back(s);
      continue;
    }
    auto r = do_step(nl, s, a.ifindex);
    if (!r) {
      undo(nl, a, proc_sys);
      return result::failure(r.error());
    }
    a.done.push_back(s);
  }
  return a;
}

std::vector<std::string> undo(rtnl& nl, applied& a, const std::string& proc_sys) {
  std::vector<std::string> errors;
  for (auto it = a.done.rbegin(); it != a.done.rend(); ++it) {
    expected<bool> r = true;
    switch (it->kind) {
    case step_kind::add_route: {
      route rt = it->rt;
      rt.oif = a.ifindex;
      r = nl.delete_route(rt);
      break;
    }
    case step_kind::add_rule:
      r = nl.delete_rule(it->ru);
      break;
    case step_kind::add_address:
      r = nl.delete_address(a.ifindex, it->address);
      break;
    case step_kind::src_valid_mark:
      if (a.connmark) {
        if (auto c = delete_connmark(a.device); !c)
          errors.push_back(c.error());
        a.connmark = false;
      }
      if (a.old_src_valid_mark) {
        r = write_sysctl(proc_sys, k_src_valid_mark, *a.old_src_valid_mark);
        a.old_src_valid_mark.reset();
      }
      break;
    case step_kind::set_mtu:
    case step_kind::set_up:
      break;
    }
    if (!r && !(it->kind != step_kind::src_valid_mark && already_gone(nl.last_errno())))
      errors.push_back(r.error());
  }
  a.done.clear();
  return errors;
}

} // namespace warren::tun
