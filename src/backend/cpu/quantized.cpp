// CPU kernels of the affine quantization primitives (MLX layout, see
// core/primitives/quantized.h): quantize and dequantize (scalar, threaded), and
// QuantizedMatmul as
//   int8 activations (quantized_gemv_int8.cpp, scheme and bound in quantized_int8.h), the
//     default (cpu::int8_gemv_active; INGOT_CPU_INT8=0 turns it off) where it measured faster
//     than the float32 path of the level (cpu::int8_gemv_faster): x rounded to int8 per group
//     and int32 dot products (AVX-512 VNNI, AVX2, portable integers), for decode and, with VNNI
//     or 4-bit AVX2, prefill;
//   decode (M < kGemmRows rows of x): a fused unpack-and-dot GEMV over weight rows, AVX-512 or
//     AVX2 (chosen at run time by cpu::active_isa(), so INGOT_CPU_ISA forces a level) or
//     portable; per group it forms s * <x_g, q_g> + b * sum(x_g), so the bias costs one
//     multiply-add per group, and up to four rows of x share one pass over the weights;
//   bf16 prefill (AVX512_BF16 with the int8 kernels switched on, from 32 rows of x for 8-bit
//     and 48 for 4-bit: cpu::bf16_prefill_faster, bound in quantized_int8.h): x rounded to
//     bf16, weight panels dequantized straight to bf16 in the bf16 GEMM's layout and multiplied
//     by its vdpbf16ps micro-kernel (gemm_bf16_avx512_panels), each panel once per call;
//   prefill (M >= kGemmRows) otherwise: AVX-512 / AVX2 dequantize L2-sized weight panels to
//     float32 and multiply them at once with register tiles (no float32 copy of the weight
//     matrix); the portable level dequantizes panels and calls OpenBLAS sgemm (BLAS is never
//     called from inside parallel_for; see matmul.cpp).
// Everything accumulates in float32 (the int8 path: int32 per 8 or 4 elements, then float32).
// GCC 12 flags the _mm512_undefined_* inside its own intrinsics headers as maybe-uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "backend/common/utils.h"
#include "backend/cpu/fast_kernels.h"
#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/gemm_kernels.h"
#include "backend/cpu/quantized_int8.h"
#include "core/half.h"
#include "core/primitives/elementwise.h"
#include "core/primitives/fast.h"
#include "core/primitives/quantized.h"
#include "util/env.h"
#include "util/error.h"
#include "util/thread_pool.h"

#define INGOT_Q_AVX2 __attribute__((target("avx2,fma,f16c")))
#define INGOT_Q_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define INGOT_Q_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define INGOT_Q_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma,f16c")))

namespace ingot {
namespace {

/// Rows of x at or above which QuantizedMatmul's float32 path runs as a GEMM (fused panels, or
/// dequantized panels and sgemm on the portable level); below it each weight row is unpacked
/// once per four rows of x (at 8 rows the two were equal on the AVX2 build machine, at 16 the
/// GEMM was 1.3-2x faster, at 4 the GEMV 1.6x). Where the int8-activation kernels run instead:
/// cpu::int8_gemv_faster (below).
constexpr int64_t kGemmRows = 16;

/// Row-major contiguous data of an evaluated input (a copy in `tmp` when it is strided).
template <typename T>
const T* contiguous_ptr(const Array& a, std::vector<T>& tmp) {
  if (a.flags().row_contiguous) return a.raw_ptr<T>();
  tmp.resize(static_cast<size_t>(a.size()));
  copy_to_row_major(a, tmp.data());
  return tmp.data();
}

/// Calls f(T{}) for the float storage dtypes of quantized weights and activations.
template <typename F>
void dispatch_float(Dtype t, const char* op, F&& f) {
  switch (t) {
    case Dtype::float32:
      return f(float{});
    case Dtype::bfloat16:
      return f(bfloat16_t{});
    case Dtype::float16:
      return f(float16_t{});
    default:
      raise<Unsupported>("[{}] unsupported dtype {}", op, dtype_name(t));
  }
}

// ------------------------------------------------------------------ quantize / dequantize

template <typename T>
void quantize_groups(const T* w, int64_t groups, int gs, int bits, uint32_t* wq, T* scales,
                     T* biases) {
  const float n_bins = static_cast<float>((1 << bits) - 1);
  const float eps = 1e-7f;
  const int per_word = 32 / bits;
  const int words = gs / per_word;
  parallel_for(groups, std::max<int64_t>(1, 8192 / gs), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const T* v = w + g * gs;
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      for (int j = 0; j < gs; ++j) {
        const float x = static_cast<float>(v[j]);
        lo = std::min(lo, x);
        hi = std::max(hi, x);
      }
      // The edge of larger magnitude becomes exactly representable (q = 0 there); a group
      // whose values are all equal gets the smallest scale.
      const bool low_edge = std::abs(lo) > std::abs(hi);
      float scale = std::max((hi - lo) / n_bins, eps);
      if (!low_edge) scale = -scale;
      const float edge = low_edge ? lo : hi;
      const float q0 = std::rint(edge / scale);
      float bias = 0.0f;
      if (q0 != 0.0f) {
        scale = edge / q0;
        bias = edge;
      }
      uint32_t* out = wq + g * words;
      for (int i = 0; i < words; ++i) {
        uint32_t word = 0;
        for (int j = 0; j < per_word; ++j) {
          float q = std::rint((static_cast<float>(v[i * per_word + j]) - bias) / scale);
          if (!(q >= 0.0f)) q = 0.0f;  // also NaN
          q = std::min(q, n_bins);
          word |= static_cast<uint32_t>(q) << (j * bits);
        }
        out[i] = word;
      }
      scales[g] = T(scale);
      biases[g] = T(bias);
    }
  });
}

