// CUDA kernels of the affine quantization primitives: quantize (one thread per group, the CPU
// kernel's arithmetic), dequantize (one thread per element), a plain dequantize-GEMV (one warp
// per weight row, lanes striding over the packed words, float32 accumulation; any dtypes and
// rows) and the quantized mode of the decode GEMV (launch_qgemv: 16-byte streaming loads of the
// packed words, PDL, the RmsNorm prologue, GLU pairs and the accumulate epilogue of
// matmul.cu's GEMV).
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/math.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/gemv_common.cuh"
#include "backend/cuda/quantized_kernels.h"

namespace ingot::cu {
namespace {

template <typename T>
__device__ __forceinline__ float ld(const T* p, int64_t i) {
  return to_acc<float>(p[i]);
}

template <typename T>
__global__ void quantize_kernel(const T* w, int64_t groups, int gs, int bits, uint32_t* wq,
                                T* scales, T* biases) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  const float n_bins = static_cast<float>((1 << bits) - 1);
  const T* v = w + g * gs;
  float lo = INFINITY, hi = -INFINITY;
  for (int j = 0; j < gs; ++j) {
    const float x = ld(v, j);
    lo = fminf(lo, x);
    hi = fmaxf(hi, x);
  }
  const bool low_edge = fabsf(lo) > fabsf(hi);
  float scale = fmaxf((hi - lo) / n_bins, 1e-7f);
  if (!low_edge) scale = -scale;
  const float edge = low_edge ? lo : hi;
  const float q0 = rintf(edge / scale);
  float bias = 0.0f;
  if (q0 != 0.0f) {
    scale = edge / q0;
    bias = edge;
  }
  const int per_word = 32 / bits;
  for (int i = 0; i < gs / per_word; ++i) {
    uint32_t word = 0;
    for (int j = 0; j < per_word; ++j) {
      float q = rintf((ld(v, i * per_word + j) - bias) / scale);
      if (!(q >= 0.0f)) q = 0.0f;
      q = fminf(q, n_bins);
      word |= static_cast<uint32_t>(q) << (j * bits);
    }
    wq[g * (gs / per_word) + i] = word;
  }
  scales[g] = cast<T>(scale);
  biases[g] = cast<T>(bias);
}

template <typename T>
__global__ void dequantize_kernel(const uint32_t* wq, const T* scales, const T* biases,
                                  int64_t total, int gs, int bits, T* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int per_word = 32 / bits;
  const uint32_t q = (wq[i / per_word] >> ((i % per_word) * bits)) & ((1u << bits) - 1u);
  out[i] = cast<T>(ld(scales, i / gs) * static_cast<float>(q) + ld(biases, i / gs));
}

constexpr int kWarpsPerBlock = 4;

/// Block (x: weight rows in warps, y: one row of x).
template <typename TX, typename TS>
__global__ void qmv_kernel(const TX* x, int64_t k, const uint32_t* wq, const TS* scales,
                           const TS* biases, int64_t n, int gs, int bits, TX* out) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= n) return;
  const int64_t m = blockIdx.y;
  const int per_word = 32 / bits;
  const uint32_t mask = (1u << bits) - 1u;
  const int64_t words = k / per_word, groups = k / gs;
  const uint32_t* w = wq + row * words;
  const TX* xr = x + m * k;
  float acc = 0.0f;
  for (int64_t i = lane; i < words; i += 32) {
    const uint32_t word = w[i];
    const int64_t e0 = i * per_word;
    const int64_t g = e0 / gs;
    const float s = ld(scales, row * groups + g), b = ld(biases, row * groups + g);
    float dot = 0.0f, xs = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j < per_word) {
        const float xv = ld(xr, e0 + j);
        dot += xv * static_cast<float>((word >> (j * bits)) & mask);
        xs += xv;
      }
    }
    acc += s * dot + b * xs;
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) out[m * n + row] = cast<TX>(acc);
}

template <typename F>
void dispatch(Dtype t, F&& f) {
  switch (t) {
    case Dtype::bfloat16:
      return f(__nv_bfloat16{});
    case Dtype::float16:
      return f(__half{});
    default:
      return f(float{});
  }
}

unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// ---- Quantized mode of the decode GEMV (GemvProblem with bits != 0). A warp computes NR
// output columns (each from R weight rows: R = 2 for a GLU pair's gate and up rows), so the x
// values a lane loads (and their sum) serve NR * R rows. Lane l takes the 16-byte chunks
// l, l + 32, ... of its rows (32 values at 4 bits, 16 at 8: always inside one group), with the
// chunks' scales and biases, U chunks in flight and the next U requested before the current
// ones are consumed. Per chunk and x row: dot = sum_j q_j x_j and sx = sum_j x_j in float,
// then acc += s * dot + b * sx; the codes become floats exactly (the code in the mantissa of
// 2^23, minus 2^23: no integer conversion instructions).

