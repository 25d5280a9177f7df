// CUDA kernels of the random primitives: the key's Threefry-2x32 word stream (JAX's layout, as
// primitives/random.h defines it) mapped to values with the CPU's exact formulas. Float math
// uses explicit round-to-nearest intrinsics so nvcc never fuses what the CPU rounds twice.
#include <cstdint>
#include <type_traits>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/random_kernels.h"

namespace ingot::cu {

namespace {

constexpr int kThreads = 256;
constexpr double k2pow24 = 16777216.0;
constexpr double k2pow32 = 4294967296.0;
constexpr double kPi = 3.14159265358979323846;

struct Key {
  uint32_t k0, k1;
};

__device__ __forceinline__ Key load_key(const RandomOut& r) {
  return {r.key[0], r.key[r.key_stride]};
}

template <int R>
__device__ __forceinline__ void tf_round(uint32_t& x0, uint32_t& x1) {
  x0 += x1;
  x1 = (x1 << R) | (x1 >> (32 - R));
  x1 ^= x0;
}

/// Four rounds with the rotations of even (0) or odd (1) groups.
template <int G>
__device__ __forceinline__ void tf_rounds4(uint32_t& x0, uint32_t& x1) {
  tf_round<G == 0 ? 13 : 17>(x0, x1);
  tf_round<G == 0 ? 15 : 29>(x0, x1);
  tf_round<G == 0 ? 26 : 16>(x0, x1);
  tf_round<G == 0 ? 6 : 24>(x0, x1);
}

/// Threefry-2x32, 20 rounds, of the counter (x0, x1) under key k.
__device__ __forceinline__ uint2 threefry(Key k, uint32_t x0, uint32_t x1) {
  const uint32_t k2 = k.k0 ^ k.k1 ^ 0x1BD11BDAu;
  x0 += k.k0;
  x1 += k.k1;
  tf_rounds4<0>(x0, x1);
  x0 += k.k1;
  x1 += k2 + 1;
  tf_rounds4<1>(x0, x1);
  x0 += k2;
  x1 += k.k0 + 2;
  tf_rounds4<0>(x0, x1);
  x0 += k.k0;
  x1 += k.k1 + 3;
  tf_rounds4<1>(x0, x1);
  x0 += k.k1;
  x1 += k2 + 4;
  tf_rounds4<0>(x0, x1);
  x0 += k2;
  x1 += k.k0 + 5;
  return make_uint2(x0, x1);
}

/// Word w of the m-word stream: with h = ceil(m / 2), pair p encrypts (p, p + h) (or (p, 0)
/// when p + h == m); word p is its first half, word p + h its second.
__device__ __forceinline__ uint32_t stream_word(Key k, int64_t w, int64_t m) {
  const int64_t h = (m + 1) / 2;
  if (w < h)
    return threefry(k, static_cast<uint32_t>(w), w + h < m ? static_cast<uint32_t>(w + h) : 0u).x;
  return threefry(k, static_cast<uint32_t>(w - h), static_cast<uint32_t>(w)).y;
}

/// One word per element: thread p computes pair p and emits words p and p + h.
template <typename Emit>
__global__ void pairs_kernel(RandomOut r, Emit emit) {
  const Key k = load_key(r);
  const int64_t m = r.n, h = (m + 1) / 2, full = m - h;
  INGOT_CUDA_KERNEL_LOOP(p, h) {
    if (p < full) {
      const uint2 y = threefry(k, static_cast<uint32_t>(p), static_cast<uint32_t>(p + h));
      emit(p, y.x);
      emit(p + h, y.y);
    } else {
      emit(p, threefry(k, static_cast<uint32_t>(p), 0u).x);
    }
  }
}

/// Two words per element (words 2i and 2i + 1 of the 2n-word stream).
template <typename Emit>
__global__ void words2_kernel(RandomOut r, Emit emit) {
  const Key k = load_key(r);
  const int64_t m = 2 * r.n;
  INGOT_CUDA_KERNEL_LOOP(i, r.n) emit(i, stream_word(k, 2 * i, m), stream_word(k, 2 * i + 1, m));
}

/// A double result stored as T the way the CPU's cast_value does (16-bit floats via float).
template <typename T>
__device__ __forceinline__ T store_as(double v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else if constexpr (std::is_same_v<T, float>)
    return __double2float_rn(v);
  else
    return cast<T>(__double2float_rn(v));
}

__device__ __forceinline__ uint64_t bits53(uint32_t w0, uint32_t w1) {
  return ((static_cast<uint64_t>(w0) << 32) | w1) >> 11;
}

/// logf as the CPU's libm gives it (correctly rounded but for rare last-ulp cases): the double
/// log rounded once.
__device__ __forceinline__ float log_f(float x) {
  return __double2float_rn(log(static_cast<double>(x)));
}

__device__ __forceinline__ float horner(float c, float p, float w) {
  return __fadd_rn(c, __fmul_rn(p, w));
}

/// The CPU's single-precision erfinv (Giles 2011) with its rounding points.
__device__ __forceinline__ float erfinv_f(float x) {
  float w = -log_f(__fmul_rn(__fsub_rn(1.0f, x), __fadd_rn(1.0f, x)));
  float p;
  if (w < 5.0f) {
    w = __fsub_rn(w, 2.5f);
    p = 2.81022636e-08f;
    p = horner(3.43273939e-07f, p, w);
    p = horner(-3.5233877e-06f, p, w);
    p = horner(-4.39150654e-06f, p, w);
    p = horner(0.00021858087f, p, w);
    p = horner(-0.00125372503f, p, w);
    p = horner(-0.00417768164f, p, w);
    p = horner(0.246640727f, p, w);
    p = horner(1.50140941f, p, w);
  } else {
    w = __fsub_rn(__fsqrt_rn(w), 3.0f);
    p = -0.000200214257f;
    p = horner(0.000100950558f, p, w);
    p = horner(0.00134934322f, p, w);
    p = horner(-0.00367342844f, p, w);
    p = horner(0.00573950773f, p, w);
    p = horner(-0.0076224613f, p, w);
    p = horner(0.00943887047f, p, w);
    p = horner(1.00167406f, p, w);
    p = horner(2.83297682f, p, w);
  }
  return __fmul_rn(p, x);
}

struct BitsEmit {
  uint32_t* out;
  __device__ void operator()(int64_t i, uint32_t w) const { out[i] = w; }
};

template <typename T>
struct UniformEmit {
  T* out;
  float low, range, lo, hi;
  __device__ void operator()(int64_t i, uint32_t w) const {
    const float u = __fmul_rn(static_cast<float>(static_cast<int32_t>(w >> 8)), 0x1p-24f);
    const float v = __fadd_rn(low, __fmul_rn(u, range));
    out[i] = cast<T>(fminf(fmaxf(v, lo), hi));
  }
};

struct Uniform64Emit {
  double* out;
  double low, range, lo, hi;
  __device__ void operator()(int64_t i, uint32_t w0, uint32_t w1) const {
    const double u = static_cast<double>(bits53(w0, w1)) * 0x1p-53;
    const double v = __dadd_rn(low, __dmul_rn(u, range));
    out[i] = v < lo ? lo : (hi < v ? hi : v);
  }
};

template <typename T>
struct NormalEmit {
  T* out;
  double loc, scale;
  __device__ void operator()(int64_t i, uint32_t w) const {
    // (2k + 1) / 2^24 - 1 for k in [0, 2^24): exact in double and in float.
    const float u = static_cast<float>((2.0 * static_cast<double>(w >> 8) + 1.0) / k2pow24 - 1.0);
    const float z = __fmul_rn(1.41421356237309505f, erfinv_f(u));
    out[i] = store_as<T>(__dadd_rn(loc, __dmul_rn(scale, static_cast<double>(z))));
  }
};

struct Normal64Emit {
  double* out;
  double loc, scale;
  __device__ void operator()(int64_t i, uint32_t w0, uint32_t w1) const {
    const double u1 = (static_cast<double>(w0) + 0.5) / k2pow32;  // (0, 1)
    const double u2 = static_cast<double>(w1) / k2pow32;
    const double z = __dmul_rn(__dsqrt_rn(__dmul_rn(-2.0, log(u1))), cos(__dmul_rn(2.0 * kPi, u2)));
    out[i] = __dadd_rn(loc, __dmul_rn(scale, z));
  }
};

template <typename T>
struct RandIntEmit {
  T* out;
  uint64_t base, range;
  __device__ void operator()(int64_t i, uint32_t w0, uint32_t w1) const {
    const uint64_t x = (static_cast<uint64_t>(w0) << 32) | w1;
    out[i] = static_cast<T>(static_cast<int64_t>(base + x % range));
  }
};

template <typename P>
struct BernoulliEmit {
  bool* out;
  const P* p;
  Layout pl;
  __device__ void operator()(int64_t i, uint32_t w) const {
    out[i] = static_cast<double>(w) / k2pow32 < cast<double>(p[elem_offset(i, pl)]);
  }
};

template <typename T>
struct GumbelEmit {
  T* out;
  __device__ void operator()(int64_t i, uint32_t w) const {
    const double u = (static_cast<double>(w >> 8) + 0.5) / k2pow24;  // exact, in (0, 1)
    out[i] = store_as<T>(-log(-log(u)));
  }
};

struct Gumbel64Emit {
  double* out;
  __device__ void operator()(int64_t i, uint32_t w0, uint32_t w1) const {
    const double u = __dmul_rn(__dadd_rn(static_cast<double>(bits53(w0, w1)), 0.5), 0x1p-53);
    out[i] = -log(-log(u));
  }
};

template <typename Emit>
void run_pairs(const RandomOut& r, const Emit& e, cudaStream_t s, const char* name) {
  const int64_t h = (r.n + 1) / 2;
  pairs_kernel<<<grid_for(h, kThreads), kThreads, 0, s>>>(r, e);
  check_launch(name);
}

template <typename Emit>
void run_words2(const RandomOut& r, const Emit& e, cudaStream_t s, const char* name) {
  words2_kernel<<<grid_for(r.n, kThreads), kThreads, 0, s>>>(r, e);
  check_launch(name);
}

/// Running argmax state: ties keep the lower index (the CPU's first maximum); NaN never wins.
__device__ __forceinline__ void merge_best(double& v, uint32_t& a, double v2, uint32_t a2) {
  if (v2 > v || (v2 == v && a2 < a)) {
    v = v2;
    a = a2;
  }
}

/// One block per [outer, inner] position, threads striding over the axis.
template <typename T>
__global__ void categorical_kernel(RandomOut r, CategoricalArgs c) {
  __shared__ double sv[kThreads / 32];
  __shared__ uint32_t sa[kThreads / 32];
  const Key key = load_key(r);
  const T* logits = static_cast<const T*>(c.logits);
  uint32_t* out = static_cast<uint32_t*>(r.out);
  const int64_t rows = c.outer * c.inner, m = rows * c.axis;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = (row / c.inner) * c.axis * c.inner + row % c.inner;
    double best = -INFINITY;
    uint32_t arg = UINT32_MAX;
    for (int64_t j = threadIdx.x; j < c.axis; j += blockDim.x) {
      const int64_t k = base + j * c.inner;
      const double u = (static_cast<double>(stream_word(key, k, m)) + 0.5) / k2pow32;
      const double l = cast<double>(logits[c.contiguous ? k : elem_offset(k, c.layout)]);
      const double v = __dsub_rn(l, log(-log(u)));
      if (v > best) {
        best = v;
        arg = static_cast<uint32_t>(j);
      }
    }
    for (int off = 16; off > 0; off /= 2)
      merge_best(best, arg, __shfl_down_sync(0xffffffffu, best, off),
                 __shfl_down_sync(0xffffffffu, arg, off));
    if (lane == 0) {
      sv[warp] = best;
      sa[warp] = arg;
    }
    __syncthreads();
    if (warp == 0) {
      best = lane < nwarps ? sv[lane] : -INFINITY;
      arg = lane < nwarps ? sa[lane] : UINT32_MAX;
      for (int off = 16; off > 0; off /= 2)
        merge_best(best, arg, __shfl_down_sync(0xffffffffu, best, off),
                   __shfl_down_sync(0xffffffffu, arg, off));
      if (lane == 0) out[row] = arg == UINT32_MAX ? 0u : arg;
    }
    __syncthreads();
  }
}

}  // namespace

