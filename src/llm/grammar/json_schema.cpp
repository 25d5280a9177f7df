// JSON-schema compiler and byte-level pushdown matcher (see json_schema.h).
#include "llm/grammar/json_schema.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace ingot::llm::grammar {

using json = nlohmann::json;
using Kind = SchemaNode::Kind;

namespace {

constexpr int kMaxDepth = 32;      // nesting of containers in a document
constexpr int kMaxWhitespace = 1;  // whitespace between tokens of the document: one byte
constexpr int kMaxNumberBytes = 24;
constexpr int kMaxIntegerBytes = 18;  // sign and digits: always an int64
constexpr int kMaxExponentDigits = 2;
constexpr size_t kMaxNodes = 4096;
// Open alternatives kept at once. Past it the extra ones are dropped: a very ambiguous schema
// may then refuse some valid documents, but never accepts an invalid one.
constexpr size_t kMaxStacks = 256;

std::string compact(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::strict);
}

// ---- compiler ----

class Compiler {
 public:
  explicit Compiler(const json& root) : root_(root) {}

  std::shared_ptr<JsonGrammar> run() {
    g_ = std::make_shared<JsonGrammar>();
    g_->root = compile(root_, "#");
    return g_;
  }

 private:
  int32_t add(SchemaNode n) {
    if (g_->nodes.size() >= kMaxNodes)
      raise("[json_schema] the schema is too large (more than {} nodes)", kMaxNodes);
    g_->nodes.push_back(std::move(n));
    return static_cast<int32_t>(g_->nodes.size() - 1);
  }
  int32_t literal(const json& v) {
    SchemaNode n;
    n.kind = Kind::literal;
    n.literal = compact(v);
    return add(std::move(n));
  }
  int32_t any_of(std::vector<int32_t> alts) {
    if (alts.size() == 1) return alts[0];
    SchemaNode n;
    n.kind = Kind::any_of;
    n.alts = std::move(alts);
    return add(std::move(n));
  }
  // Any JSON value (additionalProperties: true, items absent, json_object values).
  int32_t any_value() {
    if (any_ >= 0) return any_;
    any_ = add({});  // placeholder: the containers refer back to it
    SchemaNode obj;
    obj.kind = Kind::object;
    obj.additional = any_;
    SchemaNode arr;
    arr.kind = Kind::array;
    arr.items = any_;
    SchemaNode str;
    str.kind = Kind::string;
    SchemaNode num;
    num.kind = Kind::number;
    std::vector<int32_t> alts = {add(std::move(obj)), add(std::move(arr)), add(std::move(str)),
                                 add(std::move(num)), literal(true),       literal(false),
                                 literal(nullptr)};
    g_->nodes[static_cast<size_t>(any_)].kind = Kind::any_of;
    g_->nodes[static_cast<size_t>(any_)].alts = std::move(alts);
    return any_;
  }

  static int64_t count(const json& s, const char* key, const std::string& path) {
    const json& v = s[key];
    if (!v.is_number_unsigned() || v.get<uint64_t>() > (1u << 30))
      raise("[json_schema] '{}' at {} must be a non-negative integer, got {}", key, path,
            compact(v));
    return v.get<int64_t>();
  }

