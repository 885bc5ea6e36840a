// One unit in the foreground: what `warren relay|server|client` do once
// their arguments are checked. One io_context on this thread, the unit on
// it, and the signals a command-line program answers:
//   SIGTERM/SIGINT  "KIND: SIGTERM received<stop_announcement>"; stop()
//                   with the unit's drain bound; the program ends when the
//                   unit has stopped.
//   a second one    abandon(): everything still open is reset, and
//                   "KIND: stopped (second signal: open streams reset)" is
//                   the last line.
//   SIGHUP          reload("SIGHUP received"), which logs. Ignored until
//                   the unit's prepare() has read its files (a server's
//                   certificate and users), never the end of the program;
//                   from then on queued, and a reload once the unit runs.
// The daemon runs units through the same interface, so a unit behaves the
// same under both.
#pragma once

#include "unit/unit.hpp"

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>

namespace warren::unit {

/// Builds the unit on the executor it is given.
using unit_factory = std::function<std::unique_ptr<unit>(boost::asio::any_io_executor)>;

/// Runs the unit `make` builds until a signal stops it. Returns 0 (the exit
/// code), or the sentence to end the program with when the unit could not
/// start or failed while running.
expected<int> run_foreground(const unit_factory& make);

} // namespace warren::unit
