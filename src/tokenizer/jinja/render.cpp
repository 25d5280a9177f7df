// The Jinja interpreter: evaluates the syntax tree with jinja2's scoping (for loops and macros
// get their own frame, namespace() objects are shared), default Undefined and loop controls.
#include <unordered_map>

#include "tokenizer/chat_template.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ingot::tokenizer {

using jinja::Args;
using jinja::Body;
using jinja::Expr;
using jinja::Stmt;
using jinja::Value;
using EK = Expr::Kind;
using SK = Stmt::Kind;

struct ChatTemplate::Impl {
  std::string source;  // newline-normalized
  Body body;
};

namespace {

constexpr int kMaxDepth = 200;

std::string undefined_msg(const Value& v) {
  return v.s.empty() ? "value is undefined" : v.s;
}

class Interp {
 public:
  Interp(const std::string& src, RenderOptions opts) : src_(src), opts_(opts) {
    frames_.emplace_back();
  }

  void set_global(const std::string& k, Value v) { frames_[0][k] = std::move(v); }

  enum class Flow { Normal, Break, Continue };

  Flow exec(const Body& body, std::string& out) {
    for (auto& s : body) {
      Flow f = exec_one(*s, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

 private:
  const std::string& src_;
  RenderOptions opts_;
  std::vector<std::unordered_map<std::string, Value>> frames_;
  int depth_ = 0;

  [[noreturn]] void fail(size_t pos, const std::string& msg) const {
    raise<FormatError>("[chat_template] {}: {}", jinja::location(src_, pos), msg);
  }

  // Runs fn, adding the template location to location-less FormatErrors.
  template <typename F>
  auto located(size_t pos, F&& fn) -> decltype(fn()) {
    try {
      return fn();
    } catch (const FormatError& e) {
      std::string m = e.what();
      if (m.rfind("[chat_template]", 0) == 0) throw;
      fail(pos, m);
    }
  }

  Value lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    if (auto g = global(name)) return *g;
    return Value::undefined(fmt::format("'{}' is undefined", name));
  }

  std::optional<Value> global(const std::string& name) const {
    static const char* names[] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};
    for (auto* n : names)
      if (name == n) return jinja::make_global(name, opts_.now);
    return std::nullopt;
  }

  void assign(const std::vector<std::string>& targets, const Value& v, size_t pos) {
    if (targets.size() == 1) {
      frames_.back()[targets[0]] = v;
      return;
    }
    if (!v.is_list() || v.list->size() != targets.size())
      fail(pos, fmt::format("cannot unpack {} into {} names", v.type_name(), targets.size()));
    for (size_t k = 0; k < targets.size(); ++k) frames_.back()[targets[k]] = (*v.list)[k];
  }

  Flow exec_one(const Stmt& s, std::string& out) {
    switch (s.kind) {
      case SK::Text:
        out += s.text;
        return Flow::Normal;
      case SK::Output: {
        Value v = eval(*s.expr);
        out += v.str();
        return Flow::Normal;
      }
      case SK::If:
        for (auto& [cond, body] : s.branches)
          if (!cond || eval(*cond).truthy()) return exec(body, out);
        return Flow::Normal;
      case SK::For:
        return exec_for(s, out);
      case SK::Set: {
        Value v = eval(*s.expr);
        if (!s.attr.empty()) {
          Value ns = lookup(s.targets[0]);
          if (!ns.is_dict() || !ns.namespace_)
            fail(s.pos, "cannot assign attribute on non-namespace object");
          ns.dict->set(s.attr, std::move(v));
        } else {
          assign(s.targets, v, s.pos);
        }
        return Flow::Normal;
      }
      case SK::SetBlock: {
        std::string body;
        exec(s.body, body);
        Value v = Value::string(std::move(body));
        for (auto& f : s.filters) v = apply_filter(*f, v);
        if (!s.attr.empty()) {
          Value ns = lookup(s.targets[0]);
          if (!ns.is_dict() || !ns.namespace_)
            fail(s.pos, "cannot assign attribute on non-namespace object");
          ns.dict->set(s.attr, std::move(v));
        } else {
          assign(s.targets, v, s.pos);
        }
        return Flow::Normal;
      }
      case SK::Macro:
        frames_.back()[s.name] = make_macro(s, nullptr);
        return Flow::Normal;
      case SK::CallBlock: {
        Value caller = make_macro(s, nullptr, true);
        const Expr& call = *s.expr;
        Value fn = eval(*call.a);
        Args args = eval_args(call);
        args.kw.emplace_back("caller", caller);
        out += invoke(fn, args, call.pos).str();
        return Flow::Normal;
      }
      case SK::FilterBlock: {
        std::string body;
        exec(s.body, body);
        Value v = Value::string(std::move(body));
        for (auto& f : s.filters) v = apply_filter(*f, v);
        out += v.str();
        return Flow::Normal;
      }
      case SK::Break:
        return Flow::Break;
      case SK::Continue:
        return Flow::Continue;
      case SK::Scope:
        return exec(s.body, out);
    }
    return Flow::Normal;
  }

  std::vector<Value> iterate(const Value& v, size_t pos) {
    switch (v.kind) {
      case Value::Kind::Undefined:
        return {};
      case Value::Kind::List:
        return *v.list;
      case Value::Kind::Dict: {
        std::vector<Value> keys;
        for (auto& [k, x] : v.dict->items) keys.push_back(Value::string(k));
        return keys;
      }
      case Value::Kind::String: {
        std::vector<Value> chars;
        auto cps = jinja::code_points(v.s);
        for (size_t k = 0; k < cps.size(); ++k)
          chars.push_back(Value::string(jinja::from_code_points(cps, k, k + 1)));
        return chars;
      }
      default:
        fail(pos, fmt::format("'{}' object is not iterable", v.type_name()));
    }
  }

  Flow exec_for(const Stmt& s, std::string& out) {
    std::vector<Value> items = iterate(eval(*s.expr), s.pos);
    frames_.emplace_back();
    if (s.filter) {
      std::vector<Value> kept;
      for (auto& it : items) {
        assign(s.targets, it, s.pos);
        if (eval(*s.filter).truthy()) kept.push_back(it);
      }
      items = std::move(kept);
    }
    size_t n = items.size();
    for (size_t k = 0; k < n; ++k) {
      jinja::Dict loop;
      loop.set("index", Value::integer(static_cast<int64_t>(k + 1)));
      loop.set("index0", Value::integer(static_cast<int64_t>(k)));
      loop.set("revindex", Value::integer(static_cast<int64_t>(n - k)));
      loop.set("revindex0", Value::integer(static_cast<int64_t>(n - k - 1)));
      loop.set("first", Value::boolean(k == 0));
      loop.set("last", Value::boolean(k + 1 == n));
      loop.set("length", Value::integer(static_cast<int64_t>(n)));
      loop.set("depth", Value::integer(1));
      loop.set("depth0", Value::integer(0));
      loop.set("previtem", k > 0 ? items[k - 1] : Value::undefined("'previtem' is undefined"));
      loop.set("nextitem", k + 1 < n ? items[k + 1] : Value::undefined("'nextitem' is undefined"));
      loop.set("cycle", Value::function([k](Args& a) {
                 if (a.pos.empty()) raise<FormatError>("no items for cycling given");
                 return a.pos[k % a.pos.size()];
               }));
      frames_.back()["loop"] = Value::make_dict(std::move(loop));
      assign(s.targets, items[k], s.pos);
      Flow f = exec(s.body, out);
      if (f == Flow::Break) break;
    }
    frames_.pop_back();
    if (n == 0) exec(s.else_body, out);
    return Flow::Normal;
  }

  // A macro (or a call block's `caller`) as a callable value.
  Value make_macro(const Stmt& s, const Value*, bool is_caller = false) {
    const Stmt* def = &s;
    return Value::function([this, def, is_caller](Args& a) -> Value {
      if (++depth_ > kMaxDepth) {
        --depth_;
        raise<FormatError>("maximum recursion depth exceeded");
      }
      frames_.emplace_back();
      auto& frame = frames_.back();
      for (size_t k = 0; k < def->params.size(); ++k) {
        const auto& [pname, pdef] = def->params[k];
        Value v = a.get(k, pname.c_str());
        if (v.is_undefined() && pdef) v = eval(*pdef);
        frame[pname] = v;
      }
      for (auto& [k, v] : a.kw)
        if (k == "caller") frame["caller"] = v;
      std::string out;
      try {
        exec(def->body, out);
      } catch (...) {
        frames_.pop_back();
        --depth_;
        throw;
      }
      frames_.pop_back();
      --depth_;
      (void)is_caller;
      return Value::string(std::move(out));
    });
  }

  Args eval_args(const Expr& e) {
    Args a;
    for (auto& x : e.args) a.pos.push_back(eval(*x));
    for (auto& [k, x] : e.kwargs) a.kw.emplace_back(k, eval(*x));
    return a;
  }

  Value invoke(const Value& fn, Args& args, size_t pos) {
    if (fn.kind != Value::Kind::Function) {
      if (fn.is_undefined()) fail(pos, undefined_msg(fn));
      fail(pos, fmt::format("'{}' object is not callable", fn.type_name()));
    }
    return located(pos, [&] { return (*fn.fn)(args); });
  }

  Value apply_filter(const Expr& f, const Value& input) {
    Args args = eval_args(f);
    return located(f.pos, [&] { return jinja::call_filter(f.name, input, args); });
  }

  Value get_attr(const Value& obj, const std::string& name, size_t pos) {
    if (obj.is_undefined()) fail(pos, undefined_msg(obj));
    if (obj.is_dict()) {
      if (!obj.namespace_ && jinja::has_method(obj, name)) return bound_method(obj, name);
      if (const Value* v = obj.dict->find(name)) return *v;
      return Value::undefined(
          fmt::format("'{} object' has no attribute '{}'", obj.type_name(), name));
    }
    if (jinja::has_method(obj, name)) return bound_method(obj, name);
    return Value::undefined(
        fmt::format("'{} object' has no attribute '{}'", obj.type_name(), name));
  }

  Value bound_method(const Value& obj, const std::string& name) {
    return Value::function([obj, name](Args& a) -> Value {
      if (auto r = jinja::call_method(obj, name, a)) return *r;
      raise<FormatError>("'{}' object has no attribute '{}'", obj.type_name(), name);
    });
  }

  Value get_item(const Value& obj, const Value& key, size_t pos) {
    if (obj.is_undefined()) fail(pos, undefined_msg(obj));
    if (obj.is_dict()) {
      if (key.is_string()) {
        if (const Value* v = obj.dict->find(key.s)) return *v;
        if (jinja::has_method(obj, key.s)) return bound_method(obj, key.s);
      }
      return Value::undefined(fmt::format("'dict object' has no attribute '{}'", key.str()));
    }
    if ((obj.is_list() || obj.is_string()) && key.is_number()) {
      int64_t idx = key.as_int();
      if (obj.is_list()) {
        auto n = static_cast<int64_t>(obj.list->size());
        if (idx < 0) idx += n;
        if (idx < 0 || idx >= n) return Value::undefined("list index out of range");
        return (*obj.list)[static_cast<size_t>(idx)];
      }
      auto cps = jinja::code_points(obj.s);
      auto n = static_cast<int64_t>(cps.size());
      if (idx < 0) idx += n;
      if (idx < 0 || idx >= n) return Value::undefined("string index out of range");
      return Value::string(
          jinja::from_code_points(cps, static_cast<size_t>(idx), static_cast<size_t>(idx) + 1));
    }
    if (key.is_string()) return get_attr(obj, key.s, pos);
    return Value::undefined(
        fmt::format("'{} object' has no item '{}'", obj.type_name(), key.str()));
  }

  Value slice(const Value& obj, const Expr& e) {
    auto opt = [&](const Expr* x) -> std::optional<int64_t> {
      if (!x) return std::nullopt;
      Value v = eval(*x);
      if (v.is_none()) return std::nullopt;
      if (!v.is_number()) fail(x->pos, "slice indices must be integers or None");
      return v.as_int();
    };
    std::optional<int64_t> start = opt(e.b.get()), stop = opt(e.c.get()),
                           step = opt(e.args.empty() ? nullptr : e.args[0].get());
    int64_t st = step.value_or(1);
    if (st == 0) fail(e.pos, "slice step cannot be zero");
    std::vector<char32_t> cps;
    int64_t n;
    if (obj.is_string()) {
      cps = jinja::code_points(obj.s);
      n = static_cast<int64_t>(cps.size());
    } else if (obj.is_list()) {
      n = static_cast<int64_t>(obj.list->size());
    } else {
      fail(e.pos, fmt::format("'{}' object is not subscriptable", obj.type_name()));
    }
    auto norm = [&](std::optional<int64_t> v, int64_t def_pos, int64_t def_neg) {
      if (!v) return st > 0 ? def_pos : def_neg;
      int64_t x = *v < 0 ? *v + n : *v;
      if (st > 0) return std::clamp<int64_t>(x, 0, n);
      return std::clamp<int64_t>(x, -1, n - 1);
    };
    int64_t b = norm(start, 0, n - 1), en = norm(stop, n, -1);
    std::vector<int64_t> idx;
    for (int64_t k = b; st > 0 ? k < en : k > en; k += st) idx.push_back(k);
    if (obj.is_string()) {
      std::vector<char32_t> sel;
      for (auto k : idx) sel.push_back(cps[static_cast<size_t>(k)]);
      return Value::string(jinja::from_code_points(sel, 0, sel.size()));
    }
    jinja::List out;
    for (auto k : idx) out.push_back((*obj.list)[static_cast<size_t>(k)]);
    return Value::make_list(std::move(out), obj.tuple);
  }

  Value binary(const std::string& op, const Value& a, const Value& b, size_t pos) {
    using VK = Value::Kind;
    auto type_err = [&]() -> Value {
      if (a.is_undefined()) fail(pos, undefined_msg(a));
      if (b.is_undefined()) fail(pos, undefined_msg(b));
      fail(pos, fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, a.type_name(),
                            b.type_name()));
    };
    if (op == "~") return Value::string(a.str() + b.str());
    if (op == "==") return Value::boolean(jinja::equals(a, b));
    if (op == "!=") return Value::boolean(!jinja::equals(a, b));
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      return located(pos, [&] {
        bool r = op == "<"    ? jinja::less(a, b)
                 : op == ">"  ? jinja::less(b, a)
                 : op == "<=" ? !jinja::less(b, a)
                              : !jinja::less(a, b);
        return Value::boolean(r);
      });
    }
    if (op == "in" || op == "notin") {
      bool r;
      if (b.is_string()) {
        if (!a.is_string()) fail(pos, "'in <string>' requires string as left operand");
        r = b.s.find(a.s) != std::string::npos;
      } else if (b.is_list()) {
        r = std::any_of(b.list->begin(), b.list->end(),
                        [&](const Value& x) { return jinja::equals(x, a); });
      } else if (b.is_dict()) {
        r = a.is_string() && b.dict->find(a.s) != nullptr;
      } else {
        return type_err();
      }
      return Value::boolean(op == "in" ? r : !r);
    }
    auto checked = [&](bool overflow, const int64_t& r) {  // by reference: read after the op
      if (overflow) fail(pos, "integer overflow (ingot integers are 64-bit)");
      return Value::integer(r);
    };
    bool nums = a.is_number() && b.is_number();
    bool flt = nums && (a.kind == VK::Float || b.kind == VK::Float);
    if (op == "+") {
      if (nums) {
        int64_t r = 0;
        return flt ? Value::number(a.as_double() + b.as_double())
                   : checked(__builtin_add_overflow(a.as_int(), b.as_int(), &r), r);
      }
      if (a.is_string() && b.is_string()) return Value::string(a.s + b.s);
      if (a.is_list() && b.is_list()) {
        jinja::List l = *a.list;
        l.insert(l.end(), b.list->begin(), b.list->end());
        return Value::make_list(std::move(l), a.tuple);
      }
      return type_err();
    }
    if (op == "-") {
      if (!nums) return type_err();
      int64_t r = 0;
      return flt ? Value::number(a.as_double() - b.as_double())
                 : checked(__builtin_sub_overflow(a.as_int(), b.as_int(), &r), r);
    }
    if (op == "*") {
      if (nums) {
        int64_t r = 0;
        return flt ? Value::number(a.as_double() * b.as_double())
                   : checked(__builtin_mul_overflow(a.as_int(), b.as_int(), &r), r);
      }
      const Value& seq = a.is_number() ? b : a;
      const Value& cnt = a.is_number() ? a : b;
      if (cnt.kind == VK::Int || cnt.kind == VK::Bool) {
        int64_t times = std::max<int64_t>(0, cnt.as_int());
        size_t unit = seq.is_string() ? seq.s.size() : seq.is_list() ? seq.list->size() : 0;
        if (unit && static_cast<uint64_t>(times) > (64u << 20) / unit)
          fail(pos, "repetition result too large");
        if (seq.is_string()) {
          std::string r;
          for (int64_t k = 0; k < times; ++k) r += seq.s;
          return Value::string(std::move(r));
        }
        if (seq.is_list()) {
          jinja::List l;
          for (int64_t k = 0; k < times; ++k) l.insert(l.end(), seq.list->begin(), seq.list->end());
          return Value::make_list(std::move(l), seq.tuple);
        }
      }
      return type_err();
    }
    if (op == "/" || op == "//" || op == "%") {
      if (!nums) return type_err();
      if (b.as_double() == 0) fail(pos, "division by zero");
      if (op == "/") return Value::number(a.as_double() / b.as_double());
      if (flt) {
        double q = std::floor(a.as_double() / b.as_double());
        return op == "//" ? Value::number(q) : Value::number(a.as_double() - q * b.as_double());
      }
      int64_t x = a.as_int(), y = b.as_int();
      if (x == INT64_MIN && y == -1) fail(pos, "integer overflow (ingot integers are 64-bit)");
      int64_t q = x / y;
      if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
      return op == "//" ? Value::integer(q) : Value::integer(x - q * y);
    }
    if (op == "**") {
      if (!nums) return type_err();
      if (!flt && b.as_int() >= 0) {
        int64_t r = 1, base = a.as_int(), e = b.as_int();
        bool over = false;
        while (e > 0 && !over) {  // square-and-multiply with overflow checks
          if (e & 1) over = __builtin_mul_overflow(r, base, &r);
          e >>= 1;
          if (e > 0 && !over) over = __builtin_mul_overflow(base, base, &base);
        }
        return checked(over, r);
      }
      return Value::number(std::pow(a.as_double(), b.as_double()));
    }
    fail(pos, "unknown operator " + op);
  }

