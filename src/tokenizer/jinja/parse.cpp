// Jinja parser: statements and expressions with jinja2.parser's precedence (see ast.h).
#include <charconv>
#include <cstdlib>
#include <set>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/lexer.h"
#include "util/error.h"

namespace ingot::jinja {

std::string location(std::string_view source, size_t pos) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      col = 1;
    } else if ((static_cast<unsigned char>(source[i]) & 0xC0) != 0x80) {
      ++col;
    }
  }
  return fmt::format("line {}, column {}", line, col);
}

namespace {

using K = Token::Kind;
using EK = Expr::Kind;
using SK = Stmt::Kind;

class Parser {
 public:
  Parser(const std::string& src, std::vector<Token> toks) : src_(src), t_(std::move(toks)) {}

  Body parse_all() {
    Body b = parse_body({});
    if (cur().kind != K::End) fail(cur().pos, "unexpected tag");
    return b;
  }

 private:
  const std::string& src_;
  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  static constexpr int kMaxNesting = 200;

  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  int64_t int_literal(const std::string& text, size_t pos) const {
    int64_t v = 0;
    auto r = std::from_chars(text.data(), text.data() + text.size(), v);
    if (r.ec != std::errc() || r.ptr != text.data() + text.size())
      fail(pos, fmt::format("integer literal '{}' out of range", text));
    return v;
  }
  double float_literal(const std::string& text, size_t pos) const {
    // strtod saturates to +-inf on overflow like Python's float(); never throws.
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size()) fail(pos, fmt::format("bad number '{}'", text));
    return v;
  }
  [[noreturn]] void fail(size_t pos, const std::string& msg) const {
    raise<FormatError>("[chat_template] {}: {}", location(src_, pos), msg);
  }
  bool is_op(const char* op) const { return cur().kind == K::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().kind == K::Name && cur().text == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    ++i_;
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    ++i_;
    return true;
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail(cur().pos, fmt::format("expected '{}'", op));
  }
  std::string expect_name() {
    if (cur().kind != K::Name) fail(cur().pos, "expected a name");
    return t_[i_++].text;
  }
  void expect_block_end() {
    if (cur().kind != K::BlockEnd) fail(cur().pos, "expected end of statement block");
    ++i_;
  }
  ExprPtr node(EK k, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->pos = pos;
    return e;
  }

  // Parses statements until a block tag whose name is in `ends`; stops on that name token.
  Body parse_body(const std::set<std::string>& ends) {
    Body body;
    while (true) {
      const Token& tk = cur();
      if (tk.kind == K::End) {
        if (!ends.empty()) {
          std::string want;
          for (auto& e : ends) want += (want.empty() ? "'" : " or '") + e + "'";
          fail(tk.pos, "Unexpected end of template. Jinja was looking for " + want);
        }
        return body;
      }
      if (tk.kind == K::Data) {
        auto s = std::make_unique<Stmt>();
        s->kind = SK::Text;
        s->pos = tk.pos;
        s->text = tk.text;
        body.push_back(std::move(s));
        ++i_;
      } else if (tk.kind == K::VarBegin) {
        ++i_;
        auto s = std::make_unique<Stmt>();
        s->kind = SK::Output;
        s->pos = tk.pos;
        s->expr = parse_tuple();
        if (cur().kind != K::VarEnd) fail(cur().pos, "expected end of print statement");
        ++i_;
        body.push_back(std::move(s));
      } else if (tk.kind == K::BlockBegin) {
        const Token& name = peek();
        if (name.kind != K::Name) fail(name.pos, "expected a statement name");
        if (ends.count(name.text)) {
          ++i_;
          return body;
        }
        ++i_;
        body.push_back(parse_statement());
      } else {
        fail(tk.pos, "unexpected token");
      }
    }
  }

