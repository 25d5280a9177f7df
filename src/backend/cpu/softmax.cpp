// CPU kernels of Softmax (and log-softmax), LogSumExp, CrossEntropy and CrossEntropyGrad: a
// fused row kernel (max, sum of exp, scale) in float32 (float64 for float64), AVX2+FMA or
// portable, over rows gathered from any layout.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/common/utils.h"
#include "backend/cpu/reduce_utils.h"
#include "core/primitives/reduce.h"
#include "util/env.h"
#include "util/thread_pool.h"

namespace ingot {

using backend::ReducePlan;
using backend::Walker;

namespace {

constexpr int W = 16;  // independent lanes

template <typename C>
inline C row_max(const C* x, int64_t n) {
  C lanes[W];
  for (int j = 0; j < W; ++j) lanes[j] = -std::numeric_limits<C>::infinity();
  int64_t i = 0;
  for (; i + W <= n; i += W)
    for (int j = 0; j < W; ++j)
      lanes[j] = (x[i + j] > lanes[j] || x[i + j] != x[i + j]) ? x[i + j] : lanes[j];
  C m = -std::numeric_limits<C>::infinity();
  for (; i < n; ++i) m = (x[i] > m || x[i] != x[i]) ? x[i] : m;
  for (int j = 0; j < W; ++j) m = (lanes[j] > m || lanes[j] != lanes[j]) ? lanes[j] : m;
  return m;
}

inline float exp_c(float v) {
  return backend::exp_nonpos(v);
}
inline double exp_c(double v) {
  return std::exp(v);
}

/// y = exp(x - m) (y may be null: sum only); returns the sum.
template <typename C>
inline C exp_sum(const C* x, C* y, int64_t n, C m) {
  C lanes[W] = {};
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    for (int j = 0; j < W; ++j) {
      C e = exp_c(x[i + j] - m);
      if (y) y[i + j] = e;
      lanes[j] += e;
    }
  }
  C s = 0;
  for (; i < n; ++i) {
    C e = exp_c(x[i] - m);
    if (y) y[i] = e;
    s += e;
  }
  for (int j = 0; j < W; ++j) s += lanes[j];
  return s;
}

/// Softmax (or log-softmax) of one contiguous row.
template <typename C>
__attribute__((always_inline)) inline void softmax_row_body(const C* x, C* y, int64_t n, bool log) {
  const C m = row_max(x, n);
  if (log) {
    const C lse = m + std::log(exp_sum<C>(x, nullptr, n, m));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - lse;
  } else {
    const C inv = C(1) / exp_sum<C>(x, y, n, m);
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  }
}

template <typename C>
__attribute__((always_inline)) inline C lse_row_body(const C* x, int64_t n) {
  const C m = row_max(x, n);
  if (!std::isfinite(m)) return m;  // all -inf (or empty), +inf, or NaN
  return m + std::log(exp_sum<C>(x, nullptr, n, m));
}

void softmax_row_portable(const float* x, float* y, int64_t n, bool log) {
  softmax_row_body(x, y, n, log);
}
float lse_row_portable(const float* x, int64_t n) {
  return lse_row_body(x, n);
}

// ---- AVX2 + FMA row kernels (8 floats per vector) ----

#define INGOT_AVX2 __attribute__((target("avx2,fma")))

/// exp for x <= 0 (NaN passes through; below -87.3 gives 0), as backend::exp_nonpos.
INGOT_AVX2 inline __m256 exp8_nonpos(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f);
  // max/min return their second operand when one is NaN: x goes second to pass NaN through.
  __m256 xc = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(lo, x));
  __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  const __m256 z = _mm256_mul_ps(r, r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, z, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127));
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
  y = _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

INGOT_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

/// Max of a row; NaN if the row holds one.
INGOT_AVX2 float row_max8(const float* x, int64_t n) {
  __m256 m0 = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), m1 = m0;
  __m256 nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    m0 = _mm256_max_ps(m0, a);
    m1 = _mm256_max_ps(m1, b);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
  }
  float buf[8];
  _mm256_storeu_ps(buf, _mm256_max_ps(m0, m1));
  float m = buf[0];
  for (int j = 1; j < 8; ++j) m = buf[j] > m ? buf[j] : m;
  bool has_nan = _mm256_movemask_ps(nan) != 0;
  for (; i < n; ++i) {
    has_nan |= x[i] != x[i];
    m = x[i] > m ? x[i] : m;
  }
  return has_nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

