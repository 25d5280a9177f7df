// Packing (several examples per row, attention kept inside each: per-example losses equal the
// unpacked ones), full fine-tuning through the trainer (gradients against float64 finite
// differences, loss falls, full checkpoints, float32 master copies over a bf16 base, resume),
// and LoRA dropout with gradient checkpointing (recomputed blocks draw the same masks).
#include <gtest/gtest.h>

#include <numeric>

#include <fmt/format.h>

#include "core/io/safetensors.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace ingot::train {
namespace {
using namespace test;

/// Examples of lengths 5..12 from fixed ids, some with a masked prompt (loss on the tail only).
std::vector<Example> mixed_examples(int64_t vocab, size_t n = 5) {
  std::vector<Example> out;
  Array ids = fixed_ids(1, 200, vocab, 23);
  auto v = ids.to_vector<int32_t>();
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    const size_t len = 5 + (i * 3) % 8;
    Example e;
    e.ids.assign(v.begin() + static_cast<std::ptrdiff_t>(at),
                 v.begin() + static_cast<std::ptrdiff_t>(at + len));
    at += len;
    e.loss_mask.assign(len, 1);
    if (i % 2 == 1)  // a prompt of 3 tokens out of the loss
      for (size_t t = 0; t < 3; ++t) e.loss_mask[t] = 0;
    out.push_back(e);
  }
  return out;
}

ParamMap random_params(const LoraAdapter& a, Dtype dtype, uint64_t seed) {
  ParamMap p;
  uint64_t i = 0;
  for (auto& [n, v] : a.params())  // nonzero B: the adapter changes the logits
    p.emplace(n, random::normal(v.shape(), dtype, 0.0, 0.1, random::key(seed + i++)));
  return p;
}

TEST(Pack, RowsAreGreedyInOrderWithSegmentsAndMasks) {
  std::vector<Example> ex(4);
  const size_t lens[] = {3, 4, 2, 5};
  int32_t next = 10;
  for (size_t i = 0; i < 4; ++i) {
    for (size_t t = 0; t < lens[i]; ++t) ex[i].ids.push_back(next++);
    ex[i].loss_mask.assign(lens[i], 1);
  }
  ex[1].loss_mask[1] = 0;  // a masked prompt token survives packing
  auto rows = pack_examples(ex, 8);
  ASSERT_EQ(rows.size(), 2u);  // [3 + 4] (2 more would make 9), [2 + 5]
  EXPECT_EQ(rows[0].ids, (std::vector<int32_t>{10, 11, 12, 13, 14, 15, 16}));
  EXPECT_EQ(rows[0].segments, (std::vector<int32_t>{0, 0, 0, 1, 1, 1, 1}));
  // The first token of the second example is not predicted from the first example.
  EXPECT_EQ(rows[0].loss_mask, (std::vector<uint8_t>{1, 1, 1, 0, 0, 1, 1}));
  EXPECT_EQ(rows[1].segments, (std::vector<int32_t>{0, 0, 1, 1, 1, 1, 1}));
  EXPECT_EQ(pack_examples(ex, 8)[1].ids, rows[1].ids);  // deterministic
  EXPECT_THROW(pack_examples(ex, 4), InvalidArgument);  // a 5-token example does not fit
  EXPECT_THROW(pack_examples(ex, 1), InvalidArgument);

  // Batch of row 0 (7 tokens, inputs 6) and row 1 (7 tokens): block-diagonal causal mask.
  Batch b = make_batch(rows, {0, 1});
  ASSERT_TRUE(b.attention.has_value());
  EXPECT_EQ(b.attention->shape(), (Shape{2, 1, 6, 6}));
  EXPECT_EQ(b.tokens, 4 + 5);  // row 0: 11 12 | 15 16; row 1: 18 | 20 21 22 23
  auto m = b.attention->to_vector<bool>();
  // Row 0 inputs 10 11 12 | 13 14 15 (segments 0 0 0 1 1 1).
  const int want0[6][6] = {{1, 0, 0, 0, 0, 0}, {1, 1, 0, 0, 0, 0}, {1, 1, 1, 0, 0, 0},
                           {0, 0, 0, 1, 0, 0}, {0, 0, 0, 1, 1, 0}, {0, 0, 0, 1, 1, 1}};
  for (int q = 0; q < 6; ++q)
    for (int k = 0; k < 6; ++k) EXPECT_EQ(m[q * 6 + k], want0[q][k] == 1) << q << "," << k;
  auto mk = b.mask.to_vector<float>();
  EXPECT_EQ(mk[2], 0.0f);  // target 13: first token of the second example
  EXPECT_EQ(mk[3], 0.0f);  // target 14: its masked prompt token
  EXPECT_EQ(mk[4], 1.0f);
  // Unpacked batches keep plain causal attention.
  EXPECT_FALSE(make_batch(ex, {0, 1}).attention.has_value());
}

