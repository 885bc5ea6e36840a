// The one translation unit that compiles Asio's SSL implementation
// (BOOST_ASIO_SEPARATE_COMPILATION; Beast's is in beast_impl.cpp), in
// warren_tls so that the TLS engine links without Beast.
#include <boost/asio/ssl/impl/src.hpp>
