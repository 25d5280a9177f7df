// Helpers shared by the CPU reduction, softmax, scan and sort kernels: the layout of a
// reduction (kept vs reduced axes, collapsed), a strided walker, 16-bit float loading and a
// vectorisable exp for non-positive arguments.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/array.h"
#include "core/cast.h"

namespace ingot::backend {

/// Walks the elements of a shape in row-major order, keeping one element offset per strided
/// array. Start anywhere with `seek`.
class Walker {
 public:
  Walker(Shape shape, std::vector<Strides> strides);
  /// Moves to flat position `pos` (row-major over the shape).
  void seek(int64_t pos);
  /// Advances by one element.
  void next() {
    for (int d = nd_ - 1; d >= 0; --d) {
      for (size_t k = 0; k < off_.size(); ++k) off_[k] += strides_[k][d];
      if (++idx_[d] < shape_[d]) return;
      for (size_t k = 0; k < off_.size(); ++k) off_[k] -= shape_[d] * strides_[k][d];
      idx_[d] = 0;
    }
  }
  int64_t offset(size_t k = 0) const { return off_[k]; }

 private:
  Shape shape_;
  std::vector<Strides> strides_;
  std::vector<int64_t> idx_;
  std::vector<int64_t> off_;
  int nd_ = 0;
};

/// Layout of a reduction of `in` over `axes`: the kept axes (output elements, row-major) and
/// the reduced axes, each collapsed. With a same-shape row-major output (softmax, sort), the
/// plan also carries that output's strides.
struct ReducePlan {
  Shape kshape;                   // kept axes, collapsed (at least one axis)
  std::vector<Strides> kstrides;  // [0]: input strides, [1]: same-shape output strides
  Shape rshape;                   // reduced axes, collapsed (at least one axis)
  std::vector<Strides> rstrides;  // [0]: input, [1]: same-shape output
  int64_t n_out = 1;              // number of kept positions (rows)
  int64_t n_red = 1;              // elements reduced per row
  /// Walker over the kept positions (offsets: input, and output when planned with one).
  Walker kept_walker() const { return Walker(kshape, kstrides); }
  /// Walker over one row's reduced positions, relative to the row's start.
  Walker red_walker() const { return Walker(rshape, rstrides); }
};

/// Plans a reduction of `in` over `axes` (any order, non-negative). With `same_shape_out`,
/// also the strides of a row-major output of in's shape; without, the reduced axes are visited
/// in an order of their own (smallest input stride innermost).
ReducePlan make_reduce_plan(const Array& in, const std::vector<int>& axes, bool same_shape_out);

/// Float type a value of T is computed in: double for double, float otherwise.
template <typename T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

/// Converts n values of T (any dtype) to float; F16C for float16 when the CPU has it.
template <typename T>
void load_float(const T* in, float* out, int64_t n);
void f16_to_f32(const uint16_t* in, float* out, int64_t n);

/// Copies n strided values to a contiguous buffer of compute type C.
template <typename C, typename T>
inline void gather_row(const T* in, int64_t stride, int64_t n, C* out) {
  if constexpr (std::is_same_v<C, float>) {
    if (stride == 1) return load_float(in, out, n);
  }
  for (int64_t i = 0; i < n; ++i) out[i] = cast_value<C>(in[i * stride]);
}

template <typename T>
void load_float(const T* in, float* out, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (n > 0) std::memcpy(out, in, static_cast<size_t>(n) * sizeof(float));
  } else if constexpr (std::is_same_v<T, ingot::float16_t>) {
    f16_to_f32(reinterpret_cast<const uint16_t*>(in), out, n);
  } else if constexpr (std::is_same_v<T, ingot::bfloat16_t>) {
    const uint16_t* b = reinterpret_cast<const uint16_t*>(in);
    for (int64_t i = 0; i < n; ++i) {
      uint32_t u = static_cast<uint32_t>(b[i]) << 16;
      std::memcpy(out + i, &u, 4);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = cast_value<float>(in[i]);
  }
}

/// e^t = 2^n * e^r for finite t with |t| < 2^22: n = t / ln2 rounded to nearest (the 1.5 * 2^23
/// trick), r = t - n ln2 by Cody-Waite (|r| <= ln2 / 2), e^r by Cephes' expf polynomial (about
/// 1 ulp). Returns e^r and sets *n; plain multiplies and adds, so its loops vectorise.
inline float exp_reduced(float t, float* n) {
  const float fx = (t * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = t - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  *n = fx;
  return y * z + r + 1.0f;
}

/// exp(x) for x <= 0 (and NaN), vectorisable: exp_reduced; x below -87.3 gives exactly 0,
/// positive x is clamped at 88.
inline float exp_nonpos(float x) {
  const float lo = -87.3f;
  const float xc = x < lo ? lo : (x > 88.0f ? 88.0f : x);
  float fx;
  float y = exp_reduced(xc, &fx);
  const auto n = static_cast<int32_t>(fx);
  y *= std::bit_cast<float>(static_cast<uint32_t>(n + 127) << 23);
  y = x < lo ? 0.0f : y;
  return x != x ? x : y;
}

/// Number of chunks to split `units` of work into so that each holds at least `min_work`
/// (work = units * work_per_unit), at most 4 per pool thread.
int64_t num_chunks(int64_t units, int64_t work_per_unit, int64_t min_work = 32768);

}  // namespace ingot::backend
