// CUDA kernels of LoraBranch / LoraBranchGrad: the three skinny products of a LoRA branch,
// reading the big operands (x, y, the cotangent) in their own dtype and keeping the rank-sized
// side in float32. Shapes: rows M (tokens), columns K or N (features), rank r <= 64 padded to
// RP in {16, 32, 64} (the padding is zeros in shared memory).
//  - project: [M, C] x [C, r] -> [M, r] (x a^T, g b). A block takes 32 rows and a column range;
//    lane = row, warp = 8 of each 64-column chunk, the next chunk loaded (16-byte loads where
//    aligned) while the current one is multiplied; the float32 partial sums of the warps and
//    of the column ranges are added in a fixed order.
//  - expand: [M, r] x [r, C] (+ base) -> [M, C] (the branch's output, dx): 32 x 128 tiles,
//    4 x 4 outputs a thread.
//  - colsum: [M, r]^T x [M, C] -> [r, C] (da, db): 64 columns a block over a row range, two
//    blocks an SM, about one wave of blocks (narrow columns, tall ranges: few partial sums);
//    128-row slabs of v and w go through a cp.async ring (3 deep at bf16 r 16), a thread sums 8
//    columns x 8 ranks of every 16th (rank 16) row, the row classes and then the ranges' partial
//    sums (none with one range) added in order. Bound by FP32 FMA issue (16 FMAs a bf16 value):
//    H100, 4096 x 8192 bf16 r 16: 40 us (1.7 TB/s; 72 us before), 4096 x 2048: 16 us (26).
// Every sum is in a fixed order, so a launch gives the same bits every run.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string_view>
#include <type_traits>
#include <utility>

#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/mma.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/fast_lora_kernels.h"
#include "util/env.h"

