// Pretraining (`ingot train`'s library parts): the corpus readers (plain text documents split
// on blank lines, JSONL text lines, errors with file:line), long documents split into pieces
// that keep every prediction once, the tokenizer checked against the config, the written
// config, and a run end to end: a model from init_model trained by the full-parameter Trainer
// on a repetitive corpus falls below the corpus's unigram entropy, and the checkpoint it writes
// loads and gives the trained model's logits.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "models/model.h"
#include "tokenizer/tokenizer.h"
#include "train/pretrain.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace ingot::train {
namespace {
using namespace test;
using json = nlohmann::json;

std::string read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// The fixture tokenizer: 384 tokens, <|pad|> 0, <|bos|> 1 (added in front), <|eos|> 2.
std::string tokenizer_dir() {
  return fixture("llama_bf16_tied");
}

/// A tiny Llama config for the fixture tokenizer.
std::string tiny_config(int64_t vocab = 384, int64_t bos = 1, const std::string& eos = "2") {
  return fmt::format(
      R"({{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
      "vocab_size": {}, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
      "hidden_act": "silu", "tie_word_embeddings": true, "bos_token_id": {},
      "eos_token_id": {}, "pad_token_id": 0, "rope_theta": 10000.0,
      "initializer_range": 0.02}})",
      vocab, bos, eos);
}

TEST(Corpus, TextDocumentsAreSeparatedByBlankLines) {
  TempDir d;
  write_file(d / "c.txt", "a b\nc\n\n\n  \t\nd e\r\n\nf");
  auto r = read_corpus(d / "c.txt");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].text, "a b\nc");
  EXPECT_EQ(r[0].line, 1u);
  EXPECT_EQ(r[1].text, "d e");
  EXPECT_EQ(r[1].line, 6u);
  EXPECT_EQ(r[2].text, "f");
  EXPECT_EQ(r[2].line, 8u);
  for (auto& x : r) EXPECT_EQ(x.kind, Record::Kind::text);
  write_file(d / "empty.txt", "\n  \n");
  EXPECT_THROW(read_corpus(d / "empty.txt"), FormatError);
  EXPECT_THROW(read_corpus(d / "absent.txt"), IoError);
}

TEST(Corpus, JsonlTakesTextLinesOnly) {
  TempDir d;
  write_file(d / "ok.jsonl", "{\"text\": \"one\"}\n\n{\"text\": \"two\"}\n");
  auto r = read_corpus(d / "ok.jsonl");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].text, "two");
  EXPECT_EQ(r[1].line, 3u);
  write_file(d / "pc.jsonl", "{\"text\": \"one\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n");
  try {
    read_corpus(d / "pc.jsonl");
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(d / "pc.jsonl:2:"), std::string::npos) << e.what();
  }
  write_file(d / "bad.jsonl", "{\"text\": \"one\"}\n{\"text\": 1}\n");
  try {
    read_corpus(d / "bad.jsonl");
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(d / "bad.jsonl:2:"), std::string::npos) << e.what();
  }
}

TEST(Split, LongExamplesKeepEveryPredictionOnce) {
  for (size_t n : {10u, 11u, 4u, 3u}) {
    Example e;
    for (size_t i = 0; i < n; ++i) e.ids.push_back(static_cast<int32_t>(100 + i));
    e.loss_mask.assign(n, 1);
    e.loss_mask[2] = 0;  // a position out of the loss stays out
    auto pieces = split_long_examples({e}, 4);
    // Predictions (context end -> target) of the whole example and of the pieces: a piece's
    // position t >= 1 with its mask set predicts ids[t] from the piece's earlier tokens.
    std::multiset<int32_t> want, got;
    for (size_t t = 1; t < n; ++t)
      if (e.loss_mask[t]) want.insert(e.ids[t]);
    size_t covered = 0;
    for (const auto& p : pieces) {
      ASSERT_LE(p.ids.size(), 4u);
      ASSERT_EQ(p.ids.size(), p.loss_mask.size());
      for (size_t t = 1; t < p.ids.size(); ++t)
        if (p.loss_mask[t]) got.insert(p.ids[t]);
      covered += p.ids.size() - 1;
    }
    EXPECT_EQ(got, want) << n;
    EXPECT_EQ(covered, n - 1) << n;  // pieces overlap by exactly one token
    if (n <= 4) {
      ASSERT_EQ(pieces.size(), 1u);
      EXPECT_EQ(pieces[0].ids, e.ids);
    }
  }
  Example e;
  e.ids = {1, 2, 3, 4, 5, 6, 7};
  e.loss_mask.assign(7, 1);
  auto p = split_long_examples({e}, 4);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].ids, (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(p[1].ids, (std::vector<int32_t>{4, 5, 6, 7}));
  EXPECT_EQ(p[1].loss_mask, (std::vector<uint8_t>{0, 1, 1, 1}));
  EXPECT_THROW(split_long_examples({e}, 1), InvalidArgument);
}

TEST(Pretrain, TokenizerMustFitTheConfig) {
  const auto tok = tokenizer::Tokenizer::from_dir(tokenizer_dir());
  ASSERT_EQ(tok.vocab_size(), 384);
  check_tokenizer(models::parse_model_config(tiny_config(), "c.json"), tok, tokenizer_dir());
  check_tokenizer(models::parse_model_config(tiny_config(512, 1, "[7, 2]"), "c.json"), tok,
                  tokenizer_dir());
  try {
    check_tokenizer(models::parse_model_config(tiny_config(256), "c.json"), tok, tokenizer_dir());
    FAIL() << "no error";
  } catch (const InvalidArgument& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("384 tokens"), std::string::npos) << w;
    EXPECT_NE(w.find("vocab_size 256"), std::string::npos) << w;
  }
  EXPECT_THROW(check_tokenizer(models::parse_model_config(tiny_config(384, 5), "c.json"), tok, "t"),
               InvalidArgument);
  EXPECT_THROW(
      check_tokenizer(models::parse_model_config(tiny_config(384, 1, "7"), "c.json"), tok, "t"),
      InvalidArgument);
}

