// Affine group-wise quantization primitives in the layout of MLX / mlx-community checkpoints:
// AffineQuantize (w -> packed uint32, scales, biases), AffineDequantize and QuantizedMatmul
// (x @ dequantize(w)^T). Kernels: backend/cpu/quantized.cpp, backend/cuda/quantized.{cu,cpp}.
//
// Layout: w [..., K] is split into groups of group_size consecutive elements along its last
// axis; each group has a scale s and a bias b (w ~= s * q + b, q in [0, 2^bits - 1]); the
// q of one row are packed into uint32 words, 32 / bits per word, lowest bits first (element
// j of a word sits at bits [j * bits, (j + 1) * bits)). scales and biases are [..., K / gs].
#pragma once

#include <memory>
#include <tuple>
#include <vector>

#include "core/primitive.h"

namespace ingot {

/// {w [..., K]} -> {wq uint32 [..., K * bits / 32], scales [..., K / gs], biases [..., K / gs]},
/// scales and biases in w's dtype. Per group (as MLX): scale = (max - min) / (2^bits - 1)
/// signed towards the edge of larger magnitude, that edge made exactly representable.
class AffineQuantize : public Primitive {
 public:
  AffineQuantize(Stream s, int group_size, int bits)
      : Primitive(s), group_size_(group_size), bits_(bits) {}
  INGOT_MULTI_PRIMITIVE(AffineQuantize)
  INGOT_EQUIVALENT(AffineQuantize, std::make_tuple(p->group_size_, p->bits_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  void print(std::ostream& os) const override;

  const int group_size_;
  const int bits_;
};

/// {wq, scales, biases} -> w [..., K] in the scales' dtype: s * q + b computed in float32.
class AffineDequantize : public UnaryPrimitive {
 public:
  AffineDequantize(Stream s, int group_size, int bits)
      : UnaryPrimitive(s), group_size_(group_size), bits_(bits) {}
  INGOT_UNARY_PRIMITIVE(AffineDequantize)
  INGOT_EQUIVALENT(AffineDequantize, std::make_tuple(p->group_size_, p->bits_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const int group_size_;
  const int bits_;
};

/// What a QuantizedMatmul fuses around its product y = h @ dequantize(w)^T (fast::
/// rms_norm_quantized_linear / rms_norm_quantized_glu / quantized_linear_add build them). Each
/// step rounds to x's dtype as the separate ops round, so the result is their composition's.
struct QuantizedMatmulFusion {
  /// h = rms_norm(x[, norm weight]) (RmsNorm's rounding) instead of x.
  bool norm = false;
  bool norm_weight = false;
  float eps = 0.0f;
  bool add_unit_offset = false;
  bool weight_in_float32 = true;
  /// > 0: the output is act(y[..., :N/2]) * y[..., N/2:] (stacked gate|up rows); act 1 silu,
  /// 2 gelu, 3 gelu_tanh.
  int gate = 0;
  /// The output is residual + y (y rounded first); residual has the output's shape and dtype.
  bool residual = false;

  bool any() const { return norm || gate > 0 || residual; }
  auto key() const {
    return std::make_tuple(norm, norm_weight, eps, add_unit_offset, weight_in_float32, gate,
                           residual);
  }
};

/// {x [..., K], wq [N, K * bits / 32], scales [N, K / gs], biases [N, K / gs]} ->
/// x @ dequantize(w)^T [..., N] in x's dtype, accumulated in float32. The gradient flows to x
/// only (quantized weights are frozen). With a fusion, the inputs go on with [norm weight [K]]
/// (fusion.norm_weight) and [residual] (fusion.residual), and the output is [..., N / 2] for a
/// gate; the CPU composes the separate primitives' kernels, CUDA runs a few rows as one GEMV.
class QuantizedMatmul : public UnaryPrimitive {
 public:
  QuantizedMatmul(Stream s, int group_size, int bits, QuantizedMatmulFusion fusion = {})
      : UnaryPrimitive(s), group_size_(group_size), bits_(bits), fusion_(fusion) {}
  INGOT_UNARY_PRIMITIVE(QuantizedMatmul)
  INGOT_EQUIVALENT(QuantizedMatmul, std::make_tuple(p->group_size_, p->bits_, p->fusion_.key()))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;
  /// The product alone (no fusion), as a primitive of its own.
  std::shared_ptr<QuantizedMatmul> product() const {
    return std::make_shared<QuantizedMatmul>(stream(), group_size_, bits_);
  }

  const int group_size_;
  const int bits_;
  const QuantizedMatmulFusion fusion_;
};

}  // namespace ingot