  int32_t resolve_ref(const std::string& ref, const std::string& path) {
    std::string name;
    const json* defs = nullptr;
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      const std::string p = prefix;
      if (ref.rfind(p, 0) == 0) {
        name = ref.substr(p.size());
        const std::string key = p.substr(2, p.size() - 3);
        if (root_.is_object() && root_.contains(key) && root_[key].is_object()) defs = &root_[key];
      }
    }
    if (name.empty() || name.find('/') != std::string::npos || name.find('~') != std::string::npos)
      raise(
          "[json_schema] unsupported '$ref' \"{}\" at {} (only \"#/$defs/NAME\" and "
          "\"#/definitions/NAME\")",
          ref, path);
    if (!defs || !defs->contains(name))
      raise("[json_schema] '$ref' \"{}\" at {} names no definition", ref, path);
    if (auto it = refs_.find(ref); it != refs_.end()) return it->second;
    if (active_.count(ref))
      raise("[json_schema] recursive '$ref' \"{}\" at {} is not supported", ref, path);
    active_.insert(ref);
    const int32_t id = compile((*defs)[name], ref);
    active_.erase(ref);
    refs_[ref] = id;
    return id;
  }

  int32_t compile(const json& s, const std::string& path) {
    if (++depth_ > 64) raise("[json_schema] the schema nests deeper than 64 levels at {}", path);
    const int32_t id = compile_inner(s, path);
    --depth_;
    return id;
  }

  int32_t compile_inner(const json& s, const std::string& path) {
    if (s.is_boolean()) {
      if (s.get<bool>()) return any_value();
      raise("[json_schema] the schema 'false' at {} accepts nothing", path);
    }
    if (!s.is_object()) raise("[json_schema] the schema at {} must be an object", path);
    static const std::set<std::string> kAnnotations = {"title",    "description", "$schema", "$id",
                                                       "$comment", "examples",    "default"};
    static const std::set<std::string> kSupported = {
        "type",     "properties", "required",   "additionalProperties",
        "enum",     "const",      "items",      "minItems",
        "maxItems", "minLength",  "maxLength",  "anyOf",
        "$ref",     "$defs",      "definitions"};
    for (const auto& [k, v] : s.items()) {
      (void)v;
      if (!kAnnotations.count(k) && !kSupported.count(k))
        raise("[json_schema] unsupported keyword '{}' at {}", k, path);
    }
    if (s.contains("$ref")) {
      if (!s["$ref"].is_string()) raise("[json_schema] '$ref' at {} must be a string", path);
      for (const auto& [k, v] : s.items()) {
        (void)v;
        if (k != "$ref" && !kAnnotations.count(k) && k != "$defs" && k != "definitions")
          raise("[json_schema] '$ref' next to '{}' at {} is not supported", k, path);
      }
      return resolve_ref(s["$ref"].get<std::string>(), path);
    }
    if (s.contains("const")) return literal(s["const"]);
    if (s.contains("enum")) {
      const json& e = s["enum"];
      if (!e.is_array() || e.empty())
        raise("[json_schema] 'enum' at {} must be a non-empty array", path);
      std::vector<int32_t> alts;
      for (const json& v : e) alts.push_back(literal(v));
      return any_of(std::move(alts));
    }
    if (s.contains("anyOf")) {
      const json& a = s["anyOf"];
      if (!a.is_array() || a.empty())
        raise("[json_schema] 'anyOf' at {} must be a non-empty array", path);
      for (const auto& [k, v] : s.items()) {
        (void)v;
        if (k != "anyOf" && !kAnnotations.count(k) && k != "$defs" && k != "definitions")
          raise("[json_schema] 'anyOf' next to '{}' at {} is not supported", k, path);
      }
      std::vector<int32_t> alts;
      for (size_t i = 0; i < a.size(); ++i)
        alts.push_back(compile(a[i], path + "/anyOf/" + std::to_string(i)));
      return any_of(std::move(alts));
    }
    if (!s.contains("type")) {
      // No type: anything, unless object / array keywords say what it is.
      if (s.contains("properties") || s.contains("required") || s.contains("additionalProperties"))
        return compile_typed(s, "object", path);
      if (s.contains("items")) return compile_typed(s, "array", path);
      return any_value();
    }
    const json& t = s["type"];
    if (t.is_string()) return compile_typed(s, t.get<std::string>(), path);
    if (!t.is_array() || t.empty())
      raise("[json_schema] 'type' at {} must be a string or a non-empty array of strings", path);
    std::vector<int32_t> alts;
    for (const json& x : t) {
      if (!x.is_string()) raise("[json_schema] 'type' at {} must hold strings", path);
      alts.push_back(compile_typed(s, x.get<std::string>(), path));
    }
    return any_of(std::move(alts));
  }

  int32_t compile_typed(const json& s, const std::string& type, const std::string& path) {
    SchemaNode n;
    if (type == "null") return literal(nullptr);
    if (type == "boolean") return any_of({literal(true), literal(false)});
    if (type == "number" || type == "integer") {
      n.kind = type == "number" ? Kind::number : Kind::integer;
      return add(std::move(n));
    }
    if (type == "string") {
      n.kind = Kind::string;
      if (s.contains("minLength")) n.min_length = count(s, "minLength", path);
      if (s.contains("maxLength")) n.max_length = count(s, "maxLength", path);
      if (n.max_length >= 0 && n.min_length > n.max_length)
        raise("[json_schema] 'minLength' > 'maxLength' at {}", path);
      return add(std::move(n));
    }
    if (type == "array") {
      n.kind = Kind::array;
      if (s.contains("minItems")) n.min_items = count(s, "minItems", path);
      if (s.contains("maxItems")) n.max_items = count(s, "maxItems", path);
      if (n.max_items >= 0 && n.min_items > n.max_items)
        raise("[json_schema] 'minItems' > 'maxItems' at {}", path);
      if (s.contains("items")) {
        if (s["items"].is_array())
          raise("[json_schema] 'items' as an array (tuple form) at {} is not supported", path);
        n.items = compile(s["items"], path + "/items");
      } else {
        n.items = any_value();
      }
      return add(std::move(n));
    }
    if (type == "object") {
      n.kind = Kind::object;
      if (s.contains("properties")) {
        const json& p = s["properties"];
        if (!p.is_object()) raise("[json_schema] 'properties' at {} must be an object", path);
        if (p.size() > 64)
          raise("[json_schema] more than 64 properties at {} are not supported", path);
        for (const auto& [k, v] : p.items()) {
          const std::string escaped = compact(json(k));
          n.names.push_back(escaped.substr(1, escaped.size() - 2));
          n.props.push_back(compile(v, path + "/properties/" + k));
        }
      }
      if (s.contains("required")) {
        const json& r = s["required"];
        if (!r.is_array()) raise("[json_schema] 'required' at {} must be an array", path);
        for (const json& x : r) {
          if (!x.is_string()) raise("[json_schema] 'required' at {} must hold strings", path);
          const std::string escaped = compact(x);
          const auto it =
              std::find(n.names.begin(), n.names.end(), escaped.substr(1, escaped.size() - 2));
          if (it == n.names.end())
            raise("[json_schema] required property \"{}\" at {} is not in 'properties'",
                  x.get<std::string>(), path);
          n.required |= uint64_t{1} << (it - n.names.begin());
        }
      }
      n.additional = any_value();
      if (s.contains("additionalProperties")) {
        const json& a = s["additionalProperties"];
        if (a.is_boolean()) {
          if (!a.get<bool>()) n.additional = -1;
        } else {
          raise(
              "[json_schema] 'additionalProperties' at {} must be true or false (a schema is "
              "not supported)",
              path);
        }
      }
      return add(std::move(n));
    }
    raise("[json_schema] unknown type \"{}\" at {}", type, path);
  }

  const json& root_;
  std::shared_ptr<JsonGrammar> g_;
  int32_t any_ = -1;
  int depth_ = 0;
  std::map<std::string, int32_t> refs_;
  std::set<std::string> active_;
};