namespace ingot::cu {
namespace {

constexpr int kProjRows = 32, kProjChunk = 64, kProjThreads = 256;
constexpr int kExpRows = 32, kExpCols = 128, kExpThreads = 256;
constexpr int kSumCols = 64, kSumRows = 128, kSumThreads = 256;
// Ranks a colsum thread sums (with 8 columns), colsum blocks an SM, and the shared memory such a
// block stages into (bytes; the ring depth follows from it).
constexpr int kSumRT = 8, kSumBlocks = 2, kSumSmem = 96 * 1024;

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

/// Column splits of a project launch and their width (a multiple of the chunk).
void project_splits(int64_t rows, int64_t cols, int64_t& splits, int64_t& width) {
  const int64_t mblocks = std::max<int64_t>(ceil_div(rows, kProjRows), 1);
  splits = std::clamp<int64_t>(ceil_div(512, mblocks), 1,
                               std::max<int64_t>(ceil_div(cols, kProjChunk), 1));
  // At least one chunk: zero columns (an empty x or cotangent) must not divide by zero.
  width = std::max<int64_t>(ceil_div(ceil_div(cols, splits), kProjChunk), 1) * kProjChunk;
  splits = std::max<int64_t>(ceil_div(cols, width), 1);
}

/// Multiprocessors of the current device (colsum's splits fill them).
int sm_count() {
  int dev = 0, n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    return 132;
  return std::max(n, 1);
}

/// Row splits of a colsum launch and their height (a multiple of kSumRows): the count of the
/// fewest waves of blocks (one a multiprocessor) times the slabs a block takes, plus 4 slabs'
/// worth of fixed cost a block (the ring filling, the closing reduction).
/// (A block takes `bcols` columns, slabs of `brows` rows, `per_sm` blocks an SM.)
void row_splits(int64_t rows, int64_t cols, int64_t bcols, int64_t brows, int64_t per_sm,
                int64_t& splits, int64_t& height) {
  const int64_t cblocks = std::max<int64_t>(ceil_div(cols, bcols), 1), slots = sm_count() * per_sm;
  const int64_t slabs = std::max<int64_t>(ceil_div(rows, brows), 1);
  int64_t best = -1;
  splits = 1;
  for (int64_t sp = 1; sp <= std::min<int64_t>(slabs, 256); ++sp) {
    const int64_t cost = ceil_div(cblocks * sp, slots) * (ceil_div(slabs, sp) + 4);
    if (best < 0 || cost < best) best = cost, splits = sp;
  }
  height = ceil_div(slabs, splits) * brows;
  splits = ceil_div(std::max<int64_t>(rows, 1), height);
}

void colsum_splits(int64_t rows, int64_t cols, int64_t& splits, int64_t& height) {
  row_splits(rows, cols, kSumCols, kSumRows, kSumBlocks, splits, height);
}

template <typename T>
__device__ __forceinline__ float load_f(const void* p, int64_t i) {
  return to_float(static_cast<const T*>(p)[i]);
}

/// Eight consecutive values of a row at element offset `off` as floats: 16-byte loads when
/// `vec` (the caller checked alignment and that all eight are in range), else one by one with
/// the first `n` in range (the rest 0).
template <typename TV>
__device__ __forceinline__ void load8(const void* v, int64_t off, bool vec, int n, float* out) {
  const TV* src = static_cast<const TV*>(v) + off;
  if constexpr (sizeof(TV) * 8 % 16 == 0) {
    if (vec) {
      constexpr int NV = static_cast<int>(sizeof(TV) * 8 / 16);
      alignas(16) TV tmp[8];
#pragma unroll
      for (int q = 0; q < NV; ++q)
        reinterpret_cast<uint4*>(tmp)[q] = reinterpret_cast<const uint4*>(src)[q];
#pragma unroll
      for (int i = 0; i < 8; ++i) out[i] = to_float(tmp[i]);
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = i < n ? to_float(src[i]) : 0.0f;
}

// The next chunk's values are loaded into registers while the current chunk is multiplied
// (one chunk in flight a block), so a block does not wait on memory between chunks. The sums
// are in the same order as without the prefetch.
// Four blocks an SM (64 registers) only at rank 16: at ranks 32 and 64 the 32 / 64 sums and the
// staged p values do not fit 64 registers (rank 64 spilled 1.5 KB a thread, 440 us for 4096 x
// 2048 bf16 on an H100; 103 us at 2 blocks).
template <typename TV, int RP>
__global__ void __launch_bounds__(kProjThreads, RP == 16 ? 4 : 2)
    project_kernel(const void* v, int64_t ldv, int64_t rows, int64_t cols, int64_t width,
                   const float* p, int64_t ps, int64_t js, int r, bool vec, float* partial) {
  pdl_prologue();
  constexpr int PL = kProjChunk * RP / kProjThreads;  // p values a thread stages a chunk
  __shared__ float vs[kProjChunk][kProjRows + 1];
  // Rows padded by 4 floats: the staging stores below (8 columns x 4 ranks a warp) then fall on
  // 32 distinct banks, where unpadded rows put 16 lanes on one bank.
  __shared__ __align__(16) float pw[kProjChunk][RP + 4];
  __shared__ float red[kProjRows][RP + 1];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int64_t m0 = int64_t{blockIdx.x} * kProjRows;
  const int64_t cb = int64_t{blockIdx.y} * width, ce = std::min(cols, cb + width);
  // A thread stages 8 consecutive columns of one row of the 32 x 64 chunk.
  const int srow = t >> 3, cg = (t & 7) * 8;
  const int64_t sm = m0 + srow;
  // Element idx = t + i * kProjThreads of the chunk's p tile: a warp stages 8 consecutive
  // columns x 4 consecutive ranks (contiguous runs of 32 bytes when p's columns are adjacent,
  // of 16 bytes when its ranks are).
  auto p_slot = [&](int i, int& kk, int& j) {
    const int idx = t + i * kProjThreads, l = idx & 31, w = idx >> 5;
    kk = (l & 7) + 8 * (w % (kProjChunk / 8));
    j = (l >> 3) + 4 * (w / (kProjChunk / 8));
  };
  float xr[8], pr[PL];
  auto fetch = [&](int64_t c0) {
    const int64_t c = c0 + cg;
    const int n = sm < rows ? static_cast<int>(std::clamp<int64_t>(ce - c, 0, 8)) : 0;
    load8<TV>(v, sm * ldv + c, vec && n == 8, n, xr);
#pragma unroll
    for (int i = 0; i < PL; ++i) {
      int kk, j;
      p_slot(i, kk, j);
      const int64_t cc = c0 + kk;
      pr[i] = j < r && cc < ce ? p[cc * ps + j * js] : 0.0f;
    }
  };
  float acc[RP];
#pragma unroll
  for (int j = 0; j < RP; ++j) acc[j] = 0.0f;
  if (cb < ce) fetch(cb);
  for (int64_t c0 = cb; c0 < ce; c0 += kProjChunk) {
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 8; ++i) vs[cg + i][srow] = xr[i];
#pragma unroll
    for (int i = 0; i < PL; ++i) {
      int kk, j;
      p_slot(i, kk, j);
      pw[kk][j] = pr[i];
    }
    __syncthreads();
    if (c0 + kProjChunk < ce) fetch(c0 + kProjChunk);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int kk = warp * 8 + i;
      const float xv = vs[kk][lane];
      const float4* prow = reinterpret_cast<const float4*>(pw[kk]);
#pragma unroll
      for (int q = 0; q < RP / 4; ++q) {
        const float4 w = prow[q];
        acc[4 * q] += xv * w.x;
        acc[4 * q + 1] += xv * w.y;
        acc[4 * q + 2] += xv * w.z;
        acc[4 * q + 3] += xv * w.w;
      }
    }
  }
  // The warps' sums in warp order.
  for (int w = 0; w < kProjThreads / 32; ++w) {
    if (warp == w)
#pragma unroll
      for (int j = 0; j < RP; ++j) red[lane][j] = (w == 0 ? 0.0f : red[lane][j]) + acc[j];
    __syncthreads();
  }
  float* out = partial + int64_t{blockIdx.y} * rows * r;
  for (int idx = t; idx < kProjRows * r; idx += kProjThreads) {
    const int row = idx / r, j = idx % r;
    if (m0 + row < rows) out[(m0 + row) * r + j] = red[row][j];
  }
}

/// out[i] = alpha * sum_s partial[s * count + i], at i or (transposed, i = j * cols + c) at
/// c * r + j.
__global__ void sum_splits_kernel(const float* partial, int64_t splits, int64_t count, float alpha,
                                  int64_t cols, int r, bool transposed, float* out) {
  pdl_prologue();
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    float s = 0.0f;
    for (int64_t k = 0; k < splits; ++k) s += partial[k * count + i];
    out[transposed ? (i % cols) * r + i / cols : i] = alpha * s;
  }
}

/// Split sums reduced inside the kernel that writes them (INGOT_LORA_FUSED_SPLITS=1, opt-in:
/// written in session 33, not yet run on a GPU): every CTA of a column of the grid (blockIdx.x,
/// all blockIdx.y) writes its partial sums, then counts itself in counters[blockIdx.x]; the
/// last one to arrive adds the gridDim.y partials of its region in split order, exactly as
/// sum_splits_kernel does (the same bits), and puts the counter back to 0 for the next launch
/// on the stream. Returns whether this CTA is that last one. Call with every thread.
__device__ bool last_split(unsigned* counters) {
  __shared__ bool last;
  __threadfence();  // this thread's partial sums before the count
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned before = atomicAdd(&counters[blockIdx.x], 1u);
    last = before == gridDim.y - 1;
    if (last) atomicExch(&counters[blockIdx.x], 0u);
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

/// The last CTA's sums (see last_split): out[i] = alpha * sum_s partial[s * count + i] over
/// the region's elements i = base + (e / run) * stride + e % run for e < n, at i or (transposed,
/// i = j * cols + c) at c * r + j. Loads bypass L1 (other CTAs wrote them), 16 bytes and four
/// splits at a time where the region allows, and every sum adds the splits in order.
__device__ void reduce_region(const float* partial, int64_t splits, int64_t count, int64_t base,
                              int64_t n, int64_t run, int64_t stride, float alpha, int64_t cols,
                              int r, bool transposed, float* out) {
  auto put = [&](int64_t i, float sum) {
    out[transposed ? (i % cols) * r + i / cols : i] = alpha * sum;
  };
  if (run % 4 == 0 && base % 4 == 0 && stride % 4 == 0 && count % 4 == 0) {
    for (int64_t e = int64_t{threadIdx.x} * 4; e < n; e += int64_t{blockDim.x} * 4) {
      const int64_t i = base + (e / run) * stride + e % run;
      float sum[4] = {};
      int64_t k = 0;
      for (; k + 4 <= splits; k += 4) {
        float4 l[4];
#pragma unroll
        for (int u = 0; u < 4; ++u)
          l[u] = __ldcg(reinterpret_cast<const float4*>(partial + (k + u) * count + i));
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          sum[0] += l[u].x;
          sum[1] += l[u].y;
          sum[2] += l[u].z;
          sum[3] += l[u].w;
        }
      }
      for (; k < splits; ++k) {
        const float4 l = __ldcg(reinterpret_cast<const float4*>(partial + k * count + i));
        sum[0] += l.x;
        sum[1] += l.y;
        sum[2] += l.z;
        sum[3] += l.w;
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) put(i + q, sum[q]);
    }
    return;
  }
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
    const int64_t i = base + (e / run) * stride + e % run;
    float sum = 0.0f;
    int64_t k = 0;
    for (; k + 4 <= splits; k += 4) {
      float l[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) l[u] = __ldcg(partial + (k + u) * count + i);
#pragma unroll
      for (int u = 0; u < 4; ++u) sum += l[u];
    }
    for (; k < splits; ++k) sum += __ldcg(partial + k * count + i);
    put(i, sum);
  }
}

