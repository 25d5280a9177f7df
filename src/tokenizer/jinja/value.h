// Values of the Jinja engine: Python-like None/bool/int/float/str/list/tuple/dict plus
// Undefined and callables, with Python's str()/repr(), truthiness, comparison and json.dumps.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace ingot::jinja {

using ordered_json = nlohmann::ordered_json;

struct Value;
struct Args;
using List = std::vector<Value>;

/// Insertion-ordered dict with string keys (Python dict semantics for templates).
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

/// A builtin or macro: called with evaluated arguments.
using Function = std::function<Value(Args&)>;

/// A dynamically typed template value.
struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Function };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                 // String; for Undefined: the missing name (for messages)
  std::shared_ptr<List> list;    // List (shared: Python reference semantics)
  std::shared_ptr<Dict> dict;    // Dict / namespace
  std::shared_ptr<Function> fn;  // Function
  bool tuple = false;            // List printed as a tuple
  bool namespace_ = false;       // Dict created by namespace(): attributes are assignable

  static Value undefined(std::string name = {}) {
    Value v;
    v.s = std::move(name);
    return v;
  }
  static Value none() { return with(Kind::None); }
  static Value boolean(bool x) {
    Value v = with(Kind::Bool);
    v.b = x;
    return v;
  }
  static Value integer(int64_t x) {
    Value v = with(Kind::Int);
    v.i = x;
    return v;
  }
  static Value number(double x) {
    Value v = with(Kind::Float);
    v.f = x;
    return v;
  }
  static Value string(std::string x) {
    Value v = with(Kind::String);
    v.s = std::move(x);
    return v;
  }
  static Value make_list(List items = {}, bool is_tuple = false) {
    Value v = with(Kind::List);
    v.list = std::make_shared<List>(std::move(items));
    v.tuple = is_tuple;
    return v;
  }
  static Value make_dict(Dict d = {}) {
    Value v = with(Kind::Dict);
    v.dict = std::make_shared<Dict>(std::move(d));
    return v;
  }
  static Value function(Function f) {
    Value v = with(Kind::Function);
    v.fn = std::make_shared<Function>(std::move(f));
    return v;
  }

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  bool is_list() const { return kind == Kind::List; }
  bool is_dict() const { return kind == Kind::Dict; }
  double as_double() const { return kind == Kind::Float ? f : static_cast<double>(as_int()); }
  int64_t as_int() const {
    return kind == Kind::Bool ? (b ? 1 : 0) : kind == Kind::Int ? i : float_to_int(f);
  }
  /// Truncates toward zero like Python's int(), saturating instead of overflowing (NaN -> 0), so
  /// that no template can reach undefined behaviour through a float-to-int conversion.
  static int64_t float_to_int(double d) {
    if (!(d == d)) return 0;
    if (d >= 9.2233720368547758e18) return INT64_MAX;
    if (d <= -9.2233720368547758e18) return INT64_MIN;
    return static_cast<int64_t>(d);
  }

  /// Python truthiness (Undefined is false).
  bool truthy() const;
  /// Python str(): what `{{ v }}` prints.
  std::string str() const;
  /// Python repr().
  std::string repr() const;
  /// Python type name for messages ("dict object", ...).
  std::string type_name() const;

 private:
  static Value with(Kind k) {
    Value v;
    v.kind = k;
    return v;
  }
};

/// Python ==.
bool equals(const Value& a, const Value& b);
/// Python <; throws on unorderable types.
bool less(const Value& a, const Value& b);

/// Converts parsed JSON (keeping key order) into a Value, and back.
Value from_json(const ordered_json& j);
/// json.dumps(v, ensure_ascii, indent, separators, sort_keys) as Python writes it.
struct DumpOptions {
  bool ensure_ascii = false;
  int indent = -1;         ///< -1: None
  std::string indent_str;  ///< used when set (indent given as a string)
  bool indent_is_str = false;
  std::string item_sep, key_sep;  ///< empty: Python's defaults
  bool sort_keys = false;
};
std::string dumps(const Value& v, const DumpOptions& opts);

/// Python repr() of a float.
std::string float_repr(double d);

}  // namespace ingot::jinja
