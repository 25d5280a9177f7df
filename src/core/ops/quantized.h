// Affine group-wise quantization ops (MLX / mlx-community layout, see
// core/primitives/quantized.h): quantize, dequantize, quantized_matmul.
#pragma once

#include <tuple>

#include "core/array.h"

namespace ingot {

/// Options of the quantization ops: group_size 32, 64 or 128 and bits 4 or 8 (anything else
/// is Unsupported).
struct QuantizeOptions {
  int group_size = 64;
  int bits = 4;
};

/// The packed weight and its per-group scales and biases.
struct QuantizedWeight {
  Array w;       // uint32 [..., K * bits / 32]
  Array scales;  // [..., K / group_size], w's float dtype
  Array biases;  // same
};

/// Quantizes a float array along its last axis (K must be a multiple of group_size).
/// InvalidArgument for non-float input or a K that does not divide; Unsupported for other
/// group sizes and bit widths.
QuantizedWeight quantize(const Array& w, QuantizeOptions opt = {}, StreamOrDevice s = {});

/// scales * q + biases per group, in the scales' dtype.
Array dequantize(const Array& w, const Array& scales, const Array& biases, QuantizeOptions opt = {},
                 StreamOrDevice s = {});

/// x @ dequantize(w)^T when transpose (w [N, K]: the Linear layout) or x @ dequantize(w)
/// (w [K, N] quantized along N) otherwise; x [..., K] of a float dtype, output in x's dtype with
/// float32 accumulation. Only x has a gradient.
Array quantized_matmul(const Array& x, const Array& w, const Array& scales, const Array& biases,
                       bool transpose = true, QuantizeOptions opt = {}, StreamOrDevice s = {});

/// Unsupported / InvalidArgument unless group_size is 32, 64 or 128 and bits 4 or 8 (`op` names
/// the caller in the message).
void check_quantize_options(const QuantizeOptions& opt, const char* op);

}  // namespace ingot
