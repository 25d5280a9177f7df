// JSON-schema grammars for constrained decoding: a schema (or "any JSON object") compiled into a
// graph of value nodes, and a byte-level pushdown matcher over that graph that says whether a
// byte sequence can still continue to a document the schema accepts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ingot::llm::grammar {

/// One value of the grammar. `any_of` nodes are expanded when a value starts; the others are
/// matched byte by byte by a frame of the matcher's stack.
struct SchemaNode {
  enum class Kind : uint8_t { any_of, object, array, string, number, integer, literal };
  Kind kind = Kind::literal;
  std::vector<int32_t> alts;       ///< any_of: the alternatives
  std::vector<std::string> names;  ///< object: property names, JSON-escaped, without quotes
  std::vector<int32_t> props;      ///< object: value node of each property
  uint64_t required = 0;           ///< object: bit i set = names[i] is required
  int32_t additional = -1;         ///< object: value node of other keys (-1 = none allowed)
  int32_t items = -1;              ///< array: node of every item
  int64_t min_items = 0;           ///< array
  int64_t max_items = -1;          ///< array (-1 = unbounded)
  int64_t min_length = 0;          ///< string, in code points
  int64_t max_length = -1;         ///< string (-1 = unbounded)
  std::string literal;             ///< literal: the exact bytes (compact JSON of a const/enum)
};

/// A compiled grammar: nodes and the root value.
struct JsonGrammar {
  std::vector<SchemaNode> nodes;
  int32_t root = -1;

  /// Any JSON object (response_format {"type": "json_object"}).
  static std::shared_ptr<const JsonGrammar> any_object();
  /// Compiles a JSON schema given as JSON text. Supported: type (string or list) object / array
  /// / string / number / integer / boolean / null, properties, required, additionalProperties
  /// (false, true or absent), enum, const, items, minItems, maxItems, minLength, maxLength,
  /// anyOf, $ref to "#/$defs/..." or "#/definitions/..." (not recursive), and the annotations
  /// title, description, $schema, $id, $comment, examples, default. Throws InvalidArgument
  /// "[json_schema] ..." naming the keyword and its path for anything else.
  static std::shared_ptr<const JsonGrammar> from_schema(std::string_view schema_json);
};

/// Byte-level matcher state: a set of pushdown stacks (more than one while anyOf / enum
/// alternatives are still open). Cheap to copy for the sizes schemas have.
class JsonMatcher {
 public:
  explicit JsonMatcher(std::shared_ptr<const JsonGrammar> g);

  /// Consumes one byte; false (state unchanged) when no document can continue with it.
  bool feed(uint8_t c);
  /// Consumes bytes; false (state unchanged) when any byte is refused.
  bool feed(std::string_view bytes);
  /// True when the bytes so far form a complete document.
  bool accepting() const;
  /// A canonical encoding of the state (equal keys = equal futures); for mask caches.
  std::string key() const;
  const JsonGrammar& grammar() const { return *g_; }

  /// One stack frame (public for the implementation's helpers; not an API).
  struct Frame {
    int32_t node = 0;
    uint8_t st = 0;     // kind-specific state
    uint8_t ws = 0;     // length of the current whitespace run
    uint8_t aux = 0;    // string: UTF-8 bytes still expected / hex digits; key escapes
    int32_t count = 0;  // string: code points; array: items; literal/number: bytes
    int32_t key = -1;   // object: property being read (-2 = an additional key)
    uint64_t seen = 0;  // object: properties present
    std::string buf;    // object: bytes of the key being typed
    bool operator==(const Frame&) const = default;
  };
  using Stack = std::vector<Frame>;

 private:
  std::shared_ptr<const JsonGrammar> g_;
  std::vector<Stack> stacks_;
};

}  // namespace ingot::llm::grammar