void launch_random_bits(const RandomOut& r, cudaStream_t s) {
  if (r.n == 0) return;
  run_pairs(r, BitsEmit{static_cast<uint32_t*>(r.out)}, s, "random_bits_kernel");
}

void launch_uniform(const RandomOut& r, const UniformRange& u, cudaStream_t s) {
  if (r.n == 0) return;
  dispatch_cuda_float(r.dtype, [&](auto t0) {
    using T = decltype(t0);
    if constexpr (std::is_same_v<T, double>) {
      run_words2(r, Uniform64Emit{static_cast<double*>(r.out), u.low, u.high - u.low, u.lo, u.hi},
                 s, "uniform_kernel");
    } else {
      // In float: lo/hi are values of T, so clamping before the (monotonic) rounding to T
      // keeps every result inside [low, high), as on the CPU.
      run_pairs(r,
                UniformEmit<T>{static_cast<T*>(r.out), static_cast<float>(u.low),
                               static_cast<float>(u.high - u.low), static_cast<float>(u.lo),
                               static_cast<float>(u.hi)},
                s, "uniform_kernel");
    }
  });
}

void launch_normal(const RandomOut& r, double loc, double scale, cudaStream_t s) {
  if (r.n == 0) return;
  dispatch_cuda_float(r.dtype, [&](auto t0) {
    using T = decltype(t0);
    if constexpr (std::is_same_v<T, double>)
      run_words2(r, Normal64Emit{static_cast<double*>(r.out), loc, scale}, s, "normal_kernel");
    else
      run_pairs(r, NormalEmit<T>{static_cast<T*>(r.out), loc, scale}, s, "normal_kernel");
  });
}

