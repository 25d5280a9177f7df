// AVX512_BF16 GEMM (see gemm_bf16.h). The micro-kernel computes a tile of C^T: MR columns of
// C (rows of W) x 16*NV rows of C, as MR x NV zmm float32 accumulators; per k-pair it loads NV
// zmm of packed A pairs (16 rows each) and broadcasts one bf16 pair of each of the MR W rows
// (vdpbf16ps multiplies a pair of a row of W by a pair of 16 rows of A at once).
// Cache blocking, per parallel_for tile of MC rows x NC columns:
//   K block of KC -> 16*NV-row strip of packed A (L1) -> MR rows of W (L2) -> micro-kernel,
// with the tile's float32 sums (transposed) in a per-thread buffer across K blocks, transposed
// back in 16 x 16 blocks at the end. gemm_bf16_avx512_panels runs the same blocking with W
// written per K block into a per-thread panel by a callback (quantized prefill dequantizes
// there), its tiles spanning all rows so that each panel is made once per call.
// GCC 12 flags the _mm512_undefined_* inside its own intrinsics headers as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/gemm_kernels.h"
#include "util/env.h"
#include "util/thread_pool.h"

#define INGOT_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))

namespace ingot::cpu {
namespace {

// Block sizes (k values, rows, columns), measured on Zen 5 within noise of 256..1024 / 128..256
// / 120..480: a 64-row strip of packed A over KC (64 KB) streams from L1/L2, a tile's W block
// (NC x KC, 240 KB) stays in L2 across strips.
constexpr int64_t kKc = 512;                          // even
constexpr int64_t kMc = 192;                          // multiple of 16
constexpr int64_t kNc = 240;                          // divisible by every kMrOf
constexpr int kMaxNv = 4;                             // zmm of A rows (16 each) per micro-kernel
constexpr int kMrOf[kMaxNv + 1] = {0, 16, 12, 8, 6};  // W rows per micro-kernel, by NV

inline uint32_t load_u32(const uint16_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// Transposes 16 rows of 16 32-bit elements in place (r[i] element j -> r[j] element i).
INGOT_BF16 inline void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // u[4i + j], 128-bit lane L: element 4L + j of rows 4i .. 4i + 3.
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
    const __m512i w0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);
    const __m512i v1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
    const __m512i w1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
    r[j] = _mm512_shuffle_i32x4(v0, v1, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(v0, v1, 0xdd);
    r[4 + j] = _mm512_shuffle_i32x4(w0, w1, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(w0, w1, 0xdd);
  }
}

/// Packs `rows` (<= 16) rows of k-contiguous bf16 (row i at src + i * ld, k values [0, k)) as
/// k-pairs of 16 lanes: dst[p * 16 + i] = (src_i[2p], src_i[2p + 1]), zero padded to 16 lanes
/// and an even k.
INGOT_BF16 void pack16_rows(const uint16_t* src, int64_t ld, int64_t rows, int64_t k,
                            uint32_t* dst) {
  const int64_t kp = (k + 1) / 2;
  for (int64_t p0 = 0; p0 < kp; p0 += 16) {
    const int64_t vals = std::min<int64_t>(32, k - 2 * p0);
    const __mmask32 m = vals == 32 ? ~__mmask32(0) : static_cast<__mmask32>((1u << vals) - 1);
    __m512i r[16];
    for (int64_t i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_epi16(m, src + i * ld + 2 * p0) : _mm512_setzero_si512();
    transpose16(r);
    const int64_t np = std::min<int64_t>(16, kp - p0);
    for (int64_t e = 0; e < np; ++e) _mm512_storeu_si512(dst + (p0 + e) * 16, r[e]);
  }
}

/// Packs A ([M, K], element (m, k) at a[m * sa_m + k * sa_k]) into 16-row panels of k-pairs:
/// panel q at dst + q * (K + 1) / 2 * 16.
void pack_a(const uint16_t* a, int64_t sa_m, int64_t sa_k, int64_t M, int64_t K, uint32_t* dst) {
  const int64_t panels = (M + 15) / 16, kp = (K + 1) / 2;
  parallel_for(panels, std::max<int64_t>(1, 4096 / std::max<int64_t>(K, 1)),
               [&](int64_t q0, int64_t q1) {
                 std::vector<uint16_t> row;
                 for (int64_t q = q0; q < q1; ++q) {
                   const int64_t rows = std::min<int64_t>(16, M - q * 16);
                   uint32_t* d = dst + q * kp * 16;
                   if (sa_k == 1) {
                     pack16_rows(a + q * 16 * sa_m, sa_m, rows, K, d);
                     continue;
                   }
                   row.assign(static_cast<size_t>(16 * K), 0);  // gather strided rows first
                   for (int64_t i = 0; i < rows; ++i)
                     for (int64_t k = 0; k < K; ++k)
                       row[i * K + k] = a[(q * 16 + i) * sa_m + k * sa_k];
                   pack16_rows(row.data(), K, rows, K, d);
                 }
               });
}

/// copy_w_rows for B contiguous over n ([K, N] rows ld apart): 16 k-pairs x 16 columns at a
/// time, rows 2p and 2p + 1 interleaved into pairs, then transposed to rows of B^T.
INGOT_BF16 void copy_w_rows_kn(const uint16_t* b, int64_t ld, int64_t K, int64_t n0, int64_t n1,
                               uint16_t* dst) {
  const int64_t kp = (K + 1) / 2, kp2 = K + K % 2;
  for (int64_t n = n0; n < n1; n += 16) {
    const int64_t cols = std::min<int64_t>(16, n1 - n);
    const __mmask16 cm = static_cast<__mmask16>((1u << cols) - 1);
    for (int64_t p0 = 0; p0 < kp; p0 += 16) {
      const int64_t np = std::min<int64_t>(16, kp - p0);
      __m512i r[16];
      for (int64_t e = 0; e < 16; ++e) {
        const int64_t k = 2 * (p0 + e);
        const __m512i lo = k < K
                               ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(cm, b + k * ld + n))
                               : _mm512_setzero_si512();
        const __m512i hi =
            k + 1 < K ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(cm, b + (k + 1) * ld + n))
                      : _mm512_setzero_si512();
        r[e] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
      }
      transpose16(r);  // r[c]: the 16 pairs of column n + c
      const __mmask16 pm = static_cast<__mmask16>((1u << np) - 1);
      for (int64_t c = 0; c < cols; ++c)
        _mm512_mask_storeu_epi32(dst + (n + c) * kp2 + 2 * p0, pm, r[c]);
    }
  }
}

/// Copies B (element (k, n) at b[k * sb_k + n * sb_n]) as rows of W: dst[n * kp2 + k] with
/// kp2 = K rounded up to even, zero padded.
void copy_w_rows(const uint16_t* b, int64_t sb_k, int64_t sb_n, int64_t K, int64_t N,
                 uint16_t* dst) {
  const int64_t kp2 = K + K % 2;
  constexpr int64_t kT = 64;  // square tiles: both strides stay within a few pages
  parallel_for((N + kT - 1) / kT, 1, [&](int64_t t0, int64_t t1) {
    if (sb_n == 1) return copy_w_rows_kn(b, sb_k, K, t0 * kT, std::min(N, t1 * kT), dst);
    for (int64_t n0 = t0 * kT; n0 < std::min(N, t1 * kT); n0 += kT) {
      const int64_t n1 = std::min(N, n0 + kT);
      for (int64_t k0 = 0; k0 < K; k0 += kT) {
        const int64_t k1 = std::min(K, k0 + kT);
        for (int64_t n = n0; n < n1; ++n)
          for (int64_t k = k0; k < k1; ++k) dst[n * kp2 + k] = b[k * sb_k + n * sb_n];
      }
      if (kp2 > K)
        for (int64_t n = n0; n < n1; ++n) dst[n * kp2 + K] = 0;
    }
  });
}

/// ct[i * ldc + 16 j + l] (+)= sum_p w_i[2p : 2p + 2] . a_{16 j + l}[2p : 2p + 2] for i < MR,
/// j < NV: w rows ldw apart, a as NV 16-row panels vstride apart.
template <int MR, int NV>
INGOT_BF16 void micro(int64_t kp, const uint16_t* w, int64_t ldw, const uint32_t* a,
                      int64_t vstride, float* ct, int64_t ldc, bool load_c) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      acc[i][j] = load_c ? _mm512_loadu_ps(ct + i * ldc + 16 * j) : _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh av[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      av[j] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(a + j * vstride + p * 16));
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512bh wv = reinterpret_cast<__m512bh>(
          _mm512_set1_epi32(static_cast<int>(load_u32(w + i * ldw + 2 * p))));
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv, av[j]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(ct + i * ldc + 16 * j, acc[i][j]);
}

