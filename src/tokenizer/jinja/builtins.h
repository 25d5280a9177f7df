// Builtin filters, tests, value methods and global functions of the Jinja engine, with
// jinja2's (and Python's) semantics.
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace ingot::jinja {

/// Evaluated call arguments: positional then keyword.
struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  /// The argument at position `i` or keyword `name`, else `def`.
  Value get(size_t i, const char* name, Value def = Value::undefined()) const;
  bool has(size_t i, const char* name) const;
};

/// Applies filter `name` (throws FormatError for unknown filters or bad input).
Value call_filter(const std::string& name, const Value& v, Args& args);
/// Evaluates test `name`.
bool call_test(const std::string& name, const Value& v, Args& args);
/// Calls Python method `name` of `obj` (str, dict and list methods), or nullopt if none exists.
std::optional<Value> call_method(const Value& obj, const std::string& name, Args& args);
/// True when `name` is a method of `obj`'s type (so `obj.name` is a bound method).
bool has_method(const Value& obj, const std::string& name);
/// Global functions: range, namespace, dict, raise_exception, strftime_now.
Value make_global(const std::string& name, std::optional<std::time_t> now);

/// Python str methods used by filters and methods.
std::string py_strip(const std::string& s, bool left, bool right, const Value& chars);
/// A string of ASCII digits as an index; SIZE_MAX (out of every range) when it does not fit.
size_t digits_to_index(const std::string& digits);
std::vector<char32_t> code_points(const std::string& s);
std::string from_code_points(const std::vector<char32_t>& cps, size_t b, size_t e);

}  // namespace ingot::jinja