template <int M, int NW>
constexpr int qgemv_unroll() {
  return M <= 2 ? (NW >= 4 ? 1 : 4 / NW) : (NW >= 2 ? 1 : 2);
}

/// Code j of a 16-byte chunk (words u[0..3]) as an exact float: 2^23 + q as bits, minus 2^23.
template <int BITS>
__device__ __forceinline__ float code(const uint32_t (&u)[4], int j) {
  uint32_t b;
  if constexpr (BITS == 4) {
    const uint32_t w = u[j / 8];
    const int nib = j % 8;
    // Even codes of a word are the low nibbles of its bytes, odd ones the high nibbles.
    const uint32_t v = (nib & 1) ? ((w >> 4) & 0x0F0F0F0Fu) : (w & 0x0F0F0F0Fu);
    b = __byte_perm(v, 0x4B000000u, 0x7440u | static_cast<uint32_t>(nib >> 1));
  } else {
    b = __byte_perm(u[j / 4], 0x4B000000u, 0x7440u | static_cast<uint32_t>(j % 4));
  }
  return __uint_as_float(b) - 8388608.0f;
}

template <typename T>
__device__ __forceinline__ T ldg_t(const T* p) {
  return __ldg(p);
}

// NORM: the norm prologue (x rows normalised into shared memory). PAIR: output column n is
// act(gate) * up of weight rows n and n + p.pair. M: the most x rows (p.M <= M; exact for
// M <= 2).
template <typename T, int M, int BITS, bool NORM, bool PAIR, int NR>
__global__ void __launch_bounds__(32 * kGemvWarps)
    qgemv_kernel(const GemvProblem p, int64_t prefetch_span) {
  constexpr int R = PAIR ? 2 : 1, NW = NR * R;
  constexpr int V = 16 / sizeof(T);  // x elements per 16 bytes
  constexpr int VQ = 128 / BITS;     // codes per 16-byte chunk
  constexpr int P = VQ / V;          // 16-byte x vectors per chunk
  constexpr int U = qgemv_unroll<M, NW>();
  gemv_prefetch_rows(p.w, p.N, p.K * BITS / 8, p.sw_n * 4, prefetch_span);
  pdl_prologue();
  extern __shared__ uint4 gemv_smem[];  // NORM: the normalised rows of x
  const int rows = M <= 2 ? M : static_cast<int>(p.M);
  const int lane = threadIdx.x & 31;
  const int64_t n0 = (int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5)) * NR;
  const bool active = n0 < p.N;
  const int64_t chunks = active ? p.K * BITS / 128 : 0;
  const int gshift = __ffs(p.group_size / VQ) - 1;  // chunk c lies in group c >> gshift
  const char* w[NW];
  const T* sc[NW];
  const T* bi[NW];
#pragma unroll
  for (int i = 0; i < NR; ++i) {
    const int64_t col = active && n0 + i < p.N ? n0 + i : 0;  // columns past N compute row 0
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = col + r * p.pair;
      w[i * R + r] = static_cast<const char*>(p.w) + row * p.sw_n * 4;
      sc[i * R + r] = static_cast<const T*>(p.scales) + row * p.ss_n;
      bi[i * R + r] = static_cast<const T*>(p.biases) + row * p.ss_n;
    }
  }
  uint4 wv[NW][U];
  T sv[NW][U], bv[NW][U];
  const auto load = [&](uint4(&wq)[NW][U], T(&sq)[NW][U], T(&bq)[NW][U], int64_t c0) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t c = c0 + 32 * u;
#pragma unroll
      for (int k = 0; k < NW; ++k) {
        if (c < chunks) {
          wq[k][u] = load_stream16(w[k] + c * 16);
          sq[k][u] = ldg_t(sc[k] + (c >> gshift));
          bq[k][u] = ldg_t(bi[k] + (c >> gshift));
        } else {
          wq[k][u] = make_uint4(0, 0, 0, 0);
          sq[k][u] = bq[k][u] = cast<T>(0.0f);
        }
      }
    }
  };
  load(wv, sv, bv, lane);
  // The accumulate operand is requested now too, so its latency is not added at the end.
  float cin[NR][M];
#pragma unroll
  for (int i = 0; i < NR; ++i)
