// CUDA kernels of RmsNorm, RmsNormGrad and LayerNorm: one warp per row for short rows, one block
// per row for long ones, 16-byte loads when rows are contiguous and aligned. Rounding points follow
// backend/cpu/fast_norm.cpp (products and sums with _rn intrinsics so nothing contracts into
// an FMA the CPU does not have); only the order of the row sums differs.
#include <cstdint>
#include <type_traits>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/math.cuh"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/fast_norm_kernels.h"

namespace ingot::cu {
namespace {

/// Element i of a norm parameter of any float dtype, in the compute type.
template <typename A>
__device__ __forceinline__ A load_param(const void* p, Dtype t, int64_t i) {
  switch (t) {
    case Dtype::float16:
      return to_acc<A>(static_cast<const __half*>(p)[i]);
    case Dtype::bfloat16:
      return to_acc<A>(static_cast<const __nv_bfloat16*>(p)[i]);
    case Dtype::float64:
      return static_cast<A>(static_cast<const double*>(p)[i]);
    default:
      return static_cast<A>(static_cast<const float*>(p)[i]);
  }
}

template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

/// V consecutive elements of a row starting at i (one 16-byte load when V > 1).
template <typename T, typename A, int V>
__device__ __forceinline__ void load_vals(const T* row, int64_t i, int64_t sx, A* out) {
  if constexpr (V == 1) {
    out[0] = to_acc<A>(row[i * sx]);
  } else {
    const Vec<T, V> v = *reinterpret_cast<const Vec<T, V>*>(row + i);
#pragma unroll
    for (int j = 0; j < V; ++j) out[j] = to_acc<A>(v.v[j]);
  }
}

template <typename T, int V>
__device__ __forceinline__ void store_vals(T* row, int64_t i, const T* vals) {
  if constexpr (V == 1) {
    row[i] = vals[0];
  } else {
    Vec<T, V> v;
#pragma unroll
    for (int j = 0; j < V; ++j) v.v[j] = vals[j];
    *reinterpret_cast<Vec<T, V>*>(row + i) = v;
  }
}

/// Sum over the threads of one row: the warp (Block false) or the whole block.
template <bool Block, typename A>
__device__ __forceinline__ A row_sum(A v, A* smem) {
  if constexpr (Block)
    return block_sum(v, smem);
  else
    return warp_sum(v);
}

enum class Kind { rms, layer };

/// Output element for x value v of a row with mean mu (layer norm) and inverse deviation r,
/// weight w and bias b in the compute type (unused when absent), rounded as the CPU does.
/// rms: res is the residual's element (added after the norm rounds; unused without one).
template <typename T, typename A, Kind K>
__device__ __forceinline__ T norm_value(const NormArgs& p, A v, A mu, A r, A w, A b, A res) {
  if constexpr (K == Kind::rms) {
    const T n = rms_value<T>(v, r, p.weight != nullptr, w, p.add_unit_offset, p.weight_in_float32);
    return p.residual ? cast<T>(add_rn(to_acc<A>(n), res)) : n;
  } else {
    A y = mul_rn(v - mu, r);
    if (p.weight) y = mul_rn(y, w);
    if (p.bias) y = add_rn(y, b);
    return cast<T>(y);
  }
}

// Rows up to kWarpRowMax elements get one warp each (kRowsPerWarpBlock rows per block);
// longer rows a block of up to kMaxBlockThreads.
constexpr int64_t kWarpRowMax = 1024;
constexpr int kRowsPerWarpBlock = 4;
constexpr int kMaxBlockThreads = 512;

// Rows are handled by a warp (blockDim (32, rows per block)) or a block (blockDim (n, 1)).
// The row is re-read from memory (L1/L2) on every pass instead of being held in registers,
// which keeps any row length on one code path. Each element is read and written by the same
// thread, so out may alias x (a donated buffer).
template <typename T, typename A, int V, bool Block, Kind K>
__global__ void __launch_bounds__(Block ? kMaxBlockThreads : 32 * kRowsPerWarpBlock)
    norm_kernel(NormArgs p) {
  pdl_prologue();
  __shared__ A smem[32];
  const int lane = threadIdx.x;
  const int64_t span = static_cast<int64_t>(Block ? blockDim.x : 32) * V;
  const int64_t first = Block ? blockIdx.x : int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  const int64_t step = Block ? gridDim.x : int64_t(gridDim.x) * blockDim.y;
  for (int64_t row = first; row < p.n_rows; row += step) {
    const T* xr = static_cast<const T*>(p.x) + elem_offset(row, p.rows);
    T* orow = static_cast<T*>(p.out) + row * p.E;
    A vals[V];
    A s1 = 0;
    for (int64_t i = lane * V; i < p.E; i += span) {
      load_vals<T, A, V>(xr, i, p.sx, vals);
#pragma unroll
      for (int j = 0; j < V; ++j) s1 += K == Kind::rms ? vals[j] * vals[j] : vals[j];
    }
    s1 = row_sum<Block>(s1, smem);
    A mu = 0, ss = s1;
    if constexpr (K == Kind::layer) {
      mu = s1 / static_cast<A>(p.E);
      ss = 0;
      for (int64_t i = lane * V; i < p.E; i += span) {
        load_vals<T, A, V>(xr, i, p.sx, vals);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const A d = vals[j] - mu;
          ss += d * d;
        }
      }
      ss = row_sum<Block>(ss, smem);
    }
    const A r = A(1) / sqrt(ss / static_cast<A>(p.E) + static_cast<A>(p.eps));
    const T* rr = K == Kind::rms && p.residual
                      ? static_cast<const T*>(p.residual) + elem_offset(row, p.res_rows)
                      : nullptr;
    for (int64_t i = lane * V; i < p.E; i += span) {
      load_vals<T, A, V>(xr, i, p.sx, vals);
      A res[V];
#pragma unroll
      for (int j = 0; j < V; ++j) res[j] = A(0);
      if (rr) load_vals<T, A, V>(rr, i, p.sres, res);
      T o[V];
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const A w =
            p.weight ? load_param<A>(p.weight, p.weight_dtype, (i + j) * p.weight_stride) : A(0);
        const A b = K == Kind::layer && p.bias
                        ? load_param<A>(p.bias, p.bias_dtype, (i + j) * p.bias_stride)
                        : A(0);
        o[j] = norm_value<T, A, K>(p, vals[j], mu, r, w, b, res[j]);
      }
      store_vals<T, V>(orow, i, o);
    }
  }
}

