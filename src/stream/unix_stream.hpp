// byte_stream over a Unix stream socket (the daemon's control socket, `warren
// ctl`). The same shape as the TCP adapter, without its zero-copy fast paths:
// control traffic is small messages, not bulk data.
#pragma once

#include "stream/byte_stream.hpp"

#include <boost/asio/local/stream_protocol.hpp>

namespace warren::stream {

byte_stream_ptr make_unix_stream(boost::asio::local::stream_protocol::socket socket, std::string description);

} // namespace warren::stream