#pragma unroll
    for (int m = 0; m < M; ++m) {
      cin[i][m] = 0.0f;
      if (!PAIR && p.accumulate && lane == 0 && n0 + i < p.N && m < rows) {
        const int64_t n = n0 + i;
        cin[i][m] = to_float(p.c ? static_cast<const T*>(p.c)[m * p.sc_m + n * p.sc_n]
                                 : static_cast<const T*>(p.out)[m * p.N + n]);
      }
    }
  if constexpr (NORM) gemv_norm_rows<T, M>(p, reinterpret_cast<T*>(gemv_smem), rows);
  if (!active) return;  // whole warps leave together
  const char* x = NORM ? reinterpret_cast<const char*>(gemv_smem) : static_cast<const char*>(p.x);
  const int64_t xrow = (NORM ? p.K : p.sx_m) * int64_t(sizeof(T));
  float acc[NW][M];
#pragma unroll
  for (int k = 0; k < NW; ++k)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[k][m] = 0.0f;
  for (int64_t c0 = lane; c0 < chunks; c0 += 32 * U) {
    uint4 wn[NW][U];
    T sn[NW][U], bn[NW][U];
    load(wn, sn, bn, c0 + 32 * U);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t c = c0 + 32 * u;
      if (c < chunks) {
        uint32_t q[NW][4];
#pragma unroll
        for (int k = 0; k < NW; ++k) {
          q[k][0] = wv[k][u].x;
          q[k][1] = wv[k][u].y;
          q[k][2] = wv[k][u].z;
          q[k][3] = wv[k][u].w;
        }
        float dot[NW][M], sx[M];
#pragma unroll
        for (int m = 0; m < M; ++m) {
          sx[m] = 0.0f;
#pragma unroll
          for (int k = 0; k < NW; ++k) dot[k][m] = 0.0f;
        }
        const char* xc = x + c * (VQ * int64_t(sizeof(T)));
#pragma unroll
        for (int pc = 0; pc < P; ++pc) {
          float qf[NW][V];
#pragma unroll
          for (int k = 0; k < NW; ++k)
#pragma unroll
            for (int j = 0; j < V; ++j) qf[k][j] = code<BITS>(q[k], pc * V + j);
#pragma unroll
          for (int m = 0; m < M; ++m) {
            if (m < rows) {
              uint4 xv;
              if constexpr (NORM)
                xv = *reinterpret_cast<const uint4*>(xc + m * xrow + pc * 16);
              else
                xv = load16(xc + m * xrow + pc * 16);
              float xf[V];
              unpack16<T>(xv, xf);
#pragma unroll
              for (int j = 0; j < V; ++j) {
                sx[m] += xf[j];
#pragma unroll
                for (int k = 0; k < NW; ++k) dot[k][m] = fmaf(qf[k][j], xf[j], dot[k][m]);
              }
            }
          }
        }
#pragma unroll
        for (int k = 0; k < NW; ++k) {
          const float s = to_float(sv[k][u]), b = to_float(bv[k][u]);
#pragma unroll
          for (int m = 0; m < M; ++m) acc[k][m] = fmaf(s, dot[k][m], fmaf(b, sx[m], acc[k][m]));
        }
      }
#pragma unroll
      for (int k = 0; k < NW; ++k) {
        wv[k][u] = wn[k][u];
        sv[k][u] = sn[k][u];
        bv[k][u] = bn[k][u];
      }
    }
  }
#pragma unroll
  for (int k = 0; k < NW; ++k)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[k][m] = warp_sum(acc[k][m]);
  if (lane == 0) {
    T* out = static_cast<T*>(p.out);
#pragma unroll
    for (int i = 0; i < NR; ++i) {
      const int64_t n = n0 + i;
      if (n >= p.N) continue;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        if (m >= rows) continue;
        if constexpr (PAIR) {
          // The product's columns rounded to T, then act and the multiply as their kernels do.
          const float g = to_float(cast<T>(p.alpha * acc[i * R][m]));
          const float u = to_float(cast<T>(p.alpha * acc[i * R + 1][m]));
          out[m * p.N + n] = gated_value<T>(g, u, p.gate);
        } else {
          float r = p.alpha * acc[i][m];
          if (p.round_product) r = to_float(cast<T>(r));
          if (p.accumulate) r = p.beta * cin[i][m] + r;
          out[m * p.N + n] = cast<T>(r);
        }
      }
    }
  }
}

/// INGOT_CUDA_QGEMV_COLUMNS=1 or 2 pins the output columns a warp of the quantized GEMV
/// computes for one or two x rows (default: 2 from 8192 columns on, else 1). Read once.
int qgemv_columns_knob() {
  static const int v = [] {
    const char* e = std::getenv("INGOT_CUDA_QGEMV_COLUMNS");
    if (e && std::strcmp(e, "1") == 0) return 1;
    if (e && std::strcmp(e, "2") == 0) return 2;
    return 0;
  }();
  return v;
}

