// CPU kernels of the indexing primitives. take/gather copy whole inner rows (memcpy when the
// rows are contiguous); along-axis writes run each (outer, inner) line serially so duplicates
// resolve in order; additions of 16-bit floats accumulate in float32 and round once.
#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <type_traits>

#include "backend/common/utils.h"
#include "backend/cpu/strided_copy.h"
#include "core/cast.h"
#include "core/primitives/indexing.h"
#include "util/thread_pool.h"

namespace ingot {

namespace {

using backend::alloc_cpu;

constexpr int64_t kTaskWork = 1 << 15;  // elements per parallel task

[[noreturn]] void index_error(const char* op, int64_t v, int axis, int64_t n) {
  raise("[{}] index {} is out of range for axis {} of size {}", op, v, axis, n);
}

/// Wraps a negative index and checks the range.
inline int64_t wrap_index(int64_t v, int64_t n, const char* op, int axis) {
  const int64_t w = v < 0 ? v + n : v;
  if (w < 0 || w >= n) index_error(op, v, axis, n);
  return w;
}

/// All indices of `idx` in row-major order as int64, wrapped and range-checked.
std::vector<int64_t> read_indices(const Array& idx, int64_t n, const char* op, int axis) {
  std::vector<int64_t> v(static_cast<size_t>(idx.size()));
  backend::copy_array(idx, v.data(), Dtype::int64);
  if (idx.dtype() == Dtype::uint32 || idx.dtype() == Dtype::uint8) {
    for (int64_t& x : v)
      if (x >= n) index_error(op, x, axis, n);
  } else {
    for (int64_t& x : v) x = wrap_index(x, n, op, axis);
  }
  return v;
}

/// Element offsets of every position of (shape, strides) in row-major order.
std::vector<int64_t> offsets_table(const Shape& shape, const Strides& strides) {
  std::vector<int64_t> t{0};
  for (size_t d = 0; d < shape.size(); ++d) {
    std::vector<int64_t> next;
    next.reserve(t.size() * static_cast<size_t>(shape[d]));
    for (int64_t base : t)
      for (int64_t i = 0; i < shape[d]; ++i) next.push_back(base + i * strides[d]);
    t = std::move(next);
  }
  return t;
}

/// Element offsets of an array viewed as [outer, mid, inner] blocks: axes [0, a0) are outer,
/// [a0, a1) mid and the rest inner (offsets tables, or a single stride for the inner block).
struct BlockView {
  std::vector<int64_t> outer, mid, inner;  // mid/inner are empty when one stride covers them
  int64_t inner_size = 1, inner_stride = 1, mid_stride = 0;
  BlockView(const Shape& shape, const Strides& st, int a0, int a1) {
    outer = offsets_table(Shape(shape.begin(), shape.begin() + a0),
                          Strides(st.begin(), st.begin() + a0));
    if (a1 - a0 == 1)
      mid_stride = st[a0];  // no table: one axis (e.g. a vocabulary)
    else
      mid = offsets_table(Shape(shape.begin() + a0, shape.begin() + a1),
                          Strides(st.begin() + a0, st.begin() + a1));
    const Shape is(shape.begin() + a1, shape.end());
    const Strides ist(st.begin() + a1, st.end());
    inner_size = shape_size(is);
    auto [cs, cst] = backend::collapse_contiguous_dims(is, {ist});
    if (cs.size() == 1)
      inner_stride = inner_size == 1 ? 1 : cst[0][0];
    else
      inner = offsets_table(is, ist);
  }
  int64_t mid_offset(int64_t j) const { return mid.empty() ? j * mid_stride : mid[j]; }
  /// Copies the inner block at `src` into contiguous dst converted by `conv`.
  template <typename S, typename D, typename Conv>
  void read(const S* src, D* dst, Conv&& conv) const {
    const int64_t K = inner_size;
    if (!inner.empty()) {
      for (int64_t k = 0; k < K; ++k) dst[k] = conv(dst[k], src[inner[k]]);
    } else if (inner_stride == 1) {
      for (int64_t k = 0; k < K; ++k) dst[k] = conv(dst[k], src[k]);
    } else {
      for (int64_t k = 0; k < K; ++k) dst[k] = conv(dst[k], src[k * inner_stride]);
    }
  }
};

template <typename F>
void dispatch_size(size_t itemsize, F&& f) {
  switch (itemsize) {
    case 1:
      return f(uint8_t{});
    case 2:
      return f(uint16_t{});
    case 4:
      return f(uint32_t{});
    default:
      return f(uint64_t{});
  }
}

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

/// x + y wrapping for integers (no signed overflow), logical or for bool.
template <typename T>
inline T add_wrap(T x, T y) {
  if constexpr (std::is_same_v<T, bool>) {
    return x || y;
  } else if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(x) + static_cast<U>(y));
  } else {
    return x + y;
  }
}