template <typename T>
void dequantize_groups(const uint32_t* wq, const T* scales, const T* biases, int64_t groups, int gs,
                       int bits, T* out) {
  const int per_word = 32 / bits;
  const uint32_t mask = (1u << bits) - 1u;
  parallel_for(groups, std::max<int64_t>(1, 16384 / gs), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const float s = static_cast<float>(scales[g]), b = static_cast<float>(biases[g]);
      const uint32_t* src = wq + g * (gs / per_word);
      T* dst = out + g * gs;
      for (int j = 0; j < gs; ++j) {
        const uint32_t q = (src[j / per_word] >> ((j % per_word) * bits)) & mask;
        dst[j] = T(s * static_cast<float>(q) + b);
      }
    }
  });
}

// ------------------------------------------------------------------ prefill panels
//
// Both prefill paths dequantize weight rows (or K blocks of them) to float32 in element order
// with the per-ISA row kernels below, scales and biases passed as float32: the portable level
// into panels for sgemm, AVX2/AVX-512 into the fused path's small panels (further below).

/// dst[e] = s[e / gs] * q[e] + b[e / gs] for one packed row of k elements (a fused multiply-add
/// on the SIMD paths).
using DeqRowFn = void (*)(const uint8_t* w, const float* s, const float* b, int64_t k, int gs,
                          int bits, float* dst);

void deq_row_portable(const uint8_t* w, const float* s, const float* b, int64_t k, int gs, int bits,
                      float* dst) {
  for (int64_t g = 0; g < k / gs; ++g) {
    const float sg = s[g], bg = b[g];
    float* d = dst + g * gs;
    if (bits == 8) {
      const uint8_t* p = w + g * gs;
      for (int j = 0; j < gs; ++j) d[j] = sg * static_cast<float>(p[j]) + bg;
    } else {
      const uint8_t* p = w + g * gs / 2;
      for (int j = 0; j < gs / 2; ++j) {
        d[2 * j] = sg * static_cast<float>(p[j] & 0xF) + bg;
        d[2 * j + 1] = sg * static_cast<float>(p[j] >> 4) + bg;
      }
    }
  }
}

/// 16 packed bytes of a 4-bit row as 32 bytes in element order (e0: elements 0-15, e1: 16-31).
INGOT_Q_AVX2 inline void unpack_nibbles(const uint8_t* p, __m128i& e0, __m128i& e1) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i nib = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(v, nib);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), nib);
  e0 = _mm_unpacklo_epi8(lo, hi);
  e1 = _mm_unpackhi_epi8(lo, hi);
}

INGOT_Q_AVX2 inline void store8_affine(__m128i q8, __m256 s, __m256 b, float* d) {
  _mm256_storeu_ps(d, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q8)), s, b));
}

INGOT_Q_AVX2 void deq_row_avx2(const uint8_t* w, const float* s, const float* b, int64_t k, int gs,
                               int bits, float* dst) {
  for (int64_t g = 0; g < k / gs; ++g) {
    const __m256 vs = _mm256_set1_ps(s[g]), vb = _mm256_set1_ps(b[g]);
    float* d = dst + g * gs;
    for (int c = 0; c < gs; c += 32) {
      __m128i e0, e1;
      if (bits == 8) {
        e0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + g * gs + c));
        e1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + g * gs + c + 16));
      } else {
        unpack_nibbles(w + (g * gs + c) / 2, e0, e1);
      }
      store8_affine(e0, vs, vb, d + c);
      store8_affine(_mm_srli_si128(e0, 8), vs, vb, d + c + 8);
      store8_affine(e1, vs, vb, d + c + 16);
      store8_affine(_mm_srli_si128(e1, 8), vs, vb, d + c + 24);
    }
  }
}

INGOT_Q_AVX512 void deq_row_avx512(const uint8_t* w, const float* s, const float* b, int64_t k,
                                   int gs, int bits, float* dst) {
  const __m128i nib = _mm_set1_epi8(0x0F);
  for (int64_t g = 0; g < k / gs; ++g) {
    const __m512 vs = _mm512_set1_ps(s[g]), vb = _mm512_set1_ps(b[g]);
    float* d = dst + g * gs;
    for (int c = 0; c < gs; c += 32) {
      __m128i e0, e1;
      if (bits == 8) {
        e0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + g * gs + c));
        e1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + g * gs + c + 16));
      } else {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + (g * gs + c) / 2));
        const __m128i lo = _mm_and_si128(v, nib);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), nib);
        e0 = _mm_unpacklo_epi8(lo, hi);
        e1 = _mm_unpackhi_epi8(lo, hi);
      }
      _mm512_storeu_ps(d + c,
                       _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(e0)), vs, vb));
      _mm512_storeu_ps(d + c + 16,
                       _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(e1)), vs, vb));
    }
  }
}

// Fused prefill (AVX2 / AVX-512): weight rows are dequantized block by block (kPanelRows rows
// by kPanelK columns, 64 KB of float32, L2-resident) and multiplied right away by a register
// tile of MR rows of x against 4 weight rows, dot-product style (both operands contiguous along
// K); partial sums of each K block go to a float32 [M, N] buffer. No weight matrix is ever
// materialized in float32, so the cost is the sgemm-like flops plus one pass over the packed
// weights per call.

constexpr int64_t kPanelRows = 64;  // weight rows per dequantized panel (multiple of 4)
constexpr int64_t kPanelK = 512;    // K per panel block (a multiple of every group size)

