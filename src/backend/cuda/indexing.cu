// CUDA kernels of the indexing primitives: row gathers with 16-byte moves (take/gather with a
// contiguous inner block, the embedding lookup), an indexed elementwise map for the strided
// cases, and in-order line writes for put_along_axis and the scatter-adds (deterministic, no
// atomics).
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/indexing_kernels.h"

namespace ingot::cu {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;
constexpr int64_t kBlockRowUnits = 64;  // rows at least this many units get a block each

/// Index dtypes as the CPU reads them (anything else as int64).
template <typename F>
void dispatch_index(Dtype t, F&& f) {
  switch (t) {
    case Dtype::uint8:
      return f(uint8_t{});
    case Dtype::int8:
      return f(int8_t{});
    case Dtype::int32:
      return f(int32_t{});
    case Dtype::uint32:
      return f(uint32_t{});
    default:
      return f(int64_t{});
  }
}

/// Index value with negative ones counted from the end (may still be out of range).
template <typename I>
__device__ __forceinline__ int64_t wrapped(I v, int64_t n) {
  int64_t t = static_cast<int64_t>(v);
  if constexpr (std::is_signed_v<I>)
    if (t < 0) t += n;
  return t;
}

/// The wrapped index, or -1 (recorded as a fault) when it is out of range.
template <typename I>
__device__ __forceinline__ int64_t checked(I v, int64_t n, const FaultSite& f) {
  const int64_t t = wrapped(v, n);
  if (t >= 0 && t < n) return t;
  record_fault(f, static_cast<int64_t>(v), n);
  return -1;
}

/// Gathers clamp out-of-range indices into [0, n) so they never read outside the array (the
/// fault is recorded and raised on the host).
template <typename I>
__device__ __forceinline__ int64_t clamped(I v, int64_t n, const FaultSite& f) {
  const int64_t t = checked(v, n, f);
  return t < 0 ? 0 : t;
}

/// Offsets of row-major position i of m.shape in the dense, index and indexed operands.
__device__ __forceinline__ void map_offsets(int64_t i, const IndexMap& m, int64_t& od, int64_t& oi,
                                            int64_t& ox) {
  od = oi = ox = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= m.ndim) continue;
    const int64_t q = i / m.shape[d];
    const int64_t k = i - q * m.shape[d];
    i = q;
    od += k * m.dense[d];
    oi += k * m.index[d];
    ox += k * m.indexed[d];
  }
}

// ---- take / gather over contiguous rows ----

template <typename U, typename I>
__global__ void take_rows_block_kernel(const __grid_constant__ TakeRows p, int64_t rows,
                                       int64_t units) {
  pdl_prologue();
  const U* src = static_cast<const U*>(p.src);
  U* dst = static_cast<U*>(p.dst);
  const I* idx = static_cast<const I*>(p.idx);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t o = r / p.idx_count, j = r - o * p.idx_count;
    const int64_t t = clamped(idx[elem_offset(j, p.idx_layout)], p.axis_size, p.site);
    const U* s = src + elem_offset(o, p.outer) + t * p.axis_stride;
    U* d = dst + r * units;
    for (int64_t k = threadIdx.x; k < units; k += blockDim.x) d[k] = s[k];
  }
}

template <typename U, typename I>
__global__ void take_rows_flat_kernel(const __grid_constant__ TakeRows p, int64_t n,
                                      int64_t units) {
  pdl_prologue();
  const U* src = static_cast<const U*>(p.src);
  U* dst = static_cast<U*>(p.dst);
  const I* idx = static_cast<const I*>(p.idx);
  INGOT_CUDA_KERNEL_LOOP(e, n) {
    const int64_t r = e / units, k = e - r * units;
    const int64_t o = r / p.idx_count, j = r - o * p.idx_count;
    const int64_t t = clamped(idx[elem_offset(j, p.idx_layout)], p.axis_size, p.site);
    dst[e] = src[elem_offset(o, p.outer) + t * p.axis_stride + k];
  }
}

bool aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

/// Widest unit (<= 16 bytes) that divides the row, both pointers and every source stride.
int row_unit(const TakeRows& p) {
  const int e = p.elem_size;
  for (int v = 16; v > e; v /= 2) {
    if (v % e != 0) continue;
    bool ok = (p.inner * e) % v == 0 && (p.axis_stride * e) % v == 0 && aligned(p.src, v) &&
              aligned(p.dst, v);
    for (int d = 0; ok && d < p.outer.ndim; ++d) ok = (p.outer.strides[d] * e) % v == 0;
    if (ok) return v;
  }
  return e;
}

