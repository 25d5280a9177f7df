// Module parameter trees (HF dotted names, freeze/update), layers against naive formulas,
// LoRALinear and losses.
#include <cmath>

#include "core/test_util.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/lora.h"
#include "nn/losses.h"

using namespace ingot;
using namespace ingot::test;
using namespace ingot::nn;

namespace {

class Block : public Module {
 public:
  Block() {
    attn = register_module(
        "self_attn", std::make_shared<Attention>(AttentionConfig{.dims = 16,
                                                                 .n_heads = 4,
                                                                 .n_kv_heads = 2,
                                                                 .head_dim = 4,
                                                                 .qk_norm = RMSNormOptions{}}));
    mlp = register_module("mlp", std::make_shared<GatedMLP>(16, 24));
  }
  std::shared_ptr<Attention> attn;
  std::shared_ptr<GatedMLP> mlp;
};

struct Holder : Module {
  explicit Holder(std::shared_ptr<ModuleList<Block>> l) { register_module("layers", l); }
};

// "m.layers.N...." like Hugging Face's "model.layers.N....".
class Tiny : public Module {
 public:
  Tiny() {
    layers = std::make_shared<ModuleList<Block>>();
    for (int i = 0; i < 2; ++i) layers->push_back(std::make_shared<Block>());
    register_module("m", std::make_shared<Holder>(layers));
  }
  std::shared_ptr<ModuleList<Block>> layers;
};

}  // namespace