using MicroFn = void (*)(int64_t, const uint16_t*, int64_t, const uint32_t*, int64_t, float*,
                         int64_t, bool);

template <int NV, int... R>
constexpr std::array<MicroFn, 17> micro_table(std::integer_sequence<int, R...>) {
  return {nullptr, micro<R + 1, NV>...};
}
/// kMicro[NV][MR]: MR in [1, kMrOf[NV]].
const std::array<MicroFn, 17> kMicro[kMaxNv + 1] = {
    {},
    micro_table<1>(std::make_integer_sequence<int, kMrOf[1]>()),
    micro_table<2>(std::make_integer_sequence<int, kMrOf[2]>()),
    micro_table<3>(std::make_integer_sequence<int, kMrOf[3]>()),
    micro_table<4>(std::make_integer_sequence<int, kMrOf[4]>())};

/// rows[j * ldr + i] = ct[i * ldc + j] for i < ni, j < mj (16 x 16 blocks; ct holds >= ni
/// rounded up to 16 rows).
INGOT_BF16 void untranspose(const float* ct, int64_t ldc, int64_t ni, int64_t mj, float* rows,
                            int64_t ldr) {
  for (int64_t i0 = 0; i0 < ni; i0 += 16)
    for (int64_t j0 = 0; j0 < mj; j0 += 16) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(ct + (i0 + i) * ldc + j0);
      transpose16(r);
      const int64_t nj = std::min<int64_t>(16, mj - j0);
      for (int64_t j = 0; j < nj; ++j) _mm512_storeu_si512(rows + (j0 + j) * ldr + i0, r[j]);
    }
}