// The 32 x 128 output tile of a block, its w rows and q columns staged in shared memory. kWide
// (INGOT_LORA_EXPAND_WIDE=1, opt-in until it has run on a GPU): each thread computes 2 rows x 8
// consecutive columns, so a warp covers two rows of 128 columns and, with `vec` (16-byte aligned
// rows, all 8 columns in range), reads base and writes out as whole 256-byte row segments in
// 16-byte vectors. Otherwise 4 rows x 4 columns a thread, element by element.
template <typename TO, int RP, bool kBase, bool kWide>
__global__ void __launch_bounds__(kExpThreads)
    expand_kernel(const void* base, int64_t ldb, const float* w, int64_t rows, int64_t cols,
                  const float* q, int64_t qj, int64_t qn, int r, float alpha, bool vec, TO* out) {
  pdl_prologue();
  __shared__ __align__(16) float ws[RP][kExpRows];
  __shared__ __align__(16) float qs[RP][kExpCols];
  const int t = threadIdx.x;
  const int64_t m0 = int64_t{blockIdx.x} * kExpRows, n0 = int64_t{blockIdx.y} * kExpCols;
  for (int idx = t; idx < kExpRows * RP; idx += kExpThreads) {
    const int row = idx / RP, j = idx % RP;
    ws[j][row] = j < r && m0 + row < rows ? w[(m0 + row) * r + j] : 0.0f;
  }
  for (int idx = t; idx < kExpCols * RP; idx += kExpThreads) {
    int j, nn;
    if (qn == 1) {
      j = idx / kExpCols;
      nn = idx % kExpCols;
    } else {
      nn = idx / RP;
      j = idx % RP;
    }
    const int64_t n = n0 + nn;
    qs[j][nn] = j < r && n < cols ? q[j * qj + n * qn] : 0.0f;
  }
  __syncthreads();
  static_assert(kExpThreads == 256 && kExpRows == 32 && kExpCols == 128);
  constexpr int TR = kWide ? 2 : 4, TC = kWide ? 8 : 4;  // rows x columns a thread
  const int tr = kWide ? (t >> 4) * 2 : (t >> 5) * 4, tc = kWide ? (t & 15) * 8 : (t & 31) * 4;
  float acc[TR][TC] = {};
#pragma unroll 8
  for (int j = 0; j < RP; ++j) {
    float av[TR], bv[TC];
#pragma unroll
    for (int i = 0; i < TR; i += 2) {
      const float2 a = *reinterpret_cast<const float2*>(&ws[j][tr + i]);
      av[i] = a.x;
      av[i + 1] = a.y;
    }
#pragma unroll
    for (int k = 0; k < TC; k += 4) {
      const float4 b = *reinterpret_cast<const float4*>(&qs[j][tc + k]);
      bv[k] = b.x;
      bv[k + 1] = b.y;
      bv[k + 2] = b.z;
      bv[k + 3] = b.w;
    }
#pragma unroll
    for (int i = 0; i < TR; ++i)
#pragma unroll
      for (int k = 0; k < TC; ++k) acc[i][k] += av[i] * bv[k];
  }
  constexpr int kV = kVec16<TO>;  // elements of a 16-byte vector: 8 (half types) or 4 (float)
#pragma unroll
  for (int i = 0; i < TR; ++i) {
    const int64_t m = m0 + tr + i;
    if (m >= rows) break;
    const int64_t n = n0 + tc;
    float o[TC];
#pragma unroll
    for (int k = 0; k < TC; ++k) o[k] = alpha * acc[i][k];
    if (kWide && vec && n + TC <= cols) {
#pragma unroll
      for (int v = 0; v < TC / kV; ++v) {
        if constexpr (kBase) {
          float bv[kV];
          unpack16<TO>(load16(static_cast<const TO*>(base) + m * ldb + n + v * kV), bv);
#pragma unroll
          for (int k = 0; k < kV; ++k) o[v * kV + k] = bv[k] + o[v * kV + k];
        }
        *reinterpret_cast<uint4*>(out + m * cols + n + v * kV) = pack16<TO>(o + v * kV);
      }
    } else {
#pragma unroll
      for (int k = 0; k < TC; ++k) {
        if (n + k >= cols) break;
        float x = o[k];
        if constexpr (kBase) x = load_f<TO>(base, m * ldb + n + k) + x;
        out[m * cols + n + k] = cast<TO>(x);
      }
    }
  }
}

/// Staging of a colsum block (RP the padded rank, RT ranks a thread): kSumThreads threads, each
/// with RT ranks x 8 columns of sums; TPR threads cover a row (8 columns a thread, RP / RT rank
/// blocks), the NRC = kSumThreads / TPR row classes take every NRC-th row of a slab. A stage
/// holds a slab's v rows (raw, kSumCols x sizeof(TV) bytes each) and w rows (RP + 4 floats:
/// the 16-byte loads of 4 row classes then fall on distinct banks).
template <typename TV, int RP>
struct ColsumPlan {
  static constexpr int RT = kSumRT, CT = 8;
  static constexpr int TPR = kSumCols / CT * (RP / RT), NRC = kSumThreads / TPR;
  static constexpr int VROW = kSumCols * static_cast<int>(sizeof(TV)), WROW = RP + 4;
  static constexpr int VBYTES = kSumRows * VROW, STAGE = VBYTES + kSumRows * WROW * 4;
  static constexpr int STAGES = std::clamp(kSumSmem / STAGE, 2, 8);
  // The closing reduction reuses the stages: NRC x (4 RP / RT) x kSumCols floats a round.
  static constexpr int RED = kSumThreads * CT * 4 * 4;
  static constexpr int SMEM = std::max(STAGES * STAGE, RED);
  static_assert(NRC >= 1 && kSumRows % NRC == 0 && RT % 4 == 0 && RP % RT == 0);
};

__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(d), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/// Eight staged values (8 x sizeof(TV) bytes at a 16-byte aligned shared address) as floats.
template <typename TV>
__device__ __forceinline__ void staged8(const unsigned char* p, float* x) {
  if constexpr (std::is_same_v<TV, __nv_bfloat16>) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      x[2 * i] = __uint_as_float(w[i] << 16);
      x[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  } else {
    constexpr int NV = static_cast<int>(sizeof(TV)) * 8 / 16;
    alignas(16) TV tmp[8];
#pragma unroll
    for (int q = 0; q < NV; ++q)
      reinterpret_cast<uint4*>(tmp)[q] = reinterpret_cast<const uint4*>(p)[q];
#pragma unroll
    for (int i = 0; i < 8; ++i) x[i] = to_float(tmp[i]);
  }
}

/// Same-size unsigned integer of T (raw copies of bf16 / f16 / f32 / f64 values).
template <typename T>
using raw_t = std::conditional_t<sizeof(T) == 2, uint16_t,
                                 std::conditional_t<sizeof(T) == 4, uint32_t, unsigned long long>>;