// ---- matcher ----

using Frame = JsonMatcher::Frame;
using Stack = JsonMatcher::Stack;

// Object states.
enum : uint8_t { O_START, O_FIRST, O_KEY, O_COLON, O_VALUE, O_AFTER, O_NEXT };
// Array states.
enum : uint8_t { A_START, A_FIRST, A_AFTER, A_NEXT };
// String states.
enum : uint8_t { S_START, S_BODY, S_ESC, S_HEX };
// Number states (terminal: N_ZERO, N_INT, N_FRAC, N_EXP).
enum : uint8_t { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

bool is_ws(uint8_t c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}
bool is_digit(uint8_t c) {
  return c >= '0' && c <= '9';
}
bool is_hex(uint8_t c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool number_terminal(uint8_t st) {
  return st == N_ZERO || st == N_INT || st == N_FRAC || st == N_EXP;
}

// Whitespace where the grammar allows it (bounded runs).
bool take_ws(Frame& f, uint8_t c) {
  if (!is_ws(c) || f.ws >= kMaxWhitespace) return false;
  ++f.ws;
  return true;
}

class Stepper {
 public:
  explicit Stepper(const JsonGrammar& g) : g_(g) {}

  // Pushes the value `node` on `s` (expanding any_of) into `out`.
  void push_value(const Stack& s, int32_t node, std::vector<Stack>& out, int guard = 0) const {
    const SchemaNode& n = g_.nodes[static_cast<size_t>(node)];
    if (n.kind == Kind::any_of) {
      if (guard > 16) return;  // any_of nested in any_of this deep: give up on the branch
      for (int32_t a : n.alts) push_value(s, a, out, guard + 1);
      return;
    }
    if (static_cast<int>(s.size()) >= kMaxDepth) return;
    Stack t = s;
    Frame f;
    f.node = node;
    t.push_back(std::move(f));
    out.push_back(std::move(t));
  }

  // All stacks that follow `s` after byte c (none: refused).
  void step(Stack s, uint8_t c, std::vector<Stack>& out) const {
    if (s.empty()) return;  // the document is complete: nothing may follow
    Frame& f = s.back();
    const SchemaNode& n = g_.nodes[static_cast<size_t>(f.node)];
    switch (n.kind) {
      case Kind::literal:
        if (static_cast<size_t>(f.count) < n.literal.size() &&
            static_cast<uint8_t>(n.literal[static_cast<size_t>(f.count)]) == c) {
          if (static_cast<size_t>(++f.count) == n.literal.size()) s.pop_back();
          out.push_back(std::move(s));
        }
        return;
      case Kind::number:
      case Kind::integer:
        return step_number(std::move(s), n.kind == Kind::integer, c, out);
      case Kind::string:
        if (step_string(f, n, c)) {
          if (f.st == S_START) s.pop_back();  // closing quote seen
          out.push_back(std::move(s));
        }
        return;
      case Kind::array:
        return step_array(std::move(s), n, c, out);
      case Kind::object:
        return step_object(std::move(s), n, c, out);
      case Kind::any_of:
        return;  // never on a stack
    }
  }

 private:
  void step_number(Stack s, bool integer, uint8_t c, std::vector<Stack>& out) const {
    Frame& f = s.back();
    uint8_t next = 255;
    switch (f.st) {
      case N_START:
        next = c == '-' ? N_MINUS : c == '0' ? N_ZERO : is_digit(c) ? N_INT : 255;
        break;
      case N_MINUS:
        next = c == '0' ? N_ZERO : is_digit(c) ? N_INT : 255;
        break;
      case N_ZERO:
      case N_INT:
        if (f.st == N_INT && is_digit(c))
          next = N_INT;
        else if (!integer && c == '.')
          next = N_DOT;
        else if (!integer && (c == 'e' || c == 'E'))
          next = N_E;
        break;
      case N_DOT:
        next = is_digit(c) ? N_FRAC : 255;
        break;
      case N_FRAC:
        next = is_digit(c) ? N_FRAC : (c == 'e' || c == 'E') ? N_E : 255;
        break;
      case N_E:
        next = (c == '+' || c == '-') ? N_ESIGN : is_digit(c) ? N_EXP : 255;
        break;
      case N_ESIGN:
      case N_EXP:
        next = is_digit(c) ? N_EXP : 255;
        break;
    }
    if (next != 255) {
      // Bounded so every number parses to a finite double (and an integer to an int64).
      if (++f.count > (integer ? kMaxIntegerBytes : kMaxNumberBytes)) return;
      if (next == N_EXP && ++f.aux > kMaxExponentDigits) return;
      f.st = next;
      out.push_back(std::move(s));
      return;
    }
    if (!number_terminal(f.st)) return;
    s.pop_back();  // the number ended before c: c belongs to the enclosing value
    step(std::move(s), c, out);
  }

  // Strings without length limits do not count characters, so their states repeat (and the
  // mask cache serves them).
  static bool counted(const SchemaNode& n) { return n.min_length > 0 || n.max_length >= 0; }

  // One byte of a string (S_START: the opening quote). Leaves st == S_START after the closing
  // quote (the caller pops the frame). `key` strings have no length limits.
  static bool step_string(Frame& f, const SchemaNode& n, uint8_t c) {
    switch (f.st) {
      case S_START:
        if (c != '"') return false;
        f.st = S_BODY;
        return true;
      case S_BODY:
        if (f.aux > 0) {  // inside a multi-byte UTF-8 character: aux = left | range << 2
          const int range = f.aux >> 2;  // RFC 3629 limits on the second byte
          const uint8_t lo = range == 1 ? 0xA0 : range == 3 ? 0x90 : 0x80;
          const uint8_t hi = range == 2 ? 0x9F : range == 4 ? 0x8F : 0xBF;
          if (c < lo || c > hi) return false;
          f.aux = static_cast<uint8_t>((f.aux & 3) - 1);
          return true;
        }
        if (c == '"') {
          if (f.count < n.min_length) return false;
          f.st = S_START;
          return true;
        }
        if (c < 0x20 || c == 0x7F || (c >= 0x80 && c < 0xC2) || c > 0xF4) return false;
        if (n.max_length >= 0 && f.count >= n.max_length) return false;
        if (c == '\\') {
          f.st = S_ESC;
          return true;
        }
        if (counted(n)) ++f.count;
        if (c >= 0xF0)
          f.aux = static_cast<uint8_t>(3 | (c == 0xF0 ? 3 : c == 0xF4 ? 4 : 0) << 2);
        else if (c >= 0xE0)
          f.aux = static_cast<uint8_t>(2 | (c == 0xE0 ? 1 : c == 0xED ? 2 : 0) << 2);
        else
          f.aux = c >= 0xC2 ? 1 : 0;
        return true;
      case S_ESC:
        if (c == 'u') {
          f.st = S_HEX;
          f.aux = 0;
          return true;
        }
        if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' && c != 'r' &&
            c != 't')
          return false;
        if (counted(n)) ++f.count;
        f.st = S_BODY;
        return true;
      case S_HEX:
        if (!is_hex(c)) return false;
        if (++f.aux == 4) {
          f.aux = 0;
          if (counted(n)) ++f.count;
          f.st = S_BODY;
        }
        return true;
    }
    return false;
  }

  void step_array(Stack s, const SchemaNode& n, uint8_t c, std::vector<Stack>& out) const {
    Frame& f = s.back();
    switch (f.st) {
      case A_START:
        if (c != '[') return;
        f.st = A_FIRST;
        out.push_back(std::move(s));
        return;
      case A_FIRST:
      case A_NEXT:
        if (take_ws(f, c)) {
          out.push_back(std::move(s));
          return;
        }
        if (f.st == A_FIRST && c == ']') {
          if (n.min_items > 0) return;
          s.pop_back();
          out.push_back(std::move(s));
          return;
        }
        if (n.max_items >= 0 && f.count >= n.max_items) return;
        f.st = A_AFTER;
        f.ws = 0;
        ++f.count;
        return start_value(std::move(s), n.items, c, out);
      case A_AFTER:
        if (take_ws(f, c)) {
          out.push_back(std::move(s));
          return;
        }
        if (c == ',' && (n.max_items < 0 || f.count < n.max_items)) {
          f.st = A_NEXT;
          f.ws = 0;
          out.push_back(std::move(s));
        } else if (c == ']' && f.count >= n.min_items) {
          s.pop_back();
          out.push_back(std::move(s));
        }
        return;
    }
  }

  // Starts value `node` under the top frame and feeds it c.
  void start_value(Stack s, int32_t node, uint8_t c, std::vector<Stack>& out) const {
    std::vector<Stack> pushed;
    push_value(s, node, pushed);
    for (Stack& p : pushed) step(std::move(p), c, out);
  }

  static bool all_required(const Frame& f, const SchemaNode& n) {
    return (f.seen & n.required) == n.required;
  }
  static bool more_keys(const Frame& f, const SchemaNode& n) {
    if (n.additional >= 0) return true;
    for (size_t i = 0; i < n.names.size(); ++i)
      if (!(f.seen >> i & 1)) return true;
    return false;
  }

  // A key byte: a prefix of an unseen property name, or (with additional keys) any string byte.
  static bool step_key(Frame& f, const SchemaNode& n, uint8_t c) {
    if (c == '"' && f.aux == 0) {
      for (size_t i = 0; i < n.names.size(); ++i)
        if (n.names[i] == f.buf) {
          if (f.seen >> i & 1) return false;  // duplicate key
          f.key = static_cast<int32_t>(i);
          f.st = O_COLON;
          f.buf.clear();
          return true;
        }
      if (n.additional < 0) return false;
      f.key = -2;
      f.st = O_COLON;
      f.buf.clear();
      return true;
    }
    bool named = false;
    if (f.aux == 0) {
      for (size_t i = 0; i < n.names.size() && !named; ++i)
        named = !(f.seen >> i & 1) && n.names[i].size() > f.buf.size() &&
                n.names[i].compare(0, f.buf.size(), f.buf) == 0 &&
                static_cast<uint8_t>(n.names[i][f.buf.size()]) == c;
    }
    if (n.additional >= 0) {
      // Free-form key: reuse the string automaton's escape / UTF-8 states through a scratch
      // frame (aux: below 64 the string's UTF-8 state, 64 after '\', 65-68 hex digits).
      Frame k;
      k.st = f.aux == 64 ? S_ESC : f.aux >= 65 ? S_HEX : S_BODY;
      k.aux = f.aux < 64 ? f.aux : f.aux >= 65 ? static_cast<uint8_t>(f.aux - 65) : 0;
      static const SchemaNode kPlain = [] {
        SchemaNode s;
        s.kind = Kind::string;
        return s;
      }();
      if (!step_string(k, kPlain, c)) return named && (f.buf.push_back(static_cast<char>(c)), true);
      f.aux = k.st == S_ESC ? 64 : k.st == S_HEX ? static_cast<uint8_t>(65 + k.aux) : k.aux;
      // Keep the typed bytes only while they can still be a declared name.
      if (f.buf.size() < 256) f.buf.push_back(static_cast<char>(c));
      return true;
    }
    if (!named) return false;
    f.buf.push_back(static_cast<char>(c));
    return true;
  }

  void step_object(Stack s, const SchemaNode& n, uint8_t c, std::vector<Stack>& out) const {
    Frame& f = s.back();
    switch (f.st) {
      case O_START:
        if (c != '{') return;
        f.st = O_FIRST;
        out.push_back(std::move(s));
        return;
      case O_FIRST:
      case O_NEXT:
        if (take_ws(f, c)) {
          out.push_back(std::move(s));
          return;
        }
        if (c == '"' && more_keys(f, n)) {
          f.st = O_KEY;
          f.ws = 0;
          f.aux = 0;
          f.buf.clear();
          out.push_back(std::move(s));
        } else if (f.st == O_FIRST && c == '}' && all_required(f, n)) {
          s.pop_back();
          out.push_back(std::move(s));
        }
        return;
      case O_KEY:
        if (step_key(f, n, c)) out.push_back(std::move(s));
        return;
      case O_COLON:
        if (take_ws(f, c)) {
          out.push_back(std::move(s));
        } else if (c == ':') {
          f.st = O_VALUE;
          f.ws = 0;
          out.push_back(std::move(s));
        }
        return;
      case O_VALUE: {
        if (take_ws(f, c)) {
          out.push_back(std::move(s));
          return;
        }
        const int32_t node = f.key >= 0 ? n.props[static_cast<size_t>(f.key)] : n.additional;
        if (f.key >= 0) f.seen |= uint64_t{1} << f.key;
        f.st = O_AFTER;
        f.ws = 0;
        f.key = -1;
        return start_value(std::move(s), node, c, out);
      }
      case O_AFTER:
        if (take_ws(f, c)) {
          out.push_back(std::move(s));
        } else if (c == ',' && more_keys(f, n)) {
          f.st = O_NEXT;
          f.ws = 0;
          out.push_back(std::move(s));
        } else if (c == '}' && all_required(f, n)) {
          s.pop_back();
          out.push_back(std::move(s));
        }
        return;
    }
  }

  const JsonGrammar& g_;
};

}  // namespace

