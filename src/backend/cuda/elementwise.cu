// CUDA kernels of the elementwise primitives. Three kernel templates, written once: vector
// (16-byte loads/stores; inputs contiguous or broadcast scalars), flat (the same, misaligned)
// and strided; each op is instantiated only for the dtypes it accepts. AsType: one kernel, plus
// a 16-byte one for conversions between floating types of contiguous arrays or rows.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backend/cuda/device/ew_ops.cuh"
#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/elementwise_kernels.h"

namespace ingot::cu {
namespace {

constexpr int kThreads = 256;

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// Op on storage values: 16-bit floats compute in float and round once into the output.
template <typename Op, typename T>
struct UnaryFn {
  static constexpr int arity = 1;
  using O = ew::cond_t<Op::bool_out, bool, T>;
  __device__ __forceinline__ O operator()(T x) const {
    return ew::from_compute<O>(Op{}(ew::to_compute<ew::compute_t<T>>(x)));
  }
};
// gelu_tanh of 16-bit floats: mostly in float, the same bits (ew::gelu_tanh_round).
template <typename T>
struct UnaryFn<ew::GeluTanhOp, T> {
  static constexpr int arity = 1;
  using O = T;
  __device__ __forceinline__ O operator()(T x) const {
    return ew::gelu_tanh_to<T>(ew::to_compute<ew::compute_t<T>>(x));
  }
};
template <typename Op, typename T>
struct BinaryFn {
  static constexpr int arity = 2;
  using O = ew::cond_t<Op::bool_out, bool, T>;
  __device__ __forceinline__ O operator()(T a, T b) const {
    using C = ew::compute_t<T>;
    return ew::from_compute<O>(Op{}(ew::to_compute<C>(a), ew::to_compute<C>(b)));
  }
};
template <typename T>
struct WhereFn {
  static constexpr int arity = 3;
  using O = T;
  __device__ __forceinline__ T operator()(bool c, T a, T b) const { return ew::WhereOp{}(c, a, b); }
};

/// fn on the elements at offsets ia, ib, ic of its inputs (as many as its arity).
template <typename Fn, typename A, typename B, typename C>
__device__ __forceinline__ typename Fn::O apply(const Fn& fn, const A* a, const B* b, const C* c,
                                                int64_t ia, int64_t ib, int64_t ic) {
  if constexpr (Fn::arity == 1)
    return fn(a[ia]);
  else if constexpr (Fn::arity == 2)
    return fn(a[ia], b[ib]);
  else
    return fn(a[ia], b[ib], c[ic]);
}

/// The N elements of vector v of an input: loaded with one 16-byte (or narrower) access when
/// contiguous (stride 1), else its one broadcast value repeated (stride 0).
template <int N, typename T>
__device__ __forceinline__ Vec<T, N> load_vec(const T* p, int64_t stride, int64_t v) {
  if (stride != 0) return reinterpret_cast<const Vec<T, N>*>(p)[v];
  Vec<T, N> r;
  const T x = p[0];
#pragma unroll
  for (int k = 0; k < N; ++k) r.v[k] = x;
  return r;
}

/// Inputs contiguous and aligned to their N-element vectors, or broadcast values (stride 0);
/// the output contiguous and aligned.
template <int N, typename Fn, typename O, typename A, typename B, typename C>
__global__ void __launch_bounds__(kThreads)
    ew_vec_kernel(Fn fn, O* out, const A* a, const B* b, const C* c, int64_t sa, int64_t sb,
                  int64_t sc, int64_t n) {
  pdl_prologue();
  const int64_t nvec = n / N;
  INGOT_CUDA_KERNEL_LOOP(v, nvec) {
    const Vec<A, N> va = load_vec<N>(a, sa, v);
    Vec<O, N> r;
    if constexpr (Fn::arity == 1) {
#pragma unroll
      for (int k = 0; k < N; ++k) r.v[k] = fn(va.v[k]);
    } else if constexpr (Fn::arity == 2) {
      const Vec<B, N> vb = load_vec<N>(b, sb, v);
#pragma unroll
      for (int k = 0; k < N; ++k) r.v[k] = fn(va.v[k], vb.v[k]);
    } else {
      const Vec<B, N> vb = load_vec<N>(b, sb, v);
      const Vec<C, N> vc = load_vec<N>(c, sc, v);
#pragma unroll
      for (int k = 0; k < N; ++k) r.v[k] = fn(va.v[k], vb.v[k], vc.v[k]);
    }
    reinterpret_cast<Vec<O, N>*>(out)[v] = r;
  }
  // The last n % N elements: one each for the first threads of the grid.
  const int64_t i = nvec * N + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = apply(fn, a, b, c, i * sa, i * sb, i * sc);
}

/// Inputs contiguous (stride 1) or one broadcast value (stride 0).
template <typename Fn, typename O, typename A, typename B, typename C>
__global__ void __launch_bounds__(kThreads)
    ew_flat_kernel(Fn fn, O* out, const A* a, const B* b, const C* c, int64_t sa, int64_t sb,
                   int64_t sc, int64_t n) {
  pdl_prologue();
  INGOT_CUDA_KERNEL_LOOP(i, n) {
    out[i] = apply(fn, a, b, c, i * sa, i * sb, i * sc);
  }
}

/// Shared (collapsed) shape and each input's strides of a strided launch.
template <int K>
struct Strided {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[K][kMaxDims] = {};
};

/// Offsets of the element with row-major index i in each input; I is uint32_t when every index
/// fits (32-bit division is several times cheaper than 64-bit).
template <int K, typename I>
__device__ __forceinline__ void strided_offsets(I i, const Strided<K>& s, int64_t (&off)[K]) {
#pragma unroll
  for (int k = 0; k < K; ++k) off[k] = 0;
  for (int d = s.ndim - 1; d >= 0; --d) {
    const I len = static_cast<I>(s.shape[d]);
    const I q = i / len;
    const int64_t r = static_cast<int64_t>(i - q * len);
    i = q;
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] += r * s.strides[k][d];
  }
}

template <typename Fn, typename O, typename A, typename B, typename C>
__global__ void __launch_bounds__(kThreads)
    ew_strided_kernel(Fn fn, O* out, const A* a, const B* b, const C* c, Strided<Fn::arity> s,
                      int64_t n) {
  pdl_prologue();
  constexpr int K = Fn::arity;
  const bool narrow = n <= int64_t(0xffffffff);
  INGOT_CUDA_KERNEL_LOOP(i, n) {
    int64_t off[K];
    if (narrow)
      strided_offsets<K>(static_cast<uint32_t>(i), s, off);
    else
      strided_offsets<K>(i, s, off);
    out[i] = apply(fn, a, b, c, off[0], off[K > 1 ? 1 : 0], off[K > 2 ? 2 : 0]);
  }
}

bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

/// Queues fn over l: the vector kernel when contiguous/scalar operands are aligned, else the
/// flat one; the strided kernel for strided launches.
template <typename Fn, typename A, typename B = A, typename C = A>
void run(const Fn& fn, const EwLaunch& l, cudaStream_t s) {
  using O = typename Fn::O;
  constexpr int K = Fn::arity;
  if (l.n == 0) return;
  O* out = static_cast<O*>(l.out);
  const A* a = static_cast<const A*>(l.in[0]);
  const B* b = static_cast<const B*>(l.in[1]);
  const C* c = static_cast<const C*>(l.in[2]);
  if (l.mode != EwMode::strided) {
    // Vector accesses when every contiguous operand is aligned to its vector.
    constexpr size_t widest = sizeof(O) > sizeof(A) ? sizeof(O) : sizeof(A);
    constexpr size_t w2 = (K > 1 && sizeof(B) > widest) ? sizeof(B) : widest;
    constexpr size_t w3 = (K > 2 && sizeof(C) > w2) ? sizeof(C) : w2;
    constexpr int N = static_cast<int>(16 / w3);
    const int64_t* fs = l.flat_stride;
    const bool ok = aligned(out, N * sizeof(O)) && (fs[0] == 0 || aligned(a, N * sizeof(A))) &&
                    (K < 2 || fs[1] == 0 || aligned(b, N * sizeof(B))) &&
                    (K < 3 || fs[2] == 0 || aligned(c, N * sizeof(C)));
    if (ok) {
      const int64_t nvec = l.n / N;
      launch_pdl(ew_vec_kernel<N, Fn, O, A, B, C>, grid_for(nvec > 0 ? nvec : 1, kThreads),
                 kThreads, 0, s, fn, out, a, b, c, fs[0], fs[1], fs[2], l.n);
      check_launch("ew_vec_kernel");
      return;
    }
    launch_pdl(ew_flat_kernel<Fn, O, A, B, C>, grid_for(l.n, kThreads), kThreads, 0, s, fn, out, a,
               b, c, l.flat_stride[0], l.flat_stride[1], l.flat_stride[2], l.n);
    check_launch("ew_flat_kernel");
    return;
  }
  Strided<K> st;
  st.ndim = l.layout[0].ndim;
  for (int d = 0; d < st.ndim; ++d) {
    st.shape[d] = l.layout[0].shape[d];
    for (int k = 0; k < K; ++k) st.strides[k][d] = l.layout[k].strides[d];
  }
  launch_pdl(ew_strided_kernel<Fn, O, A, B, C>, grid_for(l.n, kThreads), kThreads, 0, s, fn, out, a,
             b, c, st, l.n);
  check_launch("ew_strided_kernel");
}

template <typename Op>
bool op_supported(Dtype in, Dtype out) {
  return dispatch_cuda_dtype(in, [&](auto t) {
    using T = decltype(t);
    if constexpr (!ew::accepts_v<Op::accepts, ew::compute_t<T>>)
      return false;
    else
      return out == (Op::bool_out ? Dtype::bool_ : in);
  });
}

template <typename Op, int Arity>
void launch_op(Dtype in, const EwLaunch& l, cudaStream_t s) {
  dispatch_cuda_dtype(in, [&](auto t) {
    using T = decltype(t);
    if constexpr (ew::accepts_v<Op::accepts, ew::compute_t<T>>) {
      if constexpr (Arity == 1)
        run<UnaryFn<Op, T>, T>(UnaryFn<Op, T>{}, l, s);
      else
        run<BinaryFn<Op, T>, T>(BinaryFn<Op, T>{}, l, s);
    }
  });
}

/// The one AsType kernel: a 1-d layout (contiguous or a broadcast value) skips the index
/// arithmetic.
template <typename S, typename D>
__global__ void __launch_bounds__(kThreads)
    astype_kernel(const S* src, Layout l, D* dst, int64_t n) {
  pdl_prologue();
  if (l.ndim == 1) {
    const int64_t st = l.strides[0];
    INGOT_CUDA_KERNEL_LOOP(i, n) {
      dst[i] = ew::convert<D>(src[i * st]);
    }
  } else {
    INGOT_CUDA_KERNEL_LOOP(i, n) {
      dst[i] = ew::convert<D>(src[elem_offset(i, l)]);
    }
  }
}

/// V elements of T in 16-byte pieces (V * sizeof(T) a multiple of 16).
template <typename T, int V>
struct alignas(16) Pack {
  T v[V];
};

/// AsType between floating types with 16-byte loads and stores: rows of `cols` elements (a
/// multiple of V) that start row_stride source elements apart (rows == 1: one contiguous run of
/// n elements, the last n % V converted one by one). Both pointers are 16-byte aligned, and so
/// is every source row.
template <typename S, typename D, int V>
__global__ void __launch_bounds__(kThreads)
    astype_rows_kernel(const S* src, int64_t rows, int64_t cols, int64_t row_stride, D* dst,
                       int64_t n) {
  pdl_prologue();
  const int64_t per_row = cols / V, nv = rows * per_row;
  INGOT_CUDA_KERNEL_LOOP(k, nv) {
    int64_t r = 0, c = k;
    if (rows > 1) {
      r = k / per_row;
      c = k - r * per_row;
    }
    const Pack<S, V> in = *reinterpret_cast<const Pack<S, V>*>(src + r * row_stride + c * V);
    Pack<D, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j) out.v[j] = ew::convert<D>(in.v[j]);
    *reinterpret_cast<Pack<D, V>*>(dst + (r * cols + c * V)) = out;
  }
  if (rows == 1) {
    const int64_t i = nv * V + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = ew::convert<D>(src[i]);
  }
}

