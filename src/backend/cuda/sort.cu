// CUDA kernels of Sort, ArgSort, (Arg)Partition and TopK over (order-preserving key, index)
// pairs: a shared-memory bitonic sort for rows <= 4096, a radix select for top-k of longer
// rows, cub's segmented stable sort otherwise.
#include <cuda_runtime.h>

#include <cub/device/device_segmented_sort.cuh>
#include <type_traits>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/sort_kernels.h"

namespace ingot::cu {

// Every element gets an unsigned key whose integer order is the CPU's total order (NaN last,
// -0 == +0); with its index appended the keys are unique, so any correct sort is stable.
// Radix select (32-bit keys, k <= 1024): four 8-bit histogram passes find the k-th key, a pass
// in index order collects the k winners (ties by lowest index), a bitonic sort orders them.

namespace {

constexpr int kSmallSort = 4096;  // longest row sorted in shared memory (12 bytes/element)
constexpr int kMaxSelect = 1024;  // largest k of the radix-select top-k
constexpr int kSelectThreads = 1024;
constexpr int kSelUnroll = 4;  // elements per thread per pass step (loads in flight)
constexpr int64_t kCubItems = int64_t(1) << 26;  // elements per cub batch (bounds scratch)
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

/// Types whose order fits 32-bit keys (all but int64 and float64), as the CPU's kPacked.
template <typename T>
inline constexpr bool kPacked = !std::is_same_v<T, double> && !std::is_same_v<T, int64_t>;

template <typename T>
using key_t = std::conditional_t<kPacked<T>, uint32_t, unsigned long long>;

/// Order-preserving unsigned key of v (NaN largest, -0 as +0); inverted when descending.
template <typename T>
__device__ __forceinline__ key_t<T> sort_key(T v, bool desc) {
  key_t<T> k;
  if constexpr (std::is_same_v<T, double>) {
    if (v != v) {
      k = ~0ull;
    } else {
      const auto u = static_cast<unsigned long long>(__double_as_longlong(v == 0.0 ? 0.0 : v));
      k = (u >> 63) ? ~u : (u | (1ull << 63));
    }
  } else if constexpr (std::is_same_v<T, int64_t>) {
    k = static_cast<unsigned long long>(v) ^ (1ull << 63);
  } else if constexpr (is_float_v<T>) {
    const float f = to_float(v);
    if (f != f) {
      k = 0xFFFFFFFFu;
    } else {
      const uint32_t u = __float_as_uint(f == 0.0f ? 0.0f : f);
      k = (u >> 31) ? ~u : (u | 0x80000000u);
    }
  } else if constexpr (std::is_signed_v<T>) {
    k = static_cast<uint32_t>(static_cast<int32_t>(v)) ^ 0x80000000u;
  } else {
    k = static_cast<uint32_t>(v);
  }
  return desc ? static_cast<key_t<T>>(~k) : k;
}

/// Output position of element j of row r (row-major output with m elements along the axis).
__device__ __forceinline__ int64_t out_pos(int64_t r, int64_t j, int64_t m, int64_t inner) {
  return (r / inner) * (m * inner) + r % inner + j * inner;
}

/// Writes output j of row r: the index i, or the input value at it (bit for bit).
template <typename T>
__device__ __forceinline__ void write_out(void* out, bool want_idx, const T* row, int64_t sx,
                                          uint32_t i, int64_t pos) {
  if (want_idx)
    static_cast<uint32_t*>(out)[pos] = i;
  else
    static_cast<T*>(out)[pos] = row[i * sx];
}

/// Ascending bitonic sort of P (a power of two) entries in shared memory: 64-bit keys, and
/// with kWide a 32-bit index breaking ties. Contains __syncthreads: call from all threads.
template <bool kWide>
__device__ void bitonic_sort(unsigned long long* k, uint32_t* ix, int P) {
  for (int size = 2; size <= P; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      __syncthreads();
      for (int q = threadIdx.x; q < P / 2; q += blockDim.x) {
        const int i = 2 * q - (q & (stride - 1)), j = i + stride;
        const bool up = (i & size) == 0;
        bool gt = k[i] > k[j];
        if constexpr (kWide) gt = gt || (k[i] == k[j] && ix[i] > ix[j]);
        if (gt == up) {
          const unsigned long long t = k[i];
          k[i] = k[j], k[j] = t;
          if constexpr (kWide) {
            const uint32_t u = ix[i];
            ix[i] = ix[j], ix[j] = u;
          }
        }
      }
    }
  }
  __syncthreads();
}

/// One block per row of n <= kSmallSort elements, padded to P with entries above all keys.
/// 32-bit keys pack (key << 32 | index); 64-bit keys keep the index beside them.
template <typename T>
__global__ void sort_small(const T* x, SortPlan p, int P, bool desc, bool want_idx, void* out) {
  constexpr bool kWide = !kPacked<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  auto* keys = reinterpret_cast<unsigned long long*>(smem_raw);
  uint32_t* idx = reinterpret_cast<uint32_t*>(keys + P);
  for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
    const T* row = x + elem_offset(r, p.kept);
    for (int j = threadIdx.x; j < P; j += blockDim.x) {
      if (j < p.n) {
        const auto k = sort_key(row[j * p.sx], desc);
        if constexpr (kWide)
          keys[j] = k, idx[j] = static_cast<uint32_t>(j);
        else
          keys[j] = (static_cast<unsigned long long>(k) << 32) | static_cast<uint32_t>(j);
      } else {
        keys[j] = ~0ull;
        if constexpr (kWide) idx[j] = ~0u;
      }
    }
    bitonic_sort<kWide>(keys, idx, P);
    for (int j = threadIdx.x; j < p.m; j += blockDim.x) {
      const uint32_t i = kWide ? idx[j] : static_cast<uint32_t>(keys[j]);
      write_out(out, want_idx, row, p.sx, i, out_pos(r, j, p.m, p.inner));
    }
    __syncthreads();  // the next row reuses the shared arrays
  }
}

