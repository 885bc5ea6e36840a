// The one translation unit that compiles Beast and Asio's SSL implementation
// (BOOST_BEAST_SEPARATE_COMPILATION), so transport/*.cpp include headers only.
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
