// AVX-512 (F+BW+VL) GEMV and conversion kernels, plus an AVX512_BF16 (vdpbf16ps) dot kernel
// for bf16 weight rows where the CPU has it. Every function carries its target attribute.
// GCC 12 flags the _mm512_undefined_* inside its own intrinsics headers as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

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

INGOT_AVX512BF16 void rows_bf16_dp(const void* wv, int64_t ld, const float* xf, int64_t k, float* y,
                                   int64_t n) {
  const uint16_t* w = static_cast<const uint16_t*>(wv);
  const uint16_t* x = x_as_bf16(xf, k);
  const __mmask32 full = ~__mmask32(0);
  const __mmask32 tail = static_cast<__mmask32>((1ull << (k % 32)) - 1);
  const int64_t kb = k - k % 32;
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const uint16_t* r0 = w + j * ld;
    const uint16_t* r1 = r0 + ld;
    const uint16_t* r2 = r1 + ld;
    const uint16_t* r3 = r2 + ld;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < kb; i += 32) {
      const __m512bh xv = ldbh(x + i, full);
      a0 = _mm512_dpbf16_ps(a0, ldbh(r0 + i, full), xv);
      a1 = _mm512_dpbf16_ps(a1, ldbh(r1 + i, full), xv);
      a2 = _mm512_dpbf16_ps(a2, ldbh(r2 + i, full), xv);
      a3 = _mm512_dpbf16_ps(a3, ldbh(r3 + i, full), xv);
    }
    if (tail) {
      const __m512bh xv = ldbh(x + kb, tail);
      a0 = _mm512_dpbf16_ps(a0, ldbh(r0 + kb, tail), xv);
      a1 = _mm512_dpbf16_ps(a1, ldbh(r1 + kb, tail), xv);
      a2 = _mm512_dpbf16_ps(a2, ldbh(r2 + kb, tail), xv);
      a3 = _mm512_dpbf16_ps(a3, ldbh(r3 + kb, tail), xv);
    }
    y[j] = _mm512_reduce_add_ps(a0);
    y[j + 1] = _mm512_reduce_add_ps(a1);
    y[j + 2] = _mm512_reduce_add_ps(a2);
    y[j + 3] = _mm512_reduce_add_ps(a3);
  }
  for (; j < n; ++j) {
    const uint16_t* r = w + j * ld;
    __m512 a = _mm512_setzero_ps();
    for (int64_t i = 0; i < kb; i += 32)
      a = _mm512_dpbf16_ps(a, ldbh(r + i, full), ldbh(x + i, full));
    if (tail) a = _mm512_dpbf16_ps(a, ldbh(r + kb, tail), ldbh(x + kb, tail));
    y[j] = _mm512_reduce_add_ps(a);
  }
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
        dp};
  }();
  return k;
}

}  // namespace ingot::cpu
