// Quantized layers: QuantizedLinear / QuantizedEmbedding against float64 loops over the
// dequantized weights (unpacked here by the layout's definition), in-place quantization of a
// module tree by path, and LoRA branches over a quantized base (QLoRA): same output as over
// the dequantized float base, gradients reaching the adapters and not the frozen base. Each
// product is checked twice: on the float32-activation path (pinned with FloatActivations) to
// float32 rounding, and on the default path (int8 activations on the CPU's SIMD levels) within
// the bound of that scheme (int8_bound).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "backend/cpu/quantized_int8.h"
#include "core/ingot.h"
#include "nn/quantized.h"
#include "util/error.h"

namespace ingot::nn {
namespace {

/// quantized_matmul pinned to float32 activations (MLX's numerics) for a scope.
struct FloatActivations : cpu::ScopedInt8Decode {
  FloatActivations() : cpu::ScopedInt8Decode(false) {}
};

/// A layer's packed weight unpacked by the layout's definition, in float64: w = s * q + b per
/// element ([out, in]), with q (the codes, >= 0) and s (the scales, [out, in / gs]) kept.
struct Unpacked {
  std::vector<double> w, q, s;
  int64_t rows = 0, cols = 0;
  int gs = 0;
};

Unpacked unpack(const Module& m, int gs, int bits) {
  const Array& wq = m.param("weight");
  std::vector<uint32_t> words = wq.to_vector<uint32_t>();
  Unpacked u;
  u.s = m.param("scales").to_vector<double>();
  std::vector<double> b = m.param("biases").to_vector<double>();
  const int per = 32 / bits;
  u.rows = wq.shape(0);
  u.cols = wq.shape(1) * per;
  u.gs = gs;
  u.w.resize(static_cast<size_t>(u.rows * u.cols));
  u.q.resize(u.w.size());
  for (int64_t r = 0; r < u.rows; ++r)
    for (int64_t k = 0; k < u.cols; ++k) {
      const uint32_t q =
          (words[r * wq.shape(1) + k / per] >> ((k % per) * bits)) & ((1u << bits) - 1u);
      const size_t g = static_cast<size_t>(r * (u.cols / gs) + k / gs);
      u.q[r * u.cols + k] = q;
      u.w[r * u.cols + k] = u.s[g] * q + b[g];
    }
  return u;
}

/// The layer's dequantized weight [out, in] in float64, from its packed parameters.
std::vector<double> unpacked(const Module& m, int gs, int bits) {
  return unpack(m, gs, bits).w;
}

/// Bound on |y - x W^T| for the int8-activation path, [m, out] row-major (x is [m, in]).
/// The scheme (backend/cpu/quantized_int8.h): each group g of row i of x is rounded to int8
/// codes c with step d_ig = max_{t in g} |x_it| / 127, round to nearest, so x_it = d_ig * c_it +
/// e_it with |e_it| <= d_ig / 2. With w_jt = s_jg * q_jt + b_jg, the bias part b_jg * sum_t x_it
/// is formed from the unquantized x, so only the scale part sees e:
///   y_ij - sum_t x_it w_jt = -sum_g s_jg * sum_{t in g} q_jt * e_it,
///   |y_ij - exact_ij| <= sum_g |s_jg| * d_ig / 2 * sum_{t in g} q_jt     (q_jt >= 0).
/// The float32 rounding of the sums comes on top (the callers add the float path's tolerance).
std::vector<double> int8_bound(const std::vector<double>& x, int64_t m, const Unpacked& u) {
  const int64_t k = u.cols, groups = k / u.gs;
  std::vector<double> bound(static_cast<size_t>(m * u.rows), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t g = 0; g < groups; ++g) {
      double amax = 0;
      for (int64_t t = g * u.gs; t < (g + 1) * u.gs; ++t)
        amax = std::max(amax, std::abs(x[i * k + t]));
      const double half_step = amax / 127 / 2;
      for (int64_t j = 0; j < u.rows; ++j) {
        double qsum = 0;
        for (int64_t t = g * u.gs; t < (g + 1) * u.gs; ++t) qsum += u.q[j * k + t];
        bound[i * u.rows + j] += std::abs(u.s[j * groups + g]) * half_step * qsum;
      }
    }
  return bound;
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
    const Unpacked u = unpack(lin, 64, bits);
    const std::vector<double>& w = u.w;
    std::vector<double> bias = lin.param("bias").to_vector<double>();
    std::vector<double> x = randv(m * in, 3);
    std::vector<double> yf;
    {
      FloatActivations pin;
      yf = lin(Array(x, {m, in}, float32)).to_vector<double>();
    }
    std::vector<double> y = lin(Array(x, {m, in}, float32)).to_vector<double>();  // default
    const std::vector<double> bound = int8_bound(x, m, u);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < out; ++j) {
        double want = bias[j], sc = std::abs(bias[j]);
        for (int64_t k = 0; k < in; ++k) {
          want += x[i * in + k] * w[j * in + k];
          sc += std::abs(x[i * in + k] * w[j * in + k]);
        }
        EXPECT_NEAR(yf[i * out + j], want, 1e-5 * sc) << bits;
        EXPECT_NEAR(y[i * out + j], want, bound[i * out + j] + 1e-5 * sc) << bits << " default";
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
  std::vector<double> lf;
  {
    FloatActivations pin;
    lf = emb.as_linear(Array(x, {1, e}, float32)).to_vector<double>();
  }
  std::vector<double> logits = emb.as_linear(Array(x, {1, e}, float32)).to_vector<double>();
  const std::vector<double> bound = int8_bound(x, 1, unpack(emb, 32, 4));
  for (int64_t j = 0; j < v; ++j) {
    double want = 0, sc = 0;
    for (int64_t k = 0; k < e; ++k) {
      want += x[k] * w[j * e + k];
      sc += std::abs(x[k] * w[j * e + k]);
    }
    EXPECT_NEAR(lf[j], want, 1e-5 * sc);
    EXPECT_NEAR(logits[j], want, bound[j] + 1e-5 * sc) << "default";
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
  const float scale = 2.0f;
  base.set_branch(LowRankBranch{.a = a, .b = b, .scale = scale});
  dense.set_branch(LowRankBranch{.a = a, .b = b, .scale = scale});
  Array x = random::uniform({m, in}, float32, -1.0, 1.0, random::key(3));
  // Bounds on the default path, propagated from B = int8_bound [m, out] (|y_q - y_d| <= B: the
  // branch is the same float computation on both layers). With L = sum(y^2), dL/dtheta =
  // 2 sum y * dy/dtheta and dy/dtheta the same for both (it involves only the branch and x), so
  // the gradients differ by exactly 2 sum dy * dy/dtheta:
  //   dL/db [out, r]: y = ... + scale * (x a^T) b^T  ->  |diff| <= 2 scale B^T |x a^T|,
  //   dL/da [r, in]:                                 ->  |diff| <= 2 scale (B |b|)^T |x|,
  //   dL/dx [m, in]:  dy/dx = W + scale b a          ->  |diff| <= 2 B (|W| + scale |b| |a|).
  // On the pinned float path the bounds are zero and only float32 rounding remains.
  Array bnd(int8_bound(x.to_vector<double>(), m, unpack(base, 32, 4)), {m, out}, float32);
  const Array xa = abs(matmul(x, transpose(a)));
  const Array wabs = abs(dense_weight(base)) + scale * matmul(abs(b), abs(a));
  for (bool pinned : {true, false}) {
    SCOPED_TRACE(pinned ? "float32 activations" : "default (int8 activations)");
    std::optional<FloatActivations> pin;
    if (pinned) pin.emplace();
    const Array bd = pinned ? zeros_like(bnd) : bnd;
    // |y_q - y_d| - B <= 1e-4 everywhere.
    EXPECT_LT(max(abs(base(x) - dense(x)) - bd).item<float>(), 1e-4);
    // Gradients of a loss w.r.t. the adapters agree with the dense base.
    auto loss_of = [&](Linear& layer) {
      return [&layer, x, a, b, scale](const std::vector<Array>& p) {
        layer.set_branch(LowRankBranch{.a = p[0], .b = p[1], .scale = scale});
        return std::vector<Array>{sum(square(layer(x)))};
      };
    };
    auto gq = grad(loss_of(base), {0, 1})({a, b});
    auto gd = grad(loss_of(dense), {0, 1})({a, b});
    const Array gb[2] = {2 * scale * matmul(transpose(matmul(bd, abs(b))), abs(x)),
                         2 * scale * matmul(transpose(bd), xa)};
    for (int i = 0; i < 2; ++i) {
      const double tol = 1e-4 * max(abs(gd[i])).item<float>() + 1e-6;
      EXPECT_LT(max(abs(gq[i] - gd[i]) - gb[i]).item<float>(), tol) << i;
    }
    // The gradient also flows to x through the quantized weight.
    auto fx = [&](const std::vector<Array>& p) {
      return std::vector<Array>{sum(square(base(p[0])))};
    };
    auto fxd = [&](const std::vector<Array>& p) {
      return std::vector<Array>{sum(square(dense(p[0])))};
    };
    Array g1 = grad(fx, {0})({x})[0], g2 = grad(fxd, {0})({x})[0];
    EXPECT_LT(max(abs(g1 - g2) - 2 * matmul(bd, wabs)).item<float>(),
              1e-4 * max(abs(g2)).item<float>());
  }
}

}  // namespace
}  // namespace ingot::nn