/// The batch `b` with its loss mask restricted to the input positions of segment `seg` of row 0.
Batch only_segment(const Batch& b, const Example& row, int32_t seg) {
  Batch out = b;
  auto mk = b.mask.to_vector<float>();
  for (size_t t = 0; t < mk.size(); ++t)
    if (row.segments[t] != seg) mk[t] = 0.0f;
  out.mask = Array(mk, b.mask.shape(), float32);
  return out;
}

TEST(Pack, PerExampleLossesEqualTheUnpackedOnes) {
  for (const char* fx : {"llama_f32", "qwen3_f32_tied", "gemma3_f32"}) {
    auto m = load(fx);
    LoraAdapter a =
        LoraAdapter::init(*m, LoraConfig{.rank = 4, .alpha = 8.0f, .targets = {"all-linear"}}, 1);
    const ParamMap p = random_params(a, float32, 300);
    auto ex = mixed_examples(m->vocab_size());
    auto rows = pack_examples(ex, 64);
    ASSERT_EQ(rows.size(), 1u);
    Batch packed = make_batch(rows, {0});
    double worst = 0;
    for (bool ck : {false, true}) {  // the plain forward, and the walked checkpointed blocks
      for (size_t k = 0; k < ex.size(); ++k) {
        const float alone = lora_loss(*m, a, p, make_batch(ex, {k}), false).item<float>();
        const float in_row =
            lora_loss(*m, a, p, only_segment(packed, rows[0], static_cast<int32_t>(k)), ck)
                .item<float>();
        clear_branches(*m, a);
        const double rel = std::abs(in_row - alone) / std::abs(alone);
        worst = std::max(worst, rel);
        EXPECT_LT(rel, 2e-6) << fx << " example " << k << (ck ? " checkpointed" : "") << ": "
                             << in_row << " vs " << alone;
      }
    }
    RecordProperty(std::string(fx) + "_worst_rel", fmt::format("{:.3g}", worst));
    // Without the block-diagonal mask the later examples would see the earlier ones.
    Batch leaky = only_segment(packed, rows[0], 3);
    leaky.attention.reset();
    const float leak = lora_loss(*m, a, p, leaky).item<float>();
    const float alone = lora_loss(*m, a, p, make_batch(ex, {3})).item<float>();
    clear_branches(*m, a);
    EXPECT_GT(std::abs(leak - alone) / std::abs(alone), 1e-3) << fx;
  }
}

TEST(Pack, PackedBatchGivesTheUnpackedLossAndGradients) {
  auto m = load("gemma3_f32");  // sliding-window layers (window 4) and global ones
  LoraAdapter a =
      LoraAdapter::init(*m, LoraConfig{.rank = 4, .alpha = 8.0f, .targets = {"all-linear"}}, 1);
  const ParamMap p = random_params(a, float32, 400);
  auto ex = mixed_examples(m->vocab_size(), 6);
  auto rows = pack_examples(ex, 24);
  ASSERT_GE(rows.size(), 2u);
  std::vector<size_t> all(ex.size()), all_rows(rows.size());
  std::iota(all.begin(), all.end(), 0);
  std::iota(all_rows.begin(), all_rows.end(), 0);
  Batch plain = make_batch(ex, all), packed = make_batch(rows, all_rows);
  EXPECT_EQ(plain.tokens, packed.tokens);
  auto [l0, g0] = lora_value_and_grad(*m, a, p, plain);
  for (bool ck : {false, true}) {
    auto [l1, g1] = lora_value_and_grad(*m, a, p, packed, ck);
    EXPECT_NEAR(l1.item<float>(), l0.item<float>(), 1e-5 * std::abs(l0.item<float>())) << ck;
    for (auto& [n, g] : g0)
      EXPECT_LT(max_abs_diff(g, g1.at(n)) / std::max(1e-3, max_abs(g)), 1e-4) << n << " " << ck;
  }
}

