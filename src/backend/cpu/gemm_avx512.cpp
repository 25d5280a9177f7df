// AVX-512 (F+BW+VL) GEMV and conversion kernels, plus an AVX512_BF16 (vdpbf16ps) dot kernel
// for bf16 weight rows where the CPU has it. Every function carries its target attribute.
// GCC 12 flags the _mm512_undefined_* inside its own intrinsics headers as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/gemm_kernels.h"
#include "core/half.h"

#define INGOT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define INGOT_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma,f16c")))

namespace ingot::cpu {
namespace {

INGOT_AVX512 inline __m512 ld16(const float* p) {
  return _mm512_loadu_ps(p);
}
INGOT_AVX512 inline __m512 ld16(const bfloat16_t* p) {
  __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}
INGOT_AVX512 inline __m512 ld16(const float16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline float ld1(const float* p) {
  return *p;
}
inline float ld1(const bfloat16_t* p) {
  return bits_f32(static_cast<uint32_t>(p->bits) << 16);
}
inline float ld1(const float16_t* p) {
  return float16_t::to_float(p->bits);
}

template <typename W>
INGOT_AVX512 float dot1(const W* r, const float* x, int64_t k) {
  __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    a = _mm512_fmadd_ps(ld16(r + i), ld16(x + i), a);
    b = _mm512_fmadd_ps(ld16(r + i + 16), ld16(x + i + 16), b);
  }
  for (; i + 16 <= k; i += 16) a = _mm512_fmadd_ps(ld16(r + i), ld16(x + i), a);
  float s = _mm512_reduce_add_ps(_mm512_add_ps(a, b));
  for (; i < k; ++i) s += ld1(r + i) * x[i];
  return s;
}

template <typename W>
INGOT_AVX512 void rows_avx512(const void* wv, int64_t ld, const float* x, int64_t k, float* y,
                              int64_t n) {
  const W* w = static_cast<const W*>(wv);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const W* r0 = w + j * ld;
    const W* r1 = r0 + ld;
    const W* r2 = r1 + ld;
    const W* r3 = r2 + ld;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m512 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
      const __m512 x0 = ld16(x + i), x1 = ld16(x + i + 16);
      a0 = _mm512_fmadd_ps(ld16(r0 + i), x0, a0);
      a1 = _mm512_fmadd_ps(ld16(r1 + i), x0, a1);
      a2 = _mm512_fmadd_ps(ld16(r2 + i), x0, a2);
      a3 = _mm512_fmadd_ps(ld16(r3 + i), x0, a3);
      b0 = _mm512_fmadd_ps(ld16(r0 + i + 16), x1, b0);
      b1 = _mm512_fmadd_ps(ld16(r1 + i + 16), x1, b1);
      b2 = _mm512_fmadd_ps(ld16(r2 + i + 16), x1, b2);
      b3 = _mm512_fmadd_ps(ld16(r3 + i + 16), x1, b3);
    }
    for (; i + 16 <= k; i += 16) {
      const __m512 x0 = ld16(x + i);
      a0 = _mm512_fmadd_ps(ld16(r0 + i), x0, a0);
      a1 = _mm512_fmadd_ps(ld16(r1 + i), x0, a1);
      a2 = _mm512_fmadd_ps(ld16(r2 + i), x0, a2);
      a3 = _mm512_fmadd_ps(ld16(r3 + i), x0, a3);
    }
    float s0 = _mm512_reduce_add_ps(_mm512_add_ps(a0, b0));
    float s1 = _mm512_reduce_add_ps(_mm512_add_ps(a1, b1));
    float s2 = _mm512_reduce_add_ps(_mm512_add_ps(a2, b2));
    float s3 = _mm512_reduce_add_ps(_mm512_add_ps(a3, b3));
    for (; i < k; ++i) {
      s0 += ld1(r0 + i) * x[i];
      s1 += ld1(r1 + i) * x[i];
      s2 += ld1(r2 + i) * x[i];
      s3 += ld1(r3 + i) * x[i];
    }
    y[j] = s0;
    y[j + 1] = s1;
    y[j + 2] = s2;
    y[j + 3] = s3;
  }
  for (; j < n; ++j) y[j] = dot1(w + j * ld, x, k);
}

