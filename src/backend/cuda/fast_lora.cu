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
//  - colsum: [M, r]^T x [M, C] -> [r, C] (da, db): 128 columns a block over a row range (32
//    rows x 128 columns staged with 16-byte loads where aligned), then the ranges' partial sums
//    added in order.
// Every sum is in a fixed order, so a launch gives the same bits every run.
#include <algorithm>
#include <cstdint>

#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/fast_lora_kernels.h"

namespace ingot::cu {
namespace {

constexpr int kProjRows = 32, kProjChunk = 64, kProjThreads = 256;
constexpr int kExpRows = 32, kExpCols = 128, kExpThreads = 256;
constexpr int kSumCols = 128, kSumRows = 32, kSumThreads = 128;

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

/// Row splits of a colsum launch and their height (a multiple of kSumRows).
void colsum_splits(int64_t rows, int64_t cols, int64_t& splits, int64_t& height) {
  const int64_t cblocks = std::max<int64_t>(ceil_div(cols, kSumCols), 1);
  splits = std::clamp<int64_t>(ceil_div(1024, cblocks), 1,
                               std::max<int64_t>(ceil_div(rows, kSumRows), 1));
  height = std::max<int64_t>(ceil_div(ceil_div(rows, splits), kSumRows), 1) * kSumRows;  // rows 0
  splits = std::max<int64_t>(ceil_div(rows, height), 1);
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
template <typename TV, int RP>
__global__ void __launch_bounds__(kProjThreads, 4)
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
  // columns x 4 consecutive ranks (32-byte runs of p either way it is laid out).
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

template <typename TO, int RP, bool kBase>
__global__ void __launch_bounds__(kExpThreads)
    expand_kernel(const void* base, int64_t ldb, const float* w, int64_t rows, int64_t cols,
                  const float* q, int64_t qj, int64_t qn, int r, float alpha, TO* out) {
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
  const int tr = (t >> 5) * 4, tc = (t & 31) * 4;
  float acc[4][4] = {};
#pragma unroll 8
  for (int j = 0; j < RP; ++j) {
    const float4 a = *reinterpret_cast<const float4*>(&ws[j][tr]);
    const float4 b = *reinterpret_cast<const float4*>(&qs[j][tc]);
    const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int k = 0; k < 4; ++k) acc[i][k] += av[i] * bv[k];
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + tr + i;
    if (m >= rows) break;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t n = n0 + tc + k;
      if (n >= cols) break;
      float o = alpha * acc[i][k];
      if constexpr (kBase) o = load_f<TO>(base, m * ldb + n) + o;
      out[m * cols + n] = cast<TO>(o);
    }
  }
}

template <typename TV, int RP>
__global__ void __launch_bounds__(kSumThreads)
    colsum_kernel(const void* v, int64_t ldv, const float* w, int64_t rows, int64_t cols,
                  int64_t height, int r, bool vec, float* partial) {
  pdl_prologue();
  constexpr int RQ = RP / 4;  // ranks a lane
  __shared__ __align__(16) float vs[kSumRows][kSumCols];
  __shared__ __align__(16) float ws[kSumRows][RP];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int cg = warp * 32 + (lane & 7) * 4, rg = (lane >> 3) * RQ;
  const int64_t c0 = int64_t{blockIdx.x} * kSumCols;
  const int64_t mb = int64_t{blockIdx.y} * height, me = std::min(rows, mb + height);
  float acc[RQ][4] = {};
  for (int64_t r0 = mb; r0 < me; r0 += kSumRows) {
    __syncthreads();
    // 8 consecutive columns of 4 rows a thread (16-byte loads where aligned).
#pragma unroll
    for (int k = 0; k < kSumRows * kSumCols / (8 * kSumThreads); ++k) {
      const int row = k * (kSumThreads / (kSumCols / 8)) + t / (kSumCols / 8);
      const int col = (t % (kSumCols / 8)) * 8;
      const int64_t m = r0 + row, c = c0 + col;
      const int n = m < me ? static_cast<int>(std::clamp<int64_t>(cols - c, 0, 8)) : 0;
      float x8[8];
      load8<TV>(v, m * ldv + c, vec && n == 8, n, x8);
      *reinterpret_cast<float4*>(&vs[row][col]) = make_float4(x8[0], x8[1], x8[2], x8[3]);
      *reinterpret_cast<float4*>(&vs[row][col + 4]) = make_float4(x8[4], x8[5], x8[6], x8[7]);
    }
    for (int idx = t; idx < kSumRows * RP; idx += kSumThreads) {
      const int row = idx / RP, j = idx % RP;
      const int64_t m = r0 + row;
      ws[row][j] = j < r && m < me ? w[m * r + j] : 0.0f;
    }
    __syncthreads();
#pragma unroll 4
    for (int row = 0; row < kSumRows; ++row) {
      const float4 x = *reinterpret_cast<const float4*>(&vs[row][cg]);
      const float xv[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
      for (int q = 0; q < RQ; q += 4) {
        const float4 g = *reinterpret_cast<const float4*>(&ws[row][rg + q]);
        const float gv[4] = {g.x, g.y, g.z, g.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int k = 0; k < 4; ++k) acc[q + i][k] += gv[i] * xv[k];
      }
    }
  }
  float* out = partial + int64_t{blockIdx.y} * r * cols;
#pragma unroll
  for (int i = 0; i < RQ; ++i) {
    const int j = rg + i;
    if (j >= r) break;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t c = c0 + cg + k;
      if (c < cols) out[j * cols + c] = acc[i][k];
    }
  }
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
  int64_t splits, width;
  project_splits(rows, cols, splits, width);
  return splits * rows * r;
}

int64_t lora_colsum_scratch(int64_t rows, int64_t cols, int r) {
  int64_t splits, height;
  colsum_splits(rows, cols, splits, height);
  return splits * r * cols;
}

void launch_lora_project(LoraRows v, int64_t rows, int64_t cols, const float* p, int64_t ps,
                         int64_t js, int r, float alpha, float* scratch, float* out,
                         cudaStream_t s) {
  if (rows == 0) return;
  int64_t splits, width;
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
    dispatch_rank(r, [&]<int RP>() {
      if (base.ptr)
        launch_pdl(expand_kernel<TO, RP, true>, grid, dim3(kExpThreads), 0, s, base.ptr, base.ld, w,
                   rows, cols, q, qj, qn, r, alpha, static_cast<TO*>(out));
      else
        launch_pdl(expand_kernel<TO, RP, false>, grid, dim3(kExpThreads), 0, s, base.ptr, base.ld,
                   w, rows, cols, q, qj, qn, r, alpha, static_cast<TO*>(out));
    });
  });
  check_launch("lora expand_kernel");
}