TEST(Pack, Float64HiddenStatesOfARowEqualEachExampleAlone) {
  // In float64, an example inside a packed row gives the hidden states it gives alone at the
  // same positions (offset = where it starts in the row) to float64 rounding: the mask keeps
  // the others out exactly. Alone at offset 0 they differ only by the rotary angles, which
  // ingot computes in float32 (position * inverse frequency): rope is relative, so the
  // difference stays at float32 rounding.
  auto m = load("llama_f32", float64);
  auto ex = mixed_examples(m->vocab_size());
  auto rows = pack_examples(ex, 64);
  Batch packed = make_batch(rows, {0});
  const int64_t e = m->config().hidden_size;
  auto h = m->hidden(packed.inputs, {.mask = *packed.attention}).to_vector<double>();
  size_t at = 0;
  double same_pos = 0, shifted = 0, scale = 0;
  for (size_t k = 0; k < ex.size(); ++k) {
    Batch b = make_batch(ex, {k});
    auto h0 = m->hidden(b.inputs).to_vector<double>();
    auto ho = m->hidden(b.inputs, {.offset = static_cast<int64_t>(at)}).to_vector<double>();
    const size_t n = ex[k].ids.size() - 1;  // its input positions
    for (size_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < e; ++j) {
        const size_t i = t * static_cast<size_t>(e) + static_cast<size_t>(j);
        const double y = h[at * static_cast<size_t>(e) + i];
        same_pos = std::max(same_pos, std::abs(ho[i] - y));
        shifted = std::max(shifted, std::abs(h0[i] - y));
        scale = std::max(scale, std::abs(y));
      }
    at += ex[k].ids.size();
  }
  RecordProperty("float64_same_positions_rel", fmt::format("{:.3g}", same_pos / scale));
  RecordProperty("float64_offset0_rel", fmt::format("{:.3g}", shifted / scale));
  EXPECT_LT(same_pos / scale, 1e-13) << same_pos << " / " << scale;
  EXPECT_LT(shifted / scale, 1e-6) << shifted << " / " << scale;
}

/// Mean next-token cross-entropy of `b` in float64 from float64 hidden states, head and loss as
/// host loops (the model holds the weights to evaluate).
double float64_loss(const models::Model& m, const Batch& b) {
  const auto tg = b.targets.to_vector<int32_t>();
  const auto mk = b.mask.to_vector<float>();
  Array logits = matmul(m.hidden(b.inputs), transpose(astype(m.lm_head_weight(), float64)));
  return float64_masked_loss(logits.to_vector<double>(), static_cast<size_t>(m.vocab_size()), tg,
                             mk);
}

