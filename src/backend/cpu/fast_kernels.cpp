// SIMD inner loops of the fast-op kernels: AVX2+FMA versions, AVX-512 direct attention loops
// and portable fallbacks, chosen at run time (cpu::active_isa, so INGOT_CPU_ISA=portable forces
// the fallbacks).
// GCC 12 flags the _mm512_undefined_* inside its own intrinsics headers as maybe-uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "backend/cpu/fast_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "backend/cpu/gemm_kernels.h"

namespace ingot::backend::fastk {

namespace {

// ---- portable ----

float sum_squares_portable(const float* x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += x[i + k] * x[i + k];
  float s = 0;
  for (; i < n; ++i) s += x[i] * x[i];
  return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

void qk_tile_portable(const float* q, int64_t ldq, int rows, const float* kp, int64_t D, float* s,
                      int64_t lds) {
  for (int r = 0; r < rows; ++r) {
    float acc[16] = {};
    const float* qr = q + r * ldq;
    for (int64_t d = 0; d < D; ++d) {
      const float qv = qr[d];
      for (int j = 0; j < 16; ++j) acc[j] += qv * kp[d * 16 + j];
    }
    for (int j = 0; j < 16; ++j) s[r * lds + j] = acc[j];
  }
}

void pv_tile_portable(const float* p, int64_t ldp, int rows, const float* v, int64_t ldv,
                      int64_t nk, int64_t Dp, float* acc, int64_t lda) {
  // Sum the block from zero, then add it (blocked summation, as the AVX2 tile).
  constexpr int64_t kChunk = 256;
  float blk[kChunk];
  for (int r = 0; r < rows; ++r)
    for (int64_t d0 = 0; d0 < Dp; d0 += kChunk) {
      const int64_t nd = std::min(kChunk, Dp - d0);
      std::fill(blk, blk + nd, 0.0f);
      for (int64_t j = 0; j < nk; ++j) {
        const float pj = p[r * ldp + j];
        const float* vj = v + j * ldv + d0;
        for (int64_t d = 0; d < nd; ++d) blk[d] += pj * vj[d];
      }
      for (int64_t d = 0; d < nd; ++d) acc[r * lda + d0 + d] += blk[d];
    }
}

float exp_sub_sum_portable(float* x, int64_t n, float m) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = exp_nonpos(x[i] - m);
    sum += x[i];
  }
  return sum;
}

void store_bf16_portable(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bfloat16_t::from_float(src[i]);
}

void store_f16_portable(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = float16_t::from_float(src[i]);
}

template <SrcKind K>
inline float src_at(const void* p, int64_t i) {
  if constexpr (K == SrcKind::f32)
    return static_cast<const float*>(p)[i];
  else if constexpr (K == SrcKind::bf16)
    return bits_f32(static_cast<uint32_t>(static_cast<const uint16_t*>(p)[i]) << 16);
  else
    return float16_t::to_float(static_cast<const uint16_t*>(p)[i]);
}

template <SrcKind K>
constexpr int64_t kSrcBytes = K == SrcKind::f32 ? 4 : 2;

// Prefetches rows j + pf .. j + pf + n of x (those below nk; row stride `stride` elements, `len`
// elements of each): the SIMD direct loops keep their reads of one run of rows ahead this way.
template <SrcKind K>
inline void prefetch_ahead(const void* x, int64_t stride, int64_t len, int64_t j, int64_t pf,
                           int64_t n, int64_t nk) {
  prefetch_rows(static_cast<const char*>(x) + (j + pf) * stride * kSrcBytes<K>,
                stride * kSrcBytes<K>, len * kSrcBytes<K>, std::clamp<int64_t>(nk - j - pf, 0, n));
}

// f(std::integral_constant<int, R>()) for R = rows (1 to 4): the direct loops' row count as a
// template argument.
template <typename F>
inline void with_rows(int rows, F&& f) {
  switch (rows) {
    case 4:
      return f(std::integral_constant<int, 4>());
    case 3:
      return f(std::integral_constant<int, 3>());
    case 2:
      return f(std::integral_constant<int, 2>());
    default:
      return f(std::integral_constant<int, 1>());
  }
}

template <SrcKind K>
void qk_direct_portable(const float* q, int64_t ldq, int rows, const void* k, int64_t ks,
                        int64_t nk, int64_t D, float* s, int64_t lds) {
  float kr[256];
  for (int64_t j = 0; j < nk; ++j) {
    float acc[4] = {0, 0, 0, 0};
    for (int64_t d0 = 0; d0 < D; d0 += 256) {
      const int64_t nd = std::min<int64_t>(256, D - d0);
      for (int64_t d = 0; d < nd; ++d) kr[d] = src_at<K>(k, j * ks + d0 + d);
      for (int r = 0; r < rows; ++r)
        for (int64_t d = 0; d < nd; ++d) acc[r] += q[r * ldq + d0 + d] * kr[d];
    }
    for (int r = 0; r < rows; ++r) s[r * lds + j] = acc[r];
  }
}

template <SrcKind K>
void pv_direct_portable(const float* p, int64_t ldp, int rows, const void* v, int64_t vs,
                        int64_t nk, int64_t Dv, float* acc, int64_t lda) {
  constexpr int64_t kChunk = 256;
  float blk[4][kChunk];
  for (int64_t d0 = 0; d0 < Dv; d0 += kChunk) {
    const int64_t nd = std::min(kChunk, Dv - d0);
    for (int r = 0; r < rows; ++r) std::fill(blk[r], blk[r] + nd, 0.0f);
    for (int64_t j = 0; j < nk; ++j)
      for (int64_t d = 0; d < nd; ++d) {
        const float vv = src_at<K>(v, j * vs + d0 + d);
        for (int r = 0; r < rows; ++r) blk[r][d] += p[r * ldp + j] * vv;
      }
    for (int r = 0; r < rows; ++r)
      for (int64_t d = 0; d < nd; ++d) acc[r * lda + d0 + d] += blk[r][d];
  }
}

// ---- AVX2 + FMA ----

#define AVX2_FN __attribute__((target("avx2,fma,f16c")))

AVX2_FN inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

AVX2_FN float sum_squares_avx2(const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
    __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
    a0 = _mm256_fmadd_ps(v0, v0, a0);
    a1 = _mm256_fmadd_ps(v1, v1, a1);
    a2 = _mm256_fmadd_ps(v2, v2, a2);
    a3 = _mm256_fmadd_ps(v3, v3, a3);
  }
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    a0 = _mm256_fmadd_ps(v, v, a0);
  }
  float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; ++i) s += x[i] * x[i];
  return s;
}