/// c[r * ldc + j] (+)= sum_t x[r * ldx + t] * w[j * ldw + t] for r < MR, j < 4, t < kc.
using TileFn = void (*)(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t kc,
                        float* c, int64_t ldc, bool accumulate);

/// Lane sums of four vectors as one vector [sum a0, sum a1, sum a2, sum a3].
INGOT_Q_AVX2 inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

template <int MR>
INGOT_Q_AVX2 void tile_avx2(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t kc,
                            float* c, int64_t ldc, bool accumulate) {
  __m256 acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
  for (int64_t t = 0; t < kc; t += 8) {
    __m256 xv[MR];
    for (int r = 0; r < MR; ++r) xv[r] = _mm256_loadu_ps(x + r * ldx + t);
    for (int j = 0; j < 4; ++j) {
      const __m256 wv = _mm256_loadu_ps(w + j * ldw + t);
      for (int r = 0; r < MR; ++r) acc[r][j] = _mm256_fmadd_ps(xv[r], wv, acc[r][j]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    __m128 v = hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    if (accumulate) v = _mm_add_ps(v, _mm_loadu_ps(c + r * ldc));
    _mm_storeu_ps(c + r * ldc, v);
  }
}

template <int MR>
INGOT_Q_AVX512 void tile_avx512(const float* x, int64_t ldx, const float* w, int64_t ldw,
                                int64_t kc, float* c, int64_t ldc, bool accumulate) {
  __m512 acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t t = 0; t < kc; t += 16) {
    __m512 xv[MR];
    for (int r = 0; r < MR; ++r) xv[r] = _mm512_loadu_ps(x + r * ldx + t);
    for (int j = 0; j < 4; ++j) {
      const __m512 wv = _mm512_loadu_ps(w + j * ldw + t);
      for (int r = 0; r < MR; ++r) acc[r][j] = _mm512_fmadd_ps(xv[r], wv, acc[r][j]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) {
      const float v = _mm512_reduce_add_ps(acc[r][j]);
      c[r * ldc + j] = accumulate ? c[r * ldc + j] + v : v;
    }
}

/// The deq row kernel, the tile kernels for MR = 1 .. mr_max, and mr_max; none on the portable
/// level (it dequantizes panels for sgemm instead).
struct FusedKernels {
  DeqRowFn deq = nullptr;
  TileFn tile[5] = {};
  int mr_max = 0;
};
FusedKernels fused_kernels() {
  switch (cpu::active_isa()) {
    case cpu::Isa::avx512:
      return {deq_row_avx512,
              {nullptr, tile_avx512<1>, tile_avx512<2>, tile_avx512<3>, tile_avx512<4>},
              4};
    case cpu::Isa::avx2:
      return {deq_row_avx2, {nullptr, tile_avx2<1>, tile_avx2<2>, tile_avx2<3>, nullptr}, 3};
    default:
      return {};
  }
}

// ------------------------------------------------------------------ bf16 prefill
//
// With AVX512_BF16 (cpu::bf16_gemm_enabled) and the int8 kernels switched on, prefill runs the
// bf16 GEMM's blocking and micro-kernel (gemm_bf16_avx512_panels): x is rounded to bf16 once
// per call (as bf16 activations already are), and each K block of a thread's weight columns is
// dequantized straight into the kernel's W panel, s * q + b in float32 (one FMA) rounded to
// bf16 by vcvtne2ps2bf16 (nearest even; a dequantized weight below 2^-126 in magnitude becomes
// 0), then multiplied by vdpbf16ps with float32 sums.

/// dst[t] = bf16(s[t / gs] * q[t] + b[t / gs]) for t < k (k a multiple of gs), bits 4 or 8.
/// 4-bit: the group's 16 possible values (each formed as the 8-bit path forms it) are a vpermw
/// table indexed by the nibbles (byte i widened to 32-bit lane i, low nibble to its low word).
INGOT_Q_BF16 void deq_row_bf16(const uint8_t* w, const float* s, const float* b, int64_t k, int gs,
                               int bits, uint16_t* dst) {
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i nib2 = _mm512_set1_epi32(0x000F000F);
  for (int64_t g = 0; g < k / gs; ++g) {
    const __m512 vs = _mm512_set1_ps(s[g]), vb = _mm512_set1_ps(b[g]);
    uint16_t* d = dst + g * gs;
    if (bits == 4) {
      const __m512i table = _mm512_castsi256_si512(
          reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_fmadd_ps(iota, vs, vb))));
      const uint8_t* p = w + g * gs / 2;
      for (int c = 0; c < gs; c += 32) {
        const __m512i q =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + c / 2)));
        // (q | q << 12) & 0x000F000F: low nibble in the low word, high nibble in the high one.
        const __m512i idx = _mm512_ternarylogic_epi32(q, _mm512_slli_epi32(q, 12), nib2, 0xA8);
        _mm512_storeu_si512(d + c, _mm512_permutexvar_epi16(idx, table));
      }
      continue;
    }
    const uint8_t* p = w + g * gs;
    for (int c = 0; c < gs; c += 32) {
      const __m128i e0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + c));
      const __m128i e1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + c + 16));
      const __m512 f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(e0)), vs, vb);
      const __m512 f1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(e1)), vs, vb);
      _mm512_storeu_si512(d + c, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(f1, f0)));
    }
  }
}

/// The packed weights behind one bf16 prefill product (the Bf16PanelFn context).
template <typename S>
struct BfPanelSrc {
  const uint8_t* wb;
  const S *scales, *biases;
  int64_t groups, row_bytes;
  int gs, bits;
};

