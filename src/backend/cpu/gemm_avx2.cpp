// AVX2+FMA+F16C GEMV and conversion kernels (bf16 -> f32 by a 16-bit shift, f16 by F16C);
// every function carries the target attribute, so this file builds for generic x86-64.
#include <immintrin.h>

#include <vector>

#include "backend/cpu/gemm_kernels.h"
#include "core/half.h"

#define INGOT_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace ingot::cpu {
namespace {

INGOT_AVX2 inline __m256 ld8(const float* p) {
  return _mm256_loadu_ps(p);
}
INGOT_AVX2 inline __m256 ld8(const bfloat16_t* p) {
  __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}
INGOT_AVX2 inline __m256 ld8(const float16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
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

INGOT_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <typename W>
INGOT_AVX2 float dot1(const W* r, const float* x, int64_t k) {
  __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    a = _mm256_fmadd_ps(ld8(r + i), ld8(x + i), a);
    b = _mm256_fmadd_ps(ld8(r + i + 8), ld8(x + i + 8), b);
  }
  for (; i + 8 <= k; i += 8) a = _mm256_fmadd_ps(ld8(r + i), ld8(x + i), a);
  float s = hsum(_mm256_add_ps(a, b));
  for (; i < k; ++i) s += ld1(r + i) * x[i];
  return s;
}

// Four weight rows per pass share each x load; two accumulators per row hide FMA latency.
template <typename W>
INGOT_AVX2 void rows_avx2(const void* wv, int64_t ld, const float* x, int64_t k, float* y,
                          int64_t n) {
  const W* w = static_cast<const W*>(wv);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const W* r0 = w + j * ld;
    const W* r1 = r0 + ld;
    const W* r2 = r1 + ld;
    const W* r3 = r2 + ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      const __m256 x0 = ld8(x + i), x1 = ld8(x + i + 8);
      a0 = _mm256_fmadd_ps(ld8(r0 + i), x0, a0);
      a1 = _mm256_fmadd_ps(ld8(r1 + i), x0, a1);
      a2 = _mm256_fmadd_ps(ld8(r2 + i), x0, a2);
      a3 = _mm256_fmadd_ps(ld8(r3 + i), x0, a3);
      b0 = _mm256_fmadd_ps(ld8(r0 + i + 8), x1, b0);
      b1 = _mm256_fmadd_ps(ld8(r1 + i + 8), x1, b1);
      b2 = _mm256_fmadd_ps(ld8(r2 + i + 8), x1, b2);
      b3 = _mm256_fmadd_ps(ld8(r3 + i + 8), x1, b3);
    }
    for (; i + 8 <= k; i += 8) {
      const __m256 x0 = ld8(x + i);
      a0 = _mm256_fmadd_ps(ld8(r0 + i), x0, a0);
      a1 = _mm256_fmadd_ps(ld8(r1 + i), x0, a1);
      a2 = _mm256_fmadd_ps(ld8(r2 + i), x0, a2);
      a3 = _mm256_fmadd_ps(ld8(r3 + i), x0, a3);
    }
    float s0 = hsum(_mm256_add_ps(a0, b0)), s1 = hsum(_mm256_add_ps(a1, b1));
    float s2 = hsum(_mm256_add_ps(a2, b2)), s3 = hsum(_mm256_add_ps(a3, b3));
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

/// x of each full 16-block reordered as (even elements, odd elements): see rows_bf16_avx2.
const float* deinterleave16(const float* x, int64_t kb) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < kb) buf.resize(static_cast<size_t>(kb));
  for (int64_t i = 0; i < kb; i += 16)
    for (int j = 0; j < 8; ++j) {
      buf[i + j] = x[i + 2 * j];
      buf[i + 8 + j] = x[i + 2 * j + 1];
    }
  return buf.data();
}