/// Top-k of rows with 32-bit keys by radix select (one block of kSelectThreads per row).
/// Keys are inverted so that the k winners are the k smallest (key, index) pairs.
template <typename T>
__global__ void __launch_bounds__(kSelectThreads)
    topk_select(const T* x, SortPlan p, int P, bool want_idx, void* out) {
  __shared__ unsigned hist[256];
  __shared__ unsigned long long cand[kMaxSelect];
  __shared__ unsigned wcount[kSelUnroll][32];
  __shared__ unsigned sh_digit, sh_before, n_lt;
  const int t = threadIdx.x, lane = t & 31, w = t >> 5, nw = blockDim.x >> 5;
  const int nt = blockDim.x;
  const int64_t n = p.n, sx = p.sx;
  const unsigned k = static_cast<unsigned>(p.m);
  for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
    const T* row = x + elem_offset(r, p.kept);
    uint32_t prefix = 0, mask = 0;
    unsigned remaining = k;  // rank of the k-th key among keys matching the prefix
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int i = t; i < 256; i += nt) hist[i] = 0;
      __syncthreads();
      for (int64_t base = 0; base < n; base += int64_t(nt) * kSelUnroll) {
        uint32_t u[kSelUnroll];
#pragma unroll
        for (int q = 0; q < kSelUnroll; ++q) {
          const int64_t j = base + q * nt + t;
          u[q] = j < n ? sort_key(row[j * sx], true) : 0u;
        }
#pragma unroll
        for (int q = 0; q < kSelUnroll; ++q) {
          const bool in = base + q * nt + t < n && (u[q] & mask) == prefix;
          const unsigned d = in ? (u[q] >> shift) & 255u : 256u;
          // Lanes with the same digit add once (same-address shared atomics serialise).
          const unsigned peers = __match_any_sync(0xffffffffu, d);
          if (d < 256 && lane == __ffs(peers) - 1) atomicAdd(&hist[d], __popc(peers));
        }
      }
      __syncthreads();
      if (w == 0) {
        unsigned c[8], sum = 0;
        for (int i = 0; i < 8; ++i) c[i] = hist[lane * 8 + i], sum += c[i];
        unsigned inc = sum;
        for (int o = 1; o < 32; o <<= 1) {
          const unsigned y = __shfl_up_sync(0xffffffffu, inc, o);
          if (lane >= o) inc += y;
        }
        unsigned before = inc - sum;
        if (before < remaining && remaining <= inc) {
          for (int i = 0; i < 8; ++i) {
            if (before + c[i] >= remaining) {
              sh_digit = lane * 8 + i;
              sh_before = before;
              break;
            }
            before += c[i];
          }
        }
      }
      __syncthreads();
      remaining -= sh_before;
      prefix |= sh_digit << shift;
      mask |= 255u << shift;
    }
    // prefix is the k-th key: take every smaller key and the `remaining` lowest-index ties.
    const unsigned n_less = k - remaining;
    if (t == 0) n_lt = 0;
    __syncthreads();
    unsigned ties_seen = 0;
    // Ties are ranked in index order: tile element q * nt + t comes before (q, t + 1).
    for (int64_t base = 0; base < n; base += int64_t(nt) * kSelUnroll) {
      uint32_t u[kSelUnroll];
      unsigned ball[kSelUnroll];
#pragma unroll
      for (int q = 0; q < kSelUnroll; ++q) {
        const int64_t j = base + q * nt + t;
        u[q] = j < n ? sort_key(row[j * sx], true) : 0xFFFFFFFFu;
      }
#pragma unroll
      for (int q = 0; q < kSelUnroll; ++q) {
        const int64_t j = base + q * nt + t;
        const auto entry = (static_cast<unsigned long long>(u[q]) << 32) | static_cast<uint32_t>(j);
        if (j < n && u[q] < prefix) cand[atomicAdd(&n_lt, 1u)] = entry;
        ball[q] = __ballot_sync(0xffffffffu, j < n && u[q] == prefix);
        if (lane == 0) wcount[q][w] = __popc(ball[q]);
      }
      __syncthreads();
#pragma unroll
      for (int q = 0; q < kSelUnroll; ++q) {
        unsigned wp = 0, tot = 0;
        for (int i = 0; i < nw; ++i) {
          if (i < w) wp += wcount[q][i];
          tot += wcount[q][i];
        }
        if ((ball[q] >> lane) & 1u) {
          const unsigned rank = ties_seen + wp + __popc(ball[q] & ((1u << lane) - 1u));
          const int64_t j = base + q * nt + t;
          if (rank < remaining)
            cand[n_less + rank] = (static_cast<unsigned long long>(u[q]) << 32) | uint32_t(j);
        }
        ties_seen += tot;
      }
      __syncthreads();  // wcount is rewritten by the next tile
    }
    for (int i = static_cast<int>(k) + t; i < P; i += nt) cand[i] = ~0ull;
    bitonic_sort<false>(cand, nullptr, P);
    for (int j = t; j < static_cast<int>(k); j += nt)
      write_out(out, want_idx, row, sx, static_cast<uint32_t>(cand[j]),
                out_pos(r, j, p.m, p.inner));
    __syncthreads();  // cand and the shared scalars are reused by the next row
  }
}