/// Runs astype_rows_kernel when s -> d is a conversion between floating types of 2 or 4 bytes
/// and the layout allows it (contiguous, or rows with a unit inner stride); false otherwise.
template <typename S, typename D>
bool launch_astype_rows(const S* src, const Layout& l, D* dst, int64_t n, cudaStream_t s) {
  constexpr bool floats =
      (std::is_same_v<S, float> || is_half_v<S>)&&(std::is_same_v<D, float> || is_half_v<D>);
  if constexpr (!floats) {
    return false;
  } else {
    constexpr int V = 8;  // 16 or 32 bytes of each side
    auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
    if (!aligned(src) || !aligned(dst) || n < V) return false;
    int64_t rows = 1, cols = n, row_stride = 0;
    if (l.ndim == 2 && l.strides[1] == 1 && l.shape[1] % V == 0 &&
        (l.strides[0] * static_cast<int64_t>(sizeof(S))) % 16 == 0) {
      rows = l.shape[0], cols = l.shape[1], row_stride = l.strides[0];
    } else if (!(l.ndim == 1 && l.strides[0] == 1)) {
      return false;
    }
    const int64_t nv = rows * (cols / V);
    launch_pdl(astype_rows_kernel<S, D, V>, grid_for(std::max<int64_t>(nv, V), kThreads), kThreads,
               0, s, src, rows, cols, row_stride, dst, n);
    check_launch("astype_rows_kernel");
    return true;
  }
}

}  // namespace