// A block sums the rows [mb, me) of kSumCols columns: slabs of kSumRows rows go through a
// STAGES-deep cp.async ring (v by 16-byte copies where aligned and in range, else plain loads;
// w by 16- or 4-byte copies; rows past me and ranks past r are zeros), so STAGES - 1 slabs are
// in flight while one is multiplied. A thread adds its row class's rows in row order into RT x 8
// float32 sums; the row classes are then added in class order through shared memory. One split
// writes alpha times the sums to out; several write partial sums for sum_splits_kernel.
template <typename TV, int RP>
__global__ void __launch_bounds__(kSumThreads, kSumBlocks)
    colsum_kernel(const void* v, int64_t ldv, const float* w, int64_t rows, int64_t cols,
                  int64_t height, int r, bool vec, bool wvec, float alpha, bool transposed,
                  float* partial, float* out) {
  pdl_prologue();
  using P = ColsumPlan<TV, RP>;
  using Raw = raw_t<TV>;
  constexpr int RT = P::RT, CT = P::CT, NRC = P::NRC, VROW = P::VROW, WROW = P::WROW;
  constexpr int CH = 16 / static_cast<int>(sizeof(TV));  // values a 16-byte chunk
  constexpr int VCH = VROW / 16;                         // chunks a staged row
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* vst = smem;
  float* wst = reinterpret_cast<float*>(smem + P::STAGES * P::VBYTES);
  const int t = threadIdx.x;
  const int cg = t % (kSumCols / CT), rb = t / (kSumCols / CT) % (RP / RT), rc = t / P::TPR;
  const int64_t c0 = int64_t{blockIdx.x} * kSumCols;
  const int64_t mb = int64_t{blockIdx.y} * height, me = std::min(rows, mb + height);
  const int64_t slabs = (me - mb + kSumRows - 1) / kSumRows;
  const Raw* vr = static_cast<const Raw*>(v);

  // A thread copies the same 16-byte column chunk of rows t / VCH + k * VSTEP of every slab
  // (and likewise of w), so its addresses only move by a slab's rows from one slab to the next.
  constexpr int VSTEP = kSumThreads / VCH;
  const int vrow = t / VCH;
  const int64_t vc = c0 + t % VCH * CH;
  const int vn = static_cast<int>(std::clamp<int64_t>(cols - vc, 0, CH));
  const bool vfull = vec && vn == CH;
  constexpr int WCH = RP / 4, WSTEP = kSumThreads / WCH;  // wvec: 16-byte chunks of a w row
  constexpr int WSTEP1 = kSumThreads / RP;                // else: floats
  const int wrow = wvec ? t / WCH : t / RP, wj = wvec ? t % WCH * 4 : t % RP;
  const bool wok = wj < r;
  const int sv = vrow * VROW + t % VCH * 16, sw = wrow * WROW + wj;
  // The next slab to stage: its ring slot, this thread's first rows (counted from me) and
  // sources. Slots and sources step by additions: a modulo or a 64-bit product a slab costs as
  // much as a tenth of the slab's multiplies.
  int64_t next = 0, vleft = me - mb - vrow, wleft = me - mb - wrow;
  int nslot = 0;
  const Raw* vsrc = vr + (mb + vrow) * ldv + vc;
  const float* wsrc = w + (mb + wrow) * r + wj;
  const int64_t vstep = kSumRows * ldv, wstep = int64_t{kSumRows} * r;

  // Stage the next slab into its ring slot (a commit group even past the last slab).
  auto issue = [&]() {
    if (next < slabs) {
      unsigned char* vd = vst + nslot * P::VBYTES + sv;
#pragma unroll
      for (int k = 0; k < kSumRows / VSTEP; ++k) {
        const bool in = k * VSTEP < vleft;
        const Raw* sk = vsrc + k * VSTEP * ldv;
        unsigned char* d = vd + k * VSTEP * VROW;
        if (vfull && in) {
          cp_async16(d, sk);
        } else {
          alignas(16) Raw tmp[CH];
#pragma unroll
          for (int i = 0; i < CH; ++i) tmp[i] = in && i < vn ? sk[i] : Raw{0};
          *reinterpret_cast<uint4*>(d) = *reinterpret_cast<const uint4*>(tmp);
        }
      }
      float* wd = wst + nslot * kSumRows * WROW + sw;
      if (wvec) {
#pragma unroll
        for (int k = 0; k < kSumRows / WSTEP; ++k) {
          float* d = wd + k * WSTEP * WROW;
          if (wok && k * WSTEP < wleft)
            cp_async16(d, wsrc + k * WSTEP * r);
          else
            *reinterpret_cast<float4*>(d) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
      } else {
#pragma unroll
        for (int k = 0; k < kSumRows / WSTEP1; ++k) {
          float* d = wd + k * WSTEP1 * WROW;
          if (wok && k * WSTEP1 < wleft)
            cp_async4(d, wsrc + k * WSTEP1 * r);
          else
            *d = 0.0f;
        }
      }
      ++next;
      nslot = nslot + 1 == P::STAGES ? 0 : nslot + 1;
      vleft -= kSumRows;
      wleft -= kSumRows;
      vsrc += vstep;
      wsrc += wstep;
    }
    cp_async_commit();
  };

  float acc[RT][CT];
#pragma unroll
  for (int i = 0; i < RT; ++i)
#pragma unroll
    for (int k = 0; k < CT; ++k) acc[i][k] = 0.0f;
#pragma unroll
  for (int s = 0; s < P::STAGES - 1; ++s) issue();
  const unsigned char* vb0 = vst + cg * CT * sizeof(TV) + rc * VROW;
  const float* wb0 = wst + rb * RT + rc * WROW;
  int slot = 0;
  for (int64_t s = 0; s < slabs; ++s) {
    cp_async_wait<P::STAGES - 2>();  // this thread's copies of slab s have landed
    __syncthreads();                 // everyone's, and slab s - 1's slot is free
    issue();
    const unsigned char* vb = vb0 + slot * P::VBYTES;
    const float* wb = wb0 + slot * kSumRows * WROW;
    slot = slot + 1 == P::STAGES ? 0 : slot + 1;
#pragma unroll
    for (int i = 0; i < kSumRows / NRC; ++i) {
      float x[CT];
      staged8<TV>(vb + i * NRC * VROW, x);
#pragma unroll
      for (int q = 0; q < RT / 4; ++q) {
        const float4 g = *reinterpret_cast<const float4*>(wb + i * NRC * WROW + 4 * q);
        const float gv[4] = {g.x, g.y, g.z, g.w};
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
          for (int k = 0; k < CT; ++k) acc[4 * q + a][k] += gv[a] * x[k];
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  // The row classes' sums added in class order, 4 ranks of every rank block a round:
  // red[rc][rb * 4 + a][column].
  constexpr int JR = 4 * (RP / RT);
  float* red = reinterpret_cast<float*>(smem);
  const bool one = gridDim.y == 1;
  float* dst = partial + int64_t{blockIdx.y} * r * cols;
#pragma unroll
  for (int q = 0; q < RT / 4; ++q) {
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      float* d = red + (rc * JR + rb * 4 + a) * kSumCols + cg * CT;
#pragma unroll
      for (int k = 0; k < CT; k += 4)
        *reinterpret_cast<float4*>(d + k) = make_float4(
            acc[4 * q + a][k], acc[4 * q + a][k + 1], acc[4 * q + a][k + 2], acc[4 * q + a][k + 3]);
    }
    __syncthreads();
#pragma unroll
    for (int e = 0; e < JR * kSumCols / kSumThreads; ++e) {
      const int o = t + e * kSumThreads;
      float sum = 0.0f;
#pragma unroll 8
      for (int k = 0; k < NRC; ++k) sum += red[k * JR * kSumCols + o];
      const int jj = o / kSumCols, j = jj / 4 * RT + 4 * q + jj % 4;
      const int64_t c = c0 + o % kSumCols;
      if (j < r && c < cols) {
        if (!one)
          dst[j * cols + c] = sum;
        else
          out[transposed ? c * r + j : j * cols + c] = alpha * sum;
      }
    }
    __syncthreads();
  }
}

// ---- project on tensor cores (default; INGOT_LORA_PROJECT_MMA=0 = the SIMT kernel; bf16 v,
// rank <= 16) ----
//
// v [M, C] bf16 times p [C, 16] float32 as three bf16 products: p = hi + mid + lo, each the
// bf16 rounding of what the previous ones leave, so hi + mid + lo carries p's 24 bits and every
// product v * part is exact in the float32 accumulators (mma.sync m16n8k16). A CTA takes 64 rows
// (16 a warp) of a column range, 64 columns a stage through a 4-deep ring: v by cp.async, p
// read into registers a stage ahead and split into shared memory after the current stage's
// products. The ranges' partial sums go through sum_splits_kernel as the SIMT kernel's do.

/// x as three bf16 parts at dst (hi), dst + part (mid), dst + 2 part (lo): each the bf16
/// rounding of what the previous ones leave, so hi + mid + lo carries x's 24 bits and each
/// part's product with a bf16 value is exact in float32.
__device__ __forceinline__ void store_split3(float x, __nv_bfloat16* dst, int part) {
  const __nv_bfloat16 hi = __float2bfloat16_rn(x);
  const float r1 = x - __bfloat162float(hi);
  const __nv_bfloat16 mid = __float2bfloat16_rn(r1);
  dst[0] = hi;
  dst[part] = mid;
  dst[2 * part] = __float2bfloat16_rn(r1 - __bfloat162float(mid));
}

constexpr int kPmRows = 64, kPmK = 64, kPmStages = 4, kPmThreads = 128;
constexpr int kPmLd = kPmK + 8;  // shared row stride (elements): ldmatrix rows on distinct banks
// A stage: the v tile [64 rows][kPmLd] and the three parts of p, each [16 ranks][kPmLd].
constexpr int kPmStage = (kPmRows + 3 * 16) * kPmLd;  // elements
constexpr size_t kPmSmem = size_t(kPmStages) * kPmStage * sizeof(__nv_bfloat16);

/// Column splits of an mma project launch: about four CTAs an SM.
void project_mma_splits(int64_t rows, int64_t cols, int64_t& splits, int64_t& width) {
  const int64_t mblocks = std::max<int64_t>(ceil_div(rows, kPmRows), 1);
  splits = std::clamp<int64_t>(ceil_div(4 * sm_count(), mblocks), 1,
                               std::max<int64_t>(ceil_div(cols, kPmK), 1));
  width = std::max<int64_t>(ceil_div(ceil_div(cols, splits), kPmK), 1) * kPmK;
  splits = std::max<int64_t>(ceil_div(cols, width), 1);
}

/// The kernel switches, read per launch through env::flag (tests and the kernel bench flip them).
/// A default-on switch is off only at "0"; a default-off (opt-in) one is on only at "1".
/// - INGOT_LORA_PROJECT_MMA / INGOT_LORA_COLSUM_MMA (on): the tensor-core kernels where they
///   apply (an H100 LoRA step measured 1.2-1.95x faster project and up to 1.28x colsum calls;
///   BENCHMARKS.md, session 32); off: the SIMT kernels.
/// - INGOT_LORA_EXPAND_WIDE (opt-in): the expand kernel's 2 x 8 mapping with 16-byte loads and
///   stores (written in session 33, not yet run on a GPU); off: the 4 x 4 element-wise mapping.
/// - INGOT_LORA_FUSED_SPLITS (opt-in): the tensor-core project and colsum kernels add their
///   split sums themselves (last_split) instead of a sum_splits_kernel launch after them.

/// Zeroed arrival counters for last_split on stream s (one array per device and stream, made on
/// first use and kept for the process; the last CTA of each region puts its counter back to 0),
/// or nullptr when fused split sums are off, `blocks` exceeds the array, or the array would have
/// to be made while the stream is being captured into a graph (the caller then launches
/// sum_splits_kernel).
unsigned* split_counters(cudaStream_t s, int64_t blocks) {
  constexpr int64_t kCap = int64_t{1} << 16;
  if (!env::flag("INGOT_LORA_FUSED_SPLITS", false) || blocks > kCap) return nullptr;
  static std::mutex mu;
  static std::map<std::pair<int, cudaStream_t>, unsigned*> arrays;
  int dev = 0;
  INGOT_CUDA_CHECK(cudaGetDevice(&dev));
  const std::lock_guard<std::mutex> lock(mu);
  auto it = arrays.find({dev, s});
  if (it != arrays.end()) return it->second;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  INGOT_CUDA_CHECK(cudaStreamIsCapturing(s, &cs));
  if (cs != cudaStreamCaptureStatusNone) return nullptr;
  unsigned* c = nullptr;
  INGOT_CUDA_CHECK(cudaMalloc(&c, kCap * sizeof(unsigned)));
  INGOT_CUDA_CHECK(cudaMemset(c, 0, kCap * sizeof(unsigned)));
  arrays.emplace(std::make_pair(dev, s), c);
  return c;
}

/// Whether launch_lora_project takes the tensor-core kernel: not switched off, bf16 v whose rows
/// are 16-byte aligned with a multiple of 8 columns, rank <= 16.
bool project_mma(const LoraRows& v, int64_t cols, int r) {
  return env::flag("INGOT_LORA_PROJECT_MMA", true) && v.dtype == Dtype::bfloat16 && r <= 16 &&
         cols % 8 == 0 && reinterpret_cast<uintptr_t>(v.ptr) % 16 == 0 && v.ld % 8 == 0;
}

__global__ void __launch_bounds__(kPmThreads)
    project_mma_kernel(const __nv_bfloat16* v, int64_t ldv, int64_t rows, int64_t cols,
                       int64_t width, const float* p, int64_t ps, int64_t js, int r, float* partial,
                       unsigned* counters, float alpha, float* final_out) {
  pdl_prologue();
  extern __shared__ __align__(16) unsigned char pm_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(pm_raw);
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int64_t m0 = int64_t{blockIdx.x} * kPmRows;
  const int64_t cb = int64_t{blockIdx.y} * width, ce = std::min(cols, cb + width);
  const int nk = static_cast<int>((ce - cb + kPmK - 1) / kPmK);
  // v: a thread's 16-byte chunks are t + 128 i (i < 4) of the 64 x 8 chunks of a stage.
  auto issue_v = [&](int k) {
    __nv_bfloat16* st = smem + (k % kPmStages) * kPmStage;
    const int64_t c0 = cb + int64_t{k} * kPmK;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int idx = t + kPmThreads * i, row = idx >> 3, ch = idx & 7;
      const int64_t m = m0 + row, c = c0 + ch * 8;
      __nv_bfloat16* dst = st + row * kPmLd + ch * 8;
      if (m < rows && c < ce)
        cp_async16(dst, v + m * ldv + c);
      else
        *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
    }
  };
  // p: a thread's 8 values are (column kk, rank j) with j = t & 15, kk = (t >> 4) + 8 i.
  const int pj = t & 15;
  float pr[8];
  auto read_p = [&](int k) {
    const int64_t c0 = cb + int64_t{k} * kPmK;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int64_t c = c0 + (t >> 4) + 8 * i;
      pr[i] = pj < r && c < ce ? p[c * ps + pj * js] : 0.0f;
    }
  };
  auto store_p = [&](int k) {
    __nv_bfloat16* st = smem + (k % kPmStages) * kPmStage + kPmRows * kPmLd;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int kk = (t >> 4) + 8 * i;
      store_split3(pr[i], st + pj * kPmLd + kk, 16 * kPmLd);
    }
  };
  for (int k = 0; k < kPmStages - 1; ++k) {
    if (k < nk) {
      issue_v(k);
      read_p(k);
      store_p(k);
    }
    cp_async_commit();
  }
  float acc[2][4] = {};
  for (int k = 0; k < nk; ++k) {
    cp_async_wait<kPmStages - 2>();
    __syncthreads();  // stage k landed (v by cp.async, p by the stores); stage k - 1 is consumed
    const int kn = k + kPmStages - 1;
    if (kn < nk) {
      issue_v(kn);
      read_p(kn);
    }
    cp_async_commit();
    const __nv_bfloat16* st = smem + (k % kPmStages) * kPmStage;
    const __nv_bfloat16* a = st + (warp * 16 + (lane & 15)) * kPmLd + (lane >> 4) * 8;
    const __nv_bfloat16* b =
        st + kPmRows * kPmLd + ((lane & 7) + ((lane >> 4) << 3)) * kPmLd + (((lane >> 3) & 1) << 3);
#pragma unroll
    for (int kk = 0; kk < kPmK / 16; ++kk) {
      uint32_t af[4];
      ldsm_x4(af, a + kk * 16);
#pragma unroll
      for (int part = 0; part < 3; ++part) {
        uint32_t bf[4];
        ldsm_x4(bf, b + part * 16 * kPmLd + kk * 16);
        mma_16816<__nv_bfloat16>(acc[0], af, bf[0], bf[1]);
        mma_16816<__nv_bfloat16>(acc[1], af, bf[2], bf[3]);
      }
    }
    if (kn < nk) store_p(kn);  // its buffer held stage k - 1, which every warp has finished
  }
  cp_async_wait<0>();
  // Rows g and g + 8 of the warp, ranks 8 n + 2 q and + 1.
  const int g = lane >> 2, q = lane & 3;
  float* out = partial + int64_t{blockIdx.y} * rows * r;
#pragma unroll
  for (int n = 0; n < 2; ++n)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t m = m0 + warp * 16 + g + 8 * h;
      const int j = 8 * n + 2 * q;
      if (m >= rows) continue;
      if (j < r) out[m * r + j] = acc[n][2 * h];
      if (j + 1 < r) out[m * r + j + 1] = acc[n][2 * h + 1];
    }
  if (counters && last_split(counters)) {  // this row block's rows, all ranks: one run
    const int64_t n = (std::min<int64_t>(m0 + kPmRows, rows) - m0) * r;
    reduce_region(partial, gridDim.y, rows * r, m0 * r, n, n, 0, alpha, r, r, false, final_out);
  }
}

