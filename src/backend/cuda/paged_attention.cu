// CUDA kernels of PagedAttention. The write: one thread per (row, KV head, query, d) element of
// the new keys/values. The attention: one warp per (row, query head, query); each lane holds D/32
// features of q and of the output accumulator; keys are visited one at a time through the
// block table (the dot product reduced across the warp), with an online softmax in float32
// (float64 for double). A first version: no tiling across the G heads sharing a KV head.
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/paged_attention_kernels.h"

namespace ingot::cu {
namespace {

constexpr int kWarps = 4;       // warps (query heads) per CTA
constexpr int kMaxPerLane = 8;  // D <= 256

template <typename T>
__device__ __forceinline__ T from_acc(float v) {
  return cast<T>(v);
}

// Position of query i of row b, or -1 for a padding query.
__device__ __forceinline__ int64_t query_pos(const PagedAttentionArgs& a, int64_t b, int64_t i) {
  const int64_t p = int64_t{a.q_pos[b]} + i;
  return p < 0 || (a.padding && i < a.padding[b]) ? -1 : p;
}

template <typename T>
__global__ void paged_write(PagedAttentionArgs a, const T* __restrict__ src, T* __restrict__ pool) {
  const int64_t n = a.B * a.Hkv * a.L * a.D;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t d = e % a.D, i = (e / a.D) % a.L, hk = (e / (a.D * a.L)) % a.Hkv,
                  b = e / (a.D * a.L * a.Hkv);
    const int64_t p = query_pos(a, b, i);
    if (p < 0 || p / a.P >= a.M) continue;
    const int32_t blk = a.table[b * a.M + p / a.P];
    if (blk < 0 || blk >= a.N) continue;
    pool[((blk * a.Hkv + hk) * a.P + p % a.P) * a.D + d] = src[e];
  }
}

template <typename T, typename A>
__global__ void paged_attend(PagedAttentionArgs a) {
  const int lane = threadIdx.x % 32;
  const int64_t w = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;  // (b, h, i)
  if (w >= a.B * a.H * a.L) return;
  const int64_t i = w % a.L, h = (w / a.L) % a.H, b = w / (a.L * a.H);
  const int64_t hk = h / (a.H / a.Hkv);
  const T* q = static_cast<const T*>(a.q) + w * a.D;
  T* out = static_cast<T*>(a.out) + w * a.D;
  const T* kp = static_cast<const T*>(a.k_pool);
  const T* vp = static_cast<const T*>(a.v_pool);
  const int64_t p = query_pos(a, b, i);
  const int per = static_cast<int>((a.D + 31) / 32);
  A qr[kMaxPerLane], acc[kMaxPerLane];
  for (int j = 0; j < per; ++j) {
    const int64_t d = lane + 32 * j;
    qr[j] = d < a.D ? static_cast<A>(to_float(q[d])) : A(0);
    if constexpr (std::is_same_v<T, double>) qr[j] = d < a.D ? q[d] : 0.0;
    acc[j] = A(0);
  }
  A m = -INFINITY, l = A(0);
  if (p >= 0) {
    const int64_t lo = a.window > 0 ? (p - a.window + 1 > 0 ? p - a.window + 1 : 0) : 0;
    for (int64_t t = lo; t <= p; ++t) {
      if (t / a.P >= a.M) break;
      const int32_t blk = a.table[b * a.M + t / a.P];
      if (blk < 0 || blk >= a.N) continue;
      const int64_t off = ((blk * a.Hkv + hk) * a.P + t % a.P) * a.D;
      A s = A(0);
      for (int j = 0; j < per; ++j) {
        const int64_t d = lane + 32 * j;
        if (d < a.D) {
          if constexpr (std::is_same_v<T, double>)
            s += qr[j] * kp[off + d];
          else
            s += qr[j] * to_float(kp[off + d]);
        }
      }
      for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
      s *= static_cast<A>(a.scale);
      if (a.softcap > 0.0f) s = tanh(s / static_cast<A>(a.softcap)) * static_cast<A>(a.softcap);
      const A mx = s > m ? s : m;
      const A corr = exp(m - mx), e = exp(s - mx);
      l = l * corr + e;
      m = mx;
      for (int j = 0; j < per; ++j) {
        const int64_t d = lane + 32 * j;
        A vv = A(0);
        if (d < a.D) {
          if constexpr (std::is_same_v<T, double>)
            vv = vp[off + d];
          else
            vv = to_float(vp[off + d]);
        }
        acc[j] = acc[j] * corr + e * vv;
      }
    }
  }
  const A inv = l > A(0) ? A(1) / l : A(0);
  for (int j = 0; j < per; ++j) {
    const int64_t d = lane + 32 * j;
    if (d >= a.D) continue;
    if constexpr (std::is_same_v<T, double>)
      out[d] = acc[j] * inv;
    else
      out[d] = from_acc<T>(static_cast<float>(acc[j] * inv));
  }
}

}  // namespace

void launch_paged_attention(const PagedAttentionArgs& a, cudaStream_t s) {
  dispatch_cuda_float(a.dtype, [&](auto t) {
    using T = decltype(t);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const int64_t n = a.B * a.Hkv * a.L * a.D;
    if (n > 0) {
      const int64_t blocks = (n + 255) / 256 < 65535 ? (n + 255) / 256 : 65535;
      paged_write<T><<<static_cast<unsigned>(blocks), 256, 0, s>>>(a, static_cast<const T*>(a.k),
                                                                   static_cast<T*>(a.k_pool));
      paged_write<T><<<static_cast<unsigned>(blocks), 256, 0, s>>>(a, static_cast<const T*>(a.v),
                                                                   static_cast<T*>(a.v_pool));
    }
    const int64_t warps = a.B * a.H * a.L;
    if (warps > 0)
      paged_attend<T, A>
          <<<static_cast<unsigned>((warps + kWarps - 1) / kWarps), 32 * kWarps, 0, s>>>(a);
  });
}

}  // namespace ingot::cu
