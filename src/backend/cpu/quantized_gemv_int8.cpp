// The int8-activation kernels of quantized_matmul (scheme and error bound: quantized_int8.h):
// decode, and prefill where they beat the float32 GEMM (quantized.cpp decides).
//
// Layout. x is prepared once per call: per row, its int8 codes in spans of 128 elements (4-bit)
// or 64 (8-bit), zero-padded to whole spans; a 4-bit span lists the codes of its even elements
// (64 bytes), then those of its odd ones, so that the low nibbles of the span's 64 weight bytes
// (elements 2i) meet the first half and the high nibbles (2i + 1) the second: one AND and one
// shift + AND unpack 128 codes. A span's integer dot products then land in 16 int32 lanes, lane
// l covering the span's elements [l * span / 16, (l + 1) * span / 16), all of one group (group
// sizes are multiples of 32), so the float step works on whole lanes without horizontal sums:
// acc_l += float(dot_l) * (s * dx)_l, the per-lane product of weight scale and x step gathered
// by one permute. The bias term sum_g b_g * sum(x_g) (float32 group sums of the unquantized x,
// computed once per call) is one multiply-add per 16 groups.
//
// Kernels: AVX-512 VNNI (one 64-byte load, one AND, one shift + AND and two vpdpbusd per 128
// 4-bit weights and x row; scales and biases read as stored, 16 groups per register), AVX2
// (vpmaddubsw + vpmaddwd for 4-bit: products <= 15 * 127 cannot saturate; 8-bit weights widened
// to int16 and vpmaddwd, as 255 * 127 pairs would saturate vpmaddubsw; scales converted per
// block), and a portable integer loop used as the reference. Four weight rows are processed per
// pass and share the x codes (kept in L1), except in VNNI decode, which reads one weight row at a
// time (one sequential stream: twice the rate on Zen 4) and, for one row of x, runs a whole chunk
// of weight rows in one call with the weights prefetched 2 KB ahead and the row sums reduced 16 at
// a time (decode_rows_vnni); up to two rows of x share the unpacked weights (VNNI);
// the next block's weights and scales are prefetched; the last, partial span of a row is copied
// into a zero-padded buffer. Many rows of x (prefill) are split into chunks of codes that stay in
// L2 against batches of weight blocks.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/gemm_kernels.h"
#include "backend/cpu/quantized_int8.h"
#include "core/half.h"
#include "util/env.h"
#include "util/error.h"
#include "util/thread_pool.h"

#define INGOT_I8_AVX2 __attribute__((target("avx2,fma,f16c")))
#define INGOT_I8_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define INGOT_I8_INLINE inline __attribute__((always_inline))

namespace ingot::cpu {
namespace {

constexpr int kNR = 4;  // weight rows per pass

/// AVX512_VNNI (cpuid leaf 7, ECX bit 11).
bool hardware_vnni() {
  static const bool vnni = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return ((c >> 11) & 1u) != 0;
  }();
  return vnni;
}

/// x prepared for the kernels (see the layout above).
struct XPrep {
  int64_t span = 0, spans = 0, full = 0, kp = 0, groups = 0, gp = 0;
  std::vector<int8_t> q;     // [m, kp] codes
  std::vector<int32_t> win;  // VNNI: per span of a 16-group window, its lanes' groups [ws, 16]
  std::vector<float> xsum;   // [m, gp] float32 group sums of the unquantized x (0 past groups)
  std::vector<float> dx;     // [m, groups] steps
  std::vector<float> inv;    // [m, groups] 127 / max|x_g| (0 for an all-zero group)
};

/// Position of element t (< span) of a span in its code layout.
inline int64_t code_pos(int64_t t, int bits) {
  return bits == 4 ? ((t & 1) ? 64 : 0) + (t >> 1) : t;
}

void prep_layout(XPrep& p, int64_t m, int64_t k, int gs, int bits) {
  p.span = bits == 4 ? 128 : 64;
  p.spans = (k + p.span - 1) / p.span;
  p.full = k / p.span;
  p.kp = p.spans * p.span;
  p.groups = k / gs;
  p.gp = (p.groups + 15) / 16 * 16;
  p.q.assign(static_cast<size_t>(m * p.kp), 0);
  p.xsum.assign(static_cast<size_t>(m * p.gp), 0.0f);
  p.dx.resize(static_cast<size_t>(m * p.groups));
  p.inv.resize(p.dx.size());
}

inline void set_step(XPrep& p, int64_t i, float amax) {
  p.dx[i] = amax / 127.0f;
  p.inv[i] = amax > 0.0f ? 127.0f / amax : 0.0f;
}

/// Scalar preparation (the portable kernel's; the SIMD ones produce the same codes and steps).
void prep_scalar(const float* x, int64_t r0, int64_t r1, int64_t k, int gs, int bits, XPrep& p) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t g = 0; g < p.groups; ++g) {
      const float* v = x + r * k + g * gs;
      float amax = 0.0f, sum = 0.0f;
      for (int j = 0; j < gs; ++j) {
        amax = std::max(amax, std::abs(v[j]));
        sum += v[j];
      }
      const int64_t i = r * p.groups + g;
      set_step(p, i, amax);
      p.xsum[r * p.gp + g] = sum;
      for (int j = 0; j < gs; ++j) {
        const float q = std::clamp(std::nearbyint(v[j] * p.inv[i]), -127.0f, 127.0f);
        const int64_t e = g * gs + j;
        p.q[r * p.kp + (e / p.span) * p.span + code_pos(e % p.span, bits)] =
            static_cast<int8_t>(q == q ? q : 0.0f);
      }
    }
}