// ---- colsum on tensor cores (default; INGOT_LORA_COLSUM_MMA=0 = the SIMT kernel; bf16 v,
// rank <= 16) ----
//
// out^T [C, r] = v^T [C, M] w [M, r] with the rows M as the products' inner dimension: v's
// 16 x 16 tiles are the A fragments through transposing ldmatrix, w (float32) is split into
// three bf16 parts as the project kernel splits p (exact products, float32 accumulators) and
// staged transposed ([part][rank][row]) for plain ldmatrix B fragments. A CTA takes 128 columns
// of a row range, 64 rows a stage through a 4-deep ring; warp (wr, wc) multiplies columns
// [64 wc, 64 wc + 64) of the stage's rows [32 wr, 32 wr + 32), and the two row halves are added
// in a fixed order at the end. Row ranges as colsum_kernel's (sum_splits_kernel adds them).

constexpr int kCmCols = 128, kCmRows = 64, kCmStages = 4, kCmThreads = 128;
constexpr int kCmLdV =
    kCmCols + 8;  // v stage row stride (elements): ldmatrix rows on distinct banks
constexpr int kCmLdW = kCmRows + 8;                           // w part row stride (elements)
constexpr int kCmStage = kCmRows * kCmLdV + 3 * 16 * kCmLdW;  // elements
constexpr size_t kCmSmem = size_t(kCmStages) * kCmStage * sizeof(__nv_bfloat16);