// bf16 rows without a widening shuffle: a 32-bit lane holding elements (2j, 2j+1) gives
// element 2j as a float by a left shift of 16 and element 2j+1 by masking the low half, so
// 16 weights cost one load, one shift and one and; x is pre-split into even/odd halves.
INGOT_AVX2 void rows_bf16_avx2(const void* wv, int64_t ld, const float* x, int64_t k, float* y,
                               int64_t n) {
  const bfloat16_t* w = static_cast<const bfloat16_t*>(wv);
  const int64_t kb = k - k % 16;
  const float* xd = deinterleave16(x, kb);
  const __m256i hi = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const bfloat16_t* r0 = w + j * ld;
    const bfloat16_t* r1 = r0 + ld;
    const bfloat16_t* r2 = r1 + ld;
    const bfloat16_t* r3 = r2 + ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    // The next group's rows are new streams: prefetch them alongside this group so the
    // hardware prefetcher does not restart cold every 4 rows.
    const char* pf = reinterpret_cast<const char*>(r3 + ld);
    const int64_t row_bytes = ld * 2;
    const bool prefetch = j + 8 <= n;
    for (int64_t i = 0; i < kb; i += 16) {
      if (prefetch && (i & 31) == 0) {
        _mm_prefetch(pf + i * 2, _MM_HINT_T0);
        _mm_prefetch(pf + row_bytes + i * 2, _MM_HINT_T0);
        _mm_prefetch(pf + 2 * row_bytes + i * 2, _MM_HINT_T0);
        _mm_prefetch(pf + 3 * row_bytes + i * 2, _MM_HINT_T0);
      }
      const __m256 xe = _mm256_loadu_ps(xd + i), xo = _mm256_loadu_ps(xd + i + 8);
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + i));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1 + i));
      const __m256i v2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r2 + i));
      const __m256i v3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r3 + i));
      a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)), xe, a0);
      a1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)), xe, a1);
      a2 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v2, 16)), xe, a2);
      a3 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v3, 16)), xe, a3);
      b0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v0, hi)), xo, b0);
      b1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v1, hi)), xo, b1);
      b2 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v2, hi)), xo, b2);
      b3 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v3, hi)), xo, b3);
    }
    float s0 = hsum(_mm256_add_ps(a0, b0)), s1 = hsum(_mm256_add_ps(a1, b1));
    float s2 = hsum(_mm256_add_ps(a2, b2)), s3 = hsum(_mm256_add_ps(a3, b3));
    for (int64_t i = kb; i < k; ++i) {
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

// Streams four weight rows at a time (sequential reads: prefetch- and TLB-friendly) into y,
// which stays in L1 for the column chunk.
template <typename W>
INGOT_AVX2 void cols_avx2(const void* wv, int64_t ld, const float* x, int64_t k, float* y,
                          int64_t n) {
  const W* w = static_cast<const W*>(wv);
  for (int64_t j = 0; j < n; ++j) y[j] = 0.0f;
  int64_t i = 0;
  for (; i + 4 <= k; i += 4) {
    const W* r0 = w + i * ld;
    const W* r1 = r0 + ld;
    const W* r2 = r1 + ld;
    const W* r3 = r2 + ld;
    const __m256 x0 = _mm256_set1_ps(x[i]), x1 = _mm256_set1_ps(x[i + 1]);
    const __m256 x2 = _mm256_set1_ps(x[i + 2]), x3 = _mm256_set1_ps(x[i + 3]);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      __m256 a = _mm256_fmadd_ps(x0, ld8(r0 + j), _mm256_loadu_ps(y + j));
      __m256 b = _mm256_mul_ps(x1, ld8(r1 + j));
      a = _mm256_fmadd_ps(x2, ld8(r2 + j), a);
      b = _mm256_fmadd_ps(x3, ld8(r3 + j), b);
      _mm256_storeu_ps(y + j, _mm256_add_ps(a, b));
    }
    for (; j < n; ++j)
      y[j] += x[i] * ld1(r0 + j) + x[i + 1] * ld1(r1 + j) + x[i + 2] * ld1(r2 + j) +
              x[i + 3] * ld1(r3 + j);
  }
  for (; i < k; ++i) {
    const W* r = w + i * ld;
    const __m256 xi = _mm256_set1_ps(x[i]);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
      _mm256_storeu_ps(y + j, _mm256_fmadd_ps(xi, ld8(r + j), _mm256_loadu_ps(y + j)));
    for (; j < n; ++j) y[j] += x[i] * ld1(r + j);
  }
}

INGOT_AVX2 void bf16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, ld8(reinterpret_cast<const bfloat16_t*>(src + i)));
  for (; i < n; ++i) dst[i] = bits_f32(static_cast<uint32_t>(src[i]) << 16);
}
INGOT_AVX2 void f16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, ld8(reinterpret_cast<const float16_t*>(src + i)));
  for (; i < n; ++i) dst[i] = float16_t::to_float(src[i]);
}

}  // namespace

const GemmKernels& kernels_avx2() {
  static const GemmKernels k{{rows_avx2<float>, rows_bf16_avx2, rows_avx2<float16_t>},
                             {cols_avx2<float>, cols_avx2<bfloat16_t>, cols_avx2<float16_t>},
                             bf16_to_f32_avx2,
                             f16_to_f32_avx2,
                             false};
  return k;
}

}  // namespace ingot::cpu
