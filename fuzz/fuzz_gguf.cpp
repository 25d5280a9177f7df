// libFuzzer target: the GGUF parser on arbitrary bytes, and for inputs it accepts, loading every
// tensor through the mmapped reader (plain types zero-copy, block types dequantized, and the
// affine rewrite of Q8_0/Q4_0/Q4_K) and the
// metadata -> model config mapping, and the tokenizer.ggml.* metadata -> tokenizer path of the
// text commands (read_gguf_vocab, tokenizer_from_gguf_vocab, a short encode). Every rejection must
// be an ingot::Error; anything else (crash, other exception, sanitizer report) is a bug.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/io/gguf.h"
#include "core/ops/elementwise.h"
#include "models/gguf_checkpoint.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/gguf_vocab_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto h = ingot::parse_gguf_header(data, size, "fuzz.gguf");
    try {
      if (auto v = ingot::tokenizer::read_gguf_vocab(h, "fuzz.gguf");
          v && v->tokens.size() < 4096) {
        auto tok = ingot::tokenizer::tokenizer_from_gguf_vocab(*v, "fuzz.gguf");
        (void)tok.decode(tok.encode("ab a b<s>"));
      }
    } catch (const ingot::Error&) {
    }
    if (size > (1u << 20)) return 0;
    int fd = memfd_create("fuzz", 0);
    if (fd < 0) return 0;
    if (write(fd, data, size) == static_cast<ssize_t>(size)) {
      ingot::GgufFile f("/proc/self/fd/" + std::to_string(fd));
      for (const auto& t : h.tensors) {
        if (t.numel() > (1 << 16)) continue;
        try {
          ingot::Array a = f.load(t.name, ingot::bfloat16);
          if (a.size() > 0 && a.size() < 4096)
            (void)ingot::astype(a, ingot::float32).to_vector<float>();
        } catch (const ingot::Error&) {
        }
        if (ingot::gguf_affine_bits(t.type) != 0 && t.dims.size() >= 2) {
          try {  // the exact affine rewrite the native GGUF load uses
            ingot::GgufAffineTensor q = f.load_affine(t.name);
            if (q.scales.size() > 0 && q.scales.size() < 4096) (void)q.scales.to_vector<float>();
          } catch (const ingot::Error&) {
          }
        }
      }
      try {
        (void)ingot::models::gguf_model_config(f);
      } catch (const ingot::Error&) {
      }
    }
    close(fd);
  } catch (const ingot::Error&) {
  }
  return 0;
}