/// out[o, j, :] = a[o, ind[j], :] with a viewed as [O, N, K] through its strides.
void take_impl(const Array& a, const Array& idx, int axis, Array& out, const char* op) {
  alloc_cpu(out);
  const std::vector<int64_t> ind = read_indices(idx, a.shape()[axis], op, axis);
  if (out.size() == 0) return;
  const BlockView v(a.shape(), a.strides(), axis, axis + 1);
  const int64_t K = v.inner_size, J = static_cast<int64_t>(ind.size());
  dispatch_size(a.itemsize(), [&](auto tag) {
    using T = decltype(tag);
    const T* src = a.raw_ptr<T>();
    T* dst = out.raw_ptr<T>();
    const int64_t rows = static_cast<int64_t>(v.outer.size()) * J;
    parallel_for(rows, std::max<int64_t>(1, kTaskWork / K), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const T* s = src + v.outer[r / J] + v.mid_offset(ind[r % J]);
        T* d = dst + r * K;
        if (K == 1)
          *d = *s;
        else if (v.inner.empty() && v.inner_stride == 1)
          std::memcpy(d, s, static_cast<size_t>(K) * sizeof(T));
        else
          v.read(s, d, [](T, T x) { return x; });
      }
    });
  });
}

/// Visits the positions of an along-axis index array with the axis moved last, so that each
/// run is one (outer, inner) line in index order. f(run offsets, run length, inner strides).
template <typename F>
void along_axis_runs(const Shape& shape, std::vector<Strides> strides, int axis, F&& f) {
  Shape ps;
  std::vector<Strides> pst(strides.size());
  std::vector<int> order;
  for (int d = 0; d < static_cast<int>(shape.size()); ++d)
    if (d != axis) order.push_back(d);
  order.push_back(axis);
  for (int d : order) {
    ps.push_back(shape[d]);
    for (size_t k = 0; k < strides.size(); ++k) pst[k].push_back(strides[k][d]);
  }
  backend::StridedRuns runs(ps, pst);
  const int64_t len = runs.run_length();
  parallel_for(runs.num_runs(), std::max<int64_t>(1, kTaskWork / std::max<int64_t>(len, 1)),
               [&](int64_t b, int64_t e) {
                 runs.for_runs(b, e, [&](const int64_t* off, int64_t m) {
                   f(off, m, runs.inner_strides().data());
                 });
               });
}

/// out = a with values written (Add=false) or added (Add=true) along axis at idx; the
/// destination `acc` (type Acc, row-major of a's shape) already holds a.
template <bool Add, typename Acc, typename V>
void write_along_axis(Acc* acc, const Shape& ashape, const Array& idx, const V* vals,
                      const Strides& vstrides, int axis, const char* op) {
  Strides ost = row_major_strides(ashape);
  const int64_t os = ost[axis], n = ashape[axis];
  ost[axis] = 0;
  dispatch_index(idx.dtype(), [&](auto itag) {
    using I = decltype(itag);
    const I* ip = idx.raw_ptr<I>();
    along_axis_runs(idx.shape(), {ost, idx.strides(), vstrides}, axis,
                    [&](const int64_t* off, int64_t m, const int64_t* st) {
                      for (int64_t i = 0; i < m; ++i) {
                        const int64_t j =
                            wrap_index(static_cast<int64_t>(ip[off[1] + i * st[1]]), n, op, axis);
                        Acc& dst = acc[off[0] + i * st[0] + j * os];
                        const Acc v = cast_value<Acc>(vals[off[2] + i * st[2]]);
                        if constexpr (Add)
                          dst = add_wrap(dst, v);
                        else
                          dst = v;
                      }
                    });
  });
}

}  // namespace

void Take::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  take_impl(inputs[0], inputs[1], axis_, out, "take");
}

void Gather::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  take_impl(inputs[0], inputs[1], 0, out, "gather");
}

