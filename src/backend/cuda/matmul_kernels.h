// Helper kernels of the CUDA matmul (fmt-free, for nvcc and the host compiler): the K == 0
// epilogue and a plain tiled GEMM for problems cuBLASLt offers no algorithm for.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace ingot::cu {

/// One strided-batched product on row-major operands (strides in elements):
/// out[bi, m, n] = alpha * sum_k a[bi*sa_b + m*sa_m + k*sa_k] * b[bi*sb_b + k*sb_k + n*sb_n]
///                 (+ beta * out[bi, m, n] when accumulate); out is row-contiguous [batch, M, N].
struct GemmProblem {
  int64_t M = 0, N = 0, K = 0, batch = 1;
  const void* a = nullptr;
  int64_t sa_m = 0, sa_k = 0, sa_b = 0;
  const void* b = nullptr;
  int64_t sb_k = 0, sb_n = 0, sb_b = 0;
  void* out = nullptr;
  float alpha = 1.0f, beta = 0.0f;
  bool accumulate = false;
};

/// Runs `p` with a shared-memory tiled kernel, accumulating in float (double for float64) and
/// rounding once; t is a floating dtype.
void launch_gemm_fallback(Dtype t, const GemmProblem& p, cudaStream_t s);

/// out[m, n] = alpha * sum_k x[m * sx_m + k] * w[n * sw_n + k] (+ beta * out[m, n]) for a few
/// rows m (decode): a matrix-vector product reading each weight row once with 16-byte loads,
/// accumulating in float and rounding once. out is row-contiguous [M, N].
struct GemvProblem {
  int64_t M = 0, N = 0, K = 0;
  const void* x = nullptr;
  int64_t sx_m = 0;
  const void* w = nullptr;
  int64_t sw_n = 0;
  void* out = nullptr;
  float alpha = 1.0f, beta = 0.0f;
  bool accumulate = false;
  bool round_product = false;  // round alpha * x.w to the output dtype before adding beta * c
  // With accumulate: c[m * sc_m + n * sc_n] when c is set, else out[m, n] (out holds c).
  const void* c = nullptr;
  int64_t sc_m = 0, sc_n = 0;
  // RmsNorm prologue (norm): the product takes rms_norm(x) rows, computed into shared memory
  // by every block first and rounded to the dtype as RmsNorm's kernel rounds them (the same
  // sums in the same order for K up to 256 16-byte vectors). norm_w: [K] of the dtype, 16-byte
  // aligned, or null; x row-contiguous (sx_m == K).
  bool norm = false;
  const void* norm_w = nullptr;
  float eps = 0.0f;
  bool add_unit_offset = false;
  bool weight_in_float32 = true;
  // A norm and residual add before the norm prologue (norm and pre_res set; float weights
  // only): the rows the norm prologue normalises are h = pre_res + rms_norm(x, pre_norm_w)
  // (rounded as fast::rms_norm_add rounds; pre_res rows contiguous, K apart), which block 0 also
  // writes to pre_out (rows K apart). Shared memory holds h and the normalised rows.
  const void* pre_res = nullptr;
  const void* pre_norm_w = nullptr;
  void* pre_out = nullptr;
  float pre_eps = 0.0f;
  bool pre_unit_offset = false;
  bool pre_weight_in_float32 = true;
  // GLU pairs (pair > 0, pair >= N; no accumulate): output n is act(gate) * up for the
  // products with weight rows n (gate) and n + pair (up), each rounded to the dtype as the
  // product, act (gate: 1 silu, 2 gelu, 3 gelu_tanh) and multiply kernels round.
  int64_t pair = 0;
  int gate = 0;
  // Quantized weights (bits 4 or 8; 0: w holds elements of the dtype): w is then the packed
  // uint32 words of core/primitives/quantized.h (row n at n * sw_n words, 16-byte aligned),
  // with one scale and one bias of the dtype per group_size (32, 64 or 128) values, group g of
  // row n at scales[n * ss_n + g] / biases[n * ss_n + g]. Each 16-byte chunk of a row (32
  // values at 4 bits, 16 at 8) lies in one group: a lane takes its scale and bias with it and
  // adds s * sum(q * x) + b * sum(x) per chunk. Runs on quantized.cu's kernel (launch_qgemv).
  int bits = 0;
  int group_size = 0;
  const void* scales = nullptr;
  const void* biases = nullptr;
  int64_t ss_n = 0;
};

/// Most bytes of normalised x rows (M * K elements) the GEMV keeps in shared memory.
inline constexpr int64_t kGemvNormSmem = 48 * 1024;

/// Most rows the GEMV kernel takes; more go to cuBLASLt.
inline constexpr int64_t kGemvMaxRows = 8;

/// True when `p` of dtype t runs on the GEMV kernel: t is float16, bfloat16 or float32,
/// 1 <= M <= kGemvMaxRows, K a multiple of 16 bytes' worth of elements, and x, w and the
/// row strides of x and w 16-byte aligned (with a norm prologue also: x row-contiguous, the
/// rows within kGemvNormSmem, norm_w null or 16-byte aligned). Quantized weights also need
/// bits 4 or 8, group_size 32, 64 or 128 dividing K, scales and biases set, and GLU pairs only
/// with the norm prologue.
bool gemv_supported(Dtype t, const GemvProblem& p);

/// Queues the GEMV kernel for `p` (gemv_supported(t, p) must hold) on a device of `sms`
/// multiprocessors (with PDL, the first `sms` blocks prefetch the weights into L2).
void launch_gemv(Dtype t, const GemvProblem& p, cudaStream_t s, int sms);

/// out[r, i] = act(g[r, i]) * u[r, i] for `rows` rows of k elements (act as GemvProblem::gate;
/// row strides sg, su; out row-contiguous), rounded as the separate act and multiply kernels
/// round: an RmsNormGlu whose product does not run on the GEMV.
void launch_gated_rows(Dtype t, int act, const void* g, int64_t sg, const void* u, int64_t su,
                       void* out, int64_t rows, int64_t k, cudaStream_t s);

/// out[i] = beta * c[i] + prod[i] for n elements of dtype t (c: out itself when null), in float
/// (double for float64) and rounded once: the add of an AddMM whose product was rounded first
/// (round_product).
void launch_add_product(Dtype t, void* out, const void* c, const void* prod, int64_t n, float beta,
                        cudaStream_t s);

/// out[i] = alpha * 0 + beta * out[i] in the accumulation type, rounded once (an AddMM with
/// K == 0 after out was filled with c), for n elements of dtype t.
void launch_scale_empty_k(Dtype t, void* out, int64_t n, float alpha, float beta, cudaStream_t s);

}  // namespace ingot::cu