// ---- long rows: cub segmented sort over (key, index) pairs in scratch ----

__global__ void fill_offsets(int64_t* off, int64_t count, int64_t n) {
  INGOT_CUDA_KERNEL_LOOP(i, count) {
    off[i] = i * n;
  }
}

template <typename T>
__global__ void gather_keys(const T* x, SortPlan p, int64_t r0, int64_t items, bool desc,
                            key_t<T>* keys, uint32_t* vals) {
  INGOT_CUDA_KERNEL_LOOP(i, items) {
    const int64_t r = r0 + i / p.n, j = i % p.n;
    keys[i] = sort_key(x[elem_offset(r, p.kept) + j * p.sx], desc);
    vals[i] = static_cast<uint32_t>(j);
  }
}

template <typename T>
__global__ void write_sorted(const T* x, SortPlan p, int64_t r0, int64_t count,
                             const uint32_t* vals, bool want_idx, void* out) {
  INGOT_CUDA_KERNEL_LOOP(i, count) {
    const int64_t rr = i / p.m, j = i % p.m, r = r0 + rr;
    write_out(out, want_idx, x + elem_offset(r, p.kept), p.sx, vals[rr * p.n + j],
              out_pos(r, j, p.m, p.inner));
  }
}

size_t align256(size_t b) {
  return (b + 255) & ~size_t(255);
}

/// Scratch carved for one cub batch of `batch` rows.
template <typename K>
struct CubBuffers {
  int64_t batch = 0;
  K* keys_in = nullptr;
  K* keys_out = nullptr;
  uint32_t* vals_in = nullptr;
  uint32_t* vals_out = nullptr;
  int64_t* offsets = nullptr;
  void* temp = nullptr;
  size_t temp_bytes = 0;
  size_t total = 0;