template <int R>
AVX2_FN inline void qk_tile_avx2_r(const float* q, int64_t ldq, const float* kp, int64_t D,
                                   float* s, int64_t lds) {
  __m256 a[R][2];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) a[r][0] = a[r][1] = _mm256_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    const __m256 k0 = _mm256_loadu_ps(kp + d * 16), k1 = _mm256_loadu_ps(kp + d * 16 + 8);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 qb = _mm256_broadcast_ss(q + r * ldq + d);
      a[r][0] = _mm256_fmadd_ps(qb, k0, a[r][0]);
      a[r][1] = _mm256_fmadd_ps(qb, k1, a[r][1]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(s + r * lds, a[r][0]);
    _mm256_storeu_ps(s + r * lds + 8, a[r][1]);
  }
}

AVX2_FN void qk_tile_avx2(const float* q, int64_t ldq, int rows, const float* kp, int64_t D,
                          float* s, int64_t lds) {
  switch (rows) {
    case 4:
      return qk_tile_avx2_r<4>(q, ldq, kp, D, s, lds);
    case 3:
      return qk_tile_avx2_r<3>(q, ldq, kp, D, s, lds);
    case 2:
      return qk_tile_avx2_r<2>(q, ldq, kp, D, s, lds);
    default:
      return qk_tile_avx2_r<1>(q, ldq, kp, D, s, lds);
  }
}

