// systemd's readiness protocol (sd_notify(3), "the documented datagram
// protocol"): one datagram of "KEY=VALUE" lines to the Unix socket named by
// $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). Without
// the variable nothing is sent. Failures are returned, never thrown: a
// daemon keeps running when its supervisor cannot be told.
#pragma once

#include <string>
#include <string_view>

namespace warren::daemon {

/// Sends `state` ("READY=1", "STOPPING=1", ...) to $NOTIFY_SOCKET. Returns
/// an empty string when sent or when there is nowhere to send, else why not.
std::string sd_notify(std::string_view state);

/// "RELOADING=1\nMONOTONIC_USEC=N": a reload begins (systemd >= 253 wants
/// the time, CLOCK_MONOTONIC in microseconds; older ones ignore it). READY=1
/// ends it.
std::string reloading_state();

} // namespace warren::daemon
