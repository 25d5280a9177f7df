// Builtin filters, tests, methods and globals of the Jinja engine (see builtins.h).
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/text.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>

#include <utf8proc.h>

#include "tokenizer/jinja/lexer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace ingot::jinja {

Value Args::get(size_t i, const char* name, Value def) const {
  if (i < pos.size()) return pos[i];
  for (auto& [k, v] : kw)
    if (k == name) return v;
  return def;
}

bool Args::has(size_t i, const char* name) const {
  if (i < pos.size()) return true;
  return std::any_of(kw.begin(), kw.end(), [&](auto& kv) { return kv.first == name; });
}

std::vector<char32_t> code_points(const std::string& s) {
  std::vector<char32_t> v;
  v.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) v.push_back(utf8::next(s, i));
  return v;
}

std::string from_code_points(const std::vector<char32_t>& cps, size_t b, size_t e) {
  std::string out;
  for (size_t k = b; k < e && k < cps.size(); ++k) utf8::append(out, cps[k]);
  return out;
}

namespace detail {

[[noreturn]] void err(const std::string& m) {
  raise<FormatError>("{}", m);
}

const std::string& need_str(const Value& v, const char* what) {
  if (!v.is_string()) err(fmt::format("{} expects a string, got {}", what, v.type_name()));
  return v.s;
}

char32_t upper_cp(char32_t c) {
  return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c)));
}
char32_t lower_cp(char32_t c) {
  return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
}
bool is_cased_letter(char32_t c) {
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

std::string map_case(const std::string& s, bool upper) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    char32_t c = utf8::next(s, i);
    if (upper && c == 0xDF) {  // 'ß'.upper() == 'SS'
      out += "SS";
      continue;
    }
    utf8::append(out, upper ? upper_cp(c) : lower_cp(c));
  }
  return out;
}

std::string capitalize(const std::string& s) {
  auto cps = code_points(s);
  std::string out;
  for (size_t k = 0; k < cps.size(); ++k)
    utf8::append(out, k == 0 ? upper_cp(cps[k]) : lower_cp(cps[k]));
  return out;
}

// Python str.title(): a cased letter after a non-letter starts a word.
std::string py_title(const std::string& s) {
  std::string out;
  bool prev_cased = false;
  for (char32_t c : code_points(s)) {
    utf8::append(out, prev_cased ? lower_cp(c) : upper_cp(c));
    prev_cased = is_cased_letter(c);
  }
  return out;
}

// jinja2's title filter: words begin after runs of [-\s({[<].
std::string jinja_title(const std::string& s) {
  std::string out;
  bool start = true;
  for (char32_t c : code_points(s)) {
    bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
    if (sep) {
      utf8::append(out, c);
      start = true;
    } else {
      utf8::append(out, start ? upper_cp(c) : lower_cp(c));
      start = false;
    }
  }
  return out;
}

std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep.is_undefined() || sep.is_none()) {
    auto cps = code_points(s);
    size_t k = 0, n = cps.size();
    while (true) {
      while (k < n && py_isspace(cps[k])) ++k;
      if (k >= n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = n;
        while (e > k && py_isspace(cps[e - 1])) --e;
        out.push_back(from_code_points(cps, k, e));
        break;
      }
      size_t b = k;
      while (k < n && !py_isspace(cps[k])) ++k;
      out.push_back(from_code_points(cps, b, k));
    }
    return out;
  }
  const std::string& d = need_str(sep, "split");
  if (d.empty()) err("empty separator");
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(d, pos);
    if (hit == std::string::npos ||
        (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit)) {
      out.push_back(s.substr(pos));
      break;
    }
    out.push_back(s.substr(pos, hit - pos));
    pos = hit + d.size();
  }
  return out;
}