/// Row splits of a tensor-core colsum and their height (a multiple of kCmRows): as
/// colsum_splits, with two CTAs an SM.
void colsum_mma_splits(int64_t rows, int64_t cols, int64_t& splits, int64_t& height) {
  row_splits(rows, cols, kCmCols, kCmRows, 2, splits, height);
}

/// Whether launch_lora_colsum takes the tensor-core kernel: not switched off, bf16 v whose rows
/// are 16-byte aligned with a multiple of 8 columns, rank <= 16.
bool colsum_mma(const LoraRows& v, int64_t cols, int r) {
  return env::flag("INGOT_LORA_COLSUM_MMA", true) && v.dtype == Dtype::bfloat16 && r <= 16 &&
         cols % 8 == 0 && reinterpret_cast<uintptr_t>(v.ptr) % 16 == 0 && v.ld % 8 == 0;
}

__global__ void __launch_bounds__(kCmThreads, 2)
    colsum_mma_kernel(const __nv_bfloat16* v, int64_t ldv, const float* w, int64_t rows,
                      int64_t cols, int64_t height, int r, float alpha, bool transposed,
                      float* partial, float* out, unsigned* counters) {
  pdl_prologue();
  extern __shared__ __align__(16) unsigned char cm_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(cm_raw);
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5, wc = warp & 1, wr = warp >> 1;
  const int64_t c0 = int64_t{blockIdx.x} * kCmCols;
  const int64_t mb = int64_t{blockIdx.y} * height, me = std::min(rows, mb + height);
  const int nk = static_cast<int>((me - mb + kCmRows - 1) / kCmRows);
  // v: a thread's 16-byte chunks are t + 128 i (i < 8) of the 64 x 16 chunks of a stage.
  auto issue_v = [&](int k) {
    __nv_bfloat16* st = smem + (k % kCmStages) * kCmStage;
    const int64_t m0 = mb + int64_t{k} * kCmRows;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int idx = t + kCmThreads * i, row = idx >> 4, ch = idx & 15;
      const int64_t m = m0 + row, c = c0 + ch * 8;
      __nv_bfloat16* dst = st + row * kCmLdV + ch * 8;
      if (m < me && c < cols)
        cp_async16(dst, v + m * ldv + c);
      else
        *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
    }
  };
  // w: a thread's 8 values are (row kk, rank j) with j = t & 15, kk = (t >> 4) + 8 i.
  const int wj = t & 15;
  float wv[8];
  auto read_w = [&](int k) {
    const int64_t m0 = mb + int64_t{k} * kCmRows;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int64_t m = m0 + (t >> 4) + 8 * i;
      wv[i] = wj < r && m < me ? w[m * r + wj] : 0.0f;
    }
  };
  auto store_w = [&](int k) {
    __nv_bfloat16* st = smem + (k % kCmStages) * kCmStage + kCmRows * kCmLdV;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int kk = (t >> 4) + 8 * i;
      store_split3(wv[i], st + wj * kCmLdW + kk, 16 * kCmLdW);
    }
  };
  for (int k = 0; k < kCmStages - 1; ++k) {
    if (k < nk) {
      issue_v(k);
      read_w(k);
      store_w(k);
    }
    cp_async_commit();
  }
  float acc[4][2][4] = {};  // [16-column tile][8-rank tile][fragment]
  for (int k = 0; k < nk; ++k) {
    cp_async_wait<kCmStages - 2>();
    __syncthreads();  // stage k landed (v by cp.async, w by the stores); stage k - 1 is consumed
    const int kn = k + kCmStages - 1;
    if (kn < nk) {
      issue_v(kn);
      read_w(kn);
    }
    cp_async_commit();
    const __nv_bfloat16* st = smem + (k % kCmStages) * kCmStage;
    // A (columns x rows) from v's [row][column] tile: lane l addresses row (l >> 4) * 8 + (l & 7)
    // of the 16-row step, columns ((l >> 3) & 1) * 8 of the 16-column tile (transposed loads).
    const __nv_bfloat16* a = st + (wr * 32 + ((lane >> 4) << 3) + (lane & 7)) * kCmLdV + wc * 64 +
                             (((lane >> 3) & 1) << 3);
    const __nv_bfloat16* b = st + kCmRows * kCmLdV + ((lane & 7) + ((lane >> 4) << 3)) * kCmLdW +
                             wr * 32 + (((lane >> 3) & 1) << 3);
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      uint32_t bf[3][4];
#pragma unroll
      for (int part = 0; part < 3; ++part) ldsm_x4(bf[part], b + part * 16 * kCmLdW + kk * 16);
#pragma unroll
      for (int ct = 0; ct < 4; ++ct) {
        uint32_t af[4];
        ldsm_x4_t(af, a + kk * 16 * kCmLdV + ct * 16);
#pragma unroll
        for (int part = 0; part < 3; ++part) {
          mma_16816<__nv_bfloat16>(acc[ct][0], af, bf[part][0], bf[part][1]);
          mma_16816<__nv_bfloat16>(acc[ct][1], af, bf[part][2], bf[part][3]);
        }
      }
    }
    if (kn < nk) store_w(kn);  // its buffer held stage k - 1, which every warp has finished
  }
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with the ring: its first stage takes the upper half
  float* red = reinterpret_cast<float*>(smem);
  constexpr int kFrag = 4 * 2 * 4;
  if (wr == 1) {
#pragma unroll
    for (int ct = 0; ct < 4; ++ct)
#pragma unroll
      for (int n = 0; n < 2; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          red[((wc * kFrag) + (ct * 2 + n) * 4 + e) * 32 + lane] = acc[ct][n][e];
  }
  __syncthreads();
  const bool one = gridDim.y == 1;
  if (wr == 0) {
    // Columns g and g + 8 of each 16-column tile, ranks 8 n + 2 q and + 1.
    const int g = lane >> 2, q = lane & 3;
    float* dst = partial + int64_t{blockIdx.y} * r * cols;
#pragma unroll
    for (int ct = 0; ct < 4; ++ct)
#pragma unroll
      for (int n = 0; n < 2; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float sum = acc[ct][n][e] + red[((wc * kFrag) + (ct * 2 + n) * 4 + e) * 32 + lane];
          const int64_t c = c0 + wc * 64 + ct * 16 + g + 8 * (e >> 1);
          const int j = 8 * n + 2 * q + (e & 1);
          if (j >= r || c >= cols) continue;
          if (!one)
            dst[j * cols + c] = sum;
          else
            out[transposed ? c * r + j : j * cols + c] = alpha * sum;
        }
  }
  if (!one && counters && last_split(counters))  // this block's columns of every rank
    reduce_region(partial, gridDim.y, r * cols, c0,
                  int64_t{r} * std::min<int64_t>(kCmCols, cols - c0),
                  std::min<int64_t>(kCmCols, cols - c0), cols, alpha, cols, r, transposed, out);
}

