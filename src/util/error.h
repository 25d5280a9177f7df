// Exception hierarchy of ingot (DESIGN.md §8). Messages start with "[component]" and name the
// shapes, dtypes, paths or keys at fault.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace ingot {

/// Base of every error ingot throws on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
/// The caller passed something invalid (shape, dtype, axis, index, option).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};
/// A file could not be opened, read or written; the message names the path.
class IoError : public Error {
 public:
  using Error::Error;
};
/// A file or string is corrupt or in an unsupported format; the message says what and where.
class FormatError : public Error {
 public:
  using Error::Error;
};
/// An allocation exceeded the memory limit or the device's memory.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};
/// A feature is not available in this build or for this input.
class Unsupported : public Error {
 public:
  using Error::Error;
};
/// A device (CUDA) call failed; the message holds the call's text.
class DeviceError : public Error {
 public:
  using Error::Error;
};

/// Throws E with a fmt-formatted message.
template <typename E = InvalidArgument, typename... Args>
[[noreturn]] void raise(fmt::format_string<Args...> f, Args&&... args) {
  throw E(fmt::format(f, std::forward<Args>(args)...));
}

[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace ingot

/// Internal invariant: never for validating user input (throws ingot::Error, never aborts).
#define INGOT_ASSERT(cond, ...)                                                             \
  do {                                                                                      \
    if (!(cond)) ::ingot::assert_fail(#cond, __FILE__, __LINE__, std::string{__VA_ARGS__}); \
  } while (0)
