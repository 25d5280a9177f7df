// Internals of the C ABI: the structs behind the opaque handles and the one helper that turns
// C++ exceptions into status codes (DESIGN.md §8), so no exception crosses the boundary.
#pragma once

#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "core/ingot.h"
#include "ingot/ingot.h"

struct ingot_array_s {
  ingot::Array a;
};
struct ingot_array_list_s {
  std::vector<ingot::Array> v;
};
struct ingot_closure_s {
  ingot::ArrayFn fn;
};
struct ingot_named_arrays_s {
  std::map<std::string, ingot::Array> m;
};

namespace ingot::capi {

/// Thrown inside the library when a user callback returned nonzero; maps to
/// INGOT_ERR_CALLBACK with the message the callback set (or a generic one).
struct CallbackFailed : std::exception {
  std::string msg;
  explicit CallbackFailed(std::string m) : msg(std::move(m)) {}
  const char* what() const noexcept override { return msg.c_str(); }
};

/// Records `msg` as this thread's last error.
void set_error(const std::string& msg);
/// Clears this thread's last error.
void clear_error();
/// This thread's last error message (set by ingot_set_error from a callback).
const std::string& error_message();
/// Maps the exception in flight to a status code and records its message.
int translate_current_exception() noexcept;

/// Runs f, returning INGOT_OK or the status of what it threw. Never throws.
template <typename F>
int guard(F&& f) noexcept {
  try {
    f();
    clear_error();
    return INGOT_OK;
  } catch (...) {
    return translate_current_exception();
  }
}

/// The array behind a handle; InvalidArgument "[capi] <what>: null array handle" for NULL.
const Array& arr(ingot_array h, const char* what);
/// Optional array: nullopt for NULL.
std::optional<Array> opt_arr(ingot_array h);
/// Writes a new handle for `a` to *out (InvalidArgument when out is NULL).
void put(ingot_array* out, Array a);
/// Checks an output pointer is not NULL.
void need_out(const void* out, const char* what);
/// Converts a C dtype value; InvalidArgument for values outside the enum.
Dtype to_dtype(int dtype);
/// Converts a C device; InvalidArgument for an unknown type or negative index.
Device to_device(ingot_device d);
ingot_device from_device(Device d);
/// Shape from a C array (ndim >= 0; shape may be NULL only when ndim == 0).
Shape to_shape(const int64_t* shape, int ndim);
/// Axis list from a C array.
std::vector<int> to_axes(const int* axes, int n);
/// Arrays from a C array of handles (none NULL).
std::vector<Array> to_arrays(const ingot_array* a, size_t n, const char* what);
/// Copies a string to malloc'd memory (freed by ingot_free).
char* dup_string(const std::string& s);
/// Copies ids to malloc'd memory (freed by ingot_free; NULL for none).
int32_t* dup_ids(const std::vector<int32_t>& ids);

}  // namespace ingot::capi
