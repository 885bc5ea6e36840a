// Socket marks (SO_MARK) for warren's own upstream traffic. `warren tun
// --default-route` routes everything to the TUN except packets carrying the
// mark (policy rule `not fwmark M → TUN table`), so every socket warren opens
// for the upstream — each Happy Eyeballs attempt, the UDP relay socket, the
// resolver's DNS sockets — must carry it before its first packet leaves, i.e.
// before connect() or the first send.
//
// Setting SO_MARK needs CAP_NET_ADMIN; without it the kernel answers EPERM,
// and that is an error here (a socket silently unmarked would loop into the
// TUN), with a sentence that says what to do.
#pragma once

#include "core/error.hpp"

#include <cstdint>
#include <string>

namespace warren::net {

/// setsockopt(SOL_SOCKET, SO_MARK, mark) on `fd`; the errno as an error_code.
error_code set_socket_mark(int fd, std::uint32_t mark);

/// getsockopt(SOL_SOCKET, SO_MARK): the socket's mark (0 when none), for
/// tests and diagnostics. Reading a mark needs no privilege.
error_code get_socket_mark(int fd, std::uint32_t& mark);

/// "cannot set the socket mark 0x2a (SO_MARK): operation not permitted —
/// it needs CAP_NET_ADMIN (run as root or grant the capability)", or the
/// plain reason for other errors.
std::string describe_mark_failure(std::uint32_t mark, const error_code& ec);

/// SO_BINDTODEVICE `name` on `fd` (empty: nothing to do).
error_code bind_to_device(int fd, const std::string& name);

} // namespace warren::net