/// A per-thread scratch buffer of at least n elements, kept between calls up to 8 MB (larger
/// requests get a buffer of their own in `own`).
template <typename T>
T* scratch(std::vector<T>& keep, std::unique_ptr<T[]>& own, size_t n) {
  if (n * sizeof(T) > (size_t{8} << 20)) {
    own.reset(new T[n]);
    return own.get();
  }
  if (keep.size() < n) keep.resize(n);
  return keep.data();
}

}  // namespace

INGOT_BF16 void round_to_bf16_avx512(const float* src, uint16_t* dst, int64_t n) {
  const __m512i exp_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  int64_t i = 0;
  for (; i < n; i += 16) {
    const __mmask16 m =
        n - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512i u = _mm512_maskz_loadu_epi32(m, src + i);
    // Round to nearest even on the bits; NaN keeps its top bits and becomes quiet.
    const __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(u,
                         _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), one))),
        16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, exp_mask), inf);
    const __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, q)));
  }
}

bool has_avx512_bf16() {
  static const bool v = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  }();
  return v;
}

bool bf16_gemm_enabled() {
  return has_avx512_bf16() && active_isa() == Isa::avx512 &&
         env::get_int("INGOT_CPU_BF16_GEMM", 1) != 0;
}

namespace {

// Column tiles of a GEMM with mt row tiles and N columns: nc <= kNc columns each (a multiple of
// 16), nt of them, ncp = nc rounded up to 16. parallel_for hands each thread one contiguous run
// of tiles: with few tiles, their count becomes a multiple of the thread count (narrower, equal
// tiles) so no thread idles at the end.
struct ColumnTiles {
  int64_t nc, nt, ncp;
};

ColumnTiles column_tiles(int64_t N, int64_t mt) {
  int64_t nt = (N + kNc - 1) / kNc;
  const int64_t threads = pool_threads();
  if (mt * nt < 8 * threads)
    while ((mt * nt) % threads != 0 && (N + nt) / (nt + 1) >= 16) ++nt;
  const int64_t nc = std::min(kNc, ((N + nt - 1) / nt + 15) / 16 * 16);
  return {nc, (N + nc - 1) / nc, (nc + 15) / 16 * 16};
}

// ct (C^T, [n][mc]) of one tile's `strips` 16-row strips (packed A from a strip) x nj columns
// (W rows at w, ldw apart, from column k0 of the K block) over kpc k pairs; accumulates into
// ct when k0 > 0.
void tile_block(const uint16_t* w, int64_t ldw, const uint32_t* a, int64_t vstride, int64_t strips,
                int64_t nj, int64_t kpc, int64_t k0, float* ct, int64_t mc) {
  for (int64_t s = 0; s < strips; s += kMaxNv) {
    const int nv = static_cast<int>(std::min<int64_t>(kMaxNv, strips - s));
    const uint32_t* ap = a + s * vstride;
    const int mr = kMrOf[nv];
    for (int64_t n = 0; n < nj; n += mr) {
      const int r = static_cast<int>(std::min<int64_t>(mr, nj - n));
      kMicro[nv][r](kpc, w + n * ldw, ldw, ap, vstride, ct + n * mc + s * 16, mc, k0 > 0);
    }
  }
}

}  // namespace