INGOT_I8_VNNI void prep_avx512(const float* x, int64_t r0, int64_t r1, int64_t k, int gs, int bits,
                               XPrep& p) {
  const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t r = r0; r < r1; ++r) {
    int8_t* qr = p.q.data() + r * p.kp;
    for (int64_t g = 0; g < p.groups; ++g) {
      const float* v = x + r * k + g * gs;
      __m512 amax = _mm512_setzero_ps(), sum = _mm512_setzero_ps();
      for (int j = 0; j < gs; j += 16) {
        const __m512 a = _mm512_loadu_ps(v + j);
        amax = _mm512_max_ps(amax, _mm512_abs_ps(a));
        sum = _mm512_add_ps(sum, a);
      }
      const int64_t i = r * p.groups + g;
      set_step(p, i, _mm512_reduce_max_ps(amax));
      p.xsum[r * p.gp + g] = _mm512_reduce_add_ps(sum);
      const __m512 inv = _mm512_set1_ps(p.inv[i]);
      for (int j = 0; j < gs; j += 32) {
        __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(v + j), inv));
        __m512i qb = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(v + j + 16), inv));
        qa = _mm512_max_epi32(_mm512_min_epi32(qa, lim), nlim);
        qb = _mm512_max_epi32(_mm512_min_epi32(qb, lim), nlim);
        const int64_t e = g * gs + j, base = (e / p.span) * p.span, t = e % p.span;
        if (bits == 8) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + e), _mm512_cvtsepi32_epi8(qa));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + e + 16), _mm512_cvtsepi32_epi8(qb));
        } else {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + base + (t >> 1)),
                           _mm512_cvtsepi32_epi8(_mm512_permutex2var_epi32(qa, even, qb)));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + base + 64 + (t >> 1)),
                           _mm512_cvtsepi32_epi8(_mm512_permutex2var_epi32(qa, odd, qb)));
        }
      }
    }
  }
}

INGOT_I8_AVX2 inline float hmax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

INGOT_I8_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

INGOT_I8_AVX2 void prep_avx2(const float* x, int64_t r0, int64_t r1, int64_t k, int gs, int bits,
                             XPrep& p) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  // Per 128-bit lane: its 8 even bytes, then its 8 odd ones.
  const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2,
                                         4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  for (int64_t r = r0; r < r1; ++r) {
    int8_t* qr = p.q.data() + r * p.kp;
    for (int64_t g = 0; g < p.groups; ++g) {
      const float* v = x + r * k + g * gs;
      __m256 amax = _mm256_setzero_ps(), sum = _mm256_setzero_ps();
      for (int j = 0; j < gs; j += 8) {
        const __m256 a = _mm256_loadu_ps(v + j);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, a));
        sum = _mm256_add_ps(sum, a);
      }
      const int64_t i = r * p.groups + g;
      set_step(p, i, hmax8(amax));
      p.xsum[r * p.gp + g] = hsum8(sum);
      const __m256 inv = _mm256_set1_ps(p.inv[i]);
      for (int j = 0; j < gs; j += 32) {
        __m256i qv[4];
        for (int u = 0; u < 4; ++u) {
          const __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + j + 8 * u), inv));
          qv[u] = _mm256_max_epi32(_mm256_min_epi32(c, lim), nlim);
        }
        // 32 codes in element order.
        const __m256i b = _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(_mm256_packs_epi32(qv[0], qv[1]), _mm256_packs_epi32(qv[2], qv[3])),
            order);
        const int64_t e = g * gs + j, base = (e / p.span) * p.span, t = e % p.span;
        if (bits == 8) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(qr + e), b);
        } else {
          const __m256i s = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(b, split), 0xD8);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + base + (t >> 1)),
                           _mm256_castsi256_si128(s));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + base + 64 + (t >> 1)),
                           _mm256_extracti128_si256(s, 1));
        }
      }
    }
  }
}