template <int R>
AVX2_FN inline void pv_tile_avx2_r(const float* p, int64_t ldp, const float* v, int64_t ldv,
                                   int64_t nk, int64_t Dp, float* acc, int64_t lda) {
  for (int64_t dc = 0; dc < Dp; dc += 16) {
    // Sum the block from zero, then add it: blocked summation keeps long key ranges accurate.
    __m256 a[R][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) a[r][0] = a[r][1] = _mm256_setzero_ps();
    for (int64_t j = 0; j < nk; ++j) {
      const __m256 v0 = _mm256_loadu_ps(v + j * ldv + dc);
      const __m256 v1 = _mm256_loadu_ps(v + j * ldv + dc + 8);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m256 pb = _mm256_broadcast_ss(p + r * ldp + j);
        a[r][0] = _mm256_fmadd_ps(pb, v0, a[r][0]);
        a[r][1] = _mm256_fmadd_ps(pb, v1, a[r][1]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      float* ar = acc + r * lda + dc;
      _mm256_storeu_ps(ar, _mm256_add_ps(_mm256_loadu_ps(ar), a[r][0]));
      _mm256_storeu_ps(ar + 8, _mm256_add_ps(_mm256_loadu_ps(ar + 8), a[r][1]));
    }
  }
}

AVX2_FN void pv_tile_avx2(const float* p, int64_t ldp, int rows, const float* v, int64_t ldv,
                          int64_t nk, int64_t Dp, float* acc, int64_t lda) {
  switch (rows) {
    case 4:
      return pv_tile_avx2_r<4>(p, ldp, v, ldv, nk, Dp, acc, lda);
    case 3:
      return pv_tile_avx2_r<3>(p, ldp, v, ldv, nk, Dp, acc, lda);
    case 2:
      return pv_tile_avx2_r<2>(p, ldp, v, ldv, nk, Dp, acc, lda);
    default:
      return pv_tile_avx2_r<1>(p, ldp, v, ldv, nk, Dp, acc, lda);
  }
}

// exp(x) for x <= 0 (Cephes polynomial, as exp_nonpos); -inf and x < -87.3 give 0, NaN gives
// NaN (max/min return their second operand when one is NaN: x goes second).
AVX2_FN inline __m256 exp_nonpos_avx2(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f);
  const __m256 xc = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(lo, x));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  const __m256 z = _mm256_mul_ps(r, r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_add_ps(_mm256_fmadd_ps(y, z, r), _mm256_set1_ps(1.0f));
  const __m256i n = _mm256_cvtps_epi32(fx);
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
  return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);  // x < lo -> 0
}

AVX2_FN float exp_sub_sum_avx2(float* x, int64_t n, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp_nonpos_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = hsum(acc);
  for (; i < n; ++i) {
    x[i] = exp_nonpos(x[i] - m);
    sum += x[i];
  }
  return sum;
}

AVX2_FN void store_bf16_avx2(const float* src, uint16_t* dst, int64_t n) {
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
  const __m256i absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i qnan = _mm256_set1_epi32(0x40);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(src + i));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, bias)), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(u, 16), qnan), nan);
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; ++i) dst[i] = bfloat16_t::from_float(src[i]);
}

AVX2_FN void store_f16_avx2(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = float16_t::from_float(src[i]);
}

template <SrcKind K>
AVX2_FN inline __m256 load8(const void* p, int64_t i) {
  if constexpr (K == SrcKind::f32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    if constexpr (K == SrcKind::bf16)
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    else
      return _mm256_cvtph_ps(h);
  }
}

// Sums of a0..a3 (one lane each).
AVX2_FN inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 y = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
}