std::shared_ptr<const JsonGrammar> JsonGrammar::any_object() {
  return from_schema(R"({"type": "object"})");
}

std::shared_ptr<const JsonGrammar> JsonGrammar::from_schema(std::string_view schema_json) {
  const json s = json::parse(schema_json, nullptr, /*allow_exceptions=*/false);
  if (s.is_discarded()) raise("[json_schema] the schema is not valid JSON");
  return Compiler(s).run();
}

JsonMatcher::JsonMatcher(std::shared_ptr<const JsonGrammar> g) : g_(std::move(g)) {
  if (!g_ || g_->root < 0) raise("[json_schema] matcher needs a compiled grammar");
  Stepper(*g_).push_value({}, g_->root, stacks_);
}

bool JsonMatcher::feed(uint8_t c) {
  const Stepper st(*g_);
  std::vector<Stack> next;
  for (const Stack& s : stacks_) st.step(s, c, next);
  if (next.empty()) return false;
  // Alternatives that reached the same state are one.
  std::sort(next.begin(), next.end(), [](const Stack& a, const Stack& b) {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(), [](const Frame& x, const Frame& y) {
          return std::tie(x.node, x.st, x.ws, x.aux, x.count, x.key, x.seen, x.buf) <
                 std::tie(y.node, y.st, y.ws, y.aux, y.count, y.key, y.seen, y.buf);
        });
  });
  next.erase(std::unique(next.begin(), next.end()), next.end());
  if (next.size() > kMaxStacks) next.resize(kMaxStacks);
  stacks_ = std::move(next);
  return true;
}

bool JsonMatcher::feed(std::string_view bytes) {
  JsonMatcher saved = *this;
  for (char c : bytes)
    if (!feed(static_cast<uint8_t>(c))) {
      *this = std::move(saved);
      return false;
    }
  return true;
}

bool JsonMatcher::accepting() const {
  for (const Stack& s : stacks_) {
    if (s.empty()) return true;
    if (s.size() == 1) {
      const SchemaNode& n = g_->nodes[static_cast<size_t>(s[0].node)];
      if ((n.kind == Kind::number || n.kind == Kind::integer) && number_terminal(s[0].st))
        return true;
    }
  }
  return false;
}

std::string JsonMatcher::key() const {
  std::string k;
  for (const Stack& s : stacks_) {
    k += '|';
    for (const Frame& f : s) {
      const auto put = [&](const auto& v) {
        k.append(reinterpret_cast<const char*>(&v), sizeof(v));
      };
      put(f.node);
      put(f.st);
      put(f.ws);
      put(f.aux);
      put(f.count);
      put(f.key);
      put(f.seen);
      const auto len = static_cast<uint32_t>(f.buf.size());
      put(len);
      k += f.buf;
    }
  }
  return k;
}

}  // namespace ingot::llm::grammar
