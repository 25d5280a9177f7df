// Helpers of the CPU fast-op kernels (norms, rope, attention): row addressing for any layout,
// float conversion of rows, and the SIMD inner loops picked at run time (AVX-512, AVX2+FMA or
// portable).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "backend/common/utils.h"
#include "backend/cpu/reduce_utils.h"
#include "core/array.h"
#include "core/cast.h"

namespace ingot {
class RopeKvUpdate;
}  // namespace ingot

namespace ingot::backend::fastk {

/// Element offset of row r of an array viewed as rows along its last axis (any strides).
class RowOffsets {
 public:
  explicit RowOffsets(const Array& a) {
    Shape outer(a.shape().begin(), a.shape().end() - 1);
    Strides st(a.strides().begin(), a.strides().end() - 1);
    if (outer.empty()) {
      outer.push_back(1);
      st.push_back(0);
    }
    auto [s, sts] = collapse_contiguous_dims(outer, {st});
    shape_ = std::move(s);
    strides_ = std::move(sts[0]);
  }
  int64_t operator()(int64_t r) const {
    if (shape_.size() == 1) return r * strides_[0];
    int64_t off = 0;
    for (int d = static_cast<int>(shape_.size()) - 1; d >= 0; --d) {
      off += (r % shape_[d]) * strides_[d];
      r /= shape_[d];
    }
    return off;
  }

 private:
  Shape shape_;
  Strides strides_;
};

/// The SIMD inner loops of one ISA level (float32).
struct Kernels {
  /// Sum of squares of n values.
  float (*sum_squares)(const float* x, int64_t n);
  /// s[r * lds + j] = sum_d q[r * ldq + d] * kp[d * 16 + j] for r < rows (<= 4), j < 16,
  /// d < D; kp is a key panel: 16 keys transposed to [D][16].
  void (*qk_tile)(const float* q, int64_t ldq, int rows, const float* kp, int64_t D, float* s,
                  int64_t lds);
  /// acc[r * lda + d] += sum_j p[r * ldp + j] * v[j * ldv + d] for r < rows (<= 4), j < nk,
  /// d < Dp (a multiple of 16).
  void (*pv_tile)(const float* p, int64_t ldp, int rows, const float* v, int64_t ldv, int64_t nk,
                  int64_t Dp, float* acc, int64_t lda);
  /// x[i] = exp(x[i] - m) for i < n (-inf gives 0); returns the sum of the results.
  float (*exp_sub_sum)(float* x, int64_t n, float m);
  /// dst[i] = bf16 / f16 bits of src[i], round to nearest even.
  void (*store_bf16)(const float* src, uint16_t* dst, int64_t n);
  void (*store_f16)(const float* src, uint16_t* dst, int64_t n);
  /// Direct attention loops reading keys/values in their storage type (index: SrcKind) with
  /// contiguous rows of stride ks / vs elements, for few query rows (decode):
  /// s[r * lds + j] = sum_d q[r * ldq + d] * k[j * ks + d] for r < rows (<= 4), j < nk;
  void (*qk_direct[3])(const float* q, int64_t ldq, int rows, const void* k, int64_t ks, int64_t nk,
                       int64_t D, float* s, int64_t lds);
  /// acc[r * lda + d] += sum_j p[r * ldp + j] * v[j * vs + d] for r < rows (<= 4), j < nk,
  /// d < Dv.
  void (*pv_direct[3])(const float* p, int64_t ldp, int rows, const void* v, int64_t vs, int64_t nk,
                       int64_t Dv, float* acc, int64_t lda);
};

/// Storage type of the keys/values read by the direct attention loops.
enum class SrcKind : int { f32 = 0, bf16 = 1, f16 = 2 };

/// How far ahead of the row being read the SIMD direct attention loops prefetch (bytes of
/// rows). They prefetch rows below nk only (a paged pool's next rows belong to another head):
/// a caller that reads one long run in several calls prefetches the first rows of the next
/// call itself (prefetch_rows).
inline constexpr int64_t kPrefetchBytes = 8192;

/// Rows of row_bytes bytes that cover kPrefetchBytes (at least 4).
inline int64_t prefetch_distance(int64_t row_bytes) {
  return std::max<int64_t>(4, (kPrefetchBytes + row_bytes - 1) / std::max<int64_t>(row_bytes, 1));
}

/// Prefetches the cache line of p into L1.
inline void prefetch_line(const char* p) {
#if defined(__x86_64__) || defined(__i386__)
  // Not __builtin_prefetch: GCC 12 deletes some loops whose only statements are those.
  asm volatile("prefetcht0 %0" : : "m"(*p));
#else
  __builtin_prefetch(p, 0, 3);
#endif
}

/// Prefetches n rows of row_bytes bytes, stride bytes apart from p, into L1.
inline void prefetch_rows(const void* p, int64_t stride, int64_t row_bytes, int64_t n) {
  const char* b = static_cast<const char*>(p);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t x = 0; x < row_bytes; x += 64) prefetch_line(b + i * stride + x);
}

/// AVX-512 direct attention loops (with the AVX2 ones for the rest) or AVX2+FMA+F16C kernels
/// when the CPU has them and INGOT_CPU_ISA allows, else portable ones.
/// Reads the environment: call once per kernel invocation, not per row.
const Kernels& kernels();

/// dst[i] = T(src[i]) for n contiguous values (round to nearest even).
template <typename T, typename A>
inline void store_row(const Kernels& k, const A* src, T* dst, int64_t n) {
  if constexpr (std::is_same_v<T, A>) {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  } else if constexpr (std::is_same_v<A, float> && std::is_same_v<T, bfloat16_t>) {
    k.store_bf16(src, reinterpret_cast<uint16_t*>(dst), n);
  } else if constexpr (std::is_same_v<A, float> && std::is_same_v<T, float16_t>) {
    k.store_f16(src, reinterpret_cast<uint16_t*>(dst), n);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = cast_value<T>(src[i]);
  }
}

/// Rounds values to T and back in place (no-op when T is the compute type A or float).
template <typename T, typename A>
inline void round_through(A* v, int64_t n) {
  if constexpr (!std::is_same_v<T, A> && !std::is_same_v<T, float>)
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<A>(static_cast<float>(T(v[i])));
}

/// Sum of squares in double (float64 inputs).
inline double sum_squares(const Kernels&, const double* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}
inline float sum_squares(const Kernels& k, const float* x, int64_t n) {
  return k.sum_squares(x, n);
}

/// RopeKvUpdate's CPU evaluation on arrays passed one by one (backend/cpu/fast_rope.cpp), so
/// that a primitive chaining it (DecodeBlock) adds no holders to keys and values: q into `q`,
/// the updated buffers into keys_out and values_out, which take over keys' and values' storage
/// when they are held `holders` times only (Array::is_donatable). q_norm and k_norm are null
/// without the norm; rope_params are the Rope inputs after x ({[offsets], [freqs]}).
void rope_kv_update(const RopeKvUpdate& p, const Array& qkv, const Array* q_norm,
                    const Array* k_norm, const std::vector<Array>& rope_params, const Array& keys,
                    const Array& values, const Array& column, Array& q, Array& keys_out,
                    Array& values_out, long holders);

}  // namespace ingot::backend::fastk