// ------------------------------------------------------------------ scales to float32

void to_f32_scalar(const void* src, QScale st, int64_t n, float* dst) {
  switch (st) {
    case QScale::f32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case QScale::bf16:
      for (int64_t i = 0; i < n; ++i)
        dst[i] = static_cast<float>(static_cast<const bfloat16_t*>(src)[i]);
      return;
    case QScale::f16:
      for (int64_t i = 0; i < n; ++i)
        dst[i] = static_cast<float>(static_cast<const float16_t*>(src)[i]);
      return;
  }
}

INGOT_I8_AVX2 void to_f32_avx2(const void* src, QScale st, int64_t n, float* dst) {
  if (st == QScale::f32) return to_f32_scalar(src, st, n, dst);
  const uint16_t* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    _mm256_storeu_ps(dst + i, st == QScale::f16 ? _mm256_cvtph_ps(h)
                                                : _mm256_castsi256_ps(_mm256_slli_epi32(
                                                      _mm256_cvtepu16_epi32(h), 16)));
  }
  if (i < n) to_f32_scalar(s + i, st, n - i, dst + i);
}

// ------------------------------------------------------------------ kernels

/// One pass: kNR weight rows (rows past n repeat the last one; only `nr` are stored) against
/// mr rows of x starting at r0.
struct Pass {
  const uint8_t* w[kNR];     // packed rows
  const uint8_t* tail[kNR];  // zero-padded copy of each row's partial last span
  uintptr_t pf[kNR];         // address of the rows of the next pass (prefetched span by span)
  const float* s[kNR];       // float32 scales, >= 16 zeros past the row's groups
  const float* b[kNR];       // float32 biases, zeros up to gp
  float* sd;                 // work: [kNR][2][gp + 16] scales times x steps, zeros past groups
  const void* sraw[kNR];     // the rows' scales and biases as stored (the VNNI kernel's)
  const void* braw[kNR];
  uintptr_t spf[kNR], bpf[kNR];  // scales and biases of the next pass (prefetched)
  int nr;
};

struct KArgs {
  const XPrep* x;
  int64_t r0, mr, n, j0;
  int gs, bits;
  float* out;  // [m, n]
};

void kernel_portable(const Pass& ps, const KArgs& a) {
  const XPrep& p = *a.x;
  for (int j = 0; j < ps.nr; ++j)
    for (int64_t r = a.r0; r < a.r0 + a.mr; ++r) {
      const int8_t* xq = p.q.data() + r * p.kp;
      float acc = 0.0f;
      for (int64_t g = 0; g < p.groups; ++g) {
        int32_t dot = 0;
        for (int t = 0; t < a.gs; ++t) {
          const int64_t e = g * a.gs + t;
          const int q = a.bits == 8 ? ps.w[j][e] : (ps.w[j][e / 2] >> ((e & 1) * 4)) & 0xF;
          dot += q * xq[(e / p.span) * p.span + code_pos(e % p.span, a.bits)];
        }
        acc += static_cast<float>(dot) * p.dx[r * p.groups + g] * ps.s[j][g];
      }
      for (int64_t g = 0; g < p.groups; ++g) acc += ps.b[j][g] * p.xsum[r * p.gp + g];
      a.out[r * a.n + a.j0 + j] = acc;
    }
}

/// Lane l of a span -> group offset (l * span / 16) / gs from the span's first group.
inline void lane_groups(int64_t span, int gs, int32_t* idx) {
  for (int l = 0; l < 16; ++l) idx[l] = static_cast<int32_t>(l * (span / 16) / gs);
}

/// sd[(j * mr + r) * (gp + 16) + g] = s_j[g] * dx_{r0 + r}[g]: the float step of a lane is then
/// one multiply-add, acc += float(dot) * sd (the zeros past groups are never written).
INGOT_I8_AVX2 void fold_steps(const Pass& ps, const XPrep& p, int64_t r0, int64_t mr) {
  const int64_t stride = p.gp + 16;
  for (int j = 0; j < kNR; ++j)
    for (int64_t r = 0; r < mr; ++r) {
      const float* dx = p.dx.data() + (r0 + r) * p.groups;
      float* dst = ps.sd + (j * mr + r) * stride;
      int64_t g = 0;
      for (; g + 8 <= p.groups; g += 8)
        _mm256_storeu_ps(dst + g,
                         _mm256_mul_ps(_mm256_loadu_ps(ps.s[j] + g), _mm256_loadu_ps(dx + g)));
      for (; g < p.groups; ++g) dst[g] = ps.s[j][g] * dx[g];
    }
}

