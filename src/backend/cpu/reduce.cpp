// CPU kernels of Reduce (sum/prod/max/min/all/any over any axes) and ArgReduce. Three layouts:
// rows (reduced elements contiguous: lane-parallel accumulators), columns (kept elements
// contiguous: accumulate whole input rows into a block of accumulators) and a strided fallback.
#include <algorithm>
#include <limits>

#include "backend/common/utils.h"
#include "backend/cpu/reduce_utils.h"
#include "core/primitives/reduce.h"
#include "util/thread_pool.h"

namespace ingot {

using backend::ReducePlan;
using backend::Walker;

namespace {

/// Values of T are combined as L: float for 16-bit floats, T otherwise.
template <typename T>
using load_t = std::conditional_t<is_half_v<T>, float, T>;

template <typename T, ReduceType R>
struct RedOp;

template <typename L>
using int_acc_t = std::conditional_t<std::is_floating_point_v<L>, L, uint64_t>;

template <typename T>
struct RedOp<T, ReduceType::sum> {
  using L = load_t<T>;
  using Acc = int_acc_t<L>;
  static Acc init() { return Acc(0); }
  static Acc step(Acc a, L x) {
    if constexpr (std::is_floating_point_v<L>)
      return a + x;
    else
      return a + static_cast<uint64_t>(static_cast<int64_t>(x));
  }
  static Acc merge(Acc a, Acc b) { return a + b; }
};

template <typename T>
struct RedOp<T, ReduceType::prod> {
  using L = load_t<T>;
  using Acc = int_acc_t<L>;
  static Acc init() { return Acc(1); }
  static Acc step(Acc a, L x) {
    if constexpr (std::is_floating_point_v<L>)
      return a * x;
    else
      return a * static_cast<uint64_t>(static_cast<int64_t>(x));
  }
  static Acc merge(Acc a, Acc b) { return a * b; }
};

template <typename T>
struct RedOp<T, ReduceType::max> {
  using L = load_t<T>;
  using Acc = L;
  static Acc init() {
    if constexpr (std::is_floating_point_v<L>)
      return -std::numeric_limits<L>::infinity();
    else
      return std::numeric_limits<L>::lowest();
  }
  static Acc step(Acc a, L x) {
    if constexpr (std::is_floating_point_v<L>)
      return ((x > a) | (x != x)) ? x : a;  // NaN sticks
    else
      return x > a ? x : a;
  }
  static Acc merge(Acc a, Acc b) { return step(a, b); }
};

template <typename T>
struct RedOp<T, ReduceType::min> {
  using L = load_t<T>;
  using Acc = L;
  static Acc init() {
    if constexpr (std::is_floating_point_v<L>)
      return std::numeric_limits<L>::infinity();
    else
      return std::numeric_limits<L>::max();
  }
  static Acc step(Acc a, L x) {
    if constexpr (std::is_floating_point_v<L>)
      return ((x < a) | (x != x)) ? x : a;
    else
      return x < a ? x : a;
  }
  static Acc merge(Acc a, Acc b) { return step(a, b); }
};

template <typename T>
struct RedOp<T, ReduceType::all> {
  using L = load_t<T>;
  using Acc = bool;
  static Acc init() { return true; }
  static Acc step(Acc a, L x) { return a & (x != L(0)); }
  static Acc merge(Acc a, Acc b) { return a & b; }
};

template <typename T>
struct RedOp<T, ReduceType::any> {
  using L = load_t<T>;
  using Acc = bool;
  static Acc init() { return false; }
  static Acc step(Acc a, L x) { return a | (x != L(0)); }
  static Acc merge(Acc a, Acc b) { return a | b; }
};

/// Type results are stored in before conversion to the output dtype.
template <typename Acc>
using store_t = std::conditional_t<std::is_same_v<Acc, uint64_t>, int64_t,
                                   std::conditional_t<std::is_same_v<Acc, bool>, uint8_t, Acc>>;

// Float sums are blocked in levels (lanes of 32 values, blocks of 512, groups of 32k) so that
// rounding error grows with the block sizes, not with the length of the reduction.
constexpr int64_t kBlock = 512;
constexpr int64_t kGroup = 64;  // blocks per group

/// Reduces n contiguous loaded values with 16 independent lanes.
template <typename Op, typename L>
typename Op::Acc reduce_contig(const L* p, int64_t n) {
  using Acc = typename Op::Acc;
  constexpr int W = 16;
  Acc total = Op::init(), group = Op::init();
  for (int64_t b = 0, nb = 0; b < n; b += kBlock, ++nb) {
    const int64_t e = std::min(n, b + kBlock);
    Acc lanes[W];
    for (int j = 0; j < W; ++j) lanes[j] = Op::init();
    int64_t i = b;
    for (; i + W <= e; i += W)
      for (int j = 0; j < W; ++j) lanes[j] = Op::step(lanes[j], p[i + j]);
    Acc acc = Op::init();
    for (; i < e; ++i) acc = Op::step(acc, p[i]);
    for (int j = 0; j < W; ++j) acc = Op::merge(acc, lanes[j]);
    if (nb % kGroup == 0 && nb > 0) total = Op::merge(total, group), group = Op::init();
    group = Op::merge(group, acc);
  }
  return Op::merge(total, group);
}

/// Reduces n values of T starting at p with the given stride.
template <typename T, typename Op>
typename Op::Acc reduce_run(const T* p, int64_t n, int64_t stride) {
  using Acc = typename Op::Acc;
  using L = typename Op::L;
  if (stride == 1) {
    if constexpr (is_half_v<T>) {
      constexpr int64_t kBuf = 8 * kBlock;
      float buf[kBuf];
      Acc acc = Op::init();
      for (int64_t b = 0; b < n; b += kBuf) {
        const int64_t m = std::min(kBuf, n - b);
        backend::load_float(p + b, buf, m);
        acc = Op::merge(acc, reduce_contig<Op>(buf, m));
      }
      return acc;
    } else {
      return reduce_contig<Op>(p, n);
    }
  }
  // Strided: gather blocks, then reduce them like contiguous data (same error growth).
  L buf[kBlock];
  Acc acc = Op::init();
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    for (int64_t i = 0; i < m; ++i) buf[i] = static_cast<L>(p[(b + i) * stride]);
    acc = Op::merge(acc, reduce_contig<Op>(buf, m));
  }
  return acc;
}

template <typename Op>
void store(const std::vector<store_t<typename Op::Acc>>& vals, int64_t o0, Array& out) {
  using S = store_t<typename Op::Acc>;
  char* dst = out.raw_ptr<char>() + o0 * static_cast<int64_t>(out.itemsize());
  convert_copy(vals.data(), dtype_of<S>(), dst, out.dtype(), static_cast<int64_t>(vals.size()));
}

/// Reduced positions [s, e) of one row (flat, row-major over p.rshape), run by run.
template <typename T, typename Op>
typename Op::Acc reduce_range(const T* base, const ReducePlan& p, int64_t s, int64_t e) {
  const int64_t run = p.rshape.back(), stride = p.rstrides[0].back();
  Shape outer(p.rshape.begin(), p.rshape.end() - 1);
  Strides ost(p.rstrides[0].begin(), p.rstrides[0].end() - 1);
  Walker rw(outer, {ost});
  rw.seek(s / run);
  int64_t i = s % run;
  auto acc = Op::init();
  while (s < e) {
    const int64_t m = std::min(run - i, e - s);
    acc = Op::merge(acc, reduce_run<T, Op>(base + rw.offset() + i * stride, m, stride));
    s += m;
    i = 0;
    rw.next();
  }
  return acc;
}

/// Rows layout or strided fallback: one output at a time (or one output split across threads
/// when there are few outputs and long rows).
template <typename T, typename Op>
void reduce_rows(const T* x, const ReducePlan& p, Array& out) {
  using S = store_t<typename Op::Acc>;
  if (p.n_out < pool_threads() && p.n_red >= 4 * 32768) {
    const int64_t nc = backend::num_chunks(p.n_red, 1);
    Walker kw = p.kept_walker();
    for (int64_t o = 0; o < p.n_out; ++o, kw.next()) {
      const T* base = x + kw.offset();
      std::vector<S> part(nc);  // not vector<bool>: threads write neighbouring elements
      parallel_for(nc, 1, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c)
          part[c] = static_cast<S>(
              reduce_range<T, Op>(base, p, c * p.n_red / nc, (c + 1) * p.n_red / nc));
      });
      auto acc = Op::init();
      for (auto v : part) acc = Op::merge(acc, static_cast<typename Op::Acc>(v));
      store<Op>({static_cast<S>(acc)}, o, out);
    }
    return;
  }
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(p.n_red, 1));
  parallel_for(p.n_out, grain, [&](int64_t b, int64_t e) {
    Walker kw = p.kept_walker();
    kw.seek(b);
    std::vector<S> vals(e - b);
    for (int64_t o = b; o < e; ++o, kw.next())
      vals[o - b] = static_cast<S>(reduce_range<T, Op>(x + kw.offset(), p, 0, p.n_red));
    store<Op>(vals, b, out);
  });
}

