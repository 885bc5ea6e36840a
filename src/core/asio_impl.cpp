// The one translation unit that compiles Asio's implementation
// (BOOST_ASIO_SEPARATE_COMPILATION): every other file includes only headers,
// which keeps incremental builds short.
#include <boost/asio/impl/src.hpp>