  CubBuffers(const SortPlan& p, char* base) {
    batch = kCubItems / p.n;
    if (batch < 1) batch = 1;
    if (batch > p.rows) batch = p.rows;
    const size_t items = static_cast<size_t>(batch * p.n);
    size_t off = 0;
    auto carve = [&](size_t bytes) {
      char* ptr = base ? base + off : nullptr;
      off += align256(bytes);
      return ptr;
    };
    keys_in = reinterpret_cast<K*>(carve(items * sizeof(K)));
    keys_out = reinterpret_cast<K*>(carve(items * sizeof(K)));
    vals_in = reinterpret_cast<uint32_t*>(carve(items * 4));
    vals_out = reinterpret_cast<uint32_t*>(carve(items * 4));
    offsets = reinterpret_cast<int64_t*>(carve(static_cast<size_t>(batch + 1) * 8));
    INGOT_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(
        nullptr, temp_bytes, keys_in, keys_out, vals_in, vals_out, static_cast<int64_t>(items),
        batch, offsets, offsets + 1));
    temp = carve(temp_bytes);
    total = off;
  }
};

enum class Path { small, select, cub };

template <typename T>
Path choose_path(SortJob job, const SortPlan& p) {
  const bool topk = job == SortJob::topk || job == SortJob::topk_indices;
  if (p.n <= kSmallSort) return Path::small;
  if (topk && kPacked<T> && p.m <= kMaxSelect) return Path::select;
  return Path::cub;
}

int pow2_at_least(int64_t n) {
  int P = 1;
  while (P < n) P <<= 1;
  return P;
}

template <typename T>
void run_sort(SortJob job, const T* x, const SortPlan& p, void* out, void* scratch,
              size_t scratch_bytes, cudaStream_t s) {
  const bool desc = job == SortJob::topk || job == SortJob::topk_indices;
  const bool want_idx = job == SortJob::argsort || job == SortJob::topk_indices;
  const int64_t grid = p.rows > kMaxBlocks ? kMaxBlocks : p.rows;
  switch (choose_path<T>(job, p)) {
    case Path::small: {
      const int P = pow2_at_least(p.n);
      int threads = P / 2 < 32 ? 32 : (P / 2 > 1024 ? 1024 : P / 2);
      const size_t smem = static_cast<size_t>(P) * (kPacked<T> ? 8 : 12);
      sort_small<T>
          <<<static_cast<unsigned>(grid), threads, smem, s>>>(x, p, P, desc, want_idx, out);
      return check_launch("sort_small");
    }
    case Path::select:
      if constexpr (kPacked<T>) {
        const int P = pow2_at_least(p.m);
        topk_select<T>
            <<<static_cast<unsigned>(grid), kSelectThreads, 0, s>>>(x, p, P, want_idx, out);
        return check_launch("topk_select");
      }
      break;
    case Path::cub:
      break;
  }
  using K = key_t<T>;
  CubBuffers<K> b(p, static_cast<char*>(scratch));
  if (b.total > scratch_bytes)
    throw_cuda_error(cudaErrorInvalidValue, "sort scratch too small", __FILE__, __LINE__);
  fill_offsets<<<grid_for(b.batch + 1, 256), 256, 0, s>>>(b.offsets, b.batch + 1, p.n);
  check_launch("fill_offsets");
  for (int64_t r0 = 0; r0 < p.rows; r0 += b.batch) {
    const int64_t br = p.rows - r0 < b.batch ? p.rows - r0 : b.batch;
    const int64_t items = br * p.n;
    gather_keys<T>
        <<<grid_for(items, 256), 256, 0, s>>>(x, p, r0, items, desc, b.keys_in, b.vals_in);
    check_launch("gather_keys");
    size_t temp_bytes = b.temp_bytes;
    INGOT_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(
        b.temp, temp_bytes, b.keys_in, b.keys_out, b.vals_in, b.vals_out, items, br, b.offsets,
        b.offsets + 1, s));
    write_sorted<T>
        <<<grid_for(br * p.m, 256), 256, 0, s>>>(x, p, r0, br * p.m, b.vals_out, want_idx, out);
    check_launch("write_sorted");
  }
}

}  // namespace

size_t sort_scratch_bytes(SortJob job, Dtype t, const SortPlan& p) {
  if (p.rows == 0 || p.n == 0 || p.m == 0) return 0;
  return dispatch_cuda_dtype(t, [&](auto tag) -> size_t {
    using T = decltype(tag);
    if (choose_path<T>(job, p) != Path::cub) return 0;
    return CubBuffers<key_t<T>>(p, nullptr).total;
  });
}

void launch_sort(SortJob job, const void* in, Dtype t, const SortPlan& p, void* out, void* scratch,
                 size_t scratch_bytes, cudaStream_t s) {
  if (p.rows == 0 || p.n == 0 || p.m == 0) return;
  dispatch_cuda_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    run_sort<T>(job, static_cast<const T*>(in), p, out, scratch, scratch_bytes, s);
  });
}

}  // namespace ingot::cu
