// Stacked quantized projections (StackedLinear over quantized Linear layers): fuse() stacks the
// packed words, scales and biases row-wise and leaves each layer a row slice; the stacked
// product, the normed product, the normed GLU and Linear::add_to of quantized layers equal the
// unfused layers' composition bit for bit on the CPU (the fused primitive composes the same
// kernels); layers that do not share bits, group size, quantization or bias are refused; a
// replaced parameter turns the stack off; gradients through the fused forms (QLoRA over a
// stacked base) equal the unfused ones.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "core/ingot.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/quantized.h"

namespace ingot::nn {
namespace {

void expect_same(const Array& got, const Array& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], w[i]) << what << " at " << i;
}

Array input(const Shape& s, Dtype t, uint32_t seed) {
  return astype(random::normal(s, float32, 0.0, 1.0, random::key(seed)), t);
}

/// The columns [first, first + n) of y [..., N].
Array cols(const Array& y, int64_t first, int64_t n) {
  Shape a(static_cast<size_t>(y.ndim()), 0), b = y.shape();
  a.back() = first;
  b.back() = first + n;
  return slice(y, a, b);
}

TEST(QuantizedStacked, ProductsEqualTheLayers) {
  for (Dtype t : {float32, bfloat16})
    for (int bits : {4, 8})
      for (int64_t m : {1, 4, 18}) {
        const QuantizeOptions o{.group_size = 64, .bits = bits};
        const std::string what = fmt::format("{} bits {} M {}", dtype_name(t), bits, m);
        random::seed(3);
        const int64_t e = 192;
        QuantizedLinear q(e, 64, false, o, t), k(e, 32, false, o, t), v(e, 32, false, o, t);
        RMSNorm norm(e, {.eps = 1e-5f, .weight_in_float32 = false}, t);
        norm.update({{"weight", input({e}, t, 9)}});
        const Array x = input({1, m, e}, t, 10 + static_cast<uint32_t>(m));
        const Array r = input({1, m, 64}, t, 20 + static_cast<uint32_t>(m));
        const Array h = norm(x);
        const Array yq = q(x), yk = k(x), yv = v(x), nq = q(h), nk = k(h), nv = v(h);
        const Array aq = r + q(x);
        eval({yq, yk, yv, nq, nk, nv, aq});
        StackedLinear s;
        ASSERT_TRUE(s.fuse({&q, &k, &v})) << what;
        // Each layer now holds row slices of the stacks and still works alone.
        EXPECT_EQ(q.param("weight").shape(), (Shape{64, e * bits / 32})) << what;
        EXPECT_EQ(k.param("scales").shape(), (Shape{32, e / 64})) << what;
        expect_same(k(x), yk, what + " k alone");
        const std::optional<Array> y = s.product(x);
        ASSERT_TRUE(y) << what;
        expect_same(s.columns(*y, 0, 1), yq, what + " q");
        expect_same(s.columns(*y, 1, 1), yk, what + " k");
        expect_same(s.columns(*y, 2, 1), yv, what + " v");
        const std::optional<Array> ny = s.normed_product(x, norm);
        ASSERT_TRUE(ny) << what;
        expect_same(cols(*ny, 0, 64), nq, what + " normed q");
        expect_same(cols(*ny, 64, 32), nk, what + " normed k");
        expect_same(cols(*ny, 96, 32), nv, what + " normed v");
        expect_same(q.add_to(r, x), aq, what + " add_to");
        // A replaced parameter: the stack no longer is what the layers hold.
        q.update({{"scales", q.param("scales") * 1.0f}});
        EXPECT_FALSE(s.product(x)) << what;
        EXPECT_FALSE(s.normed_product(x, norm)) << what;
      }
}

TEST(QuantizedStacked, GatedMlpFusedEqualsUnfused) {
  for (Dtype t : {float32, bfloat16})
    for (Activation act : {Activation::silu, Activation::gelu_tanh}) {
      const std::string what = fmt::format("{} act {}", dtype_name(t), static_cast<int>(act));
      random::seed(5);
      const int64_t e = 128, f = 256;
      GatedMLP mlp(e, f, act, false, t);
      RMSNorm norm(e, {}, t);
      ASSERT_EQ(quantize_modules(mlp,
                                 [](const std::string&, const Module&) {
                                   return std::optional<QuantizeOptions>(
                                       QuantizeOptions{.group_size = 32, .bits = 4});
                                 }),
                3);
      const Array x = input({2, 3, e}, t, 1), r = input({2, 3, e}, t, 2);
      const Array before = mlp.normed(x, norm, &r), plain = mlp(x, r);
      // The composition, spelled out: residual + down(act(gate(n)) * up(n)).
      const Array n = norm(x);
      const Array comp = r + mlp.down_proj()(activate(mlp.gate_proj()(n), act) * mlp.up_proj()(n));
      eval({before, plain, comp});
      expect_same(before, comp, what + " unfused normed");
      ASSERT_TRUE(mlp.fuse_projections()) << what;
      expect_same(mlp.normed(x, norm, &r), before, what + " fused normed");
      expect_same(mlp(x, r), plain, what + " fused call");
      // The GLU form as the GPU takes it (StackedLinear::normed_glu), on the CPU.
    }
}

