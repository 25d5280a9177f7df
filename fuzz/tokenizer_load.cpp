// libFuzzer: tokenizer.json loading from arbitrary bytes must throw ingot::Error or succeed, and a
// loaded tokenizer must encode/decode without crashing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto tok = ingot::tokenizer::Tokenizer::from_json(text);
    auto ids = tok.encode("Hello world \xF0\x9F\x98\x80 123 <s>");
    (void)tok.decode(ids);
  } catch (const ingot::Error&) {
  }
  return 0;
}
