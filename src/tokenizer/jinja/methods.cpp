// Python methods of str/dict/list values and the global functions (range, namespace, dict,
// raise_exception, strftime_now) of the Jinja engine.
#include <algorithm>
#include <chrono>

#include <utf8proc.h>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/text.h"
#include "util/error.h"
#include "util/utf8.h"

namespace ingot::jinja {

using namespace detail;

bool has_method(const Value& obj, const std::string& n) {
  static const char* str_methods[] = {
      "strip",   "lstrip",     "rstrip",  "split",      "rsplit",       "startswith",  "endswith",
      "upper",   "lower",      "title",   "capitalize", "replace",      "find",        "rfind",
      "count",   "join",       "isdigit", "isalpha",    "isalnum",      "isspace",     "islower",
      "isupper", "splitlines", "format",  "index",      "removeprefix", "removesuffix"};
  static const char* dict_methods[] = {"items", "keys", "values", "get"};
  static const char* list_methods[] = {"index", "count"};
  auto in = [&](auto& arr) {
    return std::any_of(std::begin(arr), std::end(arr), [&](const char* m) { return n == m; });
  };
  if (obj.is_string()) return in(str_methods);
  if (obj.is_dict()) return in(dict_methods);
  if (obj.is_list()) return in(list_methods);
  return false;
}

std::optional<Value> call_method(const Value& obj, const std::string& n, Args& a) {
  if (obj.is_string()) {
    const std::string& s = obj.s;
    if (n == "strip" || n == "lstrip" || n == "rstrip")
      return Value::string(py_strip(s, n != "rstrip", n != "lstrip", a.get(0, "chars")));
    if (n == "split" || n == "rsplit") {
      Value maxs = a.get(1, "maxsplit", Value::integer(-1));
      if (n == "rsplit" && maxs.as_int() >= 0) err("rsplit with maxsplit is not supported");
      return list_of_strings(py_split(s, a.get(0, "sep", Value::none()), maxs.as_int()));
    }
    if (n == "startswith" || n == "endswith") {
      Value p = a.get(0, "prefix");
      std::vector<Value> cands = p.is_list() ? *p.list : std::vector<Value>{p};
      for (auto& c : cands) {
        const std::string& x = need_str(c, n.c_str());
        bool ok = n == "startswith"
                      ? s.compare(0, x.size(), x) == 0
                      : s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
        if (ok) return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (n == "upper") return Value::string(map_case(s, true));
    if (n == "lower") return Value::string(map_case(s, false));
    if (n == "title") return Value::string(py_title(s));
    if (n == "capitalize") return Value::string(capitalize(s));
    if (n == "replace") {
      return Value::string(replace_str(s, need_str(a.get(0, "old"), "replace"),
                                       need_str(a.get(1, "new"), "replace"),
                                       a.get(2, "count", Value::integer(-1)).as_int()));
    }
    if (n == "removeprefix" || n == "removesuffix") {
      const std::string x = need_str(a.get(0, "x"), n.c_str());
      if (n == "removeprefix" && s.compare(0, x.size(), x) == 0)
        return Value::string(s.substr(x.size()));
      if (n == "removesuffix" && !x.empty() && s.size() >= x.size() &&
          s.compare(s.size() - x.size(), x.size(), x) == 0)
        return Value::string(s.substr(0, s.size() - x.size()));
      return Value::string(s);
    }
    if (n == "find" || n == "rfind" || n == "index" || n == "count") {
      const std::string x = need_str(a.get(0, "sub"), n.c_str());
      if (n == "count") {
        if (x.empty()) return Value::integer(static_cast<int64_t>(utf8::count(s)) + 1);
        int64_t c = 0;
        for (size_t p = s.find(x); p != std::string::npos; p = s.find(x, p + x.size())) ++c;
        return Value::integer(c);
      }
      size_t p = n == "rfind" ? s.rfind(x) : s.find(x);
      if (p == std::string::npos) {
        if (n == "index") err("substring not found");
        return Value::integer(-1);
      }
      return Value::integer(static_cast<int64_t>(utf8::count(s.substr(0, p))));
    }
    if (n == "join") {
      std::string out;
      bool first = true;
      for (auto& x : items_of(a.get(0, "iterable"))) {
        if (!first) out += s;
        first = false;
        out += need_str(x, "join");
      }
      return Value::string(out);
    }
    if (n == "splitlines") return list_of_strings(splitlines(s));
    if (n.rfind("is", 0) == 0) {
      auto cps = code_points(s);
      if (cps.empty()) return Value::boolean(false);
      bool ok = true, cased = false;
      for (char32_t c : cps) {
        auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
        bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
        bool digit = cat == UTF8PROC_CATEGORY_ND;
        if (n == "isdigit")
          ok = ok && digit;
        else if (n == "isalpha")
          ok = ok && letter;
        else if (n == "isalnum")
          ok = ok && (letter || digit);
        else if (n == "isspace")
          ok = ok && py_isspace(c);
        else if (is_cased_letter(c)) {
          cased = true;
          ok = ok && (n == "islower" ? lower_cp(c) == c : upper_cp(c) == c);
        }
      }
      if (n == "islower" || n == "isupper") ok = ok && cased;
      return Value::boolean(ok);
    }
    if (n == "format") {  // positional "{}" / "{0}" fields only
      std::string out;
      size_t auto_idx = 0;
      for (size_t k = 0; k < s.size(); ++k) {
        if (s[k] == '{' && k + 1 < s.size() && s[k + 1] == '{') {
          out += '{';
          ++k;
          continue;
        }
        if (s[k] == '}' && k + 1 < s.size() && s[k + 1] == '}') {
          out += '}';
          ++k;
          continue;
        }
        if (s[k] != '{') {
          out += s[k];
          continue;
        }
        size_t e = s.find('}', k);
        if (e == std::string::npos) err("Single '{' encountered in format string");
        std::string field = s.substr(k + 1, e - k - 1);
        Value v = field.empty() ? a.get(auto_idx++, "")
                  : std::all_of(field.begin(), field.end(), ::isdigit)
                      ? a.get(digits_to_index(field), "")
                      : a.get(999, field.c_str());
        if (v.is_undefined()) err(fmt::format("format field '{}' has no value", field));
        out += v.str();
        k = e;
      }
      return Value::string(out);
    }
    return std::nullopt;
  }
  if (obj.is_dict()) {
    if (n == "items") return call_filter("items", obj, a);
    if (n == "keys" || n == "values") {
      List out;
      for (auto& [k, v] : obj.dict->items) out.push_back(n == "keys" ? Value::string(k) : v);
      return Value::make_list(std::move(out));
    }
    if (n == "get") {
      Value k = a.get(0, "key");
      const Value* v = k.is_string() ? obj.dict->find(k.s) : nullptr;
      return v ? *v : a.get(1, "default", Value::none());
    }
    return std::nullopt;
  }
  if (obj.is_list()) {
    Value x = a.get(0, "value");
    int64_t c = 0;
    for (size_t k = 0; k < obj.list->size(); ++k) {
      if (!equals((*obj.list)[k], x)) continue;
      if (n == "index") return Value::integer(static_cast<int64_t>(k));
      ++c;
    }
    if (n == "index") err(fmt::format("{} is not in list", x.repr()));
    return Value::integer(c);
  }
  return std::nullopt;
}

Value make_global(const std::string& name, std::optional<std::time_t> now) {
  if (name == "range") {
    return Value::function([](Args& a) {
      int64_t start = 0, stop, step = 1;
      if (a.pos.size() == 1)
        stop = a.pos[0].as_int();
      else if (a.pos.size() >= 2)
        start = a.pos[0].as_int(), stop = a.pos[1].as_int();
      else
        err("range expected at least 1 argument");
      if (a.pos.size() >= 3) step = a.pos[2].as_int();
      if (step == 0) err("range() arg 3 must not be zero");
      List out;
      for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
        out.push_back(Value::integer(k));
        if (out.size() > 1'000'000) err("range too big (over 10^6 items)");
      }
      return Value::make_list(std::move(out));
    });
  }
  if (name == "namespace" || name == "dict") {
    bool ns = name == "namespace";
    return Value::function([ns](Args& a) {
      Dict d;
      for (auto& p : a.pos)
        if (p.is_dict())
          for (auto& [k, v] : p.dict->items) d.set(k, v);
      for (auto& [k, v] : a.kw) d.set(k, v);
      Value r = Value::make_dict(std::move(d));
      r.namespace_ = ns;
      return r;
    });
  }
  if (name == "raise_exception") {
    return Value::function([](Args& a) -> Value { err(a.get(0, "message").str()); });
  }
  if (name == "strftime_now") {
    return Value::function([now](Args& a) {
      std::time_t t =
          now ? *now : std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
      std::tm tm{};
      localtime_r(&t, &tm);
      std::string f = a.get(0, "format").str();
      char buf[512];
      size_t n = f.empty() ? 0 : std::strftime(buf, sizeof buf, f.c_str(), &tm);
      return Value::string(std::string(buf, n));
    });
  }
  err(fmt::format("'{}' is undefined", name));
}

}  // namespace ingot::jinja