bool ew_supported(EwKind op, Dtype in, Dtype out) {
  switch (op) {
#define INGOT_CU_EW_SUPPORTED(NAME) \
  case EwKind::NAME:                \
    return op_supported<ew::NAME##Op>(in, out);
    INGOT_CU_EW_UNARY_OPS(INGOT_CU_EW_SUPPORTED)
    INGOT_CU_EW_BINARY_OPS(INGOT_CU_EW_SUPPORTED)
#undef INGOT_CU_EW_SUPPORTED
    case EwKind::count:
      break;
  }
  return false;
}

void launch_ew(EwKind op, Dtype in, Dtype out, const EwLaunch& l, cudaStream_t s) {
  switch (op) {
#define INGOT_CU_EW_CASE1(NAME) \
  case EwKind::NAME:            \
    return launch_op<ew::NAME##Op, 1>(in, l, s);
#define INGOT_CU_EW_CASE2(NAME) \
  case EwKind::NAME:            \
    return launch_op<ew::NAME##Op, 2>(in, l, s);
    INGOT_CU_EW_UNARY_OPS(INGOT_CU_EW_CASE1)
    INGOT_CU_EW_BINARY_OPS(INGOT_CU_EW_CASE2)
#undef INGOT_CU_EW_CASE1
#undef INGOT_CU_EW_CASE2
    case EwKind::count:
      break;
  }
}

void launch_where(Dtype t, const EwLaunch& l, cudaStream_t s) {
  dispatch_cuda_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    run<WhereFn<T>, bool, T, T>(WhereFn<T>{}, l, s);
  });
}

void launch_astype(Dtype in, Dtype out, const void* src, const Layout& src_layout, void* dst,
                   int64_t n, cudaStream_t s) {
  if (n == 0) return;
  dispatch_cuda_dtype(in, [&](auto si) {
    dispatch_cuda_dtype(out, [&](auto di) {
      using S = decltype(si);
      using D = decltype(di);
      if (launch_astype_rows(static_cast<const S*>(src), src_layout, static_cast<D*>(dst), n, s))
        return;
      launch_pdl(astype_kernel<S, D>, grid_for(n, kThreads), kThreads, 0, s,
                 static_cast<const S*>(src), src_layout, static_cast<D*>(dst), n);
      check_launch("astype_kernel");
    });
  });
}

}  // namespace ingot::cu