/// Calls f.template operator()<RP>() with RP the padded rank.
template <typename F>
void dispatch_rank(int r, F&& f) {
  if (r <= 16)
    f.template operator()<16>();
  else if (r <= 32)
    f.template operator()<32>();
  else
    f.template operator()<64>();
}

void launch_sum_splits(const float* partial, int64_t splits, int64_t count, float alpha,
                       int64_t cols, int r, bool transposed, float* out, cudaStream_t s) {
  const int threads = 256;
  const auto blocks = static_cast<unsigned>(std::clamp<int64_t>(ceil_div(count, threads), 1, 4096));
  launch_pdl(sum_splits_kernel, dim3(blocks), dim3(threads), 0, s, partial, splits, count, alpha,
             cols, r, transposed, out);
  check_launch("lora sum_splits_kernel");
}

}  // namespace

int64_t lora_project_scratch(int64_t rows, int64_t cols, int r) {
  int64_t splits, width, mma_splits;
  project_splits(rows, cols, splits, width);
  project_mma_splits(rows, cols, mma_splits, width);  // the larger: either kernel may run
  return std::max(splits, mma_splits) * rows * r;
}

int64_t lora_colsum_scratch(int64_t rows, int64_t cols, int r) {
  int64_t splits, height, mma_splits;
  colsum_splits(rows, cols, splits, height);
  colsum_mma_splits(rows, cols, mma_splits, height);  // the larger: either kernel may run
  splits = std::max(splits, mma_splits);
  return splits > 1 ? splits * r * cols : 0;  // one split writes out itself
}

