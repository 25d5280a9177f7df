// Quantized layers in the MLX / mlx-community layout: a Linear or Embedding whose weight is
// packed uint32 with per-group "scales" and "biases" (core/ops/quantized.h). Quantization is a
// state of nn::Linear / nn::Embedding, so the blocks that own them (Attention, GatedMLP) and
// LoRA branches (Linear::set_branch: QLoRA over a frozen 4-bit base) work unchanged.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "nn/layers.h"

namespace ingot::nn {

/// A Linear created quantized (weights initialised as Linear's, then quantized).
class QuantizedLinear : public Linear {
 public:
  QuantizedLinear(int64_t in_features, int64_t out_features, bool bias = false,
                  QuantizeOptions opt = {}, Dtype dtype = float32);
};

/// An Embedding created quantized; lookups dequantize only the rows they read and as_linear
/// (the tied LM head) runs quantized_matmul.
class QuantizedEmbedding : public Embedding {
 public:
  QuantizedEmbedding(int64_t num_embeddings, int64_t dims, QuantizeOptions opt = {},
                     Dtype dtype = float32);
};

/// Decides, per Linear / Embedding of a module tree (by dotted path, e.g.
/// "model.layers.0.mlp.down_proj"), whether and how it is quantized.
using QuantizePredicate =
    std::function<std::optional<QuantizeOptions>(const std::string& path, const Module& m)>;

/// Quantizes in place every Linear and Embedding under `root` the predicate accepts (layers
/// already quantized are left alone); returns how many were converted. The predicate's options
/// are checked (Unsupported for other bit widths / group sizes; InvalidArgument naming the
/// layer when its input width is not a multiple of the group size).
int quantize_modules(Module& root, const QuantizePredicate& pred);

/// The float weight of a Linear or Embedding: the parameter itself, or its dequantization.
Array dense_weight(const Module& m);

/// Rows `ids` of a Linear's or Embedding's weight as floats (dequantizing only those rows).
Array weight_rows(const Module& m, const Array& ids);

}  // namespace ingot::nn
