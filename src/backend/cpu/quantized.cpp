// CPU kernels of the affine quantization primitives (MLX layout, see
// core/primitives/quantized.h): quantize and dequantize (scalar, threaded), and
// QuantizedMatmul as
//   decode (M < kGemmRows rows of x): a fused unpack-and-dot GEMV over weight rows, AVX-512 or
//     AVX2 (chosen at run time by cpu::active_isa(), so INGOT_CPU_ISA forces a level) or
//     portable; per group it forms s * <x_g, q_g> + b * sum(x_g), so the bias costs one
//     multiply-add per group, and up to four rows of x share one pass over the weights;
//   prefill (M >= kGemmRows): weight tiles dequantized to float32 in parallel, then an OpenBLAS
//     sgemm per tile (BLAS is never called from inside parallel_for; see matmul.cpp).
// Everything accumulates in float32.
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
#include <mutex>
#include <vector>

#include "backend/common/utils.h"
#include "backend/cpu/gemm_kernels.h"
#include "core/half.h"
#include "core/primitives/quantized.h"
#include "util/error.h"
#include "util/thread_pool.h"

#define INGOT_Q_AVX2 __attribute__((target("avx2,fma,f16c")))
#define INGOT_Q_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))

namespace ingot {
namespace {

/// Rows of x at or above which QuantizedMatmul dequantizes weight tiles for sgemm.
constexpr int64_t kGemmRows = 16;
/// Weight rows per dequantized tile of the sgemm path.
constexpr int64_t kTileRows = 256;

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

/// One weight row dequantized to float32 (for the sgemm tiles).
template <typename S>
void dequantize_row_f32(const uint32_t* wq, const S* scales, const S* biases, int64_t k, int gs,
                        int bits, float* dst) {
  const int per_word = 32 / bits;
  const uint32_t mask = (1u << bits) - 1u;
  for (int64_t g = 0; g < k / gs; ++g) {
    const float s = static_cast<float>(scales[g]), b = static_cast<float>(biases[g]);
    const uint32_t* src = wq + g * (gs / per_word);
    float* d = dst + g * gs;
    for (int j = 0; j < gs; ++j)
      d[j] = s * static_cast<float>((src[j / per_word] >> ((j % per_word) * bits)) & mask) + b;
  }
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
  for (int r = 0; r < MR; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t g = 0; g < a.k / a.gs; ++g) {
    __m256 ga[MR][2];
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
        for (int j = 0; j < 4; ++j) f[j] = widen8(p + 8 * j);
      }
      for (int r = 0; r < MR; ++r) {
        const float* x = a.x + r * a.k + e;
        ga[r][0] = _mm256_fmadd_ps(f[0], _mm256_loadu_ps(x), ga[r][0]);
        ga[r][1] = _mm256_fmadd_ps(f[1], _mm256_loadu_ps(x + 8), ga[r][1]);
        ga[r][0] = _mm256_fmadd_ps(f[2], _mm256_loadu_ps(x + 16), ga[r][0]);
        ga[r][1] = _mm256_fmadd_ps(f[3], _mm256_loadu_ps(x + 24), ga[r][1]);
      }
    }
    const __m256 s = _mm256_set1_ps(a.s[g]);
    for (int r = 0; r < MR; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_add_ps(ga[r][0], ga[r][1]), s, acc[r]);
  }
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
  const int64_t grain = std::max<int64_t>(8, 262144 / std::max<int64_t>(k * m, 1));
  parallel_for(n, grain, [&](int64_t n0, int64_t n1) {
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

void init_blas_threads() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(pool_threads()); });
}

template <typename T, typename S>
void qmm_gemm(const T* x, int64_t m, int64_t k, const uint32_t* wq, const S* scales,
              const S* biases, int64_t n, int gs, int bits, T* out) {
  init_blas_threads();
  std::vector<float> xf(static_cast<size_t>(m * k));
  for (int64_t i = 0; i < m * k; ++i) xf[i] = static_cast<float>(x[i]);
  const int64_t nb = std::min(kTileRows, n);
  std::vector<float> tile(static_cast<size_t>(nb * k)), y(static_cast<size_t>(m * nb));
  const int64_t row_words = k * bits / 32, groups = k / gs;
  for (int64_t n0 = 0; n0 < n; n0 += nb) {
    const int64_t cur = std::min(nb, n - n0);
    parallel_for(cur, 8, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j)
        dequantize_row_f32(wq + (n0 + j) * row_words, scales + (n0 + j) * groups,
                           biases + (n0 + j) * groups, k, gs, bits, tile.data() + j * k);
    });
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(cur),
                static_cast<int>(k), 1.0f, xf.data(), static_cast<int>(k), tile.data(),
                static_cast<int>(k), 0.0f, y.data(), static_cast<int>(cur));
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < cur; ++j) out[r * n + n0 + j] = T(y[r * cur + j]);
  }
}

}  // namespace

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

void QuantizedMatmul::eval_cpu(const std::vector<Array>& inputs, Array& out) {
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
      if (m >= kGemmRows)
        qmm_gemm<T, S>(xp, m, k, wq, sp, bp, n, group_size_, bits_, out.raw_ptr<T>());
      else
        qmm_gemv<T, S>(xp, m, k, wq, sp, bp, n, group_size_, bits_, out.raw_ptr<T>());
    });
  });
}

}  // namespace ingot