void launch_randint(const RandomOut& r, int64_t low, int64_t high, cudaStream_t s) {
  if (r.n == 0) return;
  const uint64_t base = static_cast<uint64_t>(low);
  const uint64_t range = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
  dispatch_cuda_dtype(r.dtype, [&](auto t0) {
    using T = decltype(t0);
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
      run_words2(r, RandIntEmit<T>{static_cast<T*>(r.out), base, range}, s, "randint_kernel");
  });
}

void launch_bernoulli(const RandomOut& r, const void* p, Dtype p_type, const Layout& p_layout,
                      cudaStream_t s) {
  if (r.n == 0) return;
  dispatch_cuda_dtype(p_type, [&](auto t0) {
    using P = decltype(t0);
    run_pairs(r, BernoulliEmit<P>{static_cast<bool*>(r.out), static_cast<const P*>(p), p_layout}, s,
              "bernoulli_kernel");
  });
}

void launch_gumbel(const RandomOut& r, cudaStream_t s) {
  if (r.n == 0) return;
  dispatch_cuda_float(r.dtype, [&](auto t0) {
    using T = decltype(t0);
    if constexpr (std::is_same_v<T, double>)
      run_words2(r, Gumbel64Emit{static_cast<double*>(r.out)}, s, "gumbel_kernel");
    else
      run_pairs(r, GumbelEmit<T>{static_cast<T*>(r.out)}, s, "gumbel_kernel");
  });
}

void launch_categorical(const RandomOut& r, const CategoricalArgs& c, cudaStream_t s) {
  const int64_t rows = c.outer * c.inner;
  if (rows == 0 || c.axis == 0) return;
  const int threads = static_cast<int>(c.axis >= kThreads ? kThreads : (c.axis + 31) / 32 * 32);
  const auto blocks = static_cast<unsigned>(rows < (int64_t(1) << 20) ? rows : int64_t(1) << 20);
  dispatch_cuda_dtype(c.dtype, [&](auto t0) {
    using T = decltype(t0);
    categorical_kernel<T><<<blocks, threads, 0, s>>>(r, c);
  });
  check_launch("categorical_kernel");
}

}  // namespace ingot::cu