template <typename W>
INGOT_AVX512 void cols_avx512(const void* wv, int64_t ld, const float* x, int64_t k, float* y,
                              int64_t n) {
  const W* w = static_cast<const W*>(wv);
  for (int64_t j = 0; j < n; ++j) y[j] = 0.0f;
  int64_t i = 0;
  for (; i + 4 <= k; i += 4) {
    const W* r0 = w + i * ld;
    const W* r1 = r0 + ld;
    const W* r2 = r1 + ld;
    const W* r3 = r2 + ld;
    const __m512 x0 = _mm512_set1_ps(x[i]), x1 = _mm512_set1_ps(x[i + 1]);
    const __m512 x2 = _mm512_set1_ps(x[i + 2]), x3 = _mm512_set1_ps(x[i + 3]);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
      __m512 a = _mm512_fmadd_ps(x0, ld16(r0 + j), _mm512_loadu_ps(y + j));
      __m512 b = _mm512_mul_ps(x1, ld16(r1 + j));
      a = _mm512_fmadd_ps(x2, ld16(r2 + j), a);
      b = _mm512_fmadd_ps(x3, ld16(r3 + j), b);
      _mm512_storeu_ps(y + j, _mm512_add_ps(a, b));
    }
    for (; j < n; ++j)
      y[j] += x[i] * ld1(r0 + j) + x[i + 1] * ld1(r1 + j) + x[i + 2] * ld1(r2 + j) +
              x[i + 3] * ld1(r3 + j);
  }
  for (; i < k; ++i) {
    const W* r = w + i * ld;
    const __m512 xi = _mm512_set1_ps(x[i]);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
      _mm512_storeu_ps(y + j, _mm512_fmadd_ps(xi, ld16(r + j), _mm512_loadu_ps(y + j)));
    for (; j < n; ++j) y[j] += x[i] * ld1(r + j);
  }
}

// ---- AVX512_BF16: vdpbf16ps multiplies bf16 pairs and accumulates in float32. ----

/// x rounded to bf16 in a per-thread buffer (exact when x holds bf16 values).
const uint16_t* x_as_bf16(const float* x, int64_t k) {
  thread_local std::vector<uint16_t> buf;
  if (static_cast<int64_t>(buf.size()) < k) buf.resize(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) buf[i] = bfloat16_t::from_float(x[i]);
  return buf.data();
}

INGOT_AVX512BF16 inline __m512bh ldbh(const uint16_t* p, __mmask32 m) {
  return reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(m, p));
}

/// y[m * ldy + j] = <row j of w, row m of x> for m < M, j < n: the weight rows are read one
/// after another (a single sequential stream, which the hardware prefetchers follow best: on
/// Zen 5, 2 or 4 rows side by side measured slower and software prefetch no faster), every
/// 32-element load multiplied by the same k-range of the M rows of x (from L1), U independent
/// accumulators per x row to cover the vdpbf16ps latency. Tail: one masked load per row.
template <int M>
INGOT_AVX512BF16 void dot_rows_bf16(const uint16_t* w, int64_t ld, const uint16_t* x, int64_t k,
                                    float* y, int64_t ldy, int64_t n) {
  constexpr int U = 4 / M;
  constexpr int64_t step = 32 * U;
  const int64_t kb = k - k % step, k32 = k - k % 32;
  const __mmask32 full = ~__mmask32(0);
  const __mmask32 tail = static_cast<__mmask32>((1ull << (k % 32)) - 1);
  for (int64_t j = 0; j < n; ++j) {
    const uint16_t* r = w + j * ld;
    // Every loop over m and u is unrolled: GCC then keeps acc in registers (left rolled, it
    // kept a stack copy of acc and stored every accumulator on every step).
    __m512 acc[M][U];
#pragma GCC unroll 4
    for (int m = 0; m < M; ++m)
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u) acc[m][u] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i < kb; i += step)
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u) {
        const __m512bh wv = ldbh(r + i + 32 * u, full);
#pragma GCC unroll 4
        for (int m = 0; m < M; ++m)
          acc[m][u] = _mm512_dpbf16_ps(acc[m][u], wv, ldbh(x + m * k + i + 32 * u, full));
      }
    for (; i < k32; i += 32) {
      const __m512bh wv = ldbh(r + i, full);
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m)
        acc[m][0] = _mm512_dpbf16_ps(acc[m][0], wv, ldbh(x + m * k + i, full));
    }
    if (tail) {
      const __m512bh wv = ldbh(r + k32, tail);
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m)
        acc[m][0] = _mm512_dpbf16_ps(acc[m][0], wv, ldbh(x + m * k + k32, tail));
    }