// ---- rows of up to 1024 16-byte vectors: one vector per thread, held in registers ----
//
// A row is a warp (E <= 32 V, kRowsPerWarpBlock rows per block) or a block of up to 1024
// threads, so x and the parameters are read once, all loads in flight together. Same rounding
// as norm_kernel; only the order of the row sums differs.

/// Element j of the V-vector of parameter p at element i, in the compute type.
template <typename T, typename A, int V>
__device__ __forceinline__ void load_param_vals(const void* p, Dtype t, int64_t stride, bool vec,
                                                int64_t i, A* out) {
  if (vec) {
    load_vals<T, A, V>(static_cast<const T*>(p), i, 1, out);
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) out[j] = load_param<A>(p, t, (i + j) * stride);
  }
}

template <typename T, typename A, int V, bool Block, Kind K>
__global__ void __launch_bounds__(1024) norm_reg_kernel(NormArgs p) {
  pdl_prologue();
  __shared__ A smem[32];
  const int64_t row = Block ? int64_t(blockIdx.x) : int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (!Block && row >= p.n_rows) return;  // whole warps
  const int64_t i = int64_t(threadIdx.x) * V;
  const bool has = i < p.E;
  A vals[V], w[V], b[V], res[V];
#pragma unroll
  for (int j = 0; j < V; ++j) vals[j] = w[j] = b[j] = res[j] = A(0);
  if (has) {
    load_vals<T, A, V>(static_cast<const T*>(p.x) + elem_offset(row, p.rows), i, 1, vals);
    if (K == Kind::rms && p.residual)
      load_vals<T, A, V>(static_cast<const T*>(p.residual) + elem_offset(row, p.res_rows), i, 1,
                         res);
    if (p.weight)
      load_param_vals<T, A, V>(p.weight, p.weight_dtype, p.weight_stride, p.weight_vec, i, w);
    if (K == Kind::layer && p.bias)
      load_param_vals<T, A, V>(p.bias, p.bias_dtype, p.bias_stride, p.bias_vec, i, b);
  }
  A s1 = 0;
#pragma unroll
  for (int j = 0; j < V; ++j) s1 += K == Kind::rms ? vals[j] * vals[j] : vals[j];
  s1 = row_sum<Block>(s1, smem);
  A mu = 0, ss = s1;
  if constexpr (K == Kind::layer) {
    mu = s1 / static_cast<A>(p.E);
    ss = 0;
    if (has) {
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const A d = vals[j] - mu;
        ss += d * d;
      }
    }
    ss = row_sum<Block>(ss, smem);
  }
  if (!has) return;
  const A r = A(1) / sqrt(ss / static_cast<A>(p.E) + static_cast<A>(p.eps));
  T o[V];