std::string replace_str(const std::string& s, const std::string& a, const std::string& b,
                        int64_t count) {
  std::string out;
  if (a.empty()) {  // Python inserts `b` between every character
    auto cps = code_points(s);
    int64_t done = 0;
    for (size_t k = 0; k <= cps.size(); ++k) {
      if (count < 0 || done < count) out += b, ++done;
      if (k < cps.size()) utf8::append(out, cps[k]);
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(a, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += b;
    pos = hit + a.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

Value list_of_strings(const std::vector<std::string>& v) {
  List l;
  for (auto& s : v) l.push_back(Value::string(s));
  return Value::make_list(std::move(l));
}

std::vector<Value> items_of(const Value& v) {
  if (v.is_list()) return *v.list;
  if (v.is_dict()) {
    std::vector<Value> keys;
    for (auto& [k, x] : v.dict->items) keys.push_back(Value::string(k));
    return keys;
  }
  if (v.is_string()) {
    std::vector<Value> out;
    auto cps = code_points(v.s);
    for (size_t k = 0; k < cps.size(); ++k)
      out.push_back(Value::string(from_code_points(cps, k, k + 1)));
    return out;
  }
  if (v.is_undefined()) return {};
  err(fmt::format("'{}' object is not iterable", v.type_name()));
}

int64_t length_of(const Value& v) {
  if (v.is_string()) return static_cast<int64_t>(utf8::count(v.s));
  if (v.is_list()) return static_cast<int64_t>(v.list->size());
  if (v.is_dict()) return static_cast<int64_t>(v.dict->items.size());
  if (v.is_undefined()) return 0;
  err(fmt::format("object of type '{}' has no len()", v.type_name()));
}

// Attribute lookup used by map/selectattr/sort(attribute=...): dotted paths and int indices.
Value attr_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t b = 0;
  while (b <= path.size()) {
    size_t e = path.find('.', b);
    if (e == std::string::npos) e = path.size();
    std::string part = path.substr(b, e - b);
    if (cur.is_dict()) {
      const Value* x = cur.dict->find(part);
      cur = x ? *x : Value::undefined(fmt::format("'dict object' has no attribute '{}'", part));
    } else if (cur.is_list() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
      size_t idx = digits_to_index(part);
      cur = idx < cur.list->size() ? (*cur.list)[idx] : Value::undefined();
    } else {
      cur = Value::undefined(fmt::format("'{}' has no attribute '{}'", cur.type_name(), part));
    }
    b = e + 1;
  }
  return cur;
}

// Sort key: strings compared case-insensitively unless case_sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
  if (v.is_string() && !case_sensitive) return Value::string(map_case(v.s, false));
  return v;
}

bool test_args(const Value& v, const std::string& test, Args& rest) {
  return call_test(test, v, rest);
}

// select/reject/selectattr/rejectattr.
Value select_impl(const Value& seq, Args& a, bool by_attr, bool keep) {
  size_t first = by_attr ? 1 : 0;
  std::string attr = by_attr ? need_str(a.get(0, "attribute"), "selectattr") : "";
  Value test_name = a.get(first, "test");
  Args rest;
  for (size_t k = first + 1; k < a.pos.size(); ++k) rest.pos.push_back(a.pos[k]);
  List out;
  for (auto& item : items_of(seq)) {
    Value x = by_attr ? attr_path(item, attr) : item;
    bool ok =
        test_name.is_undefined() ? x.truthy() : test_args(x, need_str(test_name, "select"), rest);
    if (ok == keep) out.push_back(item);
  }
  return Value::make_list(std::move(out));
}

std::vector<std::string> splitlines(const std::string& s) {
  std::vector<std::string> out;
  auto cps = code_points(s);
  size_t b = 0, k = 0;
  while (k < cps.size()) {
    char32_t c = cps[k];
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
               c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) {
      ++k;
      continue;
    }
    out.push_back(from_code_points(cps, b, k));
    if (c == '\r' && k + 1 < cps.size() && cps[k + 1] == '\n') ++k;
    b = ++k;
  }
  if (b < cps.size()) out.push_back(from_code_points(cps, b, cps.size()));
  return out;
}

std::string do_indent(std::string s, const Value& width, bool first, bool blank) {
  if (width.is_number() && (width.as_int() > (1 << 16) || width.as_int() < 0))
    err("indent width out of range");
  std::string ind =
      width.is_string() ? width.s : std::string(width.is_undefined() ? 4 : width.as_int(), ' ');
  s += "\n";
  auto lines = splitlines(s);
  std::string rv;
  if (blank) {
    for (size_t k = 0; k < lines.size(); ++k) rv += (k ? "\n" + ind : "") + lines[k];
  } else {
    rv = lines.empty() ? "" : lines[0];
    if (lines.size() > 1) {
      rv += "\n";
      for (size_t k = 1; k < lines.size(); ++k) {
        if (k > 1) rv += "\n";
        rv += lines[k].empty() ? lines[k] : ind + lines[k];
      }
    }
  }
  return first ? ind + rv : rv;
}

Value to_int(const Value& v, const Value& def) {
  if (v.is_number()) return Value::integer(v.as_int());
  if (v.is_string()) {
    try {
      size_t used = 0;
      std::string t = py_strip(v.s, true, true, Value::undefined());
      int64_t x = 0;
      auto r = std::from_chars(t.data(), t.data() + t.size(), x);
      if (r.ec == std::errc() && r.ptr == t.data() + t.size()) return Value::integer(x);
      double d = std::stod(t, &used);
      if (used == t.size()) return Value::integer(Value::float_to_int(d));
    } catch (const std::exception&) {
    }
  }
  return def.is_undefined() ? Value::integer(0) : def;
}

Value to_float(const Value& v, const Value& def) {
  if (v.is_number()) return Value::number(v.as_double());
  if (v.is_string()) {
    try {
      size_t used = 0;
      std::string t = py_strip(v.s, true, true, Value::undefined());
      double d = std::stod(t, &used);
      if (used == t.size()) return Value::number(d);
    } catch (const std::exception&) {
    }
  }
  return def.is_undefined() ? Value::number(0.0) : def;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace detail

using namespace detail;

size_t digits_to_index(const std::string& digits) {
  size_t v = 0;
  auto r = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  return r.ec == std::errc() && r.ptr == digits.data() + digits.size() ? v : SIZE_MAX;
}

std::string py_strip(const std::string& s, bool left, bool right, const Value& chars) {
  auto cps = code_points(s);
  std::vector<char32_t> set;
  bool ws = chars.is_undefined() || chars.is_none();
  if (!ws) set = code_points(need_str(chars, "strip"));
  auto strip_me = [&](char32_t c) {
    return ws ? py_isspace(c) : std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_me(cps[b])) ++b;
  if (right)
    while (e > b && strip_me(cps[e - 1])) --e;
  return from_code_points(cps, b, e);
}

Value call_filter(const std::string& name, const Value& v, Args& a) {
  if (name == "tojson") {
    DumpOptions o;
    o.ensure_ascii = a.get(0, "ensure_ascii", Value::boolean(false)).truthy();
    Value ind = a.get(1, "indent", Value::none());
    if (ind.is_string())
      o.indent_is_str = true, o.indent_str = ind.s;
    else if (ind.is_number())
      o.indent = static_cast<int>(ind.as_int());
    Value seps = a.get(2, "separators", Value::none());
    if (seps.is_list() && seps.list->size() == 2)
      o.item_sep = (*seps.list)[0].str(), o.key_sep = (*seps.list)[1].str();
    o.sort_keys = a.get(3, "sort_keys", Value::boolean(false)).truthy();
    return Value::string(dumps(v, o));
  }
  if (name == "safe" || name == "string") return name == "safe" ? v : Value::string(v.str());
  if (name == "trim") return Value::string(py_strip(v.str(), true, true, a.get(0, "chars")));
  if (name == "upper") return Value::string(map_case(v.str(), true));
  if (name == "lower") return Value::string(map_case(v.str(), false));
  if (name == "title") return Value::string(jinja_title(v.str()));
  if (name == "capitalize") return Value::string(capitalize(v.str()));
  if (name == "length" || name == "count") return Value::integer(length_of(v));
  if (name == "wordcount")
    return Value::integer(static_cast<int64_t>(py_split(v.str(), Value::none(), -1).size()));
  if (name == "escape" || name == "e" || name == "forceescape")
    return Value::string(html_escape(v.str()));
  if (name == "join") {
    std::string sep = a.get(0, "d", Value::string("")).str();
    Value attr = a.get(1, "attribute");
    std::string out;
    bool first = true;
    for (auto& x : items_of(v)) {
      if (!first) out += sep;
      first = false;
      out += (attr.is_undefined() ? x : attr_path(x, attr.str())).str();
    }
    return Value::string(out);
  }
  if (name == "replace") {
    Value cnt = a.get(2, "count", Value::none());
    return Value::string(replace_str(v.str(), a.get(0, "old").str(), a.get(1, "new").str(),
                                     cnt.is_none() ? -1 : cnt.as_int()));
  }
  if (name == "first" || name == "last") {
    auto items = items_of(v);
    if (items.empty()) return Value::undefined("No first item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value::make_list(items_of(v));
  if (name == "reverse") {
    if (v.is_string()) {
      auto cps = code_points(v.s);
      std::reverse(cps.begin(), cps.end());
      return Value::string(from_code_points(cps, 0, cps.size()));
    }
    auto items = items_of(v);
    std::reverse(items.begin(), items.end());
    return Value::make_list(std::move(items));
  }
  if (name == "items" || name == "dictsort") {
    if (v.is_undefined()) return Value::make_list();
    if (!v.is_dict()) err(fmt::format("{} expects a mapping, got {}", name, v.type_name()));
    List out;
    for (auto& [k, x] : v.dict->items) out.push_back(Value::make_list({Value::string(k), x}, true));
    if (name == "dictsort") {
      bool cs = a.get(0, "case_sensitive", Value::boolean(false)).truthy();
      bool by_value = a.get(1, "by", Value::string("key")).str() == "value";
      bool rev = a.get(2, "reverse", Value::boolean(false)).truthy();
      std::stable_sort(out.begin(), out.end(), [&](const Value& x, const Value& y) {
        size_t i = by_value ? 1 : 0;
        Value kx = sort_key((*x.list)[i], cs), ky = sort_key((*y.list)[i], cs);
        return rev ? less(ky, kx) : less(kx, ky);
      });
    }
    return Value::make_list(std::move(out));
  }
  if (name == "sort") {
    bool rev = a.get(0, "reverse", Value::boolean(false)).truthy();
    bool cs = a.get(1, "case_sensitive", Value::boolean(false)).truthy();
    Value attr = a.get(2, "attribute");
    auto items = items_of(v);
    auto key = [&](const Value& x) {
      return sort_key(attr.is_undefined() ? x : attr_path(x, attr.str()), cs);
    };
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
      return rev ? less(key(y), key(x)) : less(key(x), key(y));
    });
    return Value::make_list(std::move(items));
  }
  if (name == "unique") {
    bool cs = a.get(0, "case_sensitive", Value::boolean(false)).truthy();
    Value attr = a.get(1, "attribute");
    List out, seen;
    for (auto& x : items_of(v)) {
      Value k = sort_key(attr.is_undefined() ? x : attr_path(x, attr.str()), cs);
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, k); })) {
        seen.push_back(k);
        out.push_back(x);
      }
    }
    return Value::make_list(std::move(out));
  }
  if (name == "min" || name == "max") {
    bool cs = a.get(0, "case_sensitive", Value::boolean(false)).truthy();
    Value attr = a.get(1, "attribute");
    auto items = items_of(v);
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    auto key = [&](const Value& x) {
      return sort_key(attr.is_undefined() ? x : attr_path(x, attr.str()), cs);
    };
    auto best = items.begin();
    for (auto it = items.begin() + 1; it != items.end(); ++it)
      if (name == "min" ? less(key(*it), key(*best)) : less(key(*best), key(*it))) best = it;
    return *best;
  }
  if (name == "sum") {
    Value attr = a.get(0, "attribute");
    Value total = a.get(1, "start", Value::integer(0));
    for (auto& x : items_of(v)) {
      Value y = attr.is_undefined() ? x : attr_path(x, attr.str());
      if (!y.is_number() || !total.is_number()) err("sum of non-numbers");
      int64_t r = 0;
      if (total.kind == Value::Kind::Float || y.kind == Value::Kind::Float)
        total = Value::number(total.as_double() + y.as_double());
      else if (__builtin_add_overflow(total.as_int(), y.as_int(), &r))
        err("integer overflow");
      else
        total = Value::integer(r);
    }
    return total;
  }
  if (name == "map") {
    List out;
    Value attr = a.get(99, "attribute");
    if (!attr.is_undefined()) {
      Value def = a.get(99, "default");
      for (auto& x : items_of(v)) {
        Value y = attr_path(x, attr.str());
        out.push_back(y.is_undefined() && !def.is_undefined() ? def : y);
      }
    } else {
      if (a.pos.empty()) err("map requires a filter name or attribute=");
      std::string f = need_str(a.pos[0], "map");
      Args rest;
      rest.pos.assign(a.pos.begin() + 1, a.pos.end());
      rest.kw = a.kw;
      for (auto& x : items_of(v)) out.push_back(call_filter(f, x, rest));
    }
    return Value::make_list(std::move(out));
  }
  if (name == "select") return select_impl(v, a, false, true);
  if (name == "reject") return select_impl(v, a, false, false);
  if (name == "selectattr") return select_impl(v, a, true, true);
  if (name == "rejectattr") return select_impl(v, a, true, false);
  if (name == "default" || name == "d") {
    Value def = a.get(0, "default_value", Value::string(""));
    bool boolean = a.get(1, "boolean", Value::boolean(false)).truthy();
    if (v.is_undefined() || (boolean && !v.truthy())) return def;
    return v;
  }
  if (name == "indent") {
    return Value::string(do_indent(v.str(), a.get(0, "width"),
                                   a.get(1, "first", Value::boolean(false)).truthy(),
                                   a.get(2, "blank", Value::boolean(false)).truthy()));
  }
  if (name == "int") return to_int(v, a.get(0, "default"));
  if (name == "float") return to_float(v, a.get(0, "default"));
  if (name == "abs") {
    if (!v.is_number()) err("bad operand type for abs()");
    if (v.kind != Value::Kind::Float && v.as_int() == INT64_MIN) err("integer overflow");
    return v.kind == Value::Kind::Float ? Value::number(std::fabs(v.f))
                                        : Value::integer(std::llabs(v.as_int()));
  }
  if (name == "round") {
    int64_t prec = a.get(0, "precision", Value::integer(0)).as_int();
    std::string method = a.get(1, "method", Value::string("common")).str();
    double m = std::pow(10.0, static_cast<double>(prec));
    double x = v.as_double() * m;
    double r = method == "ceil" ? std::ceil(x) : method == "floor" ? std::floor(x) : std::round(x);
    return Value::number(r / m);
  }
  if (name == "batch") {
    int64_t n = a.get(0, "linecount").as_int();
    if (n <= 0 || n > (1 << 20)) err("batch size must be in [1, 2^20]");
    Value fill = a.get(1, "fill_with", Value::none());
    List out, cur;
    for (auto& x : items_of(v)) {
      cur.push_back(x);
      if (static_cast<int64_t>(cur.size()) == n)
        out.push_back(Value::make_list(std::move(cur))), cur.clear();
    }
    if (!cur.empty()) {
      if (!fill.is_none())
        while (static_cast<int64_t>(cur.size()) < n) cur.push_back(fill);
      out.push_back(Value::make_list(std::move(cur)));
    }
    return Value::make_list(std::move(out));
  }
  if (name == "attr") return attr_path(v, a.get(0, "name").str());
  if (name == "center") {
    int64_t w = a.get(0, "width", Value::integer(80)).as_int();
    if (w > (1 << 20)) err("center width too large");
    std::string s = v.str();
    int64_t n = static_cast<int64_t>(utf8::count(s));
    if (w <= n) return Value::string(s);
    int64_t left = (w - n) / 2 + ((w - n) & w & 1);
    return Value::string(std::string(left, ' ') + s + std::string(w - n - left, ' '));
  }
  err(fmt::format("No filter named '{}'.", name));
}

