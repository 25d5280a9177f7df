// Reduction layout planning, strided walking and float16 loading (F16C when available).
#include "backend/cpu/reduce_utils.h"

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <numeric>

#include "backend/common/utils.h"
#include "util/env.h"
#include "util/thread_pool.h"

namespace ingot::backend {

Walker::Walker(Shape shape, std::vector<Strides> strides)
    : shape_(std::move(shape)), strides_(std::move(strides)) {
  nd_ = static_cast<int>(shape_.size());
  idx_.assign(nd_, 0);
  off_.assign(strides_.size(), 0);
}

void Walker::seek(int64_t pos) {
  std::fill(off_.begin(), off_.end(), 0);
  for (int d = nd_ - 1; d >= 0; --d) {
    idx_[d] = shape_[d] > 0 ? pos % shape_[d] : 0;
    pos = shape_[d] > 0 ? pos / shape_[d] : 0;
    for (size_t k = 0; k < off_.size(); ++k) off_[k] += idx_[d] * strides_[k][d];
  }
}

ReducePlan make_reduce_plan(const Array& in, const std::vector<int>& axes, bool same_shape_out) {
  const Shape& shape = in.shape();
  const Strides out_st = row_major_strides(shape);
  Shape ks, rs;
  std::vector<Strides> kst(same_shape_out ? 2 : 1), rst(same_shape_out ? 2 : 1);
  for (int d = 0; d < in.ndim(); ++d) {
    bool red = std::find(axes.begin(), axes.end(), d) != axes.end();
    Shape& s = red ? rs : ks;
    std::vector<Strides>& st = red ? rst : kst;
    s.push_back(shape[d]);
    st[0].push_back(in.strides()[d]);
    if (same_shape_out) st[1].push_back(out_st[d]);
  }
  if (!same_shape_out) {
    // The order of reduced elements is free: visit the smallest stride innermost so that
    // transposed inputs still reduce contiguous runs.
    std::vector<size_t> order(rs.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return std::abs(rst[0][a]) > std::abs(rst[0][b]); });
    Shape rs2;
    Strides st2;
    for (size_t i : order) rs2.push_back(rs[i]), st2.push_back(rst[0][i]);
    rs = std::move(rs2);
    rst[0] = std::move(st2);
  }
  ReducePlan p;
  std::tie(p.kshape, p.kstrides) = collapse_contiguous_dims(ks, kst);
  std::tie(p.rshape, p.rstrides) = collapse_contiguous_dims(rs, rst);
  p.n_out = shape_size(p.kshape);
  p.n_red = shape_size(p.rshape);
  return p;
}

namespace {

__attribute__((target("avx,f16c"))) void f16_to_f32_f16c(const uint16_t* in, float* out,
                                                         int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = ingot::float16_t::to_float(in[i]);
}

bool has_f16c() {
  static const bool v = [] {
    auto isa = env::cpu_isa();
    if (isa && *isa == "portable") return false;
    // cpuid leaf 1, ECX bit 29 (clang 14 rejects __builtin_cpu_supports("f16c")).
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    return ((c >> 29) & 1u) && __builtin_cpu_supports("avx");
  }();
  return v;
}

}  // namespace

void f16_to_f32(const uint16_t* in, float* out, int64_t n) {
  if (has_f16c()) return f16_to_f32_f16c(in, out, n);
  for (int64_t i = 0; i < n; ++i) out[i] = ingot::float16_t::to_float(in[i]);
}

int64_t num_chunks(int64_t units, int64_t work_per_unit, int64_t min_work) {
  if (units <= 0) return 0;
  int64_t total = units * std::max<int64_t>(work_per_unit, 1);
  int64_t c = std::max<int64_t>(1, total / std::max<int64_t>(min_work, 1));
  c = std::min<int64_t>(c, static_cast<int64_t>(pool_threads()) * 4);
  return std::min(c, units);
}

}  // namespace ingot::backend