// Scores of keys j .. j + NK (NK = 1, 2 or 4) for R rows: R NK independent accumulators.
template <SrcKind K, int R, int NK>
AVX2_FN inline void qk_keys_avx2(const float* q, int64_t ldq, const void* k, int64_t ks, int64_t j,
                                 int64_t D, float* s, int64_t lds) {
  __m256 a[R][NK];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NK; ++c) a[r][c] = _mm256_setzero_ps();
  const int64_t D8 = D / 8 * 8;
  for (int64_t d = 0; d < D8; d += 8) {
    __m256 kv[NK];
#pragma GCC unroll 4
    for (int c = 0; c < NK; ++c) kv[c] = load8<K>(k, (j + c) * ks + d);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 qv = _mm256_loadu_ps(q + r * ldq + d);
#pragma GCC unroll 4
      for (int c = 0; c < NK; ++c) a[r][c] = _mm256_fmadd_ps(qv, kv[c], a[r][c]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    float* sr = s + r * lds + j;
    if constexpr (NK == 4) {
      _mm_storeu_ps(sr, hsum4(a[r][0], a[r][1], a[r][2], a[r][3]));
    } else if constexpr (NK == 2) {
      _mm_storel_pi(reinterpret_cast<__m64*>(sr), hsum4(a[r][0], a[r][1], a[r][0], a[r][1]));
    } else {
      sr[0] = hsum(a[r][0]);
    }
    for (int c = 0; c < NK; ++c)
      for (int64_t d = D8; d < D; ++d) sr[c] += q[r * ldq + d] * src_at<K>(k, (j + c) * ks + d);
  }
}

// Several keys at a time (4 for up to 2 rows, else 2: 8 accumulators at most), prefetching
// ahead of the rows read as the AVX-512 loop.
template <SrcKind K, int R>
AVX2_FN inline void qk_direct_avx2_r(const float* q, int64_t ldq, const void* k, int64_t ks,
                                     int64_t nk, int64_t D, float* s, int64_t lds) {
  constexpr int NK = R <= 2 ? 4 : 2;
  const int64_t pf = prefetch_distance(D * kSrcBytes<K>);
  int64_t j = 0;
  for (; j + NK <= nk; j += NK) {
    prefetch_ahead<K>(k, ks, D, j, pf, NK, nk);
    qk_keys_avx2<K, R, NK>(q, ldq, k, ks, j, D, s, lds);
  }
  for (; j < nk; ++j) qk_keys_avx2<K, R, 1>(q, ldq, k, ks, j, D, s, lds);
}

template <SrcKind K>
AVX2_FN void qk_direct_avx2(const float* q, int64_t ldq, int rows, const void* k, int64_t ks,
                            int64_t nk, int64_t D, float* s, int64_t lds) {
  with_rows(rows, [&](auto r) { qk_direct_avx2_r<K, r()>(q, ldq, k, ks, nk, D, s, lds); });
}

// acc[r][d0 .. d0 + 8 NC] += sum_j p[r][j] v[j][d0 ..] for R rows: R x NC accumulators (8 at
// most), summed from zero and then added (blocked summation); prefetches ahead of the V rows
// read (pf rows ahead, pf_len elements of each) when pf_len > 0 (the first pass over them).
template <SrcKind K, int R, int NC>
AVX2_FN void pv_pass_avx2(const float* p, int64_t ldp, const void* v, int64_t vs, int64_t nk,
                          int64_t d0, float* acc, int64_t lda, int64_t pf, int64_t pf_len) {
  __m256 a[R][NC];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) a[r][c] = _mm256_setzero_ps();
  for (int64_t j = 0; j < nk; ++j) {
    if (pf_len > 0) prefetch_ahead<K>(v, vs, pf_len, j, pf, 1, nk);
    __m256 pb[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) pb[r] = _mm256_broadcast_ss(p + r * ldp + j);
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) {
      const __m256 vv = load8<K>(v, j * vs + d0 + 8 * c);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) a[r][c] = _mm256_fmadd_ps(pb[r], vv, a[r][c]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) {
      float* ar = acc + r * lda + d0 + 8 * c;
      _mm256_storeu_ps(ar, _mm256_add_ps(_mm256_loadu_ps(ar), a[r][c]));
    }
}