void launch_lora_colsum(LoraRows v, const float* w, int64_t rows, int64_t cols, int r, float alpha,
                        bool transposed, float* scratch, float* out, cudaStream_t s) {
  if (cols == 0) return;
  int64_t splits, height;
  colsum_splits(rows, cols, splits, height);
  if (rows == 0) {
    cudaMemsetAsync(out, 0, static_cast<size_t>(r * cols) * sizeof(float), s);
    return;
  }
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, kSumCols)), static_cast<unsigned>(splits));
  dispatch_cuda_float(v.dtype, [&](auto tag) {
    using TV = decltype(tag);
    // 16-byte loads when every row start is 16-byte aligned (blocks start at multiples of 128).
    const bool vec = reinterpret_cast<uintptr_t>(v.ptr) % 16 == 0 &&
                     (v.ld * static_cast<int64_t>(sizeof(TV))) % 16 == 0;
    dispatch_rank(r, [&]<int RP>() {
      launch_pdl(colsum_kernel<TV, RP>, grid, dim3(kSumThreads), 0, s, v.ptr, v.ld, w, rows, cols,
                 height, r, vec, scratch);
    });
  });
  check_launch("lora colsum_kernel");
  launch_sum_splits(scratch, splits, r * cols, alpha, cols, r, transposed, out, s);
}

}  // namespace ingot::cu