#pragma GCC unroll 4
    for (int m = 0; m < M; ++m) {
      __m512 s = acc[m][0];
#pragma GCC unroll 4
      for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[m][u]);
      y[m * ldy + j] = _mm512_reduce_add_ps(s);
    }
  }
}

/// Rows of x per pass over the weights: more than 4 x rows (32 KB at K = 2048, 8 rows) crowd
/// the streamed weights out of L1 (Zen 5, 2048 x 8192, 8 rows: 6.8 GB/s in one pass, 8.7 in
/// two); the later passes read the block from L2 (matmul hands over blocks of ~128 KB).
constexpr int64_t kPassRows = 4;

INGOT_AVX512BF16 void gemv_bf16_dot(const uint16_t* w, int64_t ld, const uint16_t* x, int64_t m,
                                    int64_t k, float* y, int64_t ldy, int64_t n) {
  for (int64_t r0 = 0; r0 < m; r0 += kPassRows) {
    const uint16_t* xr = x + r0 * k;
    float* yr = y + r0 * ldy;
    switch (std::min(m - r0, kPassRows)) {
      case 1:
        dot_rows_bf16<1>(w, ld, xr, k, yr, ldy, n);
        break;
      case 2:
        dot_rows_bf16<2>(w, ld, xr, k, yr, ldy, n);
        break;
      case 3:
        dot_rows_bf16<3>(w, ld, xr, k, yr, ldy, n);
        break;
      default:
        dot_rows_bf16<4>(w, ld, xr, k, yr, ldy, n);
        break;
    }
  }
}

/// GemvRowsFn on float32 x: x rounded to bf16 (exact when it holds bf16 values), then the
/// one-row dot kernel.
void rows_bf16_dp(const void* wv, int64_t ld, const float* xf, int64_t k, float* y, int64_t n) {
  gemv_bf16_dot(static_cast<const uint16_t*>(wv), ld, x_as_bf16(xf, k), 1, k, y, 1, n);
}

INGOT_AVX512 void bf16_to_f32_avx512(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, ld16(reinterpret_cast<const bfloat16_t*>(src + i)));
  for (; i < n; ++i) dst[i] = bits_f32(static_cast<uint32_t>(src[i]) << 16);
}
INGOT_AVX512 void f16_to_f32_avx512(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, ld16(reinterpret_cast<const float16_t*>(src + i)));
  for (; i < n; ++i) dst[i] = float16_t::to_float(src[i]);
}

}  // namespace

const GemmKernels& kernels_avx512() {
  static const GemmKernels k = [] {
    const bool dp = __builtin_cpu_supports("avx512bf16");
    return GemmKernels{
        {rows_avx512<float>, dp ? rows_bf16_dp : rows_avx512<bfloat16_t>, rows_avx512<float16_t>},
        {cols_avx512<float>, cols_avx512<bfloat16_t>, cols_avx512<float16_t>},
        bf16_to_f32_avx512,
        f16_to_f32_avx512,
        dp,
        dp ? gemv_bf16_dot : nullptr};
  }();
  return k;
}

}  // namespace ingot::cpu