/// 16 scales or biases from group g as float32 (masked: zeros past the row's groups).
template <QScale ST>
INGOT_I8_VNNI INGOT_I8_INLINE __m512 load16(const void* base, int64_t g, __mmask16 m) {
  if constexpr (ST == QScale::f32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + g);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + g);
    if constexpr (ST == QScale::bf16)
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else
      return _mm512_cvtph_ps(h);
  }
}

/// Windows of 16 groups: per row of weights and x, the window's scales times x steps live in
/// one register (read as stored, no float32 copy) and each span of the window picks its lanes'
/// values with one permute (XPrep::win); the bias term is one multiply-add per window.
template <int BITS, int MR, QScale ST, int NR>
INGOT_I8_VNNI void kernel_vnni(const Pass& ps, const KArgs& a) {
  const XPrep& p = *a.x;
  const __m512i nib = _mm512_set1_epi8(0x0F);
  const int8_t* xq = p.q.data() + a.r0 * p.kp;
  constexpr int64_t kSpan = BITS == 4 ? 128 : 64, kStep = kSpan * BITS / 8;
  constexpr int64_t kElem = ST == QScale::f32 ? 4 : 2;
  const int64_t full = p.full, kp = p.kp, spans = p.spans, groups = p.groups;
  const int64_t ws = 16 * a.gs / kSpan;  // spans per window
  __m512 acc[NR][MR];
  for (int j = 0; j < NR; ++j)
    for (int r = 0; r < MR; ++r) acc[j][r] = _mm512_setzero_ps();
  for (int64_t w0 = 0, sp0 = 0; w0 < groups; w0 += 16, sp0 += ws) {
    const __mmask16 gm =
        groups - w0 >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (groups - w0)) - 1);
    __m512 sd[NR][MR];
    for (int j = 0; j < NR; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(ps.spf[j] + static_cast<uintptr_t>(w0 * kElem)),
                   _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(ps.bpf[j] + static_cast<uintptr_t>(w0 * kElem)),
                   _MM_HINT_T0);
      const __m512 sv = load16<ST>(ps.sraw[j], w0, gm), bv = load16<ST>(ps.braw[j], w0, gm);
      for (int r = 0; r < MR; ++r) {
        const int64_t row = a.r0 + r;
        sd[j][r] = _mm512_mul_ps(sv, _mm512_maskz_loadu_ps(gm, p.dx.data() + row * groups + w0));
        acc[j][r] =
            _mm512_fmadd_ps(bv, _mm512_loadu_ps(p.xsum.data() + row * p.gp + w0), acc[j][r]);
      }
    }
    const int64_t sp1 = std::min(spans, sp0 + ws);
    for (int64_t sp = sp0; sp < sp1; ++sp) {
      const __m512i idx = _mm512_loadu_si512(p.win.data() + (sp - sp0) * 16);
      __m512i x0[MR], x1[MR];
      for (int r = 0; r < MR; ++r) {
        const int8_t* xr = xq + r * kp + sp * kSpan;
        x0[r] = _mm512_loadu_si512(xr);
        if (BITS == 4) x1[r] = _mm512_loadu_si512(xr + 64);
      }
      const bool tail = sp >= full;
      for (int j = 0; j < NR; ++j) {
        const uint8_t* wp = tail ? ps.tail[j] : ps.w[j] + sp * kStep;
        _mm_prefetch(reinterpret_cast<const char*>(ps.pf[j] + static_cast<uintptr_t>(sp * kStep)),
                     _MM_HINT_T0);
        const __m512i v = _mm512_loadu_si512(wp);
        __m512i lo = v, hi = v;
        if (BITS == 4) {
          lo = _mm512_and_si512(v, nib);
          hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
        }
        for (int r = 0; r < MR; ++r) {
          __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, x0[r]);
          if (BITS == 4) d = _mm512_dpbusd_epi32(d, hi, x1[r]);
          acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(idx, sd[j][r]),
                                      acc[j][r]);
        }
      }
    }
  }
  for (int j = 0; j < ps.nr; ++j)
    for (int r = 0; r < MR; ++r)
      a.out[(a.r0 + r) * a.n + a.j0 + j] = _mm512_reduce_add_ps(acc[j][r]);
}