/// Bf16PanelFn: weight rows [n0, n0 + rows), columns [k0, k0 + kc) dequantized to bf16 (k0 and
/// kc are multiples of the group size: K blocks of 512 of a K that is one).
template <typename S>
void bf_panel(void* ctx, int64_t n0, int64_t rows, int64_t k0, int64_t kc, uint16_t* dst,
              int64_t ld) {
  const BfPanelSrc<S>& c = *static_cast<const BfPanelSrc<S>*>(ctx);
  constexpr int64_t kChunk = 1024;  // k values per deq_row_bf16 call (32 groups at most)
  float s[kChunk / 32], b[kChunk / 32];
  const int64_t seg = kc * c.bits / 8;  // bytes of a row in this block
  for (int64_t j = 0; j < rows; ++j) {
    const int64_t r = n0 + j;
    const uint8_t* src = c.wb + r * c.row_bytes + k0 * c.bits / 8;
    // Segments of rows row_bytes apart defeat the hardware prefetcher (as in qmm_fused).
    if (j + 4 < rows)
      for (int64_t off = 0; off < seg; off += 64) __builtin_prefetch(src + 4 * c.row_bytes + off);
    for (int64_t t0 = 0; t0 < kc; t0 += kChunk) {
      const int64_t tc = std::min(kChunk, kc - t0), g0 = (k0 + t0) / c.gs;
      for (int64_t g = 0; g < tc / c.gs; ++g) {
        s[g] = static_cast<float>(c.scales[r * c.groups + g0 + g]);
        b[g] = static_cast<float>(c.biases[r * c.groups + g0 + g]);
      }
      deq_row_bf16(src + t0 * c.bits / 8, s, b, tc, c.gs, c.bits, dst + j * ld + t0);
    }
  }
}

/// Where the bf16 prefill stores float32 rows of the product (the Bf16StoreFn context).
template <typename T>
struct BfOut {
  T* out;
  int64_t n;
};
template <typename T>
void bf_store(void* ctx, int64_t m, int64_t n0, const float* y, int64_t len) {
  const BfOut<T>& o = *static_cast<const BfOut<T>*>(ctx);
  T* dst = o.out + m * o.n + n0;
  if constexpr (std::is_same_v<T, float>)
    std::copy_n(y, len, dst);
  else if constexpr (std::is_same_v<T, bfloat16_t>)
    cpu::round_to_bf16_avx512(y, reinterpret_cast<uint16_t*>(dst), len);
  else
    for (int64_t i = 0; i < len; ++i) dst[i] = T(y[i]);
}

/// out [m, n] = bf16(x) @ bf16(dequantize(w))^T with float32 sums (see above).
template <typename T, typename S>
void qmm_bf16(const T* x, int64_t m, int64_t k, const uint32_t* wq, const S* scales,
              const S* biases, int64_t n, int gs, int bits, T* out) {
  const uint16_t* xb;
  std::unique_ptr<uint16_t[]> xr;
  if constexpr (std::is_same_v<T, bfloat16_t>) {
    xb = reinterpret_cast<const uint16_t*>(x);
  } else {
    // float32 (float16 through float32, exact) rounded to nearest even bf16, as bfloat16_t does.
    xr.reset(new uint16_t[static_cast<size_t>(m * k)]);
    parallel_for(m * k, 16384, [&](int64_t i0, int64_t i1) {
      if constexpr (std::is_same_v<T, float>) {
        cpu::round_to_bf16_avx512(x + i0, xr.get() + i0, i1 - i0);
      } else {
        float f[1024];
        for (int64_t i = i0; i < i1; i += 1024) {
          const int64_t c = std::min<int64_t>(1024, i1 - i);
          for (int64_t t = 0; t < c; ++t) f[t] = static_cast<float>(x[i + t]);
          cpu::round_to_bf16_avx512(f, xr.get() + i, c);
        }
      }
    });
    xb = xr.get();
  }
  BfPanelSrc<S> src{
      reinterpret_cast<const uint8_t*>(wq), scales, biases, k / gs, k * bits / 8, gs, bits};
  BfOut<T> o{out, n};
  cpu::Bf16PanelGemm g;
  g.M = m;
  g.N = n;
  g.K = k;
  g.a = xb;
  g.sa_m = k;
  g.sa_k = 1;
  g.panel = bf_panel<S>;
  g.panel_ctx = &src;
  g.store = bf_store<T>;
  g.ctx = &o;
  cpu::gemm_bf16_avx512_panels(g);
}

// ------------------------------------------------------------------ GEMV kernels
//
// A 4-bit weight row is read 8 (AVX2) or 16 (AVX-512) bytes at a time: byte i widened to lane i
// holds elements 2i (low nibble) and 2i + 1 (high nibble). x is permuted once per call so that
// each chunk of 2V elements lists its even elements, then its odd ones: the low-nibble vector
// then multiplies x[c .. c + V) and the high-nibble vector x[c + V .. c + 2V) of the permuted x.

/// Arguments of one row kernel: y[r] = sum_g s[g] * <x_r[g], q[g]> for r < mr (the bias term is
/// added by the caller).
struct RowArgs {
  const uint8_t* w;  // packed row (bytes)
  const float* x;    // mr rows of (permuted) x, stride k
  int64_t k;
  int gs, bits, mr;
  const float* s;  // scales of the row, k / gs
  float* y;        // mr outputs
};
using RowFn = void (*)(const RowArgs&);

