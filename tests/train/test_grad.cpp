// Adapter gradients: float64 central finite differences of the masked LM loss on a fixture, and
// per-block gradient checkpointing giving the same loss and gradients as the plain pass.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/test_util.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace ingot::train {
namespace {
using namespace test;

Batch fixed_batch(int64_t vocab) {
  std::vector<Example> ex(2);
  Array ids = fixed_ids(2, 10, vocab, 11);
  auto v = ids.to_vector<int32_t>();
  ex[0].ids.assign(v.begin(), v.begin() + 10);
  ex[1].ids.assign(v.begin() + 10, v.begin() + 16);  // shorter: padded
  for (auto& e : ex) e.loss_mask.assign(e.ids.size(), 1);
  ex[1].loss_mask[2] = 0;  // a masked target
  return make_batch(ex, {0, 1});
}

TEST(LoraGrad, MatchesFloat64FiniteDifferences) {
  auto m = load("llama_f32", float64);
  ASSERT_EQ(m->dtype(), float64);
  LoraAdapter a = LoraAdapter::init(*m, LoraConfig{.rank = 2, .alpha = 4.0f}, 5);
  ParamMap p;
  int i = 0;
  for (auto& [n, v] : a.params())  // nonzero B so that A's gradient is not zero
    p.emplace(n, random::normal(v.shape(), float64, 0.0, 0.2, random::key(40 + i++)));
  ParamMap base = base_weights(*m, a);
  Batch b = fixed_batch(m->vocab_size());
  auto [loss, grads] = lora_value_and_grad(*m, a, p, b);
  EXPECT_EQ(loss.dtype(), float32);  // the library's loss is float32 by design
  // Reference: the same masked loss in float64 from the float64 hidden states, with the head
  // and the cross-entropy as host loops.
  const auto tg = b.targets.to_vector<int32_t>();
  const auto mk = b.mask.to_vector<float>();
  const Array head = astype(m->lm_head_weight(), float64);
  auto at = [&](const ParamMap& q) {
    m->update(merged_weights(base, a, q, float64));
    Array logits = matmul(m->hidden(b.inputs), transpose(head));  // [B, L, V] float64
    m->update(base);
    return float64_masked_loss(logits.to_vector<double>(), static_cast<size_t>(m->vocab_size()), tg,
                               mk);
  };
  EXPECT_NEAR(at(p), loss.item<float>(), 1e-5);
  const double h = 1e-5;
  int checked = 0;
  for (auto& [n, g] : grads) {
    auto gv = g.to_vector<double>();
    auto pv = p.at(n).to_vector<double>();
    for (size_t k = 0; k < gv.size(); k += gv.size() / 3 + 1) {
      auto moved = [&](double delta) {
        auto v = pv;
        v[k] += delta;
        ParamMap q = p;
        q.at(n) = Array(v, p.at(n).shape(), float64);
        return at(q);
      };
      const double fd = (moved(h) - moved(-h)) / (2 * h);
      // The analytic gradient passes through float32 logits: ~1e-6 relative.
      EXPECT_NEAR(gv[k], fd, 1e-6 + 1e-4 * std::abs(fd)) << n << "[" << k << "]";
      ++checked;
    }
  }
  EXPECT_GE(checked, 12);
}

TEST(LoraGrad, CheckpointedBlocksGiveTheSameLossAndGradients) {
  for (const char* fx : {"llama_f32", "qwen3_f32_tied", "gemma3_f32"}) {
    auto m = load(fx);
    LoraAdapter a =
        LoraAdapter::init(*m, LoraConfig{.rank = 4, .alpha = 8.0f, .targets = {"all-linear"}}, 2);
    ParamMap p;
    int i = 0;
    for (auto& [n, v] : a.params())
      p.emplace(n, random::normal(v.shape(), float32, 0.0, 0.1, random::key(70 + i++)));
    ParamMap base = base_weights(*m, a);
    Batch b = fixed_batch(m->vocab_size());
    auto [l0, g0] = lora_value_and_grad(*m, a, p, b, false);
    auto [l1, g1] = lora_value_and_grad(*m, a, p, b, true);
    EXPECT_NEAR(l0.item<float>(), l1.item<float>(), 1e-5 * std::abs(l0.item<float>())) << fx;
    for (auto& [n, g] : g0) {
      const double scale = std::max(1e-3, max_abs(g));
      EXPECT_LT(max_abs_diff(g, g1.at(n)) / scale, 1e-4) << fx << " " << n;
    }
    // The model is restored after both.
    for (auto& [n, w] : base) EXPECT_EQ(max_abs_diff(w, m->parameters().at(n)), 0.0) << n;
  }
}

TEST(LoraGrad, TheStepTracesOneGluGradPerBlock) {
  // The trainer's step (lora_value_and_grad) runs the forward under value_and_grad, so each
  // block's gated MLP is one Glu whose backward is one GluGrad, with and without per-block
  // checkpointing (there the backward recomputes the block under vjp); INGOT_FUSED_GLU_GRAD=0:
  // the separate ops.
  const char* env = std::getenv("INGOT_FUSED_GLU_GRAD");
  const bool fused = env == nullptr || std::string(env) != "0";
  for (const char* fx : {"llama_f32", "gemma3_f32"}) {
    auto m = load(fx);
    LoraAdapter a =
        LoraAdapter::init(*m, LoraConfig{.rank = 4, .alpha = 8.0f, .targets = {"all-linear"}}, 2);
    const Batch b = fixed_batch(m->vocab_size());
    for (bool ckpt : {false, true}) {
      auto [loss, grads] = lora_value_and_grad(*m, a, a.params(), b, ckpt);
      std::vector<Array> gs;
      for (auto& [n, g] : grads) gs.push_back(g);
      EXPECT_EQ(ingot::test::count_primitives(gs, "GluGrad"), fused ? m->num_layers() : 0)
          << fx << (ckpt ? " checkpointed" : "");
    }
  }
}

}  // namespace
}  // namespace ingot::train