/// Sums of 16 vectors, r[i] = sum of a[i]'s lanes: a transpose-and-add tree (46 instructions for
/// 16 rows instead of ~9 each). Every lane is summed in the same order as GCC's
/// _mm512_reduce_add_ps ((l0 + l2) + (l1 + l3) over 128-bit quarters, then (q0 + q2) + (q1 + q3)),
/// so a row's result does not depend on whether it was reduced here or alone.
INGOT_I8_VNNI INGOT_I8_INLINE __m512 reduce16(const __m512* a) {
  __m512 b[8], c[4], g[2];
  for (int i = 0; i < 8; ++i)  // quarters: [x.0 + x.2, x.1 + x.3, y.0 + y.2, y.1 + y.3]
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
  for (int i = 0; i < 4; ++i)  // quarter t: the 4 partial sums of a[4i + t]
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  for (int i = 0; i < 2; ++i)  // quarter t: [e0 + e2, f0 + f2, e1 + e3, f1 + f3]
    g[i] = _mm512_add_ps(_mm512_unpacklo_ps(c[2 * i], c[2 * i + 1]),
                         _mm512_unpackhi_ps(c[2 * i], c[2 * i + 1]));
  // Lane 4t + p holds the sum of a[4p + t].
  const __m512 h =
      _mm512_add_ps(_mm512_shuffle_ps(g[0], g[1], 0x44), _mm512_shuffle_ps(g[0], g[1], 0xEE));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, h);
}

/// Decode (one row of x, whole spans only): weight rows [j0, j1) one after another, each a single
/// sequential stream, in one call (no per-row setup), the weights prefetched kPrefetch bytes
/// ahead (the rows of a decode GEMV are short, 0.5-4 KB: prefetching the next row's span, as
/// kernel_vnni does, is too close to hide DRAM latency; Zen 4, Qwen3-0.6B 4-bit, 1 thread: +12%
/// decode), the row sums reduced 16 at a time. Same arithmetic per row as kernel_vnni<BITS, 1,
/// ST, 1>, so the same bytes.
constexpr int64_t kPrefetch = 2048;

template <int BITS, QScale ST>
INGOT_I8_VNNI void decode_rows_vnni(const XPrep& p, const uint8_t* wb, int64_t row_bytes,
                                    const char* scales, const char* biases, int gs, int64_t j0,
                                    int64_t j1, float* out) {
  const __m512i nib = _mm512_set1_epi8(0x0F);
  const int8_t* xq = p.q.data();
  constexpr int64_t kSpan = BITS == 4 ? 128 : 64, kStep = kSpan * BITS / 8;
  constexpr int64_t kElem = ST == QScale::f32 ? 4 : 2;
  const int64_t spans = p.spans, groups = p.groups, sbytes = groups * kElem;
  const int64_t ws = 16 * gs / kSpan;  // spans per window
  const float* dx = p.dx.data();
  const float* xsum = p.xsum.data();
  __m512 sums[16];
  int held = 0;
  for (int64_t j = j0; j < j1; ++j) {
    const uint8_t* wr = wb + j * row_bytes;
    const char* sr = scales + j * sbytes;
    const char* br = biases + j * sbytes;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t w0 = 0, sp0 = 0; w0 < groups; w0 += 16, sp0 += ws) {
      const __mmask16 gm =
          groups - w0 >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (groups - w0)) - 1);
      const __m512 sd = _mm512_mul_ps(load16<ST>(sr, w0, gm), _mm512_maskz_loadu_ps(gm, dx + w0));
      acc = _mm512_fmadd_ps(load16<ST>(br, w0, gm), _mm512_loadu_ps(xsum + w0), acc);
      const int64_t sp1 = std::min(spans, sp0 + ws);
      for (int64_t sp = sp0; sp < sp1; ++sp) {
        const __m512i idx = _mm512_loadu_si512(p.win.data() + (sp - sp0) * 16);
        const int8_t* xs = xq + sp * kSpan;
        const uint8_t* wp = wr + sp * kStep;
        _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetch), _MM_HINT_T0);
        const __m512i v = _mm512_loadu_si512(wp);
        __m512i d;
        if constexpr (BITS == 4) {
          d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v, nib),
                                  _mm512_loadu_si512(xs));
          d = _mm512_dpbusd_epi32(d, _mm512_and_si512(_mm512_srli_epi16(v, 4), nib),
                                  _mm512_loadu_si512(xs + 64));
        } else {
          d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, _mm512_loadu_si512(xs));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(idx, sd), acc);
      }
    }
    sums[held++] = acc;
    if (held == 16) {
      _mm512_storeu_ps(out + j - 15, reduce16(sums));
      held = 0;
    }
  }
  if (held > 0) {
    for (int i = held; i < 16; ++i) sums[i] = _mm512_setzero_ps();
    _mm512_mask_storeu_ps(out + j1 - held, static_cast<__mmask16>((1u << held) - 1),
                          reduce16(sums));
  }
}