/// Columns layout: the innermost kept axis is contiguous; each task accumulates up to kCol
/// adjacent outputs over all reduced positions.
template <typename T, typename Op>
void reduce_cols(const T* x, const ReducePlan& p, Array& out) {
  using Acc = typename Op::Acc;
  using L = typename Op::L;
  using S = store_t<Acc>;
  constexpr int64_t kCol = 1024, kColBlock = 32;
  const int64_t n = p.kshape.back();
  const int64_t outer = p.n_out / n, nblk = (n + kCol - 1) / kCol;
  Shape oshape(p.kshape.begin(), p.kshape.end() - 1);
  Strides ost(p.kstrides[0].begin(), p.kstrides[0].end() - 1);
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(p.n_red * kCol, 1));
  parallel_for(outer * nblk, grain, [&](int64_t b, int64_t e) {
    Walker kw(oshape, {ost});
    Walker rw = p.red_walker();
    Acc tot[kCol], mid[kCol], blk[kCol];
    L tmp[kCol];
    std::vector<S> vals;
    for (int64_t u = b; u < e; ++u) {
      const int64_t ob = u / nblk, c0 = (u % nblk) * kCol, len = std::min(kCol, n - c0);
      kw.seek(ob);
      const T* base = x + kw.offset() + c0;
      for (int64_t j = 0; j < len; ++j) tot[j] = mid[j] = blk[j] = Op::init();
      rw.seek(0);
      for (int64_t r = 0; r < p.n_red; ++r, rw.next()) {
        if (r % kColBlock == 0 && r > 0) {  // levels of 32 rows and 1024 rows
          for (int64_t j = 0; j < len; ++j) mid[j] = Op::merge(mid[j], blk[j]), blk[j] = Op::init();
          if (r % (kColBlock * kColBlock) == 0)
            for (int64_t j = 0; j < len; ++j)
              tot[j] = Op::merge(tot[j], mid[j]), mid[j] = Op::init();
        }
        const T* q = base + rw.offset();
        if constexpr (is_half_v<T>) {
          backend::load_float(q, tmp, len);
          for (int64_t j = 0; j < len; ++j) blk[j] = Op::step(blk[j], tmp[j]);
        } else {
          for (int64_t j = 0; j < len; ++j) blk[j] = Op::step(blk[j], q[j]);
        }
      }
      vals.resize(len);
      for (int64_t j = 0; j < len; ++j)
        vals[j] = static_cast<S>(Op::merge(tot[j], Op::merge(mid[j], blk[j])));
      store<Op>(vals, ob * n + c0, out);
    }
  });
}

