// CPU kernel of Scan (cumulative sum/product, forward or reverse, inclusive or exclusive):
// row by row along the axis, or a block of contiguous columns at a time when the axis is not
// the innermost one. Accumulates in float32 for 16-bit floats, wrapping 64-bit for integers.
#include <algorithm>

#include "backend/common/utils.h"
#include "backend/cpu/reduce_utils.h"
#include "core/primitives/reduce.h"
#include "util/thread_pool.h"

namespace ingot {

using backend::ReducePlan;
using backend::Walker;

namespace {

template <typename T>
using scan_acc_t = std::conditional_t<
    std::is_same_v<T, double>, double,
    std::conditional_t<std::is_floating_point_v<T> || is_half_v<T>, float, uint64_t>>;
template <typename A>
using scan_store_t = std::conditional_t<std::is_same_v<A, uint64_t>, int64_t, A>;

template <bool kProd, typename A, typename T>
inline A scan_step(A acc, T v) {
  A x;
  if constexpr (std::is_same_v<A, uint64_t>)
    x = static_cast<uint64_t>(static_cast<int64_t>(v));
  else
    x = cast_value<A>(v);
  if constexpr (kProd)
    return acc * x;
  else
    return acc + x;
}

struct ScanParams {
  bool reverse;
  bool inclusive;
};

/// One row: n elements at `x` with input stride `sx`, scanned into `buf`.
template <bool kProd, typename T>
void scan_row(const T* x, int64_t sx, int64_t n, ScanParams sp, scan_store_t<scan_acc_t<T>>* buf) {
  using A = scan_acc_t<T>;
  A acc = kProd ? A(1) : A(0);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = sp.reverse ? n - 1 - k : k;
    const A prev = acc;
    acc = scan_step<kProd>(acc, x[i * sx]);
    buf[i] = static_cast<scan_store_t<A>>(sp.inclusive ? acc : prev);
  }
}

template <bool kProd, typename T>
void scan_rows(const T* x, const ReducePlan& p, ScanParams sp, Array& out) {
  using S = scan_store_t<scan_acc_t<T>>;
  const int64_t n = p.n_red, sx = p.rstrides[0][0], so = p.rstrides[1][0];
  char* o = out.raw_ptr<char>();
  const int64_t osz = static_cast<int64_t>(out.itemsize());
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(n, 1));
  parallel_for(p.n_out, grain, [&](int64_t b, int64_t e) {
    std::vector<S> buf(static_cast<size_t>(n));
    Walker kw = p.kept_walker();
    kw.seek(b);
    for (int64_t r = b; r < e; ++r, kw.next()) {
      scan_row<kProd>(x + kw.offset(0), sx, n, sp, buf.data());
      char* orow = o + kw.offset(1) * osz;
      if (so == 1 || n == 1) {
        convert_copy(buf.data(), dtype_of<S>(), orow, out.dtype(), n);
      } else {
        for (int64_t i = 0; i < n; ++i)
          convert_copy(&buf[i], dtype_of<S>(), orow + i * so * osz, out.dtype(), 1);
      }
    }
  });
}

/// The innermost kept axis is contiguous in input and output: scan blocks of columns.
template <bool kProd, typename T>
void scan_cols(const T* x, const ReducePlan& p, ScanParams sp, Array& out) {
  using A = scan_acc_t<T>;
  using S = scan_store_t<A>;
  constexpr int64_t kCol = 256;
  const int64_t n = p.n_red, sx = p.rstrides[0][0], so = p.rstrides[1][0];
  const int64_t cols = p.kshape.back(), outer = p.n_out / cols, nblk = (cols + kCol - 1) / kCol;
  Shape oshape(p.kshape.begin(), p.kshape.end() - 1);
  std::vector<Strides> ost{Strides(p.kstrides[0].begin(), p.kstrides[0].end() - 1),
                           Strides(p.kstrides[1].begin(), p.kstrides[1].end() - 1)};
  char* o = out.raw_ptr<char>();
  const int64_t osz = static_cast<int64_t>(out.itemsize());
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(n * kCol, 1));
  parallel_for(outer * nblk, grain, [&](int64_t b, int64_t e) {
    Walker kw(oshape, ost);
    A acc[kCol];
    S vals[kCol];
    for (int64_t u = b; u < e; ++u) {
      const int64_t ob = u / nblk, c0 = (u % nblk) * kCol, len = std::min(kCol, cols - c0);
      kw.seek(ob);
      for (int64_t j = 0; j < len; ++j) acc[j] = kProd ? A(1) : A(0);
      for (int64_t k = 0; k < n; ++k) {
        const int64_t i = sp.reverse ? n - 1 - k : k;
        const T* q = x + kw.offset(0) + i * sx + c0;
        for (int64_t j = 0; j < len; ++j) {
          const A prev = acc[j];
          acc[j] = scan_step<kProd>(acc[j], q[j]);
          vals[j] = static_cast<S>(sp.inclusive ? acc[j] : prev);
        }
        convert_copy(vals, dtype_of<S>(), o + (kw.offset(1) + i * so + c0) * osz, out.dtype(), len);
      }
    }
  });
}

template <bool kProd, typename T>
void scan_typed(const Array& in, Array& out, int axis, ScanParams sp) {
  const ReducePlan p = backend::make_reduce_plan(in, {axis}, true);
  const T* x = in.raw_ptr<T>();
  const bool cols = p.kstrides[0].back() == 1 && p.kstrides[1].back() == 1 &&
                    p.kshape.back() >= 8 && p.rstrides[0][0] != 1;
  if (cols)
    scan_cols<kProd>(x, p, sp, out);
  else
    scan_rows<kProd>(x, p, sp, out);
}

}  // namespace

void Scan::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  backend::alloc_cpu(out);
  if (out.size() == 0) return;
  const ScanParams sp{reverse_, inclusive_};
  dispatch_dtype(in.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (type_ == Type::prod)
      scan_typed<true, T>(in, out, axis_, sp);
    else
      scan_typed<false, T>(in, out, axis_, sp);
  });
}

}  // namespace ingot