using DecodeFn = void (*)(const XPrep&, const uint8_t*, int64_t, const char*, const char*, int,
                          int64_t, int64_t, float*);

template <int BITS>
INGOT_I8_AVX2 void kernel_avx2(const Pass& ps, const KArgs& a) {
  const XPrep& p = *a.x;
  int32_t idx_arr[16];
  lane_groups(p.span, a.gs, idx_arr);
  const __m256i sidx0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx_arr));
  const __m256i sidx1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx_arr + 8));
  const __m256i nib = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  constexpr int64_t kSpan = BITS == 4 ? 128 : 64, kStep = kSpan * BITS / 8;
  const int gshift = __builtin_ctz(static_cast<unsigned>(a.gs));
  const int64_t sstride = p.gp + 16;
  for (int64_t r = a.r0; r < a.r0 + a.mr; ++r) {
    fold_steps(ps, p, r, 1);
    const int8_t* xq = p.q.data() + r * p.kp;
    __m256 acc[kNR];
    for (int j = 0; j < kNR; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t sp = 0; sp < p.spans; ++sp) {
      const int64_t g0 = (sp * kSpan) >> gshift;
      const int8_t* xs = xq + sp * kSpan;
      const bool tail = sp >= p.full;
      for (int j = 0; j < kNR; ++j) {
        const uint8_t* wp = tail ? ps.tail[j] : ps.w[j] + sp * kStep;
        if (r == a.r0)
          _mm_prefetch(reinterpret_cast<const char*>(ps.pf[j] + static_cast<uintptr_t>(sp * kStep)),
                       _MM_HINT_T0);
        const __m256 sv = _mm256_loadu_ps(ps.sd + j * sstride + g0);
        __m256i d0, d1;
        if (BITS == 4) {
          const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp));
          const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 32));
          const __m256i p0 = _mm256_add_epi16(
              _mm256_maddubs_epi16(_mm256_and_si256(v0, nib),
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs))),
              _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), nib),
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + 64))));
          const __m256i p1 = _mm256_add_epi16(
              _mm256_maddubs_epi16(_mm256_and_si256(v1, nib),
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + 32))),
              _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), nib),
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + 96))));
          d0 = _mm256_madd_epi16(p0, ones);
          d1 = _mm256_madd_epi16(p1, ones);
        } else {
          __m256i pr[4];
          for (int u = 0; u < 4; ++u)
            pr[u] = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(
                                          reinterpret_cast<const __m128i*>(wp + 16 * u))),
                                      _mm256_cvtepi8_epi16(_mm_loadu_si128(
                                          reinterpret_cast<const __m128i*>(xs + 16 * u))));
          d0 = _mm256_add_epi32(pr[0], pr[1]);
          d1 = _mm256_add_epi32(pr[2], pr[3]);
        }
        acc[j] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_permutevar8x32_ps(sv, sidx0), acc[j]);
        acc[j] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_permutevar8x32_ps(sv, sidx1), acc[j]);
      }
    }
    const float* xsum = p.xsum.data() + r * p.gp;
    for (int j = 0; j < kNR; ++j)
      for (int64_t g = 0; g < p.gp; g += 8)
        acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(ps.b[j] + g), _mm256_loadu_ps(xsum + g), acc[j]);
    for (int j = 0; j < ps.nr; ++j) a.out[r * a.n + a.j0 + j] = hsum8(acc[j]);
  }
}

using KernelFn = void (*)(const Pass&, const KArgs&);
/// Rows [r0, r1) of x into an XPrep laid out by prep_layout.
using PrepFn = void (*)(const float*, int64_t, int64_t, int64_t, int, int, XPrep&);
using ConvFn = void (*)(const void*, QScale, int64_t, float*);

struct Kernels {
  PrepFn prep;
  ConvFn conv;    // nullptr: the kernels read scales and biases as stored
  KernelFn k[3];  // by rows of x per call: 1, 2 (the portable and AVX2 ones take any count)
  int mr_max;
  /// VNNI: the same kernels on one weight row per pass (decode; null elsewhere).
  KernelFn k1[3] = {nullptr, nullptr, nullptr};
  /// VNNI: one row of x over a run of weight rows (decode without a partial span; null
  /// elsewhere).
  DecodeFn decode = nullptr;
};

template <int BITS, QScale ST>
Kernels vnni_kernels_of() {
  return {prep_avx512,
          nullptr,
          {nullptr, kernel_vnni<BITS, 1, ST, kNR>, kernel_vnni<BITS, 2, ST, kNR>},
          2,
          {nullptr, kernel_vnni<BITS, 1, ST, 1>, kernel_vnni<BITS, 2, ST, 1>},
          decode_rows_vnni<BITS, ST>};
}