void check_full_gradients(const char* fx, const std::vector<std::string>& names) {
  auto m = load(fx, float64);
  const ParamMap p = m->parameters();
  auto ex = mixed_examples(m->vocab_size(), 3);
  Batch b = make_batch(ex, {0, 1, 2});
  auto [loss, grads] = full_value_and_grad(*m, p, b);
  EXPECT_EQ(grads.size(), p.size()) << fx;  // every weight
  for (auto& [n, w] : p) EXPECT_EQ(max_abs_diff(w, m->parameters().at(n)), 0.0) << n;  // restored
  EXPECT_NEAR(float64_loss(*m, b), loss.item<float>(), 1e-5) << fx;
  auto at = [&](const std::string& name, size_t k, double delta) {
    auto v = p.at(name).to_vector<double>();
    v[k] += delta;
    m->update({{name, Array(v, p.at(name).shape(), float64)}});
    const double l = float64_loss(*m, b);
    m->update({{name, p.at(name)}});
    return l;
  };
  const double h = 1e-5;
  size_t checked = 0;
  for (const auto& name : names) {
    auto gv = grads.at(name).to_vector<double>();
    // The largest entry (never a structural zero) and two fixed ones.
    size_t big = 0;
    for (size_t k = 0; k < gv.size(); ++k)
      if (std::abs(gv[k]) > std::abs(gv[big])) big = k;
    EXPECT_GT(std::abs(gv[big]), 1e-6) << fx << " " << name;
    for (size_t k : {big, gv.size() / 3, gv.size() - 1}) {
      const double fd = (at(name, k, h) - at(name, k, -h)) / (2 * h);
      // The analytic gradient passes through float32 logits: ~1e-6 relative.
      EXPECT_NEAR(gv[k], fd, 1e-6 + 1e-4 * std::abs(fd)) << fx << " " << name << "[" << k << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3 * names.size());
}

TEST(FullFineTune, GradientsMatchFloat64FiniteDifferences) {
  check_full_gradients(
      "llama_f32",
      {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
       "model.layers.1.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight",
       "model.layers.2.input_layernorm.weight", "model.norm.weight", "lm_head.weight"});
  // Tied head: the embedding's gradient sums its two uses; Qwen3's q/k norms.
  check_full_gradients(
      "qwen3_f32_tied",
      {"model.embed_tokens.weight", "model.layers.0.self_attn.q_norm.weight",
       "model.layers.2.self_attn.k_norm.weight", "model.layers.1.mlp.gate_proj.weight"});
}

TEST(FullFineTune, CheckpointedBlocksGiveTheSameLossAndGradients) {
  for (const char* fx : {"llama_f32", "gemma3_f32"}) {
    auto m = load(fx);
    const ParamMap p = m->parameters();
    auto ex = mixed_examples(m->vocab_size(), 4);
    for (bool pack : {false, true}) {
      auto rows = pack ? pack_examples(ex, 40) : ex;
      std::vector<size_t> idx(rows.size());
      std::iota(idx.begin(), idx.end(), 0);
      Batch b = make_batch(rows, idx);
      auto [l0, g0] = full_value_and_grad(*m, p, b, false);
      auto [l1, g1] = full_value_and_grad(*m, p, b, true);
      EXPECT_NEAR(l0.item<float>(), l1.item<float>(), 1e-5 * std::abs(l0.item<float>())) << fx;
      for (auto& [n, g] : g0)
        EXPECT_LT(max_abs_diff(g, g1.at(n)) / std::max(1e-3, max_abs(g)), 1e-4) << fx << " " << n;
      for (auto& [n, w] : p) EXPECT_EQ(max_abs_diff(w, m->parameters().at(n)), 0.0) << n;
    }
  }
}

TEST(FullFineTune, LossFallsWritesACheckpointAndResumes) {
  TempDir d;
  auto ex = toy_examples(8, 256);
  TrainOptions o{.iters = 12,
                 .batch_size = 4,
                 .lr = 3e-3f,
                 .warmup = 2,
                 .seed = 3,
                 .save_every = 6,
                 .out_dir = d.path,
                 .log_every = 0,
                 .base_dir = fixture("llama_f32")};
  auto m = load("llama_f32");
  Trainer t(*m, ex, {}, o);
  EXPECT_TRUE(t.full());
  auto stats = t.run();
  ASSERT_EQ(stats.size(), 12u);
  EXPECT_LT(stats.back().loss, 0.5f * stats.front().loss)
      << stats.front().loss << " -> " << stats.back().loss;
  // OUT is a full checkpoint: it loads and gives the trained model's logits.
  auto saved = models::load_model(d.path, {.warn = false});
  Array ids = fixed_ids(1, 7, 256);
  EXPECT_EQ(max_abs_diff(saved->forward(ids), m->forward(ids)), 0.0);
  auto fresh = load("llama_f32");
  EXPECT_GT(max_abs_diff(fresh->forward(ids), m->forward(ids)), 1e-3);
  // Resuming from checkpoint-6 reproduces the last 6 steps bit for bit.
  ASSERT_TRUE(std::filesystem::exists(d / "checkpoint-6/model.safetensors"));
  TrainOptions o2 = o;
  o2.out_dir = "";
  Trainer t2(*fresh, ex, {}, o2);
  t2.resume(d / "checkpoint-6");
  auto rest = t2.run();
  ASSERT_EQ(rest.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(rest[i].loss, stats[6 + i].loss) << i;
  for (auto& [n, v] : t.params()) EXPECT_EQ(max_abs_diff(v, t2.params().at(n)), 0.0) << n;
  // A LoRA run cannot resume from it.
  auto m3 = load("llama_f32");
  LoraAdapter a3 = LoraAdapter::init(*m3, LoraConfig{}, 0);
  Trainer t3(*m3, a3, ex, {}, o2);
  EXPECT_THROW(t3.resume(d / "checkpoint-6"), FormatError);
  // Nor a full run from a LoRA checkpoint.
  t3.save_checkpoint(d / "lora-checkpoint");
  Trainer t4(*m3, ex, {}, o2);
  EXPECT_THROW(t4.resume(d / "lora-checkpoint"), FormatError);
}

TEST(FullFineTune, Bf16BaseTrainsFloat32MasterCopies) {
  auto m = load("llama_bf16_tied", std::nullopt);
  ASSERT_EQ(m->dtype(), bfloat16);
  const ParamMap initial = m->parameters();
  auto ex = toy_examples(4, m->vocab_size());
  Trainer t(*m, ex, {},
            {.iters = 3,
             .batch_size = 4,
             .lr = 1e-5f,
             .schedule = "constant",
             .weight_decay = 0.0f,
             .log_every = 0});
  t.run();
  size_t master_moved = 0, model_moved = 0;
  for (auto& [n, w] : t.params()) {
    ASSERT_EQ(w.dtype(), float32) << n;
    const Array& held = m->parameters().at(n);
    ASSERT_EQ(held.dtype(), bfloat16) << n;
    // The model computes with the masters rounded to bf16.
    EXPECT_EQ(max_abs_diff(held, astype(w, bfloat16)), 0.0) << n;
    auto mv = w.to_vector<float>();
    auto iv = astype(initial.at(n), float32).to_vector<float>();
    auto hv = astype(held, float32).to_vector<float>();
    for (size_t k = 0; k < mv.size(); ++k) {
      master_moved += mv[k] != iv[k];
      model_moved += hv[k] != iv[k];
    }
  }
  // Adam's steps (about lr each, 3e-5 in all) are below bf16's spacing for most weights: the
  // masters keep them, the bf16 copies mostly round back to the initial values.
  RecordProperty("master_moved", std::to_string(master_moved));
  RecordProperty("model_moved", std::to_string(model_moved));
  EXPECT_GT(master_moved, 2 * model_moved) << master_moved << " vs " << model_moved;
  EXPECT_GT(model_moved, 0u);
}

TEST(FullFineTune, RefusesQuantizedModelsAndSavesWithoutBaseDir) {
  auto q = models::load_model(fixture("llama_q8_mlx"), {.warn = false});
  auto ex = toy_examples(2, 256);
  EXPECT_THROW(Trainer(*q, ex, {}, {.iters = 1}), Unsupported);
  auto m = load("llama_f32");
  TempDir d;
  EXPECT_THROW(Trainer(*m, ex, {}, {.iters = 1, .out_dir = d.path}), InvalidArgument);
}

TEST(LoraDropout, CheckpointedBlocksDrawTheSameMasks) {
  for (const char* fx : {"llama_f32", "gemma3_f32"}) {
    auto m = load(fx);
    LoraAdapter a = LoraAdapter::init(
        *m, LoraConfig{.rank = 4, .alpha = 8.0f, .dropout = 0.3f, .targets = {"all-linear"}}, 2);
    const ParamMap p = random_params(a, float32, 500);
    auto ex = mixed_examples(m->vocab_size(), 4);
    Batch b = make_batch(ex, {0, 1, 2, 3});
    m->train(true);
    auto [l0, g0] = lora_value_and_grad(*m, a, p, b, false, 77);
    auto [l1, g1] = lora_value_and_grad(*m, a, p, b, true, 77);
    auto [l2, g2] = lora_value_and_grad(*m, a, p, b, false, 78);  // other masks
    m->train(false);
    auto [le, ge] = lora_value_and_grad(*m, a, p, b, false, 77);  // eval: no dropout
    EXPECT_NEAR(l0.item<float>(), l1.item<float>(), 1e-5 * std::abs(l0.item<float>())) << fx;
    for (auto& [n, g] : g0)
      EXPECT_LT(max_abs_diff(g, g1.at(n)) / std::max(1e-3, max_abs(g)), 1e-4) << fx << " " << n;
    EXPECT_GT(std::abs(l0.item<float>() - l2.item<float>()), 1e-4) << fx;
    EXPECT_GT(std::abs(l0.item<float>() - le.item<float>()), 1e-4) << fx;
  }
}

TEST(LoraDropout, TrainerWithCheckpointingFollowsThePlainRun) {
  auto ex = toy_examples(8, 256);
  auto run = [&](bool ck) {
    auto m = load("llama_f32");
    LoraAdapter a = LoraAdapter::init(
        *m, LoraConfig{.rank = 2, .alpha = 4.0f, .dropout = 0.2f, .targets = {"all-linear"}}, 3);
    Trainer t(*m, a, ex, {},
              {.iters = 3, .batch_size = 2, .lr = 1e-2f, .grad_checkpoint = ck, .log_every = 0});
    auto st = t.run();
    return std::make_pair(st, a.params());
  };
  auto [s0, p0] = run(false);
  auto [s1, p1] = run(true);
  for (size_t i = 0; i < s0.size(); ++i)
    EXPECT_NEAR(s0[i].loss, s1[i].loss, 1e-5 * std::abs(s0[i].loss)) << i;
  for (auto& [n, v] : p0)
    EXPECT_LT(max_abs_diff(v, p1.at(n)), 1e-4 * std::max(1e-2, max_abs(v))) << n;
}

}  // namespace
}  // namespace ingot::train