void row_portable(const RowArgs& a) {
  const uint32_t mask = (1u << a.bits) - 1u;
  const int per_byte = 8 / a.bits;
  for (int r = 0; r < a.mr; ++r) {
    const float* x = a.x + r * a.k;
    float acc = 0.0f;
    for (int64_t g = 0; g < a.k / a.gs; ++g) {
      float dot = 0.0f;
      for (int j = 0; j < a.gs; ++j) {
        const int64_t e = g * a.gs + j;
        const uint32_t q = (a.w[e / per_byte] >> ((e % per_byte) * a.bits)) & mask;
        dot += x[e] * static_cast<float>(q);
      }
      acc += a.s[g] * dot;
    }
    a.y[r] = acc;
  }
}

INGOT_Q_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

INGOT_Q_AVX2 inline __m256 widen8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

/// MR rows of x against one row; 32 elements per step as four vectors of eight.
template <int MR>
INGOT_Q_AVX2 void row_avx2_mr(const RowArgs& a) {
  const __m256i nib = _mm256_set1_epi32(0xF);
  __m256 acc[MR];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t g = 0; g < a.k / a.gs; ++g) {
    __m256 ga[MR][2];
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) ga[r][0] = ga[r][1] = _mm256_setzero_ps();
    for (int c = 0; c < a.gs; c += 32) {
      const int64_t e = g * a.gs + c;
      __m256 f[4];
      if (a.bits == 4) {
        const uint8_t* p = a.w + e / 2;
        const __m256i v0 =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
        const __m256i v1 =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8)));
        f[0] = _mm256_cvtepi32_ps(_mm256_and_si256(v0, nib));
        f[1] = _mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4));
        f[2] = _mm256_cvtepi32_ps(_mm256_and_si256(v1, nib));
        f[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4));
      } else {
        const uint8_t* p = a.w + e;
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) f[j] = widen8(p + 8 * j);
      }
#pragma GCC unroll 4
      for (int r = 0; r < MR; ++r) {
        const float* x = a.x + r * a.k + e;
        ga[r][0] = _mm256_fmadd_ps(f[0], _mm256_loadu_ps(x), ga[r][0]);
        ga[r][1] = _mm256_fmadd_ps(f[1], _mm256_loadu_ps(x + 8), ga[r][1]);
        ga[r][0] = _mm256_fmadd_ps(f[2], _mm256_loadu_ps(x + 16), ga[r][0]);
        ga[r][1] = _mm256_fmadd_ps(f[3], _mm256_loadu_ps(x + 24), ga[r][1]);
      }
    }
    const __m256 s = _mm256_set1_ps(a.s[g]);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_add_ps(ga[r][0], ga[r][1]), s, acc[r]);
  }
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r) a.y[r] = hsum8(acc[r]);
}

void row_avx2(const RowArgs& a) {
  switch (a.mr) {
    case 1:
      return row_avx2_mr<1>(a);
    case 2:
      return row_avx2_mr<2>(a);
    case 3:
      return row_avx2_mr<3>(a);
    default:
      return row_avx2_mr<4>(a);
  }
}

/// MR rows of x against one row; 32 elements per step as two vectors of sixteen.
template <int MR>
INGOT_Q_AVX512 void row_avx512_mr(const RowArgs& a) {
  const __m512i nib = _mm512_set1_epi32(0xF);
  __m512 acc[MR];
  for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < a.k / a.gs; ++g) {
    __m512 ga[MR][2];
    for (int r = 0; r < MR; ++r) ga[r][0] = ga[r][1] = _mm512_setzero_ps();
    for (int c = 0; c < a.gs; c += 32) {
      const int64_t e = g * a.gs + c;
      __m512 f0, f1;
      if (a.bits == 4) {
        const __m512i v =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.w + e / 2)));
        f0 = _mm512_cvtepi32_ps(_mm512_and_si512(v, nib));
        f1 = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
      } else {
        const uint8_t* p = a.w + e;
        f0 = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
        f1 = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16))));
      }
      for (int r = 0; r < MR; ++r) {
        const float* x = a.x + r * a.k + e;
        ga[r][0] = _mm512_fmadd_ps(f0, _mm512_loadu_ps(x), ga[r][0]);
        ga[r][1] = _mm512_fmadd_ps(f1, _mm512_loadu_ps(x + 16), ga[r][1]);
      }
    }
    const __m512 s = _mm512_set1_ps(a.s[g]);
    for (int r = 0; r < MR; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_add_ps(ga[r][0], ga[r][1]), s, acc[r]);
  }
  for (int r = 0; r < MR; ++r) a.y[r] = _mm512_reduce_add_ps(acc[r]);
}

void row_avx512(const RowArgs& a) {
  switch (a.mr) {
    case 1:
      return row_avx512_mr<1>(a);
    case 2:
      return row_avx512_mr<2>(a);
    case 3:
      return row_avx512_mr<3>(a);
    default:
      return row_avx512_mr<4>(a);
  }
}

/// The row kernel of the active ISA and the width V of its 4-bit x permutation (0: none).
struct RowKernel {
  RowFn fn;
  int v;
};
RowKernel row_kernel() {
  switch (cpu::active_isa()) {
    case cpu::Isa::avx512:
      return {row_avx512, 16};
    case cpu::Isa::avx2:
      return {row_avx2, 8};
    default:
      return {row_portable, 0};
  }
}

