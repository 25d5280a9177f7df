// Launchers of the CUDA RmsNorm / LayerNorm kernels (fmt-free, for nvcc and the host compiler).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/device/layout.h"
#include "core/dtype.h"

namespace ingot::cu {

/// One norm over the rows (last axis) of x into row-contiguous out; weight and bias are [E]
/// vectors of any float dtype and stride (null when absent).
struct NormArgs {
  const void* x = nullptr;
  Layout rows;         // x's leading axes: row r starts at elem_offset(r, rows)
  int64_t sx = 1;      // stride of x along a row
  int64_t n_rows = 0;  // rows of x
  int64_t E = 0;       // row length
  void* out = nullptr;
  const void* weight = nullptr;
  Dtype weight_dtype = Dtype::float32;
  int64_t weight_stride = 0;
  const void* bias = nullptr;
  Dtype bias_dtype = Dtype::float32;
  int64_t bias_stride = 0;
  float eps = 0.0f;
  // rms: out = residual + (the norm rounded to x's dtype), rounded (fast::rms_norm_add); null
  // when absent. Row r of the residual starts at elem_offset(r, res_rows), stride sres.
  const void* residual = nullptr;
  Layout res_rows;
  int64_t sres = 1;
  bool add_unit_offset = false;   // rms: scale by 1 + weight
  bool weight_in_float32 = true;  // rms: false rounds the normalised x to x's dtype first
  // Set by the launchers: weight / bias have x's dtype, unit stride and 16-byte alignment.
  bool weight_vec = false, bias_vec = false;
};

/// RmsNormGrad: dx = r * (gw - n * mean(gw * n)) per row (n = x r, gw = g * w), x, g and out
/// row-contiguous [n_rows, E] of one float dtype; weight as in NormArgs (null when absent).
struct NormGradArgs {
  const void* x = nullptr;
  const void* g = nullptr;
  void* out = nullptr;
  int64_t n_rows = 0;
  int64_t E = 0;
  const void* weight = nullptr;
  Dtype weight_dtype = Dtype::float32;
  int64_t weight_stride = 0;
  float eps = 0.0f;
  bool add_unit_offset = false;
};

/// RmsNorm on x of float dtype t (float32 math, float64 for float64), as the CPU kernel rounds.
void launch_rms_norm(Dtype t, const NormArgs& a, cudaStream_t s);
/// RmsNormGrad on rows of float dtype t (float32 math, float64 for float64).
void launch_rms_norm_grad(Dtype t, const NormGradArgs& a, cudaStream_t s);
/// LayerNorm likewise (two-pass variance, weight then bias).
void launch_layer_norm(Dtype t, const NormArgs& a, cudaStream_t s);

}  // namespace ingot::cu
