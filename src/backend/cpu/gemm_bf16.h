// bf16 GEMM that multiplies bf16 directly (AVX512_BF16 vdpbf16ps, float32 accumulation), for
// CPUs that have it and an ISA cap that allows avx512; elsewhere bf16 GEMM converts panels to
// float32 for cblas_sgemm (matmul.cpp).
//
// Operands: B (the [K, N] operand) is read as rows of W = B^T, i.e. bf16 pairs along k: a
// Linear weight W [N, K] (B = W^T, the models' x @ W^T) is used in place, with no packing and
// no per-model copy; other layouts of B, and odd K, are copied into that layout per call. A
// ([M, K], the activations) is packed per call (O(MK)) into 16-row panels of k-pairs, so that
// one vdpbf16ps multiplies a broadcast pair of one W row by the same k-pair of 16 rows of A.
#pragma once

#include <cstdint>

namespace ingot::cpu {

/// True when the CPU has AVX-512 F+BW+VL and AVX512_BF16 (vdpbf16ps), whatever the ISA cap.
bool has_avx512_bf16();

/// Whether bf16 GEMM (matmul with M > 4 rows) runs gemm_bf16_avx512: has_avx512_bf16(), the
/// ISA cap (INGOT_CPU_ISA) allows avx512, and INGOT_CPU_BF16_GEMM is not "0" (the float32
/// convert + cblas_sgemm route). Read on each call.
bool bf16_gemm_enabled();

/// dst[i] = bf16(src[i]) rounded to nearest even (NaN stays NaN), as bfloat16_t(float) does.
/// Requires has_avx512_bf16().
void round_to_bf16_avx512(const float* src, uint16_t* dst, int64_t n);

/// Receives rows of the float32 product: y[0, len) = (a @ b)[m, n0 : n0 + len).
using Bf16StoreFn = void (*)(void* ctx, int64_t m, int64_t n0, const float* y, int64_t len);

struct Bf16Gemm {
  int64_t M = 0, N = 0, K = 0;
  const uint16_t* a = nullptr;  // bf16 bits, element (m, k) at a[m * sa_m + k * sa_k]
  int64_t sa_m = 0, sa_k = 0;
  const uint16_t* b = nullptr;  // bf16 bits, element (k, n) at b[k * sb_k + n * sb_n]
  int64_t sb_k = 0, sb_n = 0;
  Bf16StoreFn store = nullptr;
  void* ctx = nullptr;
};

/// Runs the product with parallel_for over (row block, column block) tiles; every output row
/// segment is handed to g.store exactly once, from the thread that computed it. Requires
/// has_avx512_bf16() and M, N, K > 0.
void gemm_bf16_avx512(const Bf16Gemm& g);

/// Writes the bf16 bits of W[n0 + j, k0 + t] (W = B^T, [N, K]) to dst[j * ld + t] for j < rows,
/// t < kc (kc even).
using Bf16PanelFn = void (*)(void* ctx, int64_t n0, int64_t rows, int64_t k0, int64_t kc,
                             uint16_t* dst, int64_t ld);

/// A product whose W is produced panel by panel (quantized_matmul's prefill on AVX512_BF16
/// dequantizes its weights this way): A as in Bf16Gemm, W from `panel`.
struct Bf16PanelGemm {
  int64_t M = 0, N = 0, K = 0;  // K even
  const uint16_t* a = nullptr;  // bf16 bits, element (m, k) at a[m * sa_m + k * sa_k]
  int64_t sa_m = 0, sa_k = 0;
  Bf16PanelFn panel = nullptr;
  void* panel_ctx = nullptr;
  Bf16StoreFn store = nullptr;
  void* ctx = nullptr;
};

/// gemm_bf16_avx512 with W made by g.panel: the same packed A, micro-kernel, K blocks and
/// column tiles, but each thread's tile spans all M rows (up to kPanelGemmRows per pass), so
/// every W panel (<= 240 columns x 512 k values, 240 KB, reused per thread) is produced once per
/// call and met by every row. Each output's float32 sums are formed in the same order as
/// gemm_bf16_avx512's, whatever the thread count. Requires has_avx512_bf16(), M, N, K > 0 and
/// K even.
void gemm_bf16_avx512_panels(const Bf16PanelGemm& g);
inline constexpr int64_t kPanelGemmRows = 1024;

}  // namespace ingot::cpu