template <int BITS>
Kernels vnni_kernels(QScale st) {
  switch (st) {
    case QScale::f32:
      return vnni_kernels_of<BITS, QScale::f32>();
    case QScale::bf16:
      return vnni_kernels_of<BITS, QScale::bf16>();
    default:
      return vnni_kernels_of<BITS, QScale::f16>();
  }
}

Kernels kernels(Int8Gemv kern, int bits, QScale st) {
  switch (kern) {
    case Int8Gemv::avx512vnni:
      return bits == 4 ? vnni_kernels<4>(st) : vnni_kernels<8>(st);
    case Int8Gemv::avx2: {
      const KernelFn f = bits == 4 ? kernel_avx2<4> : kernel_avx2<8>;
      return {prep_avx2, to_f32_avx2, {nullptr, f, f}, 2};
    }
    default:
      return {prep_scalar, to_f32_scalar, {nullptr, kernel_portable, kernel_portable}, 2};
  }
}

}  // namespace

bool int8_gemv_supported(Int8Gemv kern) {
  switch (kern) {
    case Int8Gemv::avx512vnni:
      return hardware_isa() == Isa::avx512 && hardware_vnni();
    case Int8Gemv::avx2:
      return hardware_isa() >= Isa::avx2;
    default:
      return true;
  }
}

namespace {
/// -1: the default (on unless INGOT_CPU_INT8=0); 0 / 1: forced by set_int8_decode.
std::atomic<int> g_int8_decode{-1};
}  // namespace

void set_int8_decode(bool on) {
  g_int8_decode.store(on ? 1 : 0, std::memory_order_relaxed);
}

void reset_int8_decode() {
  g_int8_decode.store(-1, std::memory_order_relaxed);
}

bool int8_gemv_active(Int8Gemv& kern) {
  // On by default (quantized.cpp runs the kernel only where it measured faster than the float32
  // path of the same level).
  const int forced = g_int8_decode.load(std::memory_order_relaxed);
  if (forced == 0) return false;
  if (forced < 0 && !env::cpu_int8()) return false;
  const Isa isa = active_isa();
  if (isa == Isa::avx512 && hardware_vnni())
    kern = Int8Gemv::avx512vnni;
  else if (isa >= Isa::avx2)
    kern = Int8Gemv::avx2;
  else
    kern = Int8Gemv::portable;
  return true;
}

