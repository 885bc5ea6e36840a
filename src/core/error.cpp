#include "core/error.hpp"

#include <string>

namespace warren {
namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "warren"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
    case errc::ok:
      return "success";
    case errc::timed_out:
      return "timed out";
    case errc::no_addresses:
      return "no usable address";
    case errc::nothing_bound:
      return "no listen address could be bound";
    case errc::policy_excludes_all:
      return "the address family policy excludes every address";
    case errc::cancelled:
      return "cancelled";
    case errc::denied:
      return "denied by policy";
    }
    return "unknown warren error";
  }
};

} // namespace

const boost::system::error_category& warren_category() noexcept {
  static const category instance;
  return instance;
}

} // namespace warren
