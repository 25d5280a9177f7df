// libFuzzer: encode arbitrary bytes (invalid UTF-8 included) with a small byte-level BPE and a
// Metaspace/byte-fallback tokenizer; encoding must not throw and must round-trip valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "util/utf8.h"

namespace {

std::string byte_level_json() {
  std::string vocab = "{";
  // Byte-level alphabet: the 256 printable stand-ins of GPT-2.
  int n = 0, id = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    std::string s = ingot::utf8::encode(cp);
    if (s == "\"" || s == "\\") s = "\\" + s;
    vocab += (id ? "," : "") + std::string("\"") + s + "\":" + std::to_string(id);
    ++id;
  }
  vocab += ",\"\xC4\xA0t\":256,\"he\":257,\"\xC4\xA0the\":258,\"\xC4\xA0th\":259}";
  return R"({"added_tokens":[{"id":260,"content":"<|end|>","special":true,"normalized":false}],
    "normalizer":{"type":"NFC"},
    "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
      "behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},
    "post_processor":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"},
    "model":{"type":"BPE","vocab":)" +
         vocab + R"(,"merges":["Ġ t","h e","Ġt he","Ġt h"]}})";
}

std::string metaspace_json() {
  std::string vocab =
      "{\"<unk>\":0,\"\xE2\x96\x81\":1,\"a\":2,\"\xE2\x96\x81"
      "a\":3";
  for (int b = 0; b < 256; ++b) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    vocab += ",\"" + std::string(buf) + "\":" + std::to_string(4 + b);
  }
  vocab += "}";
  return R"({"added_tokens":[{"id":1000,"content":"\n","special":false,"normalized":false}],
    "normalizer":{"type":"Replace","pattern":{"String":" "},"content":"▁"},
    "pre_tokenizer":{"type":"Split","pattern":{"String":" "},"behavior":"MergedWithPrevious","invert":false},
    "decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},
      {"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
    "model":{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"fuse_unk":true,"vocab":)" +
         vocab + R"(,"merges":[["▁","a"]]}})";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto bl = ingot::tokenizer::Tokenizer::from_json(byte_level_json());
  static const auto ms = ingot::tokenizer::Tokenizer::from_json(metaspace_json());
  std::string text(reinterpret_cast<const char*>(data), size);
  std::string valid = ingot::utf8::to_valid_lossy(text);
  for (const auto* tok : {&bl, &ms}) {
    auto ids = tok->encode(text);
    if (ids != tok->encode(valid)) std::abort();  // invalid UTF-8 == its lossy repair
    std::string dec = tok->decode(ids);
    if (!ingot::utf8::is_valid(dec)) std::abort();
    ingot::tokenizer::StreamDecoder sd(*tok);
    std::string streamed;
    for (int32_t id : ids) streamed += sd.step(id);
    streamed += sd.finish();
    if (streamed != dec) std::abort();
  }
  // The byte-level tokenizer round-trips its NFC-normalized input exactly.
  if (bl.decode(bl.encode(text, {.add_special_tokens = false})) != ingot::tokenizer::nfc(valid))
    std::abort();
  return 0;
}
