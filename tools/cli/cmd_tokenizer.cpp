// `ingot tokenizer train`: learns a byte-level BPE tokenizer from text files and writes
// tokenizer.json + tokenizer_config.json (issue 15; docs/tokenizer-training.md).
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "tokenizer/bpe_trainer.h"
#include "util/error.h"

namespace ingot::cli {
namespace {

Registrar reg{Command{
    "tokenizer",
    "Tokenizer tools. `ingot tokenizer train`: learn a byte-level BPE tokenizer from text.\n"
    "Example: ingot tokenizer train --data corpus.txt --vocab-size 8192 --out ./my-tokenizer",
    [](CLI::App& app) -> std::function<int()> {
      struct Opts {
        std::vector<std::string> data, special;
        size_t vocab_size = 0;
        uint64_t min_frequency = 2;
        std::string out;
        bool add_bos = true;
      };
      auto o = std::make_shared<Opts>();
      app.require_subcommand(1);
      CLI::App* train = app.add_subcommand(
          "train",
          "Learn merges by pair frequency (Llama 3 pre-tokenizer regex, byte-level) and write\n"
          "DIR/tokenizer.json and DIR/tokenizer_config.json (BOS/EOS and a ChatML chat template).\n"
          "Ids: 256 bytes, then merges in the order learned, then the special tokens\n"
          "<|begin_of_text|> <|end_of_text|> <|im_start|> <|im_end|> and any --special.");
      train->add_option("--data", o->data, "UTF-8 text file to learn from (repeatable)")
          ->required();
      train
          ->add_option("--vocab-size", o->vocab_size,
                       "total vocabulary: 256 bytes + merges + special tokens")
          ->required();
      train->add_option("--out", o->out, "output directory (created when absent)")->required();
      train->add_option("--special", o->special,
                        "an extra special token, after the four defaults (repeatable)");
      train
          ->add_option("--min-frequency", o->min_frequency,
                       "never merge a pair seen fewer times (training may stop early)")
          ->default_val(2);
      train
          ->add_option("--add-bos", o->add_bos,
                       "encoding puts <|begin_of_text|> in front (default true)")
          ->default_val(true);
      return [o, train]() {
        if (!train->parsed()) return 2;
        tokenizer::BpeTrainOptions opts;
        opts.vocab_size = o->vocab_size;
        opts.min_frequency = o->min_frequency;
        opts.add_bos = o->add_bos;
        for (auto& s : o->special) opts.special_tokens.push_back(s);
        tokenizer::BpeTrainer trainer(opts);
        const auto t0 = std::chrono::steady_clock::now();
        for (const auto& path : o->data) trainer.add_file(path);
        const auto t1 = std::chrono::steady_clock::now();
        std::fprintf(stderr, "read %.1f MB in %zu file(s): %zu distinct words (%.1f s)\n",
                     trainer.bytes_seen() / 1e6, o->data.size(), trainer.distinct_words(),
                     std::chrono::duration<double>(t1 - t0).count());
        tokenizer::BpeModel m = trainer.train([](size_t done, size_t want) {
          std::fprintf(stderr, "\rmerges %zu / %zu", done, want);
        });
        const auto t2 = std::chrono::steady_clock::now();
        std::fprintf(stderr, "\nlearned %zu merges in %.1f s\n", m.merges.size(),
                     std::chrono::duration<double>(t2 - t1).count());
        if (m.vocab_size() < o->vocab_size)
          std::fprintf(stderr,
                       "warning: the data supports only %zu tokens (no pair left seen %llu "
                       "times); asked for %zu\n",
                       m.vocab_size(), static_cast<unsigned long long>(o->min_frequency),
                       o->vocab_size);
        m.save(o->out);
        std::printf(
            "wrote %s/tokenizer.json and tokenizer_config.json: vocab %zu (256 bytes + "
            "%zu merged + %zu special)\n",
            o->out.c_str(), m.vocab_size(), m.tokens.size() - 256, m.special_tokens.size());
        return 0;
      };
    }}};

}  // namespace
}  // namespace ingot::cli
