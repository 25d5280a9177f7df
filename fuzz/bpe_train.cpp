// libFuzzer: train a byte-level BPE on arbitrary bytes (invalid UTF-8 and special-token strings
// included, split into texts at 0xFF bytes), then load the tokenizer.json it writes. Training
// must not throw, the chosen pair counts must never increase, the vocabulary must stay within
// the size asked for, and encode/decode must give the (repaired) text back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 4096) return 0;
  using namespace ingot::tokenizer;
  BpeTrainOptions o;
  o.vocab_size = 256 + 4 + (data[0] % 64);
  o.min_frequency = 1 + data[0] / 128;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  BpeTrainer t(o);
  std::vector<std::string> texts;
  size_t start = 0;
  for (size_t i = 0; i <= in.size(); ++i)
    if (i == in.size() || static_cast<unsigned char>(in[i]) == 0xFF) {
      texts.emplace_back(in.substr(start, i - start));
      t.add_text(texts.back());
      start = i + 1;
    }
  BpeModel m;
  try {
    m = t.train();
  } catch (const ingot::InvalidArgument&) {
    return 0;  // no text besides special tokens
  }
  if (m.vocab_size() > o.vocab_size) std::abort();
  for (size_t i = 1; i < m.merge_counts.size(); ++i)
    if (m.merge_counts[i] > m.merge_counts[i - 1] || m.merge_counts[i] < o.min_frequency)
      std::abort();
  Tokenizer tok = Tokenizer::from_json(m.tokenizer_json());
  if (tok.vocab_size() != static_cast<int32_t>(m.vocab_size())) std::abort();
  for (const auto& s : texts) {
    const std::string valid = ingot::utf8::to_valid_lossy(s);
    if (tok.decode(tok.encode(s, {.add_special_tokens = false})) != valid) std::abort();
  }
  return 0;
}