void launch_lora_project(LoraRows v, int64_t rows, int64_t cols, const float* p, int64_t ps,
                         int64_t js, int r, float alpha, float* scratch, float* out,
                         cudaStream_t s) {
  if (rows == 0) return;
  int64_t splits, width;
  if (cols > 0 && project_mma(v, cols, r)) {
    project_mma_splits(rows, cols, splits, width);
    allow_dynamic_smem(project_mma_kernel, kPmSmem);
    const dim3 grid(static_cast<unsigned>(ceil_div(rows, kPmRows)), static_cast<unsigned>(splits));
    unsigned* counters = split_counters(s, grid.x);
    launch_pdl(project_mma_kernel, grid, dim3(kPmThreads), kPmSmem, s,
               static_cast<const __nv_bfloat16*>(v.ptr), v.ld, rows, cols, width, p, ps, js, r,
               scratch, counters, alpha, out);
    check_launch("lora project_mma_kernel");
    if (!counters) launch_sum_splits(scratch, splits, rows * r, alpha, r, r, false, out, s);
    return;
  }
  project_splits(rows, cols, splits, width);
  const dim3 grid(static_cast<unsigned>(ceil_div(rows, kProjRows)), static_cast<unsigned>(splits));
  dispatch_cuda_float(v.dtype, [&](auto tag) {
    using TV = decltype(tag);
    // 16-byte loads when every row start is 16-byte aligned (chunks start at multiples of 64).
    const bool vec = reinterpret_cast<uintptr_t>(v.ptr) % 16 == 0 &&
                     (v.ld * static_cast<int64_t>(sizeof(TV))) % 16 == 0;
    dispatch_rank(r, [&]<int RP>() {
      launch_pdl(project_kernel<TV, RP>, grid, dim3(kProjThreads), 0, s, v.ptr, v.ld, rows, cols,
                 width, p, ps, js, r, vec, scratch);
    });
  });
  check_launch("lora project_kernel");
  launch_sum_splits(scratch, splits, rows * r, alpha, r, r, false, out, s);
}

void launch_lora_expand(LoraRows base, const float* w, int64_t rows, int64_t cols, const float* q,
                        int64_t qj, int64_t qn, int r, float alpha, void* out, Dtype out_dtype,
                        cudaStream_t s) {
  if (rows == 0 || cols == 0) return;
  // Rows on x (up to 2^31 - 1 blocks), columns on y (up to 65,535 x 128).
  const dim3 grid(static_cast<unsigned>(ceil_div(rows, kExpRows)),
                  static_cast<unsigned>(ceil_div(cols, kExpCols)));
  dispatch_cuda_float(out_dtype, [&](auto tag) {
    using TO = decltype(tag);
    // 16-byte vectors of base and out when every row starts 16-byte aligned.
    const auto aligned = [](const void* p, int64_t ld) {
      return reinterpret_cast<uintptr_t>(p) % 16 == 0 && (ld * int64_t{sizeof(TO)}) % 16 == 0;
    };
    const bool vec = aligned(out, cols) && (!base.ptr || aligned(base.ptr, base.ld));
    const bool wide = env::flag("INGOT_LORA_EXPAND_WIDE", false);
    dispatch_rank(r, [&]<int RP>() {
      auto go = [&]<bool kBase, bool kWide>() {
        launch_pdl(expand_kernel<TO, RP, kBase, kWide>, grid, dim3(kExpThreads), 0, s, base.ptr,
                   base.ld, w, rows, cols, q, qj, qn, r, alpha, vec, static_cast<TO*>(out));
      };
      if (base.ptr)
        wide ? go.template operator()<true, true>() : go.template operator()<true, false>();
      else
        wide ? go.template operator()<false, true>() : go.template operator()<false, false>();
    });
  });
  check_launch("lora expand_kernel");
}

void launch_lora_colsum(LoraRows v, const float* w, int64_t rows, int64_t cols, int r, float alpha,
                        bool transposed, float* scratch, float* out, cudaStream_t s) {
  if (cols == 0) return;
  if (rows == 0) {
    cudaMemsetAsync(out, 0, static_cast<size_t>(r * cols) * sizeof(float), s);
    return;
  }
  int64_t splits, height;
  if (colsum_mma(v, cols, r)) {
    colsum_mma_splits(rows, cols, splits, height);
    allow_dynamic_smem(colsum_mma_kernel, kCmSmem);
    const dim3 grid(static_cast<unsigned>(ceil_div(cols, kCmCols)), static_cast<unsigned>(splits));
    unsigned* counters = splits > 1 ? split_counters(s, grid.x) : nullptr;
    launch_pdl(colsum_mma_kernel, grid, dim3(kCmThreads), kCmSmem, s,
               static_cast<const __nv_bfloat16*>(v.ptr), v.ld, w, rows, cols, height, r, alpha,
               transposed, scratch, out, counters);
    check_launch("lora colsum_mma_kernel");
    if (splits > 1 && !counters)
      launch_sum_splits(scratch, splits, r * cols, alpha, cols, r, transposed, out, s);
    return;
  }
  colsum_splits(rows, cols, splits, height);
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, kSumCols)), static_cast<unsigned>(splits));
  // 16-byte copies of w's rows when each starts 16-byte aligned.
  const bool wvec = reinterpret_cast<uintptr_t>(w) % 16 == 0 && r % 4 == 0;
  dispatch_cuda_float(v.dtype, [&](auto tag) {
    using TV = decltype(tag);
    // 16-byte copies when every row start is 16-byte aligned (blocks start at multiples of 64).
    const bool vec = reinterpret_cast<uintptr_t>(v.ptr) % 16 == 0 &&
                     (v.ld * static_cast<int64_t>(sizeof(TV))) % 16 == 0;
    dispatch_rank(r, [&]<int RP>() {
      const auto kernel = colsum_kernel<TV, RP>;
      constexpr int smem = ColsumPlan<TV, RP>::SMEM;
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
      launch_pdl(kernel, grid, dim3(kSumThreads), smem, s, v.ptr, v.ld, w, rows, cols, height, r,
                 vec, wvec, alpha, transposed, scratch, out);
    });
  });
  check_launch("lora colsum_kernel");
  if (splits > 1) launch_sum_splits(scratch, splits, r * cols, alpha, cols, r, transposed, out, s);
}

}  // namespace ingot::cu