template <typename T, ReduceType R>
void reduce_typed(const Array& in, Array& out, const std::vector<int>& axes) {
  using Op = RedOp<T, R>;
  ReducePlan p = backend::make_reduce_plan(in, axes, false);
  const T* x = in.raw_ptr<T>();
  if (p.n_red == 0) {
    std::vector<store_t<typename Op::Acc>> vals(out.size(), Op::init());
    return store<Op>(vals, 0, out);
  }
  const bool rows = p.rstrides[0].back() == 1 && p.rshape.back() > 1;
  if (!rows && p.kstrides[0].back() == 1 && p.kshape.back() >= 8)
    return reduce_cols<T, Op>(x, p, out);
  reduce_rows<T, Op>(x, p, out);
}

}  // namespace

void Reduce::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  backend::alloc_cpu(out);
  if (out.size() == 0) return;
  dispatch_dtype(in.dtype(), [&](auto tag) {
    using T = decltype(tag);
    switch (type_) {
      case ReduceType::sum:
        return reduce_typed<T, ReduceType::sum>(in, out, axes_);
      case ReduceType::prod:
        return reduce_typed<T, ReduceType::prod>(in, out, axes_);
      case ReduceType::max:
        return reduce_typed<T, ReduceType::max>(in, out, axes_);
      case ReduceType::min:
        return reduce_typed<T, ReduceType::min>(in, out, axes_);
      case ReduceType::all:
        return reduce_typed<T, ReduceType::all>(in, out, axes_);
      case ReduceType::any:
        return reduce_typed<T, ReduceType::any>(in, out, axes_);
    }
  });
}

// ---- ArgReduce ----

namespace {

/// True when v should replace the current best b (first occurrence wins; NaN is extreme).
template <bool kMax, typename L>
inline bool better(L v, L b) {
  if constexpr (std::is_floating_point_v<L>) {
    if (b != b) return false;
    if (v != v) return true;
  }
  if constexpr (kMax)
    return v > b;
  else
    return v < b;
}

template <typename T, bool kMax>
void arg_reduce_typed(const Array& in, Array& out, int axis) {
  using L = load_t<T>;
  ReducePlan p = backend::make_reduce_plan(in, {axis}, false);
  const T* x = in.raw_ptr<T>();
  uint32_t* o = out.raw_ptr<uint32_t>();
  const int64_t n = p.n_red, stride = p.rstrides[0].back();
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(n, 1));
  parallel_for(p.n_out, grain, [&](int64_t b, int64_t e) {
    Walker kw = p.kept_walker();
    kw.seek(b);
    for (int64_t i = b; i < e; ++i, kw.next()) {
      const T* row = x + kw.offset();
      L best = static_cast<L>(row[0]);
      int64_t bi = 0;
      for (int64_t j = 1; j < n; ++j) {
        L v = static_cast<L>(row[j * stride]);
        if (better<kMax>(v, best)) best = v, bi = j;
      }
      o[i] = static_cast<uint32_t>(bi);
    }
  });
}

}  // namespace

void ArgReduce::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  backend::alloc_cpu(out);
  if (out.size() == 0) return;
  dispatch_dtype(in.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (type_ == Type::argmax)
      arg_reduce_typed<T, true>(in, out, axis_);
    else
      arg_reduce_typed<T, false>(in, out, axis_);
  });
}

}  // namespace ingot