// ---- indexed elementwise maps ----

template <typename T, typename I>
__global__ void gather_kernel(const __grid_constant__ IndexMap m, int64_t n) {
  pdl_prologue();
  const T* src = static_cast<const T*>(m.src);
  T* dst = static_cast<T*>(m.dst);
  const I* idx = static_cast<const I*>(m.idx);
  INGOT_CUDA_KERNEL_LOOP(i, n) {
    int64_t od, oi, ox;
    map_offsets(i, m, od, oi, ox);
    dst[od] = src[ox + clamped(idx[oi], m.axis_size, m.site) * m.axis_stride];
  }
}

template <typename T, typename I>
__global__ void put_lines_kernel(const __grid_constant__ IndexMap m, int64_t lines) {
  pdl_prologue();
  const T* src = static_cast<const T*>(m.src);
  T* dst = static_cast<T*>(m.dst);
  const I* idx = static_cast<const I*>(m.idx);
  INGOT_CUDA_KERNEL_LOOP(l, lines) {
    int64_t od, oi, ox;
    map_offsets(l, m, od, oi, ox);
    for (int64_t k = 0; k < m.line_len; ++k) {
      const int64_t t = checked(idx[oi + k * m.index_line_stride], m.axis_size, m.site);
      if (t >= 0) dst[ox + t * m.axis_stride] = src[od + k * m.dense_line_stride];
    }
  }
}

/// Device type of scatter_acc_type.
template <typename T>
using scatter_acc_t =
    std::conditional_t<is_half_v<T>, float,
                       std::conditional_t<sizeof(T) == 1 && !std::is_same_v<T, bool>, uint32_t, T>>;

/// *p += v on the accumulator (wrapping for integers, logical or for bool). Plain
/// read-modify-write: each destination has exactly one writing thread (see the lines kernel).
template <typename T>
__device__ __forceinline__ void accumulate(scatter_acc_t<T>* p, T v) {
  using A = scatter_acc_t<T>;
  if constexpr (std::is_same_v<T, bool>) {
    if (v) *p = true;
  } else if constexpr (is_half_v<T>) {
    *p += to_float(v);
  } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    *p += v;
  } else if constexpr (sizeof(A) == 8) {  // modulo 2^64
    *p = static_cast<A>(static_cast<unsigned long long>(*p) + static_cast<unsigned long long>(v));
  } else {  // 8- and 32-bit integers, modulo 2^32
    *p = static_cast<A>(static_cast<unsigned int>(*p) + static_cast<unsigned int>(v));
  }
}

/// One thread per line: the line's updates are added in index order, so sums are bitwise
/// reproducible and equal the CPU's sequential ones (no atomics: lines never share a
/// destination, the indexed axis being the only one a line moves along).
template <typename T, typename I>
__global__ void scatter_add_lines_kernel(const __grid_constant__ IndexMap m, int64_t lines) {
  const T* src = static_cast<const T*>(m.src);
  auto* dst = static_cast<scatter_acc_t<T>*>(m.dst);
  const I* idx = static_cast<const I*>(m.idx);
  INGOT_CUDA_KERNEL_LOOP(l, lines) {
    int64_t od, oi, ox;
    map_offsets(l, m, od, oi, ox);
    for (int64_t k = 0; k < m.line_len; ++k) {
      const int64_t t = checked(idx[oi + k * m.index_line_stride], m.axis_size, m.site);
      if (t >= 0) accumulate(dst + ox + t * m.axis_stride, src[od + k * m.dense_line_stride]);
    }
  }
}

template <typename T>
__global__ void to_acc_kernel(const T* a, Layout l, scatter_acc_t<T>* acc, int64_t n) {
  INGOT_CUDA_KERNEL_LOOP(i, n) {
    if constexpr (is_half_v<T>)
      acc[i] = to_float(a[elem_offset(i, l)]);
    else
      acc[i] = static_cast<scatter_acc_t<T>>(a[elem_offset(i, l)]);
  }
}

template <typename T>
__global__ void from_acc_kernel(const scatter_acc_t<T>* acc, T* out, int64_t n) {
  INGOT_CUDA_KERNEL_LOOP(i, n) {
    if constexpr (is_half_v<T>)
      out[i] = cast<T>(acc[i]);
    else
      out[i] = static_cast<T>(acc[i]);
  }
}