#pragma unroll
  for (int j = 0; j < V; ++j) o[j] = norm_value<T, A, K>(p, vals[j], mu, r, w[j], b[j], res[j]);
  store_vals<T, V>(static_cast<T*>(p.out) + row * p.E, i, o);
}

// ---- RmsNormGrad: one pass for the two row sums (x.x and gw.x), one to write dx ----
//
// A row is a warp (E <= kWarpRowMax, kRowsPerWarpBlock rows a block) or a block; the second
// pass re-reads x and g (from L1/L2). Each element is read and written by the same thread, so
// out may alias g (a donated buffer).
template <typename T, typename A, int V, bool Block>
__global__ void __launch_bounds__(Block ? kMaxBlockThreads : 32 * kRowsPerWarpBlock)
    norm_grad_kernel(NormGradArgs p) {
  pdl_prologue();
  __shared__ A smem[32];
  const int lane = threadIdx.x;
  const int64_t span = static_cast<int64_t>(Block ? blockDim.x : 32) * V;
  const int64_t first = Block ? blockIdx.x : int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  const int64_t step = Block ? gridDim.x : int64_t(gridDim.x) * blockDim.y;
  const A one = p.add_unit_offset ? A(1) : A(0);
  for (int64_t row = first; row < p.n_rows; row += step) {
    const T* xr = static_cast<const T*>(p.x) + row * p.E;
    const T* gr = static_cast<const T*>(p.g) + row * p.E;
    T* orow = static_cast<T*>(p.out) + row * p.E;
    A xv[V], gv[V];
    A sxx = 0, sgx = 0;
    for (int64_t i = lane * V; i < p.E; i += span) {
      load_vals<T, A, V>(xr, i, 1, xv);
      load_vals<T, A, V>(gr, i, 1, gv);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const A w = p.weight
                        ? load_param<A>(p.weight, p.weight_dtype, (i + j) * p.weight_stride) + one
                        : A(1);
        sxx += xv[j] * xv[j];
        sgx += gv[j] * w * xv[j];
      }
    }
    sxx = row_sum<Block>(sxx, smem);
    sgx = row_sum<Block>(sgx, smem);
    const A r = A(1) / sqrt(sxx / static_cast<A>(p.E) + static_cast<A>(p.eps));
    const A m = sgx * r / static_cast<A>(p.E);  // mean(gw * n)
    for (int64_t i = lane * V; i < p.E; i += span) {
      load_vals<T, A, V>(xr, i, 1, xv);
      load_vals<T, A, V>(gr, i, 1, gv);
      T o[V];
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const A w = p.weight
                        ? load_param<A>(p.weight, p.weight_dtype, (i + j) * p.weight_stride) + one
                        : A(1);
        o[j] = cast<T>(r * (gv[j] * w - xv[j] * r * m));
      }
      store_vals<T, V>(orow, i, o);
    }
  }
}

/// Launches a kernel over rows of E elements read V at a time: the warp version (a warp per
/// row, kRowsPerWarpBlock rows a block) up to kWarpRowMax elements, else the block version (a
/// block per row, about four loads a thread, 32..kMaxBlockThreads threads).
template <typename Args>
void launch_rows(void (*warp_kernel)(Args), void (*block_kernel)(Args), const Args& a,
                 int64_t n_rows, int64_t E, int V, cudaStream_t s) {
  if (E <= kWarpRowMax) {
    launch_pdl(warp_kernel, grid_for(n_rows, kRowsPerWarpBlock), dim3(32, kRowsPerWarpBlock), 0, s,
               a);
    return;
  }
  const int64_t loads = (E + V - 1) / V;
  int64_t threads = ((loads + 3) / 4 + 31) / 32 * 32;
  threads = threads < 32 ? 32 : (threads > kMaxBlockThreads ? kMaxBlockThreads : threads);
  launch_pdl(block_kernel, grid_for(n_rows, 1), static_cast<unsigned>(threads), 0, s, a);
}

