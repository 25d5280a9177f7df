// Quantized layers: QuantizedLinear / QuantizedEmbedding against float64 loops over the
// dequantized weights (unpacked here by the layout's definition), in-place quantization of a
// module tree by path, and LoRA branches over a quantized base (QLoRA): same output as over
// the dequantized float base, gradients reaching the adapters and not the frozen base.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ingot.h"
#include "nn/quantized.h"
#include "util/error.h"

namespace ingot::nn {
namespace {

/// The layer's dequantized weight [out, in] in float64, from its packed parameters.
std::vector<double> unpacked(const Module& m, int gs, int bits) {
  const Array& wq = m.param("weight");
  std::vector<uint32_t> words = wq.to_vector<uint32_t>();
  std::vector<double> s = m.param("scales").to_vector<double>();
  std::vector<double> b = m.param("biases").to_vector<double>();
  const int per = 32 / bits;
  const int64_t rows = wq.shape(0), cols = wq.shape(1) * per;
  std::vector<double> w(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k) {
      const uint32_t q =
          (words[r * wq.shape(1) + k / per] >> ((k % per) * bits)) & ((1u << bits) - 1u);
      const size_t g = static_cast<size_t>(r * (cols / gs) + k / gs);
      w[r * cols + k] = s[g] * q + b[g];
    }
  return w;
}

std::vector<double> randv(int64_t n, uint32_t seed) {
  Array a = random::uniform({n}, float32, -1.0, 1.0, random::key(seed));
  return a.to_vector<double>();
}

TEST(QuantizedLayers, LinearMatchesFloat64) {
  const int64_t in = 128, out = 24, m = 3;
  for (int bits : {4, 8}) {
    QuantizedLinear lin(in, out, /*bias=*/true, {.group_size = 64, .bits = bits});
    ASSERT_EQ(lin.in_features(), in);
    ASSERT_EQ(lin.out_features(), out);
    ASSERT_TRUE(lin.quantization());
    std::vector<double> w = unpacked(lin, 64, bits);
    std::vector<double> bias = lin.param("bias").to_vector<double>();
    std::vector<double> x = randv(m * in, 3);
    std::vector<double> y = lin(Array(x, {m, in}, float32)).to_vector<double>();
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < out; ++j) {
        double want = bias[j], sc = std::abs(bias[j]);
        for (int64_t k = 0; k < in; ++k) {
          want += x[i * in + k] * w[j * in + k];
          sc += std::abs(x[i * in + k] * w[j * in + k]);
        }
        EXPECT_NEAR(y[i * out + j], want, 1e-5 * sc) << bits;
      }
  }
}

TEST(QuantizedLayers, EmbeddingLookupAndTiedHead) {
  const int64_t v = 10, e = 64;
  QuantizedEmbedding emb(v, e, {.group_size = 32, .bits = 4});
  std::vector<double> w = unpacked(emb, 32, 4);
  Array ids({3, 0, 9, 3}, {2, 2}, int32);
  Array rows = emb(ids);
  ASSERT_EQ(rows.shape(), (Shape{2, 2, e}));
  std::vector<double> got = rows.to_vector<double>();
  const int idv[] = {3, 0, 9, 3};
  for (int t = 0; t < 4; ++t)
    for (int64_t k = 0; k < e; ++k)
      EXPECT_NEAR(got[t * e + k], w[idv[t] * e + k], 1e-6 * (1 + std::abs(w[idv[t] * e + k])));
  std::vector<double> x = randv(e, 5);
  std::vector<double> logits = emb.as_linear(Array(x, {1, e}, float32)).to_vector<double>();
  for (int64_t j = 0; j < v; ++j) {
    double want = 0, sc = 0;
    for (int64_t k = 0; k < e; ++k) {
      want += x[k] * w[j * e + k];
      sc += std::abs(x[k] * w[j * e + k]);
    }
    EXPECT_NEAR(logits[j], want, 1e-5 * sc);
  }
  // weight_rows / dense_weight dequantize the same values.
  std::vector<double> r = weight_rows(emb, Array({9}, int32)).to_vector<double>();
  for (int64_t k = 0; k < e; ++k) EXPECT_NEAR(r[k], w[9 * e + k], 1e-6 * (1 + std::abs(r[k])));
  EXPECT_EQ(dense_weight(emb).shape(), (Shape{v, e}));
}

/// A small tree: "proj" (Linear 64 -> 8), "odd" (Linear 48 -> 8), "embed" (Embedding).
class Tree : public Module {
 public:
  Tree() {
    proj = register_module("proj", std::make_shared<Linear>(64, 8, false));
    odd = register_module("odd", std::make_shared<Linear>(48, 8, false));
    embed = register_module("embed", std::make_shared<Embedding>(5, 64));
  }
  std::shared_ptr<Linear> proj, odd;
  std::shared_ptr<Embedding> embed;
};

TEST(QuantizedLayers, QuantizeModulesByPath) {
  Tree t;
  std::vector<std::string> seen;
  int n = quantize_modules(t, [&](const std::string& path, const Module&) {
    seen.push_back(path);
    std::optional<QuantizeOptions> r;
    if (path != "odd") r = QuantizeOptions{.group_size = 32, .bits = 8};
    return r;
  });
  EXPECT_EQ(n, 2);
  EXPECT_EQ(seen, (std::vector<std::string>{"proj", "odd", "embed"}));
  EXPECT_TRUE(t.proj->quantization());
  EXPECT_FALSE(t.odd->quantization());
  EXPECT_TRUE(t.embed->quantization());
  EXPECT_EQ(t.parameters().count("proj.scales"), 1u);
  // A width that does not divide by the group size is an error naming it.
  EXPECT_THROW(t.odd->quantize({.group_size = 32, .bits = 4}), InvalidArgument);
  EXPECT_THROW(t.proj->quantize({.group_size = 32, .bits = 4}), InvalidArgument);  // already
}

TEST(QuantizedLayers, LoraBranchOverQuantizedBase) {
  const int64_t in = 64, out = 16, r = 4, m = 2;
  QuantizedLinear base(in, out, false, {.group_size = 32, .bits = 4});
  Linear dense(in, out, false);
  dense.update({{"weight", dense_weight(base)}});
  Array a = random::normal({r, in}, float32, 0.0, 0.1, random::key(1));
  Array b = random::normal({out, r}, float32, 0.0, 0.1, random::key(2));
  base.set_branch(LowRankBranch{.a = a, .b = b, .scale = 2.0f});
  dense.set_branch(LowRankBranch{.a = a, .b = b, .scale = 2.0f});
  Array x = random::uniform({m, in}, float32, -1.0, 1.0, random::key(3));
  EXPECT_LT(max(abs(base(x) - dense(x))).item<float>(), 1e-4);
  // Gradients of a loss w.r.t. the adapters agree with the dense base.
  auto loss_of = [&](Linear& layer) {
    return [&layer, x, a, b](const std::vector<Array>& p) {
      layer.set_branch(LowRankBranch{.a = p[0], .b = p[1], .scale = 2.0f});
      return std::vector<Array>{sum(square(layer(x)))};
    };
  };
  auto gq = grad(loss_of(base), {0, 1})({a, b});
  auto gd = grad(loss_of(dense), {0, 1})({a, b});
  for (int i = 0; i < 2; ++i) {
    const double scale = max(abs(gd[i])).item<float>();
    EXPECT_LT(max(abs(gq[i] - gd[i])).item<float>(), 1e-4 * scale + 1e-6) << i;
  }
  // The gradient also flows to x through the quantized weight.
  auto fx = [&](const std::vector<Array>& p) {
    return std::vector<Array>{sum(square(base(p[0])))};
  };
  auto fxd = [&](const std::vector<Array>& p) {
    return std::vector<Array>{sum(square(dense(p[0])))};
  };
  Array g1 = grad(fx, {0})({x})[0], g2 = grad(fxd, {0})({x})[0];
  EXPECT_LT(max(abs(g1 - g2)).item<float>(), 1e-4 * max(abs(g2)).item<float>());
}

}  // namespace
}  // namespace ingot::nn
