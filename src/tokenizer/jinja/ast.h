// Syntax tree of the Jinja engine and the parser entry point (lexer + recursive descent with
// jinja2's operator precedence and whitespace rules as transformers configures them).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace ingot::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

/// An expression node; which fields are used depends on `kind`.
struct Expr {
  enum class Kind {
    Literal,
    Name,
    Attr,
    Item,
    Slice,
    Call,
    Filter,
    Test,
    Neg,
    Pos,
    Not,
    Binary,
    And,
    Or,
    Cond,
    ListLit,
    TupleLit,
    DictLit
  };
  Kind kind;
  size_t pos = 0;        // byte offset in the template, for error messages
  Value literal;         // Literal
  std::string name;      // Name, Attr, Filter, Test; Binary: the operator
  bool negated = false;  // Test: "is not"
  ExprPtr a, b, c;       // operands (Slice: a[b:c:d] uses a, b, c and args[0] as step)
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

/// A statement node.
struct Stmt {
  enum class Kind {
    Text,
    Output,
    If,
    For,
    Set,
    SetBlock,
    Macro,
    CallBlock,
    FilterBlock,
    Break,
    Continue,
    Scope
  };
  Kind kind;
  size_t pos = 0;
  std::string text;                                     // Text
  ExprPtr expr;                                         // Output, Set value, For iterable, ...
  std::vector<std::pair<ExprPtr, Body>> branches;       // If: (condition, body)...; else: null cond
  std::vector<std::string> targets;                     // For / Set names (tuple unpacking)
  std::string attr;                                     // Set ns.attr: target is targets[0]
  ExprPtr filter;                                       // For ... if filter
  Body body, else_body;                                 // For / SetBlock / Macro / CallBlock
  std::string name;                                     // Macro name
  std::vector<std::pair<std::string, ExprPtr>> params;  // Macro / call-block params (defaults)
  std::vector<ExprPtr> filters;  // FilterBlock / SetBlock filters (Filter nodes, a = null)
};

/// Parses template source; throws FormatError with line and column on syntax errors.
Body parse_template(std::string_view source, std::string& normalized_source);

/// "line L, column C" of byte offset `pos` in `source`.
std::string location(std::string_view source, size_t pos);

}  // namespace ingot::jinja
