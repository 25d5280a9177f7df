// CUDA kernels of the affine quantization primitives: quantize (one thread per group, the CPU
// kernel's arithmetic), dequantize (one thread per element) and a fused dequantize-GEMV (one
// warp per weight row, lanes striding over the packed words, float32 accumulation).
#include <cstdint>

#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/math.cuh"
#include "backend/cuda/device/types.cuh"
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

}  // namespace ingot::cu
