// expected<T>: a value, or a sentence saying what went wrong and where,
// ready for the user. Parsers and start-up steps (binding) return this instead
// of throwing, so callers decide how an error reaches the user.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace warren {

template <class T>
class expected {
 public:
  expected(T value) : value_(std::move(value)) {} // NOLINT(google-explicit-constructor)
  static expected failure(std::string message) {
    expected r;
    r.error_ = std::move(message);
    return r;
  }

  explicit operator bool() const noexcept { return value_.has_value(); }
  const T& value() const& { return *value_; }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T* operator->() const { return &*value_; }
  const T& operator*() const { return *value_; }
  const std::string& error() const noexcept { return error_; }

 private:
  expected() = default;
  std::optional<T> value_;
  std::string error_;
};

} // namespace warren
