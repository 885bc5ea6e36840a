// byte_stream over a plain TCP socket.
#pragma once

#include "stream/byte_stream.hpp"

#include <boost/asio/ip/tcp.hpp>

namespace warren::stream {

byte_stream_ptr make_tcp_stream(boost::asio::ip::tcp::socket socket, std::string description);

} // namespace warren::stream