void gemm_bf16_avx512(const Bf16Gemm& g) {
  const int64_t M = g.M, N = g.N, K = g.K, kp = (K + 1) / 2, vstride = kp * 16;
  // A packed per call (O(MK)); W = B^T used in place when its rows are k-contiguous pairs.
  thread_local std::vector<uint32_t> a_keep;
  std::unique_ptr<uint32_t[]> a_own;
  uint32_t* const a_pack = scratch(a_keep, a_own, static_cast<size_t>((M + 15) / 16 * vstride));
  pack_a(g.a, g.sa_m, g.sa_k, M, K, a_pack);
  const uint16_t* w = g.b;
  int64_t ldw = g.sb_n;
  std::unique_ptr<uint16_t[]> w_copy;
  if (g.sb_k != 1 || K % 2 != 0) {
    w_copy.reset(new uint16_t[static_cast<size_t>(N * (K + K % 2))]);
    copy_w_rows(g.b, g.sb_k, g.sb_n, K, N, w_copy.get());
    w = w_copy.get();
    ldw = K + K % 2;
  }
  // Tiles of <= kMc rows (balanced; a multiple of 64 so strips use the 4-panel kernel, or of
  // 16 when that would exceed kMc) x nc <= kNc columns.
  const int64_t mblocks = (M + kMc - 1) / kMc;
  const int64_t rows_per = (M + mblocks - 1) / mblocks;
  int64_t mc = (rows_per + 63) / 64 * 64;
  if (mc > kMc) mc = (rows_per + 15) / 16 * 16;
  const int64_t mt = (M + mc - 1) / mc;
  // Plain names, not a structured binding: clang 14 cannot capture those in the lambda below.
  const ColumnTiles tiles = column_tiles(N, mt);
  const int64_t nc = tiles.nc, nt = tiles.nt, ncp = tiles.ncp;
  parallel_for(mt * nt, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> ct_keep, rows_keep;
    std::unique_ptr<float[]> ct_own, rows_own;
    float* const ct = scratch(ct_keep, ct_own, static_cast<size_t>(ncp * mc));  // C^T: [n][m]
    float* const rows = scratch(rows_keep, rows_own, static_cast<size_t>(mc * ncp));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i0 = (t / nt) * mc, j0 = (t % nt) * nc;
      const int64_t mi = std::min(mc, M - i0), nj = std::min(nc, N - j0);
      const int64_t strips = (mi + 15) / 16;
      for (int64_t k0 = 0; k0 < K; k0 += kKc) {
        const int64_t kc = std::min(kKc, K - k0), kpc = (kc + 1) / 2;
        tile_block(w + j0 * ldw + k0, ldw, a_pack + (i0 / 16) * vstride + (k0 / 2) * 16, vstride,
                   strips, nj, kpc, k0, ct, mc);
      }
      untranspose(ct, mc, nj, mi, rows, ncp);
      for (int64_t i = 0; i < mi; ++i) g.store(g.ctx, i0 + i, j0, rows + i * ncp, nj);
    }
  });
}

