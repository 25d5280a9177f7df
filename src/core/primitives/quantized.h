// Affine group-wise quantization primitives in the layout of MLX / mlx-community checkpoints:
// AffineQuantize (w -> packed uint32, scales, biases), AffineDequantize and QuantizedMatmul
// (x @ dequantize(w)^T). Kernels: backend/cpu/quantized.cpp, backend/cuda/quantized.{cu,cpp}.
//
// Layout: w [..., K] is split into groups of group_size consecutive elements along its last
// axis; each group has a scale s and a bias b (w ~= s * q + b, q in [0, 2^bits - 1]); the
// q of one row are packed into uint32 words, 32 / bits per word, lowest bits first (element
// j of a word sits at bits [j * bits, (j + 1) * bits)). scales and biases are [..., K / gs].
#pragma once

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

/// {x [..., K], wq [N, K * bits / 32], scales [N, K / gs], biases [N, K / gs]} ->
/// x @ dequantize(w)^T [..., N] in x's dtype, accumulated in float32. The gradient flows to x
/// only (quantized weights are frozen).
class QuantizedMatmul : public UnaryPrimitive {
 public:
  QuantizedMatmul(Stream s, int group_size, int bits)
      : UnaryPrimitive(s), group_size_(group_size), bits_(bits) {}
  INGOT_UNARY_PRIMITIVE(QuantizedMatmul)
  INGOT_EQUIVALENT(QuantizedMatmul, std::make_tuple(p->group_size_, p->bits_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const int group_size_;
  const int bits_;
};

}  // namespace ingot