// Passes of 64 / R columns (8 accumulators), then of 8 columns, then the scalar tail.
template <SrcKind K, int R>
AVX2_FN inline void pv_direct_avx2_r(const float* p, int64_t ldp, const void* v, int64_t vs,
                                     int64_t nk, int64_t Dv, float* acc, int64_t lda) {
  constexpr int NC = R == 1 ? 8 : R == 2 ? 4 : 2;
  const int64_t pf = prefetch_distance(Dv * kSrcBytes<K>);
  int64_t d0 = 0;
  for (; d0 + 8 * NC <= Dv; d0 += 8 * NC)
    pv_pass_avx2<K, R, NC>(p, ldp, v, vs, nk, d0, acc, lda, pf, d0 == 0 ? Dv : 0);
  for (; d0 + 8 <= Dv; d0 += 8)
    pv_pass_avx2<K, R, 1>(p, ldp, v, vs, nk, d0, acc, lda, pf, d0 == 0 ? Dv : 0);
  for (int64_t d = d0; d < Dv; ++d)
    for (int r = 0; r < R; ++r) {
      float t = 0;
      for (int64_t j = 0; j < nk; ++j) t += p[r * ldp + j] * src_at<K>(v, j * vs + d);
      acc[r * lda + d] += t;
    }
}

template <SrcKind K>
AVX2_FN void pv_direct_avx2(const float* p, int64_t ldp, int rows, const void* v, int64_t vs,
                            int64_t nk, int64_t Dv, float* acc, int64_t lda) {
  with_rows(rows, [&](auto r) { pv_direct_avx2_r<K, r()>(p, ldp, v, vs, nk, Dv, acc, lda); });
}

// ---- AVX-512 (F+BW+VL): the direct attention loops; the other entries are the AVX2 ones ----

#define AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

// 16 values from element i (the lanes of m only, others 0: no read past them) as float32.
template <SrcKind K>
AVX512_FN inline __m512 load16(const void* p, int64_t i, __mmask16 m = 0xffff) {
  if constexpr (K == SrcKind::f32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + i);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i);
    if constexpr (K == SrcKind::bf16)
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else
      return _mm512_cvtph_ps(h);
  }
}

// Lane sums of a0..a3, by 128-bit lane: each lane holds 4 partial sums {a0, a1, a2, a3}.
AVX512_FN inline __m512 sum4_lanes(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  const __m512 x01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
  const __m512 x23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
  return _mm512_add_ps(_mm512_shuffle_ps(x01, x23, _MM_SHUFFLE(1, 0, 1, 0)),
                       _mm512_shuffle_ps(x01, x23, _MM_SHUFFLE(3, 2, 3, 2)));
}