 public:
  Value eval(const Expr& e) {
    switch (e.kind) {
      case EK::Literal:
        return e.literal;
      case EK::Name:
        return lookup(e.name);
      case EK::Attr:
        return get_attr(eval(*e.a), e.name, e.pos);
      case EK::Item:
        return get_item(eval(*e.a), eval(*e.b), e.pos);
      case EK::Slice:
        return slice(eval(*e.a), e);
      case EK::Call: {
        Value fn = eval(*e.a);
        Args args = eval_args(e);
        return invoke(fn, args, e.pos);
      }
      case EK::Filter:
        return apply_filter(e, e.a ? eval(*e.a) : Value::undefined());
      case EK::Test: {
        Value v = eval(*e.a);
        Args args = eval_args(e);
        bool r = located(e.pos, [&] { return jinja::call_test(e.name, v, args); });
        return Value::boolean(e.negated ? !r : r);
      }
      case EK::Neg:
      case EK::Pos: {
        Value v = eval(*e.a);
        if (!v.is_number())
          fail(e.pos, fmt::format("bad operand type for unary -: '{}'", v.type_name()));
        if (e.kind == EK::Pos) return v.kind == Value::Kind::Bool ? Value::integer(v.as_int()) : v;
        if (v.kind != Value::Kind::Float && v.as_int() == INT64_MIN)
          fail(e.pos, "integer overflow (ingot integers are 64-bit)");
        return v.kind == Value::Kind::Float ? Value::number(-v.f) : Value::integer(-v.as_int());
      }
      case EK::Not:
        return Value::boolean(!eval(*e.a).truthy());
      case EK::And: {
        Value l = eval(*e.a);
        return l.truthy() ? eval(*e.b) : l;
      }
      case EK::Or: {
        Value l = eval(*e.a);
        return l.truthy() ? l : eval(*e.b);
      }
      case EK::Cond:
        if (eval(*e.a).truthy()) return eval(*e.b);
        return e.c ? eval(*e.c) : Value::undefined();
      case EK::Binary: {
        Value a = eval(*e.a);
        Value b = eval(*e.b);
        return binary(e.name, a, b, e.pos);
      }
      case EK::ListLit:
      case EK::TupleLit: {
        jinja::List l;
        for (auto& x : e.args) l.push_back(eval(*x));
        return Value::make_list(std::move(l), e.kind == EK::TupleLit);
      }
      case EK::DictLit: {
        jinja::Dict d;
        for (size_t k = 0; k < e.args.size(); ++k) {
          Value key = eval(*e.args[k]);
          if (!key.is_string()) fail(e.args[k]->pos, "only string dict keys are supported");
          d.set(key.s, eval(*e.kwargs[k].second));
        }
        return Value::make_dict(std::move(d));
      }
    }
    fail(e.pos, "bad expression");
  }
};

}  // namespace