TEST(Pretrain, ConfigSaysTheSavedDtype) {
  TempDir d;
  write_file(d / "config.json", tiny_config());
  const json j = json::parse(pretrained_config_json(d / "config.json", bfloat16));
  EXPECT_EQ(j.at("torch_dtype"), "bfloat16");
  EXPECT_EQ(j.at("dtype"), "bfloat16");
  EXPECT_EQ(j.at("architectures"), json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(j.at("hidden_size"), 64);
  EXPECT_THROW(pretrained_config_json(d / "absent.json", bfloat16), IoError);
}

TEST(Pretrain, EndToEndLossFallsAndTheCheckpointLoads) {
  TempDir d;
  write_file(d / "config.json", tiny_config());
  // A repetitive corpus: four sentences in turn, 48 documents.
  const char* sentences[] = {"the cat sat on the mat.", "a dog ran to the red house.",
                             "my tree is big and green.", "we like to sing a song."};
  std::string corpus;
  for (int i = 0; i < 48; ++i) corpus += std::string(sentences[i % 4]) + "\n\n";
  write_file(d / "corpus.txt", corpus);

  const auto config = models::load_model_config(d / "config.json");
  const auto tok = tokenizer::Tokenizer::from_dir(tokenizer_dir());
  check_tokenizer(config, tok, tokenizer_dir());
  write_pretrain_base(d / "config.json", tokenizer_dir(), bfloat16, d / "base");
  const auto records = read_corpus(d / "corpus.txt");
  ASSERT_EQ(records.size(), 48u);
  const int64_t seq_len = 64;
  auto ex = split_long_examples(
      tokenize(records, tok, {.mask_prompt = false, .add_eos = true, .max_seq_len = 0},
               d / "corpus.txt"),
      seq_len);
  // Unigram entropy of the predicted tokens: the loss of the best context-free model.
  std::map<int32_t, double> counts;
  double total = 0;
  for (const auto& e : ex)
    for (size_t t = 1; t < e.ids.size(); ++t)
      if (e.loss_mask[t]) {
        counts[e.ids[t]] += 1;
        total += 1;
      }
  double unigram = 0;
  for (auto& [id, c] : counts) unigram -= c / total * std::log(c / total);
  ASSERT_LT(unigram, std::log(384.0));

  auto model = models::init_model(config, {.dtype = bfloat16, .device = cpu_device, .seed = 3});
  TrainOptions o{.iters = 60,
                 .batch_size = 4,
                 .lr = 3e-3f,
                 .warmup = 5,
                 .weight_decay = 0.1f,
                 .seed = 3,
                 .out_dir = d / "out",
                 .log_every = 0,
                 .pad_id = 0,
                 .pack = true,
                 .seq_len = seq_len,
                 .base_dir = d / "base"};
  Trainer t(*model, ex, ex, o);  // validation on the training data: the final training loss
  const float before = t.evaluate();
  auto stats = t.run();
  const float after = t.evaluate();
  ASSERT_EQ(stats.size(), 60u);
  // At init the logits are near zero: with head rows ~ Normal(0, 0.02^2) and normalised h
  // (RMS 1, E = 64) a logit is ~ Normal(0, t^2), t = 0.02 * 8 = 0.16, and the loss is about
  // ln V + t^2 / 2 = ln V + 0.013 (the mean over ~1000 tokens varies by about t / sqrt(1000)).
  EXPECT_NEAR(before, std::log(384.0) + 0.0128, 0.05);
  EXPECT_LT(after, unigram) << "before " << before << ", unigram entropy " << unigram;

  // The written checkpoint: bf16 weights, the config saying so, the tokenizer files; it loads
  // and gives the trained model's logits (the model holds the masters rounded to bf16).
  const json cfg = json::parse(read(d / "out/config.json"));
  EXPECT_EQ(cfg.at("torch_dtype"), "bfloat16");
  EXPECT_EQ(read(d / "out/tokenizer.json"), read(tokenizer_dir() + "/tokenizer.json"));
  EXPECT_EQ(read(d / "out/tokenizer_config.json"),
            read(tokenizer_dir() + "/tokenizer_config.json"));
  EXPECT_TRUE(std::filesystem::exists(d / "out/loss.jsonl"));
  // Loaded on the trained model's device: bit equality holds there; across devices the bf16
  // matmuls sum in another order (with INGOT_DEVICE=cuda the default device is the GPU).
  auto loaded = models::load_model(d / "out", {.warn = false, .device = model->device()});
  EXPECT_EQ(loaded->dtype(), bfloat16);
  Array ids = fixed_ids(2, 16, 384, 9);
  Array want = model->forward(ids), got = loaded->forward(ids);
  EXPECT_EQ(max_abs_diff(got, want), 0.0);
  EXPECT_GT(max_abs(want), 0.0);
}

TEST(Pretrain, MissingConfigIsAnIoErrorNamingIt) {
  TempDir d;
  const std::string path = d / "nope/config.json";
  try {
    models::init_model(path);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_pretrain_base(path, tokenizer_dir(), bfloat16, d / "base"), IoError);
  EXPECT_THROW(write_pretrain_base(d / "x.json", d / "no_tokenizer", bfloat16, d / "base"),
               IoError);
}

}  // namespace
}  // namespace ingot::train