// Sums of the 4 lanes of y0..y3 (sum4_lanes results): 128-bit lane r holds row r's 4 sums.
AVX512_FN inline __m512 sum_lanes4(__m512 y0, __m512 y1, __m512 y2, __m512 y3) {
  const __m512 z01 = _mm512_add_ps(_mm512_shuffle_f32x4(y0, y1, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_f32x4(y0, y1, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 z23 = _mm512_add_ps(_mm512_shuffle_f32x4(y2, y3, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_f32x4(y2, y3, _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(z01, z23, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(z01, z23, _MM_SHUFFLE(3, 1, 3, 1)));
}

// a[r][c] += q_r[d..] * k_{j+c}[d..] over 16 dims at d (lanes of m).
template <SrcKind K, int R, int NK>
AVX512_FN inline void qk_step16(const float* q, int64_t ldq, const void* k, int64_t ks, int64_t j,
                                int64_t d, __mmask16 m, __m512 (&a)[R][NK]) {
  __m512 kv[NK];
#pragma GCC unroll 4
  for (int c = 0; c < NK; ++c) kv[c] = load16<K>(k, (j + c) * ks + d, m);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    const __m512 qv = _mm512_maskz_loadu_ps(m, q + r * ldq + d);
#pragma GCC unroll 4
    for (int c = 0; c < NK; ++c) a[r][c] = _mm512_fmadd_ps(qv, kv[c], a[r][c]);
  }
}

// Scores of keys j .. j + NK (NK = 4: a transposing reduction stores 4 per row; NK = 1: one).
template <SrcKind K, int R, int NK>
AVX512_FN inline void qk_keys_avx512(const float* q, int64_t ldq, const void* k, int64_t ks,
                                     int64_t j, int64_t D, float* s, int64_t lds) {
  __m512 a[R][NK];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NK; ++c) a[r][c] = _mm512_setzero_ps();
  const int64_t D16 = D / 16 * 16;
  for (int64_t d = 0; d < D16; d += 16) qk_step16<K, R, NK>(q, ldq, k, ks, j, d, 0xffff, a);
  if (D16 < D)
    qk_step16<K, R, NK>(q, ldq, k, ks, j, D16, static_cast<__mmask16>((1u << (D - D16)) - 1), a);
  if constexpr (NK == 1) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) s[r * lds + j] = _mm512_reduce_add_ps(a[r][0]);
  } else {
    __m512 y[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      const int rr = r < R ? r : 0;  // missing rows: a copy of row 0, not stored
      y[r] = sum4_lanes(a[rr][0], a[rr][1], a[rr][2], a[rr][3]);
    }
    const __m512 w = sum_lanes4(y[0], y[1], y[2], y[3]);
    _mm_storeu_ps(s + j, _mm512_castps512_ps128(w));
    if constexpr (R > 1) _mm_storeu_ps(s + lds + j, _mm512_extractf32x4_ps(w, 1));
    if constexpr (R > 2) _mm_storeu_ps(s + 2 * lds + j, _mm512_extractf32x4_ps(w, 2));
    if constexpr (R > 3) _mm_storeu_ps(s + 3 * lds + j, _mm512_extractf32x4_ps(w, 3));
  }
}

// Four keys at a time: 4 R independent accumulators (16 lanes), so the FMAs are not one chain;
// prefetches ahead of the keys read.
template <SrcKind K, int R>
AVX512_FN void qk_direct_avx512_r(const float* q, int64_t ldq, const void* k, int64_t ks,
                                  int64_t nk, int64_t D, float* s, int64_t lds) {
  int64_t j = 0;
  const int64_t pf = prefetch_distance(D * kSrcBytes<K>);
  for (; j + 4 <= nk; j += 4) {
    prefetch_ahead<K>(k, ks, D, j, pf, 4, nk);
    qk_keys_avx512<K, R, 4>(q, ldq, k, ks, j, D, s, lds);
  }
  for (; j < nk; ++j) qk_keys_avx512<K, R, 1>(q, ldq, k, ks, j, D, s, lds);
}

template <SrcKind K>
AVX512_FN void qk_direct_avx512(const float* q, int64_t ldq, int rows, const void* k, int64_t ks,
                                int64_t nk, int64_t D, float* s, int64_t lds) {
  with_rows(rows, [&](auto r) { qk_direct_avx512_r<K, r()>(q, ldq, k, ks, nk, D, s, lds); });
}

// acc[r][d0 + 16 c ...] += sum_j p[r][j] v[j][d0 + 16 c ...] for c < NC (the last vector: lanes
// of `last`): every V row of the range read once, R x NC accumulators in registers, summed from
// zero and then added (blocked summation); prefetches as pv_pass_avx2.
template <SrcKind K, int R, int NC>
AVX512_FN void pv_pass_avx512(const float* p, int64_t ldp, const void* v, int64_t vs, int64_t nk,
                              int64_t d0, __mmask16 last, float* acc, int64_t lda, int64_t pf,
                              int64_t pf_len) {
  __m512 a[R][NC];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) a[r][c] = _mm512_setzero_ps();
  for (int64_t j = 0; j < nk; ++j) {
    if (pf_len > 0) prefetch_ahead<K>(v, vs, pf_len, j, pf, 1, nk);
    __m512 pb[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) pb[r] = _mm512_set1_ps(p[r * ldp + j]);
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) {
      const __m512 vv = load16<K>(v, j * vs + d0 + 16 * c, c == NC - 1 ? last : 0xffff);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) a[r][c] = _mm512_fmadd_ps(pb[r], vv, a[r][c]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) {
      float* ar = acc + r * lda + d0 + 16 * c;
      const __mmask16 m = c == NC - 1 ? last : 0xffff;
      _mm512_mask_storeu_ps(ar, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, ar), a[r][c]));
    }
}

using PvPassFn = void (*)(const float*, int64_t, const void*, int64_t, int64_t, int64_t, __mmask16,
                          float*, int64_t, int64_t, int64_t);

