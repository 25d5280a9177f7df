// libFuzzer: tokenizer cache files (tokenizer/tokenizer_cache.h) from arbitrary bytes. Input
// byte 0 picks the mode: even, the rest is a whole cache file (header checks); odd, the rest is
// a payload given a valid header and checksum, so the payload reader and the rebuilt pipeline
// are reached. impl_from_cache must never throw or crash, only return nullptr, and a pipeline it
// returns must encode and decode. INGOT_FUZZ_SEED_DIR=DIR writes valid payloads there as seeds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_cache.h"
#include "util/error.h"

namespace {

using namespace ingot::tokenizer;

const CacheKey kKey{{0x0123456789ABCDEFull, 0xFEDCBA9876543210ull}, 12345};

void write_seed(const std::string& dir, const std::string& name, const std::string& json_text) {
  Tokenizer::Impl impl;
  json root;
  impl.load_text(json_text, name, &root);
  const std::string file = encode_cache(kKey, root, *impl.model);
  const size_t header = wrap_cache_payload(kKey, "").size();
  std::ofstream(dir + "/" + name, std::ios::binary) << '\x01' << file.substr(header);
  std::ofstream(dir + "/" + name + "_file", std::ios::binary) << '\x00' << file;
}

struct Seeds {
  Seeds() {
    const char* dir = std::getenv("INGOT_FUZZ_SEED_DIR");
    if (!dir) return;
    write_seed(dir, "seed_small",
               R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},)"
               R"("added_tokens":[{"id":3,"content":"<s>","special":true}],)"
               R"("pre_tokenizer":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"}})");
    std::ifstream f(
        std::string(INGOT_SOURCE_DIR) + "/tests/data/models/llama_bf16_tied/tokenizer.json",
        std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    if (!ss.str().empty()) write_seed(dir, "seed_llama", ss.str());
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Seeds seeds;  // before any early return: its constructor writes the seeds
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string file = (data[0] & 1) ? wrap_cache_payload(kKey, rest) : rest;
  std::unique_ptr<Tokenizer::Impl> impl = impl_from_cache(file, kKey);
  if (!impl) return 0;
  try {
    Tokenizer tok = Tokenizer::from_impl(std::move(impl), {});
    auto ids = tok.encode("Hello world \xF0\x9F\x98\x80 123 <s> ab", {.add_special_tokens = true});
    (void)tok.decode(ids, {.skip_special_tokens = true});
    (void)tok.decode({0, 1, 2, 3, 5, 100000, -1});
    (void)tok.vocab_size();
  } catch (const ingot::Error&) {  // e.g. a post-processor naming an unknown token
  }
  return 0;
}