void quantized_gemv_int8(Int8Gemv kern, const float* x, int64_t m, int64_t k, const uint32_t* w,
                         const void* scales, const void* biases, QScale st, int64_t n, int gs,
                         int bits, float* out) {
  if (!int8_gemv_supported(kern))
    raise<Unsupported>("[quantized_gemv_int8] this CPU cannot run the {} kernel",
                       kern == Int8Gemv::avx2 ? "avx2" : "avx512vnni");
  if ((bits != 4 && bits != 8) || (gs != 32 && gs != 64 && gs != 128) || k % gs != 0)
    raise<InvalidArgument>("[quantized_gemv_int8] bits {} group size {} k {} not supported", bits,
                           gs, k);
  if (m <= 0 || n <= 0) return;
  const Kernels ks = kernels(kern, bits, st);
  XPrep xp;
  prep_layout(xp, m, k, gs, bits);
  parallel_for(m, std::max<int64_t>(1, 16384 / k),
               [&](int64_t r0, int64_t r1) { ks.prep(x, r0, r1, k, gs, bits, xp); });
  if (kern == Int8Gemv::avx512vnni) {
    // Lane l of span i of a window: group (i * span + l * span / 16) / gs of the window.
    const int64_t ws = 16 * gs / xp.span;
    xp.win.resize(static_cast<size_t>(ws * 16));
    for (int64_t i = 0; i < ws; ++i)
      for (int64_t l = 0; l < 16; ++l)
        xp.win[i * 16 + l] = static_cast<int32_t>((i * xp.span + l * (xp.span / 16)) / gs);
  }
  const int64_t groups = k / gs, row_bytes = k * bits / 8;
  const int64_t span_bytes = xp.span * bits / 8;  // bytes of a whole span
  const int64_t tail_off = xp.full * span_bytes, tail_bytes = row_bytes - tail_off;
  const uint8_t* wb = reinterpret_cast<const uint8_t*>(w);
  const size_t elem = st == QScale::f32 ? 4 : 2;
  // Weight rows per pass: decode on the VNNI kernel takes one (a single sequential stream of
  // weights: 2048 x 8192 on Zen 4, 1 thread, 2.2x the rate of 4 interleaved rows at 8-bit, 2.1x
  // at 4-bit); prefill and the other kernels take kNR, which share the x codes across rows.
  const bool single = m < 16 && ks.k1[1] != nullptr;
  const int nrp = single ? 1 : kNR;
  const KernelFn* kfn = single ? ks.k1 : ks.k;
  const int64_t blocks = (n + nrp - 1) / nrp;
  // Blocks of nrp rows handed out in chunks of ~128 KB of weights (decode) or of the prefill
  // batch below (~256 KB) to whichever thread asks next (parallel_for_dynamic: a worker that
  // wakes late takes fewer chunks instead of delaying the caller). Each output comes from the
  // same kernel call whatever the split, so the result does not depend on the thread count.
  const int64_t chunk = std::max<int64_t>(1, (int64_t{m < 16 ? 1 : 2} << 17) / (nrp * row_bytes));
  if (m == 1 && single && ks.decode != nullptr && tail_bytes == 0) {
    parallel_for_dynamic(blocks, chunk, [&](int64_t b0, int64_t b1) {
      ks.decode(xp, wb, row_bytes, static_cast<const char*>(scales),
                static_cast<const char*>(biases), gs, b0, b1, out);
    });
    return;
  }
  parallel_for_dynamic(blocks, chunk, [&](int64_t b0, int64_t b1) {
    const int64_t sstride = xp.gp + 16;
    std::vector<float> sb(static_cast<size_t>(kNR * sstride), 0.0f),
        bb(static_cast<size_t>(kNR * xp.gp), 0.0f);
    std::vector<float> sd(static_cast<size_t>(kNR * 2 * sstride), 0.0f);
    alignas(64) uint8_t tails[kNR][64] = {};
    Pass ps;
    ps.sd = sd.data();
    for (int j = 0; j < kNR; ++j) {
      ps.s[j] = sb.data() + j * sstride;
      ps.b[j] = bb.data() + j * xp.gp;
      ps.tail[j] = tails[j];
    }
    // Many rows of x (prefill): batches of weight blocks (<= 256 KB) meet chunks of x codes
    // (<= 64 KB) so both stay in L2; the decode case is one batch and one chunk.
    const int64_t batch = std::max<int64_t>(1, (int64_t{1} << 18) / (nrp * row_bytes));
    const int64_t chunk = std::max<int64_t>(2, ((int64_t{1} << 16) / xp.kp) & ~int64_t{1});
    for (int64_t bb0 = b0; bb0 < b1; bb0 += batch) {
      const int64_t bb1 = std::min(b1, bb0 + batch);
      for (int64_t m0 = 0; m0 < m; m0 += chunk) {
        const int64_t m1 = std::min(m, m0 + chunk);
        for (int64_t blk = bb0; blk < bb1; ++blk) {
          const int64_t j0 = blk * nrp;
          ps.nr = static_cast<int>(std::min<int64_t>(nrp, n - j0));
          for (int j = 0; j < nrp; ++j) {
            const int64_t row = j0 + std::min(j, ps.nr - 1);
            ps.w[j] = wb + row * row_bytes;
            // The same row of the next block (this one for the last): the weights stream
            // through L1 one block ahead of the kernel.
            const int64_t next = blk + 1 < b1 ? row + nrp : row;
            ps.pf[j] = reinterpret_cast<uintptr_t>(wb) + static_cast<uintptr_t>(next * row_bytes);
            ps.sraw[j] = static_cast<const char*>(scales) + row * groups * elem;
            ps.braw[j] = static_cast<const char*>(biases) + row * groups * elem;
            ps.spf[j] =
                reinterpret_cast<uintptr_t>(scales) + static_cast<uintptr_t>(next * groups * elem);
            ps.bpf[j] =
                reinterpret_cast<uintptr_t>(biases) + static_cast<uintptr_t>(next * groups * elem);
            if (ks.conv) {
              ks.conv(ps.sraw[j], st, groups, sb.data() + j * sstride);
              ks.conv(ps.braw[j], st, groups, bb.data() + j * xp.gp);
            }
            if (tail_bytes > 0)
              std::memcpy(tails[j], ps.w[j] + tail_off, static_cast<size_t>(tail_bytes));
          }
          for (int64_t r0 = m0; r0 < m1; r0 += ks.mr_max) {
            const int64_t mr = std::min<int64_t>(ks.mr_max, m1 - r0);
            kfn[mr](ps, {&xp, r0, mr, n, j0, gs, bits, out});
          }
        }
      }
    }
  });
}

}  // namespace ingot::cpu