/// Sum of exp(x - m); also stores the exponentials in y when y is not null.
INGOT_AVX2 float exp_sum8(const float* x, float* y, int64_t n, float m) {
  const __m256 vm = _mm256_set1_ps(m);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 a = exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    __m256 b = exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm));
    if (y) _mm256_storeu_ps(y + i, a), _mm256_storeu_ps(y + i + 8, b);
    s0 = _mm256_add_ps(s0, a);
    s1 = _mm256_add_ps(s1, b);
  }
  float s = hsum8(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) {
    float e = backend::exp_nonpos(x[i] - m);
    if (y) y[i] = e;
    s += e;
  }
  return s;
}

INGOT_AVX2 void softmax_row_avx2(const float* x, float* y, int64_t n, bool log) {
  const float m = row_max8(x, n);
  if (!std::isfinite(m)) return softmax_row_body(x, y, n, log);  // NaN / all -inf / +inf
  if (log) {
    const float lse = m + std::log(exp_sum8(x, nullptr, n, m));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - lse;
  } else {
    const float inv = 1.0f / exp_sum8(x, y, n, m);
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  }
}

INGOT_AVX2 float lse_row_avx2(const float* x, int64_t n) {
  const float m = row_max8(x, n);
  if (!std::isfinite(m)) return m;
  return m + std::log(exp_sum8(x, nullptr, n, m));
}

bool use_avx2() {
  static const bool v = [] {
    auto isa = env::cpu_isa();
    if (isa && *isa == "portable") return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return v;
}

void softmax_row(const float* x, float* y, int64_t n, bool log) {
  if (use_avx2())
    softmax_row_avx2(x, y, n, log);
  else
    softmax_row_portable(x, y, n, log);
}
void softmax_row(const double* x, double* y, int64_t n, bool log) {
  softmax_row_body(x, y, n, log);
}
float lse_row(const float* x, int64_t n) {
  return use_avx2() ? lse_row_avx2(x, n) : lse_row_portable(x, n);
}
double lse_row(const double* x, int64_t n) {
  return lse_row_body(x, n);
}

/// Calls f(row, xrow) for rows [b, e) with each row gathered into a contiguous buffer of C.
template <typename T, typename C, typename F>
void for_gathered_rows(const T* x, const ReducePlan& p, int64_t b, int64_t e, F&& f) {
  const int64_t n = p.n_red;
  const bool contiguous = p.rshape.size() == 1 && (p.rstrides[0][0] == 1 || n == 1);
  std::vector<C> buf(static_cast<size_t>(n));
  Walker kw = p.kept_walker();
  Walker rw = p.red_walker();
  kw.seek(b);
  for (int64_t r = b; r < e; ++r, kw.next()) {
    const T* row = x + kw.offset(0);
    if (contiguous) {
      backend::gather_row<C>(row, 1, n, buf.data());
    } else {
      rw.seek(0);
      for (int64_t j = 0; j < n; ++j, rw.next()) buf[j] = cast_value<C>(row[rw.offset(0)]);
    }
    f(kw, buf.data());
  }
}

/// Calls fn(r, xrow, yrow) for every row r of x (gathered into a buffer of the compute type) and
/// writes the yrow it fills to out's row r (a same-shape output planned in p); rows are split
/// over the thread pool.
template <typename T, typename F>
void map_rows(const T* x, const ReducePlan& p, Array& out, F&& fn) {
  using C = backend::compute_t<T>;
  const int64_t n = p.n_red;
  const bool out_contig = p.rshape.size() == 1 && (p.rstrides[1][0] == 1 || n == 1);
  char* o = out.raw_ptr<char>();
  const int64_t osz = static_cast<int64_t>(out.itemsize());
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1));
  parallel_for(p.n_out, grain, [&](int64_t b, int64_t e) {
    std::vector<C> y(static_cast<size_t>(n));
    Walker rw = p.red_walker();
    int64_t r = b;
    for_gathered_rows<T, C>(x, p, b, e, [&](const Walker& kw, const C* xr) {
      fn(r++, xr, y.data());
      char* orow = o + kw.offset(1) * osz;
      if (out_contig) return convert_copy(y.data(), dtype_of<C>(), orow, out.dtype(), n);
      rw.seek(0);
      for (int64_t j = 0; j < n; ++j, rw.next())
        convert_copy(&y[j], dtype_of<C>(), orow + rw.offset(1) * osz, out.dtype(), 1);
    });
  });
}

template <typename T>
void softmax_typed(const T* x, const ReducePlan& p, Array& out, bool log) {
  using C = backend::compute_t<T>;
  map_rows(x, p, out, [&](int64_t, const C* xr, C* y) { softmax_row(xr, y, p.n_red, log); });
}