/// Calls f(T{}) for the dtypes whose scatter accumulator differs from the dtype.
template <typename F>
void dispatch_widened(Dtype t, F&& f) {
  switch (t) {
    case Dtype::float16:
      return f(__half{});
    case Dtype::bfloat16:
      return f(__nv_bfloat16{});
    case Dtype::int8:
      return f(int8_t{});
    case Dtype::uint8:
      return f(uint8_t{});
    default:
      return;
  }
}

int64_t map_size(const IndexMap& m) {
  int64_t n = 1;
  for (int d = 0; d < m.ndim; ++d) n *= m.shape[d];
  return n;
}

}  // namespace

void launch_take_rows(const TakeRows& p0, cudaStream_t s) {
  const int64_t rows = p0.outer_count * p0.idx_count;
  if (rows == 0 || p0.inner == 0) return;
  TakeRows p = p0;
  const int unit = row_unit(p0);
  const int64_t r = unit / p0.elem_size;  // elements per unit
  const int64_t units = p0.inner / r;
  p.axis_stride /= r;
  for (int d = 0; d < p.outer.ndim; ++d) p.outer.strides[d] /= r;
  dispatch_unit(unit, [&](auto u0) {
    using U = decltype(u0);
    dispatch_index(p.idx_type, [&](auto i0) {
      using I = decltype(i0);
      if (units >= kBlockRowUnits) {
        const int threads = static_cast<int>(std::min<int64_t>(kThreads, (units + 31) / 32 * 32));
        const auto blocks = static_cast<unsigned>(std::min(rows, kMaxBlocks));
        launch_pdl(take_rows_block_kernel<U, I>, blocks, threads, 0, s, p, rows, units);
      } else {
        const int64_t n = rows * units;
        launch_pdl(take_rows_flat_kernel<U, I>, grid_for(n, kThreads), kThreads, 0, s, p, n, units);
      }
    });
  });
  check_launch("take_rows_kernel");
}

void launch_gather(const IndexMap& m, cudaStream_t s) {
  const int64_t n = map_size(m);
  if (n == 0) return;
  dispatch_unit(static_cast<int>(size_of(m.dtype)), [&](auto u0) {
    using T = decltype(u0);
    dispatch_index(m.idx_type, [&](auto i0) {
      using I = decltype(i0);
      launch_pdl(gather_kernel<T, I>, grid_for(n, kThreads), kThreads, 0, s, m, n);
    });
  });
  check_launch("gather_kernel");
}

void launch_put_lines(const IndexMap& m, cudaStream_t s) {
  const int64_t lines = map_size(m);
  if (lines == 0 || m.line_len == 0) return;
  dispatch_unit(static_cast<int>(size_of(m.dtype)), [&](auto u0) {
    using T = decltype(u0);
    dispatch_index(m.idx_type, [&](auto i0) {
      using I = decltype(i0);
      launch_pdl(put_lines_kernel<T, I>, grid_for(lines, kThreads), kThreads, 0, s, m, lines);
    });
  });
  check_launch("put_lines_kernel");
}

void launch_scatter_add(const IndexMap& m, cudaStream_t s) {
  const int64_t lines = map_size(m);
  if (lines == 0 || m.line_len == 0) return;
  dispatch_cuda_dtype(m.dtype, [&](auto t0) {
    using T = decltype(t0);
    dispatch_index(m.idx_type, [&](auto i0) {
      using I = decltype(i0);
      scatter_add_lines_kernel<T, I><<<grid_for(lines, kThreads), kThreads, 0, s>>>(m, lines);
    });
  });
  check_launch("scatter_add_lines_kernel");
}

void launch_to_acc(const void* a, Dtype t, const Layout& layout, void* acc, int64_t n,
                   cudaStream_t s) {
  if (n == 0) return;
  dispatch_widened(t, [&](auto t0) {
    using T = decltype(t0);
    to_acc_kernel<T><<<grid_for(n, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(a), layout, static_cast<scatter_acc_t<T>*>(acc), n);
    check_launch("to_acc_kernel");
  });
}

void launch_from_acc(const void* acc, Dtype t, void* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  dispatch_widened(t, [&](auto t0) {
    using T = decltype(t0);
    from_acc_kernel<T><<<grid_for(n, kThreads), kThreads, 0, s>>>(
        static_cast<const scatter_acc_t<T>*>(acc), static_cast<T*>(out), n);
    check_launch("from_acc_kernel");
  });
}

}  // namespace ingot::cu
