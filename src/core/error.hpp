// warren's own error codes (one category, like Beast's one enum per module),
// used alongside Asio's system errors. Errors on the data path are values.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace warren {

using error_code = boost::system::error_code;

enum class errc {
  ok = 0,
  timed_out = 1,       // the overall connect deadline passed
  no_addresses,        // the name resolved to no address of an allowed family
  nothing_bound,       // no listen address could be bound
  policy_excludes_all, // family policy / source address excluded every address
  cancelled,           // the caller cancelled the operation
  denied,              // the destination policy rejected every address
};

const boost::system::error_category& warren_category() noexcept;

inline error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), warren_category()};
}

} // namespace warren

template <>
struct boost::system::is_error_code_enum<warren::errc> : std::true_type {};