template <typename T>
void logsumexp_typed(const Array& in, Array& out, const std::vector<int>& axes) {
  using C = backend::compute_t<T>;
  const ReducePlan p = backend::make_reduce_plan(in, axes, false);
  const int64_t n = p.n_red;
  char* o = out.raw_ptr<char>();
  const int64_t osz = static_cast<int64_t>(out.itemsize());
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1));
  parallel_for(p.n_out, grain, [&](int64_t b, int64_t e) {
    std::vector<C> vals;
    vals.reserve(e - b);
    for_gathered_rows<T, C>(in.raw_ptr<T>(), p, b, e,
                            [&](const Walker&, const C* xr) { vals.push_back(lse_row(xr, n)); });
    convert_copy(vals.data(), dtype_of<C>(), o + b * osz, out.dtype(), e - b);
  });
}

/// The values of an array of per-row values (targets or the loss cotangent) in row-major order,
/// converted to V.
template <typename V>
std::vector<V> row_major_values(const Array& a) {
  std::vector<V> v(static_cast<size_t>(a.size()));
  Walker w(a.shape(), {a.strides()});
  dispatch_dtype(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = a.raw_ptr<T>();
    for (size_t i = 0; i < v.size(); ++i, w.next()) v[i] = cast_value<V>(p[w.offset(0)]);
  });
  return v;
}

/// The targets of CrossEntropy's rows; InvalidArgument (as take_along_axis words it) for one
/// outside [0, n_classes).
std::vector<int64_t> checked_targets(const Array& targets, int64_t n_classes, int axis) {
  std::vector<int64_t> t = row_major_values<int64_t>(targets);
  for (int64_t v : t)
    if (v < 0 || v >= n_classes)
      raise("[cross_entropy] index {} is out of range for axis {} of size {}", v, axis, n_classes);
  return t;
}

template <typename T>
void cross_entropy_typed(const Array& x, const std::vector<int64_t>& tg, Array& out) {
  using C = backend::compute_t<T>;
  const ReducePlan p = backend::make_reduce_plan(x, {x.ndim() - 1}, false);
  const int64_t n = p.n_red;
  C* o = out.raw_ptr<C>();
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1));
  parallel_for(p.n_out, grain, [&](int64_t b, int64_t e) {
    int64_t r = b;
    for_gathered_rows<T, C>(x.raw_ptr<T>(), p, b, e, [&](const Walker&, const C* xr) {
      o[r] = lse_row(xr, n) - xr[tg[r]];
      ++r;
    });
  });
}

template <typename T>
void cross_entropy_grad_typed(const T* x, const ReducePlan& p, const std::vector<int64_t>& tg,
                              const std::vector<backend::compute_t<T>>& g, Array& out) {
  using C = backend::compute_t<T>;
  const int64_t n = p.n_red;
  map_rows(x, p, out, [&](int64_t r, const C* xr, C* y) {
    softmax_row(xr, y, n, false);
    const C gr = g[r];
    for (int64_t j = 0; j < n; ++j) y[j] *= gr;
    y[tg[r]] -= gr;
  });
}

}  // namespace

void Softmax::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  if (out.size() == 0) return backend::alloc_cpu(out);
  // Each row is gathered into a buffer before its outputs are written, and rows are disjoint,
  // so the input's buffer can be donated and overwritten in place.
  const ReducePlan p = backend::make_reduce_plan(in, axes_, true);
  const void* x = in.raw_ptr();
  if (in.is_donatable() && in.dtype() == out.dtype())
    out.move_shared_buffer(in);
  else
    backend::alloc_cpu(out);
  dispatch_dtype(in.dtype(), [&](auto tag) {
    using T = decltype(tag);
    softmax_typed<T>(static_cast<const T*>(x), p, out, log_);
  });
}

void LogSumExp::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  backend::alloc_cpu(out);
  if (out.size() == 0) return;
  dispatch_dtype(in.dtype(), [&](auto tag) { logsumexp_typed<decltype(tag)>(in, out, axes_); });
}

void CrossEntropy::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& x = inputs[0];
  const std::vector<int64_t> tg = checked_targets(inputs[1], x.shape(-1), x.ndim() - 1);
  backend::alloc_cpu(out);
  if (out.size() == 0) return;
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_typed<T>(x, tg, out);
  });
}

void CrossEntropyGrad::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& x = inputs[0];
  const std::vector<int64_t> tg = checked_targets(inputs[1], x.shape(-1), x.ndim() - 1);
  if (out.size() == 0) return backend::alloc_cpu(out);
  const ReducePlan p = backend::make_reduce_plan(x, {x.ndim() - 1}, true);
  // Each row is gathered before its outputs are written and rows are disjoint, so the logits'
  // buffer can be donated (as Softmax does).
  const void* xp = x.raw_ptr();
  if (x.is_donatable() && x.dtype() == out.dtype())
    out.move_shared_buffer(x);
  else
    backend::alloc_cpu(out);
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_grad_typed<T>(static_cast<const T*>(xp), p, tg,
                                row_major_values<backend::compute_t<T>>(inputs[2]), out);
  });
}

}  // namespace ingot