ChatTemplate::ChatTemplate(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

ChatTemplate ChatTemplate::parse(std::string_view source) {
  auto impl = std::make_unique<Impl>();
  impl->body = jinja::parse_template(source, impl->source);
  return ChatTemplate(std::move(impl));
}

std::string ChatTemplate::render(std::string_view context_json, const RenderOptions& opts) const {
  jinja::ordered_json ctx;
  try {
    ctx = context_json.empty() ? jinja::ordered_json::object()
                               : jinja::ordered_json::parse(context_json);
  } catch (const jinja::ordered_json::exception& e) {
    raise<InvalidArgument>("[chat_template] context is not valid JSON: {}", e.what());
  }
  if (!ctx.is_object()) raise<InvalidArgument>("[chat_template] context must be a JSON object");
  Interp in(impl_->source, opts);
  for (auto& [k, v] : ctx.items()) in.set_global(k, jinja::from_json(v));
  std::string out;
  in.exec(impl_->body, out);
  return out;
}

std::string apply_chat_template(const Tokenizer& tok, std::string_view conversation_json,
                                const ChatOptions& opts) {
  using oj = jinja::ordered_json;
  if (tok.chat_template().empty())
    raise<InvalidArgument>("[chat_template] the tokenizer has no chat template");
  oj conv;
  try {
    conv = oj::parse(conversation_json);
  } catch (const oj::exception& e) {
    raise<InvalidArgument>("[chat_template] conversation is not valid JSON: {}", e.what());
  }
  if (conv.is_array()) conv = oj{{"messages", conv}};
  if (!conv.is_object() || !conv.contains("messages") || !conv["messages"].is_array())
    raise<InvalidArgument>("[chat_template] conversation needs a \"messages\" array");
  oj ctx = oj::object();
  oj cfg = oj::parse(tok.config_json(), nullptr, false);
  const SpecialTokens& st = tok.special_tokens();
  for (auto [k, v] : {std::pair{"bos_token", &st.bos_token},
                      {"eos_token", &st.eos_token},
                      {"unk_token", &st.unk_token},
                      {"pad_token", &st.pad_token}})
    if (!v->empty()) ctx[k] = *v;
  if (cfg.is_object() && cfg.contains("additional_special_tokens"))
    ctx["additional_special_tokens"] = cfg["additional_special_tokens"];
  ctx["messages"] = conv["messages"];
  ctx["tools"] = conv.contains("tools") ? conv["tools"] : oj();
  ctx["documents"] = conv.contains("documents") ? conv["documents"] : oj();
  bool agp = conv.value("add_generation_prompt", false);
  if (opts.add_generation_prompt) agp = *opts.add_generation_prompt;
  ctx["add_generation_prompt"] = agp;
  for (auto& [k, v] : conv.items())
    if (k != "messages" && k != "tools" && k != "documents" && k != "add_generation_prompt")
      ctx[k] = v;
  return ChatTemplate::parse(tok.chat_template()).render(ctx.dump(), opts.render);
}

}  // namespace ingot::tokenizer