/// x rows [m, k] to float32, permuted for 4-bit kernels of width v (see above), plus the sum
/// of every group of every row [m, k / gs].
template <typename T>
void prepare_x(const T* x, int64_t m, int64_t k, int gs, int bits, int v, std::vector<float>& xf,
               std::vector<float>& xsum) {
  xf.resize(static_cast<size_t>(m * k));
  xsum.assign(static_cast<size_t>(m * (k / gs)), 0.0f);
  for (int64_t r = 0; r < m; ++r) {
    const T* src = x + r * k;
    float* dst = xf.data() + r * k;
    for (int64_t g = 0; g < k / gs; ++g) {
      float s = 0.0f;
      for (int j = 0; j < gs; ++j) s += static_cast<float>(src[g * gs + j]);
      xsum[static_cast<size_t>(r * (k / gs) + g)] = s;
    }
    if (bits == 4 && v > 0) {
      for (int64_t c = 0; c < k; c += 2 * v)
        for (int i = 0; i < v; ++i) {
          dst[c + i] = static_cast<float>(src[c + 2 * i]);
          dst[c + v + i] = static_cast<float>(src[c + 2 * i + 1]);
        }
    } else {
      for (int64_t i = 0; i < k; ++i) dst[i] = static_cast<float>(src[i]);
    }
  }
}

template <typename T, typename S>
void qmm_gemv(const T* x, int64_t m, int64_t k, const uint32_t* wq, const S* scales,
              const S* biases, int64_t n, int gs, int bits, T* out) {
  const RowKernel kern = row_kernel();
  std::vector<float> xf, xsum;
  prepare_x(x, m, k, gs, bits, kern.v, xf, xsum);
  const int64_t groups = k / gs;
  const int64_t row_words = k * bits / 32;
  // Rows handed out in chunks of >= 256k multiply-adds to whichever thread asks next
  // (parallel_for_dynamic); each row's sums are the same whatever the split.
  const int64_t grain = std::max<int64_t>(8, 262144 / std::max<int64_t>(k * m, 1));
  parallel_for_dynamic(n, grain, [&](int64_t n0, int64_t n1) {
    std::vector<float> s(static_cast<size_t>(groups)), b(s.size());
    float y[4];
    for (int64_t j = n0; j < n1; ++j) {
      for (int64_t g = 0; g < groups; ++g) {
        s[g] = static_cast<float>(scales[j * groups + g]);
        b[g] = static_cast<float>(biases[j * groups + g]);
      }
      const uint8_t* wrow = reinterpret_cast<const uint8_t*>(wq + j * row_words);
      for (int64_t r0 = 0; r0 < m; r0 += 4) {
        const int mr = static_cast<int>(std::min<int64_t>(4, m - r0));
        kern.fn({wrow, xf.data() + r0 * k, k, gs, bits, mr, s.data(), y});
        for (int r = 0; r < mr; ++r) {
          const float* xs = xsum.data() + (r0 + r) * groups;
          float bias = 0.0f;
          for (int64_t g = 0; g < groups; ++g) bias += b[g] * xs[g];
          out[(r0 + r) * n + j] = T(y[r] + bias);
        }
      }
    }
  });
}

/// The int8-activation GEMV (quantized_int8.h) with x, the output and the scale dtype adapted.
template <typename T, typename S>
void qmm_gemv_int8(cpu::Int8Gemv kern, const T* x, int64_t m, int64_t k, const uint32_t* wq,
                   const S* scales, const S* biases, int64_t n, int gs, int bits, T* out) {
  constexpr cpu::QScale st = std::is_same_v<S, float>        ? cpu::QScale::f32
                             : std::is_same_v<S, bfloat16_t> ? cpu::QScale::bf16
                                                             : cpu::QScale::f16;
  std::vector<float> xf, yf;
  const float* xp;
  if constexpr (std::is_same_v<T, float>) {
    xp = x;
  } else {
    xf.resize(static_cast<size_t>(m * k));
    for (int64_t i = 0; i < m * k; ++i) xf[i] = static_cast<float>(x[i]);
    xp = xf.data();
  }
  float* yp;
  if constexpr (std::is_same_v<T, float>) {
    yp = out;
  } else {
    yf.resize(static_cast<size_t>(m * n));
    yp = yf.data();
  }
  cpu::quantized_gemv_int8(kern, xp, m, k, wq, scales, biases, st, n, gs, bits, yp);
  // The SIMD rounding (same bits as T(float)): a decode head writes 128-152k values per token.
  if constexpr (!std::is_same_v<T, float>)
    backend::fastk::store_row(backend::fastk::kernels(), yp, out, m * n);
}

void init_blas_threads() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(pool_threads()); });
}