template <typename T, int M, int BITS, int NR>
void launch_qgemv_nr(const GemvProblem& p, cudaStream_t s, int sms) {
  const int64_t per_block = int64_t(kGemvWarps) * NR;
  const unsigned grid = static_cast<unsigned>((p.N + per_block - 1) / per_block);
  const unsigned block = 32 * kGemvWarps;
  int64_t span = 0;
  if (pdl_enabled() && sms > 0) span = (p.N + sms - 1) / sms;
  const size_t smem = p.norm ? size_t(p.M) * p.K * sizeof(T) : 0;
  if (p.norm && p.pair)
    launch_pdl(qgemv_kernel<T, M, BITS, true, true, NR>, grid, block, smem, s, p, span);
  else if (p.norm)
    launch_pdl(qgemv_kernel<T, M, BITS, true, false, NR>, grid, block, smem, s, p, span);
  else
    launch_pdl(qgemv_kernel<T, M, BITS, false, false, NR>, grid, block, smem, s, p, span);
}

template <typename T, int M, int BITS>
void launch_qgemv_m(const GemvProblem& p, cudaStream_t s, int sms) {
  if constexpr (M <= 2) {
    const int knob = qgemv_columns_knob();
    if (knob == 2 || (knob == 0 && p.N >= 8192)) return launch_qgemv_nr<T, M, BITS, 2>(p, s, sms);
  }
  launch_qgemv_nr<T, M, BITS, 1>(p, s, sms);
}

template <typename T, int BITS>
void launch_qgemv_bits(const GemvProblem& p, cudaStream_t s, int sms) {
  if (p.M == 1) return launch_qgemv_m<T, 1, BITS>(p, s, sms);
  if (p.M == 2) return launch_qgemv_m<T, 2, BITS>(p, s, sms);
  if (p.M <= 4) return launch_qgemv_m<T, 4, BITS>(p, s, sms);
  launch_qgemv_m<T, 8, BITS>(p, s, sms);
}

template <typename T>
void launch_qgemv_t(const GemvProblem& p, cudaStream_t s, int sms) {
  if (p.bits == 4)
    launch_qgemv_bits<T, 4>(p, s, sms);
  else
    launch_qgemv_bits<T, 8>(p, s, sms);
}

}  // namespace

void launch_affine_quantize(Dtype t, const void* w, int64_t groups, int gs, int bits, uint32_t* wq,
                            void* scales, void* biases, cudaStream_t s) {
  dispatch(t, [&](auto v) {
    using T = decltype(v);
    quantize_kernel<T><<<blocks_for(groups, 128), 128, 0, s>>>(static_cast<const T*>(w), groups, gs,
                                                               bits, wq, static_cast<T*>(scales),
                                                               static_cast<T*>(biases));
  });
  check_launch("quantize_kernel");
}

void launch_affine_dequantize(Dtype t, const uint32_t* wq, const void* scales, const void* biases,
                              int64_t groups, int gs, int bits, void* out, cudaStream_t s) {
  const int64_t total = groups * gs;
  dispatch(t, [&](auto v) {
    using T = decltype(v);
    dequantize_kernel<T><<<blocks_for(total, 256), 256, 0, s>>>(
        wq, static_cast<const T*>(scales), static_cast<const T*>(biases), total, gs, bits,
        static_cast<T*>(out));
  });
  check_launch("dequantize_kernel");
}

void launch_qmv(Dtype tx, Dtype ts, const void* x, int64_t m, int64_t k, const uint32_t* wq,
                const void* scales, const void* biases, int64_t n, int gs, int bits, void* out,
                cudaStream_t s) {
  const dim3 grid(blocks_for(n, kWarpsPerBlock), static_cast<unsigned>(m));
  dispatch(tx, [&](auto vx) {
    using TX = decltype(vx);
    dispatch(ts, [&](auto vs) {
      using TS = decltype(vs);
      qmv_kernel<TX, TS><<<grid, 32 * kWarpsPerBlock, 0, s>>>(
          static_cast<const TX*>(x), k, wq, static_cast<const TS*>(scales),
          static_cast<const TS*>(biases), n, gs, bits, static_cast<TX*>(out));
    });
  });
  check_launch("qmv_kernel");
}

void launch_qgemv(Dtype t, const GemvProblem& p, cudaStream_t s, int sms) {
  switch (t) {
    case Dtype::float16:
      launch_qgemv_t<__half>(p, s, sms);
      break;
    case Dtype::bfloat16:
      launch_qgemv_t<__nv_bfloat16>(p, s, sms);
      break;
    default:
      launch_qgemv_t<float>(p, s, sms);
      break;
  }
  check_launch("qgemv_kernel");
}

}  // namespace ingot::cu