void gemm_bf16_avx512_panels(const Bf16PanelGemm& g) {
  const int64_t M = g.M, N = g.N, K = g.K, kp = K / 2, vstride = kp * 16;
  thread_local std::vector<uint32_t> a_keep;
  std::unique_ptr<uint32_t[]> a_own;
  uint32_t* const a_pack = scratch(a_keep, a_own, static_cast<size_t>((M + 15) / 16 * vstride));
  pack_a(g.a, g.sa_m, g.sa_k, M, K, a_pack);
  // Tiles of all rows (passes of <= kPanelGemmRows, balanced, a multiple of 16) x nc <= kNc
  // columns, the column count chosen as in gemm_bf16_avx512.
  const int64_t mblocks = (M + kPanelGemmRows - 1) / kPanelGemmRows;
  const int64_t mc = ((M + mblocks - 1) / mblocks + 15) / 16 * 16;
  const int64_t mt = (M + mc - 1) / mc;
  // Plain names, not a structured binding: clang 14 cannot capture those in the lambda below.
  const ColumnTiles tiles = column_tiles(N, mt);
  const int64_t nc = tiles.nc, nt = tiles.nt, ncp = tiles.ncp;
  const int64_t ldp = kKc + 32;  // panel rows (bf16 values), 64 bytes off a 1 KB multiple
  parallel_for(mt * nt, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> ct_keep, rows_keep;
    thread_local std::vector<uint16_t> w_keep;
    std::unique_ptr<float[]> ct_own, rows_own;
    std::unique_ptr<uint16_t[]> w_own;
    float* const ct = scratch(ct_keep, ct_own, static_cast<size_t>(ncp * mc));  // C^T: [n][m]
    float* const rows = scratch(rows_keep, rows_own, static_cast<size_t>(16 * ncp));
    uint16_t* const wp = scratch(w_keep, w_own, static_cast<size_t>(ncp * ldp));  // W panel
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i0 = (t / nt) * mc, j0 = (t % nt) * nc;
      const int64_t mi = std::min(mc, M - i0), nj = std::min(nc, N - j0);
      const int64_t strips = (mi + 15) / 16;
      for (int64_t k0 = 0; k0 < K; k0 += kKc) {
        const int64_t kc = std::min(kKc, K - k0), kpc = kc / 2;
        g.panel(g.panel_ctx, j0, nj, k0, kc, wp, ldp);
        tile_block(wp, ldp, a_pack + (i0 / 16) * vstride + (k0 / 2) * 16, vstride, strips, nj, kpc,
                   k0, ct, mc);
      }
      for (int64_t r0 = 0; r0 < mi; r0 += 16) {
        const int64_t rr = std::min<int64_t>(16, mi - r0);
        untranspose(ct + r0, mc, nj, rr, rows, ncp);
        for (int64_t i = 0; i < rr; ++i) g.store(g.ctx, i0 + r0 + i, j0, rows + i * ncp, nj);
      }
    }
  });
}

}  // namespace ingot::cpu