/// Fused prefill (see above) with the kernels of `fk`.
template <typename T, typename S>
void qmm_fused(const FusedKernels& fk, const T* x, int64_t m, int64_t k, const uint32_t* wq,
               const S* scales, const S* biases, int64_t n, int gs, int bits, T* out) {
  const int64_t ldc = (n + 3) / 4 * 4, groups = k / gs, row_bytes = k * bits / 8;
  // Every element of these buffers is written before it is read.
  std::unique_ptr<float[]> xf(new float[static_cast<size_t>(m * k)]),
      cf(new float[static_cast<size_t>(m * ldc)]);
  // x to float32 in K blocks: block k0 holds rows [m, kc] at xf + k0 * m, so a tile's rows are
  // kc apart (not k: rows 32 KB apart alias in L1).
  parallel_for(m, std::max<int64_t>(1, 16384 / k), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t k0 = 0; k0 < k; k0 += kPanelK) {
        const int64_t kc = std::min(kPanelK, k - k0);
        float* dst = &xf[k0 * m + r * kc];
        for (int64_t t = 0; t < kc; ++t) dst[t] = static_cast<float>(x[r * k + k0 + t]);
      }
  });
  const uint8_t* wb = reinterpret_cast<const uint8_t*>(wq);
  const int64_t panels = (n + kPanelRows - 1) / kPanelRows;
  // Rows of x per block: a block's [mb, kc] floats (<= 256 KB) stay in L2 while it meets every
  // panel of the thread; x blocks are balanced (m = 200: 100 + 100).
  const int64_t mb_max = std::max<int64_t>(fk.mr_max, (int64_t{1} << 16) / kPanelK);
  const int64_t mblocks = (m + mb_max - 1) / mb_max;
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> panel(static_cast<size_t>(kPanelRows * kPanelK));
    float s[kPanelK / 32], b[kPanelK / 32];
    for (int64_t k0 = 0; k0 < k; k0 += kPanelK) {
      const int64_t kc = std::min(kPanelK, k - k0);
      for (int64_t mbi = 0, m0 = 0; mbi < mblocks; ++mbi) {
        const int64_t mb = (m - m0 + (mblocks - mbi) - 1) / (mblocks - mbi);
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t n0 = p * kPanelRows, rows = std::min(kPanelRows, n - n0);
          const int64_t rows4 = (rows + 3) / 4 * 4;
          const int64_t seg = kc * bits / 8;  // bytes of a row in this K block
          for (int64_t j = 0; j < rows; ++j) {
            const int64_t r = n0 + j, g0 = k0 / gs;
            // Segments of rows row_bytes apart defeat the hardware prefetcher: fetch 4 rows ahead
            // (without this, the loads' latency was 70% of the dequantization time).
            if (j + 4 < rows)
              for (int64_t off = 0; off < seg; off += 64)
                __builtin_prefetch(wb + (r + 4) * row_bytes + k0 * bits / 8 + off);
            for (int64_t g = 0; g < kc / gs; ++g) {
              s[g] = static_cast<float>(scales[r * groups + g0 + g]);
              b[g] = static_cast<float>(biases[r * groups + g0 + g]);
            }
            fk.deq(wb + r * row_bytes + k0 * bits / 8, s, b, kc, gs, bits, &panel[j * kPanelK]);
          }
          // Rows past n (up to a multiple of 4) are zero; their outputs land in c's padding.
          for (int64_t j = rows; j < rows4; ++j) std::fill_n(&panel[j * kPanelK], kc, 0.0f);
          // The block's rows in balanced chunks of <= mr_max (16 rows: 3,3,3,3,2,2, not 3x5 + 1).
          const int64_t chunks = (mb + fk.mr_max - 1) / fk.mr_max;
          for (int64_t ci = 0, r0 = m0; ci < chunks; ++ci) {
            const int mr = static_cast<int>((m0 + mb - r0 + (chunks - ci) - 1) / (chunks - ci));
            for (int64_t j = 0; j < rows4; j += 4)
              fk.tile[mr](&xf[k0 * m + r0 * kc], kc, &panel[j * kPanelK], kPanelK, kc,
                          &cf[r0 * ldc + n0 + j], ldc, k0 > 0);
            r0 += mr;
          }
        }
        m0 += mb;
      }
    }
  });
  parallel_for(m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < n; ++j) out[r * n + j] = T(cf[r * ldc + j]);
  });
}

template <typename T, typename S>
void qmm_gemm(const T* x, int64_t m, int64_t k, const uint32_t* wq, const S* scales,
              const S* biases, int64_t n, int gs, int bits, T* out) {
  const FusedKernels fk = fused_kernels();
  if (fk.deq) return qmm_fused<T, S>(fk, x, m, k, wq, scales, biases, n, gs, bits, out);
  init_blas_threads();
  const DeqRowFn deq = deq_row_portable;
  const int64_t row_bytes = k * bits / 8, groups = k / gs;
  // Panels of ~8 MB of float32 in balanced column blocks (the bf16 GEMM's blocking).
  const int64_t nb_max = std::min(n, std::max<int64_t>(64, (int64_t{1} << 21) / k));
  const int64_t nblocks = (n + nb_max - 1) / nb_max;
  const int64_t nb = (n + nblocks - 1) / nblocks;
  // Every element of these buffers is written before it is read.
  std::unique_ptr<float[]> xf(new float[static_cast<size_t>(m * k)]),
      tile(new float[static_cast<size_t>(nb * k)]), y(new float[static_cast<size_t>(m * nb)]);
  parallel_for(m * k, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) xf[i] = static_cast<float>(x[i]);
  });
  const uint8_t* wb = reinterpret_cast<const uint8_t*>(wq);
  for (int64_t n0 = 0; n0 < n; n0 += nb) {
    const int64_t cur = std::min(nb, n - n0);
    parallel_for(cur, std::max<int64_t>(1, 16384 / k), [&](int64_t j0, int64_t j1) {
      std::vector<float> s(static_cast<size_t>(groups)), b(s.size());
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t r = n0 + j;
        for (int64_t g = 0; g < groups; ++g) {
          s[g] = static_cast<float>(scales[r * groups + g]);
          b[g] = static_cast<float>(biases[r * groups + g]);
        }
        deq(wb + r * row_bytes, s.data(), b.data(), k, gs, bits, tile.get() + j * k);
      }
    });
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(cur),
                static_cast<int>(k), 1.0f, xf.get(), static_cast<int>(k), tile.get(),
                static_cast<int>(k), 0.0f, y.get(), static_cast<int>(cur));
    parallel_for(m, std::max<int64_t>(1, 16384 / cur), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < cur; ++j) out[r * n + n0 + j] = T(y[r * cur + j]);
    });
  }
}

}  // namespace

bool cpu::int8_gemv_faster(Int8Gemv kern, int64_t m, int bits) {
  switch (kern) {
    case Int8Gemv::avx512vnni:
      return true;
    case Int8Gemv::avx2:
      return m < kGemmRows || (bits == 4 && active_isa() == Isa::avx2);
    default:
      return m < kGemmRows && bits == 8;
  }
}