  StmtPtr parse_statement() {
    if (++depth_ > kMaxNesting) fail(cur().pos, "statements nested too deeply");
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    const Token& nt = cur();
    std::string n = nt.text;
    size_t pos = nt.pos;
    ++i_;
    auto s = std::make_unique<Stmt>();
    s->pos = pos;
    if (n == "if") {
      s->kind = SK::If;
      ExprPtr cond = parse_expression();
      expect_block_end();
      while (true) {
        Body b = parse_body({"elif", "else", "endif"});
        s->branches.emplace_back(std::move(cond), std::move(b));
        std::string tag = t_[i_++].text;
        if (tag == "elif") {
          cond = parse_expression();
          expect_block_end();
        } else if (tag == "else") {
          expect_block_end();
          s->branches.emplace_back(nullptr, parse_body({"endif"}));
          ++i_;
          expect_block_end();
          break;
        } else {
          expect_block_end();
          break;
        }
      }
    } else if (n == "for") {
      s->kind = SK::For;
      do s->targets.push_back(expect_name());
      while (skip_op(","));
      if (!skip_name("in")) fail(cur().pos, "expected 'in'");
      s->expr = parse_or();
      if (is_op(",")) {  // for x in a, b
        auto tup = node(EK::TupleLit, s->expr->pos);
        tup->args.push_back(std::move(s->expr));
        while (skip_op(",")) tup->args.push_back(parse_or());
        s->expr = std::move(tup);
      }
      if (skip_name("if")) s->filter = parse_expression();
      if (is_name("recursive")) fail(cur().pos, "recursive loops are not supported");
      expect_block_end();
      s->body = parse_body({"endfor", "else"});
      if (t_[i_++].text == "else") {
        expect_block_end();
        s->else_body = parse_body({"endfor"});
        ++i_;
      }
      expect_block_end();
    } else if (n == "set") {
      std::string target = expect_name();
      if (skip_op(".")) {
        s->attr = expect_name();
        s->targets.push_back(target);
      } else {
        s->targets.push_back(target);
        while (skip_op(",")) s->targets.push_back(expect_name());
      }
      if (skip_op("=")) {
        s->kind = SK::Set;
        s->expr = parse_tuple();
        expect_block_end();
      } else {
        s->kind = SK::SetBlock;
        while (skip_op("|")) s->filters.push_back(parse_filter_call(nullptr));
        expect_block_end();
        s->body = parse_body({"endset"});
        ++i_;
        expect_block_end();
      }
    } else if (n == "macro") {
      s->kind = SK::Macro;
      s->name = expect_name();
      parse_params(s->params);
      expect_block_end();
      s->body = parse_body({"endmacro"});
      ++i_;
      expect_block_end();
    } else if (n == "call") {
      s->kind = SK::CallBlock;
      if (is_op("(")) parse_params(s->params);
      s->expr = parse_expression();
      if (s->expr->kind != EK::Call) fail(pos, "expected a call after 'call'");
      expect_block_end();
      s->body = parse_body({"endcall"});
      ++i_;
      expect_block_end();
    } else if (n == "filter") {
      s->kind = SK::FilterBlock;
      do s->filters.push_back(parse_filter_call(nullptr));
      while (skip_op("|"));
      expect_block_end();
      s->body = parse_body({"endfilter"});
      ++i_;
      expect_block_end();
    } else if (n == "break" || n == "continue") {
      s->kind = n == "break" ? SK::Break : SK::Continue;
      expect_block_end();
    } else if (n == "generation") {  // transformers' AssistantTracker tag: renders its body
      s->kind = SK::Scope;
      expect_block_end();
      s->body = parse_body({"endgeneration"});
      ++i_;
      expect_block_end();
    } else {
      fail(t_[i_ - 2].pos, fmt::format("Encountered unknown tag '{}'.", n));
    }
    return s;
  }

  void parse_params(std::vector<std::pair<std::string, ExprPtr>>& params) {
    expect_op("(");
    while (!is_op(")")) {
      if (!params.empty()) expect_op(",");
      if (is_op(")")) break;
      std::string p = expect_name();
      ExprPtr def;
      if (skip_op("=")) def = parse_expression();
      params.emplace_back(p, std::move(def));
    }
    expect_op(")");
  }

  ExprPtr parse_tuple() {
    size_t pos = cur().pos;
    ExprPtr first = parse_expression();
    if (!is_op(",")) return first;
    auto tup = node(EK::TupleLit, pos);
    tup->args.push_back(std::move(first));
    while (skip_op(",")) {
      if (cur().kind == K::VarEnd || cur().kind == K::BlockEnd || is_op(")")) break;
      tup->args.push_back(parse_expression());
    }
    return tup;
  }