TEST(Module, HuggingFaceNamesFreezeUpdate) {
  Tiny t;
  ParamMap p = t.parameters();
  EXPECT_TRUE(p.count("m.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(p.count("m.layers.1.self_attn.k_norm.weight"));
  EXPECT_TRUE(p.count("m.layers.1.mlp.down_proj.weight"));
  EXPECT_EQ(p.at("m.layers.0.self_attn.k_proj.weight").shape(), (Shape{8, 16}));
  EXPECT_EQ(p.at("m.layers.0.mlp.gate_proj.weight").shape(), (Shape{24, 16}));
  const size_t n = p.size();
  EXPECT_EQ(n, 2u * (4 + 2 + 3));
  EXPECT_EQ(t.freeze("m.layers.*.mlp.*"), 6);
  EXPECT_EQ(t.trainable_parameters().size(), n - 6);
  EXPECT_TRUE(t.is_frozen("m.layers.1.mlp.up_proj.weight"));
  EXPECT_FALSE(t.is_frozen("m.layers.1.self_attn.q_proj.weight"));
  EXPECT_EQ(t.unfreeze("*up_proj*"), 2);
  EXPECT_EQ(t.trainable_parameters().size(), n - 4);
  Array w = ones({8, 16});
  t.update({{"m.layers.0.self_attn.v_proj.weight", w}});
  EXPECT_TRUE(t.parameters().at("m.layers.0.self_attn.v_proj.weight").same_node(w));
  expect_error<InvalidArgument>(
      [&] {
        t.update({{"m.layers.0.nope", w}});
      },
      "[module] update: no parameter named 'm.layers.0.nope'");
  expect_error<InvalidArgument>(
      [&] {
        t.update({{"m.layers.0.self_attn.q_proj.weight", w}});
      },
      "has shape [16, 16] but the new value has shape [8, 16]");
  EXPECT_EQ(t.update({{"x.y", w}}, false), (std::vector<std::string>{"x.y"}));
  EXPECT_TRUE(glob_match("a.*.c", "a.b.b.c"));
  EXPECT_FALSE(glob_match("a.?.c", "a.bb.c"));
}

TEST(Layers, LinearEmbeddingNormsMlpMatchNaive) {
  random::seed(3);
  Linear lin(5, 3);
  Array x = random::normal({2, 5});
  auto xv = x.to_vector<double>();
  auto wv = lin.param("weight").to_vector<double>();
  auto bv = lin.param("bias").to_vector<double>();
  std::vector<double> want(6);
  for (int i = 0; i < 2; ++i)
    for (int o = 0; o < 3; ++o) {
      double acc = bv[o];
      for (int k = 0; k < 5; ++k) acc += xv[i * 5 + k] * wv[o * 5 + k];
      want[i * 3 + o] = acc;
    }
  expect_close(lin(x).to_vector<double>(), want, 1e-5, 1e-6, "linear");
  for (double w : wv) EXPECT_LE(std::abs(w), 1 / std::sqrt(5.0));

  Embedding emb(7, 4);
  Array ids = Array({6, 0, 3}, int32);
  auto ev = emb.param("weight").to_vector<double>();
  auto got = emb(ids).to_vector<double>();
  const int rows[3] = {6, 0, 3};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_EQ(got[r * 4 + c], ev[rows[r] * 4 + c]);
  EXPECT_EQ(emb.as_linear(random::normal({2, 4})).shape(), (Shape{2, 7}));

  RMSNorm rn(5, {.eps = 1e-5f, .unit_offset = true});
  rn.update({{"weight", Array({0.5f, -0.5f, 0.f, 1.f, 2.f})}});
  auto rv = rn(x).to_vector<double>();
  for (int i = 0; i < 2; ++i) {
    double ms = 0;
    for (int k = 0; k < 5; ++k) ms += xv[i * 5 + k] * xv[i * 5 + k] / 5;
    double w[5] = {1.5, 0.5, 1, 2, 3};
    for (int k = 0; k < 5; ++k)
      EXPECT_NEAR(rv[i * 5 + k], xv[i * 5 + k] / std::sqrt(ms + 1e-5) * w[k], 1e-5);
  }
  LayerNorm ln(5);
  auto lv = ln(x).to_vector<double>();
  for (int i = 0; i < 2; ++i) {
    double m = 0, v = 0;
    for (int k = 0; k < 5; ++k) m += xv[i * 5 + k] / 5;
    for (int k = 0; k < 5; ++k) v += (xv[i * 5 + k] - m) * (xv[i * 5 + k] - m) / 5;
    for (int k = 0; k < 5; ++k)
      EXPECT_NEAR(lv[i * 5 + k], (xv[i * 5 + k] - m) / std::sqrt(v + 1e-5), 1e-5);
  }
  GatedMLP mlp(5, 6);
  Array ref = mlp.down_proj()(silu(mlp.gate_proj()(x)) * mlp.up_proj()(x));
  expect_close(mlp(x).to_vector<double>(), ref.to_vector<double>(), 1e-6, 1e-7, "mlp");
  EXPECT_EQ(activation_from_name("gelu_pytorch_tanh"), Activation::gelu_tanh);
  expect_error<InvalidArgument>([] { activation_from_name("relu6"); },
                                "[activation] unknown activation 'relu6'");
}

TEST(Layers, StackedProjectionsGiveTheSeparateLayersResults) {
  // fuse_projections stacks q/k/v and gate/up into one matmul: the same outputs, no new
  // parameters (the layers' weights become views of the stack), and a layer that gets a branch
  // or a new weight afterwards is run alone again.
  for (Dtype t : {float32, bfloat16}) {
    Block b;
    for (auto& [name, p] : b.parameters()) b.update({{name, astype(p, t)}});
    Array x = astype(random::normal({2, 3, 16}), t);
    const Array a0 = (*b.attn)(x), m0 = (*b.mlp)(x);
    const auto names = b.parameters();
    ASSERT_TRUE(b.attn->fuse_projections());
    ASSERT_TRUE(b.mlp->fuse_projections());
    EXPECT_EQ(b.parameters().size(), names.size());
    const Array a1 = (*b.attn)(x), m1 = (*b.mlp)(x);
    const double tol = t == float32 ? 1e-6 : 1.0 / 128;
    expect_close(a1.to_vector<double>(), a0.to_vector<double>(), tol, tol, "stacked attention");
    expect_close(m1.to_vector<double>(), m0.to_vector<double>(), tol, tol, "stacked mlp");
    // The layers' weights are row slices of the stack: still usable alone.
    const Array g = b.mlp->gate_proj()(x);
    expect_close(g.to_vector<double>(),
                 matmul(x, transpose(b.mlp->gate_proj().param("weight"))).to_vector<double>(), 0, 0,
                 "gate alone");
    // A low-rank branch on gate is added to its columns of the stacked product.
    Array la = astype(random::normal({2, 16}), t), lb = astype(random::normal({24, 2}), t);
    b.mlp->gate_proj().set_branch(LowRankBranch{la, lb, 0.5f, 0.0f});
    const Array gb = b.mlp->gate_proj()(x);  // the layer alone, branch included
    const Array wantb = b.mlp->down_proj()(silu(gb) * b.mlp->up_proj()(x));
    expect_close((*b.mlp)(x).to_vector<double>(), wantb.to_vector<double>(), tol, tol,
                 "stacked mlp with a branch");
    b.mlp->gate_proj().set_branch(std::nullopt);
    // A new up weight is seen at once (the stack no longer holds it).
    Array up2 = astype(random::normal({24, 16}), t);
    b.mlp->up_proj().update({{"weight", up2}});
    const Array want = b.mlp->down_proj()(silu(b.mlp->gate_proj()(x)) * matmul(x, transpose(up2)));
    expect_close((*b.mlp)(x).to_vector<double>(), want.to_vector<double>(), 1e-6, 1e-6,
                 "after update");
    // Without q/k norms q and k rotate together over the stacked product's columns.
    Attention plain_attn(AttentionConfig{.dims = 16, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4});
    for (auto& [name, p] : plain_attn.parameters()) plain_attn.update({{name, astype(p, t)}});
    const AttentionInputs at{.offset = 5};
    const Array p0 = plain_attn(x, at);
    ASSERT_TRUE(plain_attn.fuse_projections());
    expect_close(plain_attn(x, at).to_vector<double>(), p0.to_vector<double>(), tol, tol,
                 "stacked attention, joint rope");
    // A layer that is not plain (a bias) cannot be stacked.
    Linear l1(16, 8, true, t), l2(16, 8, false, t);
    StackedLinear s;
    EXPECT_FALSE(s.fuse({&l1, &l2}));
    EXPECT_FALSE(s(x).has_value());
  }
}

TEST(Layers, DropoutTrainingOnly) {
  Dropout d(0.25f);
  Array x = ones({20000});
  EXPECT_EQ(sum(d(x)).item<float>(), 20000.0f);
  d.train(true);
  auto v = d(x).to_vector<float>();
  int kept = 0;
  for (float f : v) {
    if (f != 0) {
      EXPECT_FLOAT_EQ(f, 1.0f / 0.75f);
      ++kept;
    }
  }
  // Binomial(20000, 0.75): sd ~ 61; 5 sigma
  EXPECT_NEAR(kept, 15000, 310);
}

double max_abs_diff(const Array& x, const Array& y) {
  auto a = x.to_vector<double>(), b = y.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

TEST(Layers, LinearLowRankBranchMatchesNaiveAndDropsOutInTraining) {
  random::seed(5);
  Linear lin(5, 3, true, bfloat16);
  Array x = random::normal({2, 5}, bfloat16);
  Array a = random::normal({2, 5}), b = random::normal({3, 2});  // float32 factors
  lin.set_branch(LowRankBranch{a, b, 0.75f, 0.0f});
  // y = round_bf16(float(x W^T + b) + 0.75 B (A x)): the branch in float32, rounded once.
  auto xv = x.to_vector<double>(), wv = lin.param("weight").to_vector<double>(),
       bv = lin.param("bias").to_vector<double>(), av = a.to_vector<double>(),
       bbv = b.to_vector<double>();
  const Array base_out = matmul(x, transpose(lin.param("weight"))) + lin.param("bias");
  auto base_v = base_out.to_vector<double>();
  std::vector<double> want(6);
  for (int i = 0; i < 2; ++i)
    for (int o = 0; o < 3; ++o) {
      double d = 0;
      for (int r = 0; r < 2; ++r) {
        double ax = 0;
        for (int k = 0; k < 5; ++k) ax += av[r * 5 + k] * xv[i * 5 + k];
        d += bbv[o * 2 + r] * ax;
      }
      want[i * 3 + o] = base_v[i * 3 + o] + 0.75 * d;
    }
  Array y = lin(x);
  EXPECT_EQ(y.dtype(), bfloat16);
  expect_close(y.to_vector<double>(), want, 1e-2, 8e-3, "linear + low-rank branch");
  // Dropout acts on the branch input only, and only in training mode.
  lin.set_branch(LowRankBranch{a, b, 0.75f, 0.5f});
  EXPECT_EQ(max_abs_diff(lin(x), y), 0.0);  // eval mode: dropout off
  lin.train(true);
  const Array big = random::normal({64, 5}, bfloat16);
  lin.set_branch(LowRankBranch{a, zeros({3, 2}), 0.75f, 0.5f});  // B = 0: branch adds nothing
  lin.train(false);
  const Array plain = lin(big);
  lin.train(true);
  EXPECT_EQ(max_abs_diff(lin(big), plain), 0.0);
  lin.set_branch(LowRankBranch{a, b, 0.75f, 0.5f});
  const Array t1 = lin(big), t2 = lin(big);
  EXPECT_GT(max_abs_diff(t1, t2), 0.0);  // fresh masks per call
  lin.set_branch(std::nullopt);
  EXPECT_EQ(max_abs_diff(lin(big), plain), 0.0);
  EXPECT_THROW(lin.set_branch(LowRankBranch{b, a, 1.0f, 0.0f}), InvalidArgument);
  EXPECT_THROW(lin.set_branch(LowRankBranch{a, b, 1.0f, 1.0f}), InvalidArgument);
}

TEST(Layers, AttentionMatchesManualComposition) {
  random::seed(11);
  AttentionConfig cfg{.dims = 12,
                      .n_heads = 6,
                      .n_kv_heads = 2,
                      .head_dim = 4,
                      .qk_norm = RMSNormOptions{.eps = 1e-6f},
                      .rope_base = 100.0f};
  Attention att(cfg);
  Array x = random::normal({2, 5, 12});
  Array y = att(x);
  // Manual: projections, per-head norm, rope, causal softmax attention with GQA.
  auto proj = [&](const char* n, int h) {
    Array w = att.parameters().at(std::string(n) + ".weight");
    return transpose(reshape(matmul(x, transpose(w)), {2, 5, h, 4}), {0, 2, 1, 3});
  };
  Array q = fast::ref::rms_norm(proj("q_proj", 6), att.parameters().at("q_norm.weight"));
  Array k = fast::ref::rms_norm(proj("k_proj", 2), att.parameters().at("k_norm.weight"));
  Array v = proj("v_proj", 2);
  fast::RopeOptions ro{.base = 100.0f};
  q = fast::ref::rope(q, 4, ro);
  k = fast::ref::rope(k, 4, ro);
  Array o = fast::ref::scaled_dot_product_attention(q, k, v, {.scale = 0.5f, .causal = true});
  o = reshape(transpose(o, {0, 2, 1, 3}), {2, 5, 24});
  Array want = matmul(o, transpose(att.parameters().at("o_proj.weight")));
  expect_close(y.to_vector<double>(), want.to_vector<double>(), 1e-4, 1e-5, "attention");
  expect_error<InvalidArgument>(
      [] { Attention(AttentionConfig{.dims = 8, .n_heads = 3, .n_kv_heads = 2, .head_dim = 4}); },
      "[attention] invalid heads");
}

TEST(LoRA, StartsAtBaseTrainsOnlyAdapters) {
  random::seed(5);
  Linear base(6, 4);
  LoRALinear l(base, {.rank = 2, .alpha = 8.0f});
  EXPECT_FLOAT_EQ(l.scale(), 4.0f);
  Array x = random::normal({3, 6});
  expect_close(l(x).to_vector<double>(), base(x).to_vector<double>(), 0, 0, "initial");
  ParamMap tp = l.trainable_parameters();
  EXPECT_EQ(tp.size(), 2u);
  EXPECT_TRUE(tp.count("lora_A.weight") && tp.count("lora_B.weight"));
  EXPECT_EQ(tp.at("lora_A.weight").shape(), (Shape{2, 6}));
  EXPECT_EQ(tp.at("lora_B.weight").shape(), (Shape{4, 2}));
  l.update({{"lora_B.weight", ones({4, 2})}});
  Array want = base(x) + 4.0f * matmul(matmul(x, transpose(l.parameters().at("lora_A.weight"))),
                                       transpose(ones({4, 2})));
  expect_close(l(x).to_vector<double>(), want.to_vector<double>(), 1e-5, 1e-5, "adapted");
  Linear fused(6, 4);
  fused.update({{"weight", l.fused_weight()}, {"bias", base.param("bias")}});
  expect_close(fused(x).to_vector<double>(), want.to_vector<double>(), 1e-5, 1e-5, "fused");
}

TEST(Losses, CrossEntropyIgnoreIndexAndMask) {
  Array logits = random::normal({2, 3, 5}, bfloat16);
  Array targets = Array(std::vector<int32_t>{1, 4, -100, 0, 2, 3}, {2, 3});
  Array mask = Array(std::vector<float>{1, 1, 1, 1, 0, 1}, {2, 3});
  auto lv = astype(logits, float64).to_vector<double>();
  int tv[6] = {1, 4, -100, 0, 2, 3};
  double mv[6] = {1, 1, 1, 1, 0, 1};
  double tot = 0, cnt = 0, tot_m = 0, cnt_m = 0;
  for (int p = 0; p < 6; ++p) {
    if (tv[p] == -100) continue;
    double mx = -1e30, s = 0;
    for (int c = 0; c < 5; ++c) mx = std::max(mx, lv[p * 5 + c]);
    for (int c = 0; c < 5; ++c) s += std::exp(lv[p * 5 + c] - mx);
    double nll = mx + std::log(s) - lv[p * 5 + tv[p]];
    tot += nll;
    cnt += 1;
    tot_m += nll * mv[p];
    cnt_m += mv[p];
  }
  Array ce = cross_entropy(logits, targets);
  EXPECT_EQ(ce.dtype(), float32);
  EXPECT_NEAR(ce.item<double>(), tot / cnt, 1e-5);
  EXPECT_NEAR(cross_entropy(logits, targets, {.mask = mask}).item<double>(), tot_m / cnt_m, 1e-5);
  EXPECT_NEAR(cross_entropy(logits, targets, {.mean = false}).item<double>(), tot, 1e-4);
  expect_error<InvalidArgument>(
      [&] {
        cross_entropy(logits, Array({1, 2}, int32));
      },
      "[cross_entropy] logits [2, 3, 5] must have one more axis");
  EXPECT_NEAR(mse(Array({1.f, 2.f}), Array({2.f, 4.f})).item<float>(), 2.5f, 1e-6);
}

TEST(Layers, RMSNormWeightRoundingModes) {
  // Llama/Qwen (weight_in_float32 = false): normalise in float32, round to bf16, then multiply
  // by the weight in bf16. Gemma (true): multiply in float32, round once.
  random::seed(9);
  Array x = random::normal({3, 8}, bfloat16);
  Array w = random::normal({8}, bfloat16);
  auto xv = astype(x, float64).to_vector<double>();
  auto wv = astype(w, float64).to_vector<double>();
  for (bool f32 : {false, true}) {
    RMSNorm n(8, {.eps = 1e-6f, .weight_in_float32 = f32}, bfloat16);
    n.update({{"weight", w}});
    auto got = astype(n(x), float64).to_vector<double>();
    for (int r = 0; r < 3; ++r) {
      double ms = 0;
      for (int c = 0; c < 8; ++c) ms += xv[r * 8 + c] * xv[r * 8 + c] / 8;
      float inv = 1.0f / std::sqrt(static_cast<float>(ms) + 1e-6f);
      for (int c = 0; c < 8; ++c) {
        float normed = static_cast<float>(xv[r * 8 + c]) * inv;
        double want = f32 ? round_to(normed * wv[c], bfloat16)
                          : round_to(round_to(normed, bfloat16) * wv[c], bfloat16);
        EXPECT_NEAR(got[r * 8 + c], want, std::abs(want) * 1e-2 + 1e-6)
            << (f32 ? "float32 weight" : "bf16 weight") << " " << r << "," << c;
      }
    }
  }
}