bool cpu::bf16_prefill_faster(int64_t m, int bits) {
  return m >= (bits == 8 ? 32 : 48) && bf16_gemm_enabled();
}

void AffineQuantize::eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const Array& w = inputs[0];
  for (Array& o : outputs) backend::alloc_cpu(o);
  const int64_t groups = w.size() / group_size_;
  if (groups == 0) return;
  dispatch_float(w.dtype(), "quantize", [&](auto t) {
    using T = decltype(t);
    std::vector<T> tmp;
    quantize_groups<T>(contiguous_ptr(w, tmp), groups, group_size_, bits_,
                       outputs[0].raw_ptr<uint32_t>(), outputs[1].raw_ptr<T>(),
                       outputs[2].raw_ptr<T>());
  });
}

void AffineDequantize::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  backend::alloc_cpu(out);
  const int64_t groups = out.size() / group_size_;
  if (groups == 0) return;
  std::vector<uint32_t> wtmp;
  const uint32_t* wq = contiguous_ptr(inputs[0], wtmp);
  dispatch_float(out.dtype(), "dequantize", [&](auto t) {
    using T = decltype(t);
    std::vector<T> st, bt;
    dequantize_groups<T>(wq, contiguous_ptr(inputs[1], st), contiguous_ptr(inputs[2], bt), groups,
                         group_size_, bits_, out.raw_ptr<T>());
  });
}

// A fusion composes the separate primitives' kernels (RmsNorm, the plain product, the
// activation and multiply on the product's column halves, the add), so its result is theirs.
void QuantizedMatmul::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  if (fusion_.any()) {
    const QuantizedMatmulFusion& f = fusion_;
    Array h = inputs[0];
    if (f.norm) {
      std::vector<Array> norm_in{inputs[0]};
      if (f.norm_weight) norm_in.push_back(inputs[4]);
      auto np = std::make_shared<RmsNorm>(stream(), f.eps, f.add_unit_offset, f.weight_in_float32,
                                          f.norm_weight);
      h = Array(inputs[0].shape(), inputs[0].dtype(), np, norm_in);
      np->eval_cpu(norm_in, h);
    }
    const std::shared_ptr<QuantizedMatmul> pp = product();
    const std::vector<Array> prod_in{h, inputs[1], inputs[2], inputs[3]};
    if (f.gate == 0 && !f.residual) return pp->eval_cpu(prod_in, out);
    Shape ys = h.shape();
    ys.back() = inputs[1].shape(0);
    Array y(ys, out.dtype(), pp, prod_in);
    pp->eval_cpu(prod_in, y);
    if (f.gate > 0) {
      std::shared_ptr<UnaryPrimitive> ap;
      if (f.gate == 1)
        ap = std::make_shared<Silu>(stream());
      else if (f.gate == 2)
        ap = std::make_shared<Gelu>(stream());
      else
        ap = std::make_shared<GeluTanh>(stream());
      const Shape& os = out.shape();
      const int64_t n = os.back();
      auto columns = [&](int64_t first) {  // y[..., first:first + n] (y is row-contiguous)
        const Strides& st = y.strides();
        int64_t span = out.size() == 0 ? 0 : 1;
        if (span)
          for (size_t d = 0; d < os.size(); ++d) span += (os[d] - 1) * st[d];
        Array v(os, y.dtype(), ap, {});
        v.copy_shared_buffer(y, st, backend::compute_flags(os, st), span, first);
        return v;
      };
      const Array g = columns(0), u = columns(n);
      Array a(os, out.dtype(), ap, {g});
      ap->eval_cpu({g}, a);
      Multiply(stream()).eval_cpu({a, u}, out);
    } else {
      Add(stream()).eval_cpu({inputs.back(), y}, out);
    }
    return;
  }
  backend::alloc_cpu(out);
  const Array& x = inputs[0];
  const int64_t k = x.shape(-1), n = out.shape(-1);
  const int64_t m = k > 0 ? x.size() / k : 0;
  if (out.size() == 0) return;
  std::vector<uint32_t> wtmp;
  const uint32_t* wq = contiguous_ptr(inputs[1], wtmp);
  dispatch_float(x.dtype(), "quantized_matmul", [&](auto tx) {
    using T = decltype(tx);
    std::vector<T> xtmp;
    const T* xp = contiguous_ptr(x, xtmp);
    dispatch_float(inputs[2].dtype(), "quantized_matmul", [&](auto ts) {
      using S = decltype(ts);
      std::vector<S> st, bt;
      const S* sp = contiguous_ptr(inputs[2], st);
      const S* bp = contiguous_ptr(inputs[3], bt);
      cpu::Int8Gemv kern;
      const bool fast = cpu::int8_gemv_active(kern);
      // Prefill on AVX512_BF16 (bf16 x and weights), else the int8 kernels where they measured
      // faster than the float32 ones.
      if (fast && cpu::bf16_prefill_faster(m, bits_))
        qmm_bf16<T, S>(xp, m, k, wq, sp, bp, n, group_size_, bits_, out.raw_ptr<T>());
      else if (fast && cpu::int8_gemv_faster(kern, m, bits_))
        qmm_gemv_int8<T, S>(kern, xp, m, k, wq, sp, bp, n, group_size_, bits_, out.raw_ptr<T>());
      else if (m >= kGemmRows)
        qmm_gemm<T, S>(xp, m, k, wq, sp, bp, n, group_size_, bits_, out.raw_ptr<T>());
      else
        qmm_gemv<T, S>(xp, m, k, wq, sp, bp, n, group_size_, bits_, out.raw_ptr<T>());
    });
  });
}

}  // namespace ingot