void TakeAlongAxis::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& a = inputs[0];
  const Array& idx = inputs[1];
  alloc_cpu(out);
  if (out.size() == 0) return;
  Strides ast = a.strides();
  const int64_t as = ast[axis_], n = a.shape()[axis_];
  ast[axis_] = 0;
  backend::StridedRuns runs(out.shape(), {out.strides(), idx.strides(), ast});
  const int64_t len = runs.run_length();
  dispatch_index(idx.dtype(), [&](auto itag) {
    using I = decltype(itag);
    dispatch_size(a.itemsize(), [&](auto tag) {
      using T = decltype(tag);
      const I* ip = idx.raw_ptr<I>();
      const T* src = a.raw_ptr<T>();
      T* dst = out.raw_ptr<T>();
      const int64_t* st = runs.inner_strides().data();
      parallel_for(runs.num_runs(), std::max<int64_t>(1, kTaskWork / len),
                   [&](int64_t b, int64_t e) {
                     runs.for_runs(b, e, [&](const int64_t* off, int64_t m) {
                       for (int64_t i = 0; i < m; ++i) {
                         const int64_t j = wrap_index(static_cast<int64_t>(ip[off[1] + i * st[1]]),
                                                      n, "take_along_axis", axis_);
                         dst[off[0] + i * st[0]] = src[off[2] + i * st[2] + j * as];
                       }
                     });
                   });
    });
  });
}

void PutAlongAxis::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& vals = inputs[2];
  backend::copy_or_donate(inputs[0], out);
  if (inputs[1].size() == 0) return;
  dispatch_size(out.itemsize(), [&](auto tag) {
    using T = decltype(tag);
    write_along_axis<false>(out.raw_ptr<T>(), out.shape(), inputs[1], vals.raw_ptr<T>(),
                            vals.strides(), axis_, "put_along_axis");
  });
}

void ScatterAddAlongAxis::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& a = inputs[0];
  const Array& vals = inputs[2];
  const char* op = "scatter_add_along_axis";
  dispatch_dtype(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (is_half_v<T>) {
      std::vector<float> acc(static_cast<size_t>(a.size()));
      backend::copy_array(a, acc.data(), Dtype::float32);
      if (inputs[1].size() > 0)
        write_along_axis<true>(acc.data(), a.shape(), inputs[1], vals.raw_ptr<T>(), vals.strides(),
                               axis_, op);
      alloc_cpu(out);
      convert_copy(acc.data(), Dtype::float32, out.raw_ptr(), out.dtype(), out.size());
    } else {
      backend::copy_or_donate(a, out);
      if (inputs[1].size() > 0)
        write_along_axis<true>(out.raw_ptr<T>(), a.shape(), inputs[1], vals.raw_ptr<T>(),
                               vals.strides(), axis_, op);
    }
  });
}

void ScatterAdd::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& a = inputs[0];
  const Array& idx = inputs[1];
  const Array& upd = inputs[2];
  const int64_t N = a.shape()[axis_];
  const std::vector<int64_t> ind = read_indices(idx, N, "scatter_add", axis_);
  backend::copy_or_donate(a, out);
  const int64_t J = static_cast<int64_t>(ind.size());
  if (out.size() == 0 || J == 0) return;
  // Group the updates by target (stable, so each target sums in index order) and give each
  // (outer, target) row to one task: rows accumulate in registers/L1, no races, and 16-bit
  // rows are summed in float32 and rounded once.
  std::vector<int64_t> order(static_cast<size_t>(J));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t x, int64_t y) { return ind[x] < ind[y]; });
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < J; ++i)
    if (i == 0 || ind[order[i]] != ind[order[i - 1]]) starts.push_back(i);
  const int64_t G = static_cast<int64_t>(starts.size());
  starts.push_back(J);
  const BlockView uv(upd.shape(), upd.strides(), axis_, axis_ + idx.ndim());
  const int64_t O = static_cast<int64_t>(uv.outer.size()), K = uv.inner_size;
  dispatch_dtype(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using Acc = std::conditional_t<is_half_v<T>, float, T>;
    T* o = out.raw_ptr<T>();
    const T* u = upd.raw_ptr<T>();
    const int64_t grain = std::max<int64_t>(1, kTaskWork / std::max<int64_t>(1, J / G * K));
    parallel_for(O * G, grain, [&](int64_t b, int64_t e) {
      std::unique_ptr<Acc[]> acc(new Acc[static_cast<size_t>(K)]);
      for (int64_t task = b; task < e; ++task) {
        const int64_t oi = task / G, g = task % G;
        T* row = o + (oi * N + ind[order[starts[g]]]) * K;
        for (int64_t k = 0; k < K; ++k) acc[k] = cast_value<Acc>(row[k]);
        for (int64_t i = starts[g]; i < starts[g + 1]; ++i)
          uv.read(u + uv.outer[oi] + uv.mid_offset(order[i]), acc.get(),
                  [](Acc x, T y) { return add_wrap(x, cast_value<Acc>(y)); });
        for (int64_t k = 0; k < K; ++k) row[k] = cast_value<T>(acc[k]);
      }
    });
  });
}

}  // namespace ingot