TEST(QuantizedStacked, GluFormEqualsTheComposition) {
  random::seed(6);
  const int64_t e = 128, f = 96;
  const QuantizeOptions o{.group_size = 32, .bits = 8};
  QuantizedLinear g(e, f, false, o, bfloat16), u(e, f, false, o, bfloat16);
  RMSNorm norm(e, {.eps = 1e-6f, .unit_offset = true}, bfloat16);
  norm.update({{"weight", input({e}, bfloat16, 4)}});
  const Array x = input({1, 2, e}, bfloat16, 3);
  const Array want = silu(g(norm(x))) * u(norm(x));
  eval({want});
  StackedLinear s;
  ASSERT_TRUE(s.fuse({&g, &u}));
  const std::optional<Array> got = s.normed_glu(x, norm, Activation::silu);
  ASSERT_TRUE(got);
  expect_same(*got, want, "normed_glu");
}

TEST(QuantizedStacked, LowRankBranchOverAStackedQuantizedBase) {
  // A branch on one stacked layer: the normed forms step aside (the branch needs the
  // normalised x), the stacked call adds the branch to that layer's columns.
  random::seed(12);
  const int64_t e = 64;
  const QuantizeOptions o{.group_size = 32, .bits = 4};
  QuantizedLinear q(e, 32, false, o), v(e, 16, false, o);
  RMSNorm norm(e);
  StackedLinear s;
  ASSERT_TRUE(s.fuse({&q, &v}));
  q.set_branch(LowRankBranch{
      .a = input({4, e}, float32, 1), .b = input({32, 4}, float32, 2), .scale = 0.5f});
  const Array x = input({1, 2, e}, float32, 3);
  EXPECT_FALSE(s.normed_product(x, norm));
  EXPECT_FALSE(s.normed_glu(x, norm, Activation::silu));
  const std::optional<std::vector<Array>> ys = s(x);
  ASSERT_TRUE(ys);
  expect_same((*ys)[0], q(x), "q with its branch");
  expect_same((*ys)[1], v(x), "v");
}

TEST(QuantizedStacked, RefusesMismatchedLayers) {
  const QuantizeOptions o4{.group_size = 64, .bits = 4}, o8{.group_size = 64, .bits = 8},
      g32{.group_size = 32, .bits = 4};
  QuantizedLinear a(128, 16, false, o4), b(128, 16, false, o8), c(128, 16, false, g32);
  QuantizedLinear d(128, 16, true, o4), e(64, 16, false, o4), a2(128, 8, false, o4);
  Linear f(128, 16, false);
  StackedLinear s;
  EXPECT_FALSE(s.fuse({&a, &b}));  // bits
  EXPECT_FALSE(s.fuse({&a, &c}));  // group size
  EXPECT_FALSE(s.fuse({&a, &d}));  // bias
  EXPECT_FALSE(s.fuse({&a, &e}));  // input width
  EXPECT_FALSE(s.fuse({&a, &f}));  // quantized and float
  EXPECT_FALSE(s.fuse({&f, &a}));
  EXPECT_FALSE(s.product(zeros({1, 128})));
  EXPECT_TRUE(s.fuse({&a, &a2}));
}

TEST(QuantizedStacked, GradientsThroughTheFusedFormsEqualUnfused) {
  // QLoRA-style: the gradient of a loss with respect to the input of a quantized block (the
  // base is frozen) through the stacked normed product and the fused residual add.
  random::seed(8);
  const int64_t e = 64;
  const QuantizeOptions o{.group_size = 32, .bits = 4};
  QuantizedLinear q(e, 32, false, o), k(e, 32, false, o), down(32, e, false, o);
  RMSNorm norm(e, {.eps = 1e-5f});
  const Array x = input({1, 3, e}, float32, 1), r = input({1, 3, e}, float32, 2);
  const auto loss_unfused = [&](const std::vector<Array>& a) {
    const Array n = norm(a[0]);
    return std::vector<Array>{sum(square(a[1] + down(q(n) * k(n))))};
  };
  const std::vector<Array> want = grad(loss_unfused, {0, 1})({x, r});
  StackedLinear s;
  ASSERT_TRUE(s.fuse({&q, &k}));
  const auto loss_fused = [&](const std::vector<Array>& a) {
    const Array y = *s.normed_product(a[0], norm);
    return std::vector<Array>{
        sum(square(down.add_to(a[1], s.columns(y, 0, 1) * s.columns(y, 1, 1))))};
  };
  const std::vector<Array> got = grad(loss_fused, {0, 1})({x, r});
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const auto g = got[i].to_vector<double>(), w = want[i].to_vector<double>();
    ASSERT_EQ(g.size(), w.size());
    for (size_t j = 0; j < g.size(); ++j) EXPECT_NEAR(g[j], w[j], 1e-5 * (1 + std::abs(w[j])));
  }
}

}  // namespace
}  // namespace ingot::nn
