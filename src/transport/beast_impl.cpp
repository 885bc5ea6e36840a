// The one translation unit that compiles Beast (BOOST_BEAST_SEPARATE_COMPILATION),
// so transport/*.cpp include headers only. Asio's SSL part is in asio_ssl_impl.cpp.
#include <boost/beast/src.hpp>