// Passes of up to 128 columns (pv_pass_avx512<K, R, NC> for NC = 1 .. sizeof...(N)).
template <SrcKind K, int R, int... N>
AVX512_FN void pv_rows_avx512(std::integer_sequence<int, N...>, const float* p, int64_t ldp,
                              const void* v, int64_t vs, int64_t nk, int64_t Dv, float* acc,
                              int64_t lda, bool pf_first = true) {
  static constexpr PvPassFn kPass[] = {pv_pass_avx512<K, R, N + 1>...};
  const int64_t pf = prefetch_distance(Dv * kSrcBytes<K>);
  constexpr int64_t kCols = 16 * static_cast<int64_t>(sizeof...(N));
  for (int64_t d0 = 0; d0 < Dv; d0 += kCols) {
    const int64_t nd = std::min(kCols, Dv - d0);
    const auto last = static_cast<__mmask16>(nd % 16 ? (1u << (nd % 16)) - 1 : 0xffffu);
    kPass[(nd + 15) / 16 - 1](p, ldp, v, vs, nk, d0, last, acc, lda, pf,
                              d0 == 0 && pf_first ? Dv : 0);
  }
}

template <SrcKind K>
AVX512_FN void pv_direct_avx512(const float* p, int64_t ldp, int rows, const void* v, int64_t vs,
                                int64_t nk, int64_t Dv, float* acc, int64_t lda) {
  // At most 16 accumulators: 4 rows x 64 columns or 2 rows x 128 columns per pass over V (the
  // first pass reads it from memory, the others from L1).
  constexpr auto c4 = std::make_integer_sequence<int, 4>();
  constexpr auto c8 = std::make_integer_sequence<int, 8>();
  if (Dv <= 64)
    return with_rows(rows,
                     [&](auto r) { pv_rows_avx512<K, r()>(c4, p, ldp, v, vs, nk, Dv, acc, lda); });
  for (int r0 = 0; r0 < rows; r0 += 2) {
    if (rows - r0 >= 2)
      pv_rows_avx512<K, 2>(c8, p + r0 * ldp, ldp, v, vs, nk, Dv, acc + r0 * lda, lda, r0 == 0);
    else
      pv_rows_avx512<K, 1>(c8, p + r0 * ldp, ldp, v, vs, nk, Dv, acc + r0 * lda, lda, r0 == 0);
  }
}

const Kernels kPortable{sum_squares_portable,
                        qk_tile_portable,
                        pv_tile_portable,
                        exp_sub_sum_portable,
                        store_bf16_portable,
                        store_f16_portable,
                        {qk_direct_portable<SrcKind::f32>, qk_direct_portable<SrcKind::bf16>,
                         qk_direct_portable<SrcKind::f16>},
                        {pv_direct_portable<SrcKind::f32>, pv_direct_portable<SrcKind::bf16>,
                         pv_direct_portable<SrcKind::f16>}};
const Kernels kAvx2{
    sum_squares_avx2,
    qk_tile_avx2,
    pv_tile_avx2,
    exp_sub_sum_avx2,
    store_bf16_avx2,
    store_f16_avx2,
    {qk_direct_avx2<SrcKind::f32>, qk_direct_avx2<SrcKind::bf16>, qk_direct_avx2<SrcKind::f16>},
    {pv_direct_avx2<SrcKind::f32>, pv_direct_avx2<SrcKind::bf16>, pv_direct_avx2<SrcKind::f16>}};

const Kernels kAvx512{sum_squares_avx2,
                      qk_tile_avx2,
                      pv_tile_avx2,
                      exp_sub_sum_avx2,
                      store_bf16_avx2,
                      store_f16_avx2,
                      {qk_direct_avx512<SrcKind::f32>, qk_direct_avx512<SrcKind::bf16>,
                       qk_direct_avx512<SrcKind::f16>},
                      {pv_direct_avx512<SrcKind::f32>, pv_direct_avx512<SrcKind::bf16>,
                       pv_direct_avx512<SrcKind::f16>}};

}  // namespace

const Kernels& kernels() {
  const cpu::Isa isa = cpu::active_isa();
  return isa >= cpu::Isa::avx512 ? kAvx512 : isa >= cpu::Isa::avx2 ? kAvx2 : kPortable;
}

}  // namespace ingot::backend::fastk