/// True when parameter p (dtype t, stride st) can be read as 16-byte vectors of x's dtype xt.
bool param_vec(const void* p, Dtype t, int64_t st, Dtype xt) {
  return p && t == xt && st == 1 && reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

/// True when rows described by `rows` from p can be read with 16-byte loads.
bool rows_aligned(const void* p, const Layout& rows, size_t es) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  for (int d = 0; d < rows.ndim; ++d)
    if (rows.shape[d] > 1 && (rows.strides[d] * static_cast<int64_t>(es)) % 16 != 0) return false;
  return true;
}

/// True when every row of x, out and the residual can be read with 16-byte loads of V elements.
bool vectorizable(const NormArgs& a, int V, size_t es) {
  if (V <= 1 || a.sx != 1 || a.E % V != 0) return false;
  if (reinterpret_cast<uintptr_t>(a.out) % 16 != 0 || !rows_aligned(a.x, a.rows, es)) return false;
  return !a.residual || (a.sres == 1 && rows_aligned(a.residual, a.res_rows, es));
}

template <Kind K>
void launch_norm(Dtype t, const NormArgs& a, cudaStream_t s) {
  if (a.n_rows == 0 || a.E == 0) return;
  dispatch_cuda_float(t, [&](auto tag) {
    using T = decltype(tag);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    constexpr int VW = static_cast<int>(16 / sizeof(T));
    const bool vec = vectorizable(a, VW, sizeof(T));
    const int V = vec ? VW : 1;
    const int64_t nvec = a.E / VW;
    if (vec && nvec <= 1024 && a.n_rows < (int64_t(1) << 31)) {
      NormArgs b = a;
      b.weight_vec = param_vec(a.weight, a.weight_dtype, a.weight_stride, t);
      b.bias_vec = param_vec(a.bias, a.bias_dtype, a.bias_stride, t);
      if (nvec <= 32) {
        const dim3 block(32, kRowsPerWarpBlock);
        launch_pdl(norm_reg_kernel<T, A, VW, false, K>,
                   static_cast<unsigned>((a.n_rows + kRowsPerWarpBlock - 1) / kRowsPerWarpBlock),
                   block, 0, s, b);
      } else {
        const unsigned threads = static_cast<unsigned>((nvec + 31) / 32 * 32);
        launch_pdl(norm_reg_kernel<T, A, VW, true, K>, static_cast<unsigned>(a.n_rows), threads, 0,
                   s, b);
      }
    } else if (vec) {
      launch_rows(norm_kernel<T, A, VW, false, K>, norm_kernel<T, A, VW, true, K>, a, a.n_rows, a.E,
                  V, s);
    } else {
      launch_rows(norm_kernel<T, A, 1, false, K>, norm_kernel<T, A, 1, true, K>, a, a.n_rows, a.E,
                  V, s);
    }
  });
  check_launch(K == Kind::rms ? "rms_norm_kernel" : "layer_norm_kernel");
}

void launch_norm_grad(Dtype t, const NormGradArgs& a, cudaStream_t s) {
  if (a.n_rows == 0 || a.E == 0) return;
  dispatch_cuda_float(t, [&](auto tag) {
    using T = decltype(tag);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    constexpr int VW = static_cast<int>(16 / sizeof(T));
    const bool vec = a.E % VW == 0 && reinterpret_cast<uintptr_t>(a.x) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(a.g) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(a.out) % 16 == 0;
    if (vec)
      launch_rows(norm_grad_kernel<T, A, VW, false>, norm_grad_kernel<T, A, VW, true>, a, a.n_rows,
                  a.E, VW, s);
    else
      launch_rows(norm_grad_kernel<T, A, 1, false>, norm_grad_kernel<T, A, 1, true>, a, a.n_rows,
                  a.E, 1, s);
  });
  check_launch("rms_norm_grad_kernel");
}

}  // namespace

void launch_rms_norm(Dtype t, const NormArgs& a, cudaStream_t s) {
  launch_norm<Kind::rms>(t, a, s);
}

void launch_rms_norm_grad(Dtype t, const NormGradArgs& a, cudaStream_t s) {
  launch_norm_grad(t, a, s);
}

void launch_layer_norm(Dtype t, const NormArgs& a, cudaStream_t s) {
  launch_norm<Kind::layer>(t, a, s);
}

}  // namespace ingot::cu