bool call_test(const std::string& name, const Value& v, Args& a) {
  using VK = Value::Kind;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.kind == VK::Bool;
  if (name == "true") return v.kind == VK::Bool && v.b;
  if (name == "false") return v.kind == VK::Bool && !v.b;
  if (name == "integer") return v.kind == VK::Int;
  if (name == "float") return v.kind == VK::Float;
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "callable") return v.kind == VK::Function;
  if (name == "odd" || name == "even") {
    if (!v.is_number()) err("odd/even test needs a number");
    int64_t x = v.as_int();
    return name == "odd" ? (x % 2 != 0) : (x % 2 == 0);
  }
  if (name == "divisibleby") {
    int64_t d = a.get(0, "num").as_int();
    if (d == 0) err("division by zero");
    return v.as_int() % d == 0;
  }
  Value other = a.get(0, "other");
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, other);
  if (name == "ne" || name == "!=") return !equals(v, other);
  if (name == "lt" || name == "lessthan" || name == "<") return less(v, other);
  if (name == "gt" || name == "greaterthan" || name == ">") return less(other, v);
  if (name == "le" || name == "<=") return !less(other, v);
  if (name == "ge" || name == ">=") return !less(v, other);
  if (name == "sameas") {
    if (v.kind != other.kind) return false;
    if (v.is_list()) return v.list == other.list;
    if (v.is_dict()) return v.dict == other.dict;
    return equals(v, other);
  }
  if (name == "in") {
    Value seq = a.get(0, "seq");
    if (seq.is_string()) return v.is_string() && seq.s.find(v.s) != std::string::npos;
    if (seq.is_dict()) return v.is_string() && seq.dict->find(v.s);
    for (auto& x : items_of(seq))
      if (equals(x, v)) return true;
    return false;
  }
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    bool any = false;
    for (char32_t c : code_points(v.s)) {
      if (!is_cased_letter(c)) continue;
      any = true;
      if ((name == "lower" ? lower_cp(c) : upper_cp(c)) != c) return false;
    }
    return any;
  }
  err(fmt::format("No test named '{}'.", name));
}

}  // namespace ingot::jinja