  ExprPtr parse_expression() {
    if (++depth_ > kMaxNesting) fail(cur().pos, "expression nested too deeply");
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    ExprPtr e = parse_or();
    while (is_name("if")) {
      size_t pos = cur().pos;
      ++i_;
      auto c = node(EK::Cond, pos);
      c->a = parse_or();    // condition
      c->b = std::move(e);  // value when true
      if (skip_name("else")) c->c = parse_expression();
      e = std::move(c);
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (is_name("or")) {
      auto n = node(EK::Or, cur().pos);
      ++i_;
      n->a = std::move(l);
      n->b = parse_and();
      l = std::move(n);
    }
    return l;
  }

  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (is_name("and")) {
      auto n = node(EK::And, cur().pos);
      ++i_;
      n->a = std::move(l);
      n->b = parse_not();
      l = std::move(n);
    }
    return l;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      if (++depth_ > kMaxNesting) fail(cur().pos, "expression nested too deeply");
      struct Leave {
        int& d;
        ~Leave() { --d; }
      } leave{depth_};
      auto n = node(EK::Not, cur().pos);
      ++i_;
      n->a = parse_not();
      return n;
    }
    return parse_compare();
  }

  ExprPtr binary(std::string op, ExprPtr l, ExprPtr r, size_t pos) {
    auto n = node(EK::Binary, pos);
    n->name = std::move(op);
    n->a = std::move(l);
    n->b = std::move(r);
    return n;
  }

  ExprPtr parse_compare() {
    ExprPtr l = parse_math1();
    ExprPtr result;
    const Expr* prev_right = nullptr;
    (void)prev_right;
    while (true) {
      std::string op;
      size_t pos = cur().pos;
      if (cur().kind == K::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                  cur().text == ">" || cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        ++i_;
      } else if (is_name("in")) {
        op = "in";
        ++i_;
      } else if (is_name("not") && peek().kind == K::Name && peek().text == "in") {
        op = "notin";
        i_ += 2;
      } else {
        break;
      }
      ExprPtr r = parse_math1();
      if (!result) {
        result = binary(op, std::move(l), std::move(r), pos);
      } else {
        // Chained comparison a < b < c == (a < b) and (b < c): re-parse is avoided by cloning
        // the middle operand's position only; templates rarely chain, so evaluate b twice.
        fail(pos, "chained comparisons are not supported");
      }
    }
    return result ? std::move(result) : std::move(l);
  }

  ExprPtr parse_math1() {
    ExprPtr l = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().text;
      size_t pos = cur().pos;
      ++i_;
      l = binary(op, std::move(l), parse_concat(), pos);
    }
    return l;
  }

  ExprPtr parse_concat() {
    ExprPtr l = parse_math2();
    while (is_op("~")) {
      size_t pos = cur().pos;
      ++i_;
      l = binary("~", std::move(l), parse_math2(), pos);
    }
    return l;
  }

  ExprPtr parse_math2() {
    ExprPtr l = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().text;
      size_t pos = cur().pos;
      ++i_;
      l = binary(op, std::move(l), parse_pow(), pos);
    }
    return l;
  }

  ExprPtr parse_pow() {
    ExprPtr l = parse_unary(true);
    while (is_op("**")) {
      size_t pos = cur().pos;
      ++i_;
      l = binary("**", std::move(l), parse_unary(true), pos);
    }
    return l;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr n;
    if (is_op("-") || is_op("+")) {
      if (++depth_ > kMaxNesting) fail(cur().pos, "expression nested too deeply");
      struct Leave {
        int& d;
        ~Leave() { --d; }
      } leave{depth_};
      n = node(is_op("-") ? EK::Neg : EK::Pos, cur().pos);
      ++i_;
      n->a = parse_unary(false);
    } else {
      n = parse_primary();
    }
    n = parse_postfix(std::move(n));
    if (with_filter) n = parse_filter_expr(std::move(n));
    return n;
  }

  ExprPtr parse_primary() {
    const Token& tk = cur();
    size_t pos = tk.pos;
    switch (tk.kind) {
      case K::Name: {
        ++i_;
        const std::string& n = tk.text;
        if (n == "true" || n == "True") return literal(Value::boolean(true), pos);
        if (n == "false" || n == "False") return literal(Value::boolean(false), pos);
        if (n == "none" || n == "None") return literal(Value::none(), pos);
        auto e = node(EK::Name, pos);
        e->name = n;
        return e;
      }
      case K::String: {
        std::string s;
        while (cur().kind == K::String) s += t_[i_++].text;
        return literal(Value::string(std::move(s)), pos);
      }
      case K::Int: {
        ++i_;
        return literal(Value::integer(int_literal(tk.text, pos)), pos);
      }
      case K::Float:
        ++i_;
        return literal(Value::number(float_literal(tk.text, pos)), pos);
      case K::Op:
        if (tk.text == "(") {
          ++i_;
          if (skip_op(")")) return node(EK::TupleLit, pos);
          ExprPtr e = parse_expression();
          if (is_op(",")) {
            auto tup = node(EK::TupleLit, pos);
            tup->args.push_back(std::move(e));
            while (skip_op(",")) {
              if (is_op(")")) break;
              tup->args.push_back(parse_expression());
            }
            e = std::move(tup);
          }
          expect_op(")");
          return e;
        }
        if (tk.text == "[") {
          ++i_;
          auto l = node(EK::ListLit, pos);
          while (!is_op("]")) {
            if (!l->args.empty()) expect_op(",");
            if (is_op("]")) break;
            l->args.push_back(parse_expression());
          }
          expect_op("]");
          return l;
        }
        if (tk.text == "{") {
          ++i_;
          auto d = node(EK::DictLit, pos);
          while (!is_op("}")) {
            if (!d->args.empty()) expect_op(",");
            if (is_op("}")) break;
            d->args.push_back(parse_expression());
            expect_op(":");
            d->kwargs.emplace_back("", parse_expression());
          }
          expect_op("}");
          return d;
        }
        break;
      default:
        break;
    }
    fail(pos, tk.kind == K::VarEnd     ? "unexpected 'end of print statement'"
              : tk.kind == K::BlockEnd ? "unexpected 'end of statement block'"
              : tk.kind == K::End      ? "unexpected end of template"
                                       : fmt::format("unexpected '{}'", tk.text));
  }

  ExprPtr literal(Value v, size_t pos) {
    auto e = node(EK::Literal, pos);
    e->literal = std::move(v);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr n) {
    while (true) {
      size_t pos = cur().pos;
      if (skip_op(".")) {
        if (cur().kind == K::Name) {
          auto a = node(EK::Attr, pos);
          a->a = std::move(n);
          a->name = t_[i_++].text;
          n = std::move(a);
        } else if (cur().kind == K::Int) {
          auto it = node(EK::Item, pos);
          it->a = std::move(n);
          const Token& t = t_[i_++];
          it->b = literal(Value::integer(int_literal(t.text, t.pos)), pos);
          n = std::move(it);
        } else {
          fail(cur().pos, "expected attribute name");
        }
      } else if (skip_op("[")) {
        ExprPtr start, stop, step;
        bool slice = false;
        if (!is_op(":")) start = parse_expression();
        if (skip_op(":")) {
          slice = true;
          if (!is_op("]") && !is_op(":")) stop = parse_expression();
          if (skip_op(":") && !is_op("]")) step = parse_expression();
        }
        expect_op("]");
        auto it = node(slice ? EK::Slice : EK::Item, pos);
        it->a = std::move(n);
        it->b = std::move(start);
        it->c = std::move(stop);
        if (slice) it->args.push_back(std::move(step));
        n = std::move(it);
      } else if (is_op("(")) {
        auto c = node(EK::Call, n->pos);
        c->a = std::move(n);
        parse_call_args(*c);
        n = std::move(c);
      } else {
        return n;
      }
    }
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (cur().kind == K::Name && peek().kind == K::Op && peek().text == "=") {
        std::string k = t_[i_].text;
        i_ += 2;
        call.kwargs.emplace_back(k, parse_expression());
      } else {
        if (!call.kwargs.empty()) fail(cur().pos, "positional argument follows keyword argument");
        call.args.push_back(parse_expression());
      }
    }
    expect_op(")");
  }

  ExprPtr parse_filter_call(ExprPtr input) {
    size_t pos = cur().pos;
    auto f = node(EK::Filter, pos);
    f->name = expect_name();
    while (skip_op(".")) f->name += "." + expect_name();
    f->a = std::move(input);
    if (is_op("(")) parse_call_args(*f);
    return f;
  }

  ExprPtr parse_filter_expr(ExprPtr n) {
    while (true) {
      if (skip_op("|")) {
        n = parse_filter_call(std::move(n));
      } else if (is_name("is")) {
        auto t = node(EK::Test, cur().pos);
        ++i_;
        if (skip_name("not")) t->negated = true;
        t->name = expect_name();
        t->a = std::move(n);
        if (is_op("(")) {
          parse_call_args(*t);
        } else if ((cur().kind == K::Name || cur().kind == K::String || cur().kind == K::Int ||
                    cur().kind == K::Float || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and") && !is_name("is")) {
          t->args.push_back(parse_postfix(parse_primary()));
        }
        n = std::move(t);
      } else if (is_op("(")) {
        auto c = node(EK::Call, cur().pos);
        c->a = std::move(n);
        parse_call_args(*c);
        n = std::move(c);
      } else {
        return n;
      }
    }
  }
};

}  // namespace

Body parse_template(std::string_view source, std::string& src) {
  // jinja2 normalises newlines to "\n" and drops one trailing newline (keep_trailing_newline).
  src.clear();
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  Parser p(src, lex(src));
  return p.parse_all();
}

}  // namespace ingot::jinja
