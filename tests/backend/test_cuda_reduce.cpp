// CUDA reductions, argmax/argmin, logsumexp, softmax and cumsum against the CPU backend: every
// dtype x axes (last, first, middle, several, all, keepdims) x layout (incl. zero-size, large),
// NaN/inf rows, 262144-wide rows, and the VJPs of softmax, logsumexp, prod and cumsum.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/ingot.h"
#include "cuda_test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

const Dtype kAllTypes[] = {float32, bfloat16, float16, float64, int32,
                           int64,   int8,     uint8,   uint32,  bool_};

/// n values for dtype t: floats uniform in [lo, hi) (with a NaN every `nan_every` values when
/// > 0; rounded to integers with `ties`), integers uniform in [lo, hi] clipped to the dtype,
/// bools fair coins.
std::vector<double> values(int64_t n, Dtype t, uint32_t seed, double lo = -4, double hi = 4,
                           int64_t nan_every = 0, bool ties = false) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (t == bool_) {
      v[i] = (g() & 1) ? 1 : 0;
    } else if (is_floating(t)) {
      v[i] = (nan_every > 0 && i % nan_every == nan_every / 2) ? kNaN : u(g);
      if (ties) v[i] = std::round(v[i]);
    } else {
      double x = std::floor(u(g) + 0.5);
      if (is_unsigned_int(t)) x = std::fabs(x);
      if (t == int8) x = std::max(-128.0, std::min(127.0, x));
      if (t == uint8) x = std::min(255.0, x);
      v[i] = x;
    }
  }
  return v;
}

struct Operand {
  Array cpu, gpu;
};

enum class Lay { contiguous, transposed, sliced, broadcast };
const char* lay_name(Lay l) {
  const char* n[] = {"contiguous", "transposed", "sliced", "broadcast"};
  return n[static_cast<int>(l)];
}

/// A view of logical `shape` with layout l on both devices (same values).
Operand make(const Shape& shape, Dtype t, Lay l, uint32_t seed, double lo = -4, double hi = 4,
             int64_t nan_every = 0, bool ties = false) {
  auto both = [](const Array& base, const std::function<Array(const Array&)>& view) {
    return Operand{view(base), view(on_cuda(base))};
  };
  const int nd = static_cast<int>(shape.size());
  switch (l) {
    case Lay::transposed: {
      Shape rev(shape.rbegin(), shape.rend());
      Array base(values(shape_size(rev), t, seed, lo, hi, nan_every, ties), rev, t);
      return both(base, [](const Array& a) { return transpose(a); });
    }
    case Lay::sliced: {
      Shape big = shape;
      big.back() = 2 * shape.back() + 1;
      Array base(values(shape_size(big), t, seed, lo, hi, nan_every, ties), big, t);
      Shape start(nd, 0), stride(nd, 1);
      start.back() = 1;
      stride.back() = 2;
      return both(base, [&](const Array& a) { return slice(a, start, big, stride); });
    }
    case Lay::broadcast: {
      Shape tail(shape.begin() + 1, shape.end());
      Array base(values(shape_size(tail), t, seed, lo, hi, nan_every, ties), tail, t);
      return both(base, [&](const Array& a) { return broadcast_to(a, shape); });
    }
    default: {
      Array base(values(shape_size(shape), t, seed, lo, hi, nan_every, ties), shape, t);
      return Operand{base, on_cuda(base)};
    }
  }
}

std::string axes_str(const std::vector<int>& axes) {
  std::string s = "[";
  for (int a : axes) s += std::to_string(a) + ",";
  return s + "]";
}

int64_t reduced_count(const Shape& s, const std::vector<int>& axes) {
  int64_t n = 1;
  for (int a : axes) n *= s[a < 0 ? a + static_cast<int>(s.size()) : a];
  return n;
}

struct Case {
  Shape shape;
  std::vector<int> axes;
};
const std::vector<Case> kCases = {
    {{3, 7, 5}, {0}},    {{3, 7, 5}, {1}},         {{3, 7, 5}, {2}},    {{3, 7, 5}, {-1}},
    {{3, 7, 5}, {0, 2}}, {{3, 7, 5}, {1, 2}},      {{3, 7, 5}, {0, 1}}, {{3, 7, 5}, {0, 1, 2}},
    {{3, 7, 5}, {}},     {{33, 40}, {0, 1}},       {{4, 1000}, {1}},    {{1000, 3}, {0}},
    {{2, 1, 9}, {1}},    {{9, 17, 33, 3}, {0, 2}}, {{4, 3000}, {1}},    {{3000, 5}, {0}},
};

using ReduceFn = std::function<Array(const Array&, const std::vector<int>&, bool)>;

/// Compares a reduction on CUDA with the CPU for every dtype (optionally floats only) x layout x
/// case. Float sums/products get a tolerance growing with the reduced count; the rest is exact.
void check_reduce(const char* name, const ReduceFn& op, bool tolerant, double lo, double hi,
                  int64_t nan_every = 0, int64_t max_count = 1 << 30) {
  int ci = 0;
  for (const Case& c : kCases) {
    const bool keepdims = (ci++ % 2) == 1;
    const int64_t n = reduced_count(c.shape, c.axes);
    if (n > max_count) continue;
    for (Dtype t : kAllTypes) {
      for (Lay l : {Lay::contiguous, Lay::transposed, Lay::sliced, Lay::broadcast}) {
        const Operand x = make(c.shape, t, l, 11 + ci, lo, hi, nan_every);
        const Array want = op(x.cpu, c.axes, keepdims);
        const Array got = op(x.gpu, c.axes, keepdims);
        const std::string what = std::string(name) + " " + std::string(dtype_name(t)) + " " +
                                 lay_name(l) + " " + shape_str(c.shape) + " axes " +
                                 axes_str(c.axes) + (keepdims ? " keepdims" : "");
        if (tolerant && is_floating(want.dtype())) {
          const double acc = want.dtype() == float64 ? 1e-15 : 2.5e-7;
          expect_close(got, want, acc * 4 * static_cast<double>(n) * std::max(1.0, hi),
                       dtype_rtol(want.dtype()) + acc * 4 * static_cast<double>(n), what);
        } else {
          expect_close(got, want, 0, 0, what);
        }
      }
    }
  }
}

TEST(CudaReduce, Sum) {
  INGOT_REQUIRE_CUDA();
  check_reduce(
      "sum", [](const Array& a, const std::vector<int>& ax, bool k) { return sum(a, ax, k); }, true,
      -4, 4);
}

TEST(CudaReduce, Prod) {
  INGOT_REQUIRE_CUDA();
  check_reduce(
      "prod", [](const Array& a, const std::vector<int>& ax, bool k) { return prod(a, ax, k); },
      true, 0.6, 1.4, 0, 200);
  // Integer products wrap in 64 bits on both backends (exact whatever the order).
  const Operand x = make({5, 300}, int64, Lay::contiguous, 3, -9, 9);
  expect_close(prod(x.gpu, 1), prod(x.cpu, 1), 0, 0, "prod int64 wrapping");
}

TEST(CudaReduce, MaxMinWithNaN) {
  INGOT_REQUIRE_CUDA();
  check_reduce(
      "max", [](const Array& a, const std::vector<int>& ax, bool k) { return max(a, ax, k); },
      false, -4, 4, 97);
  check_reduce(
      "min", [](const Array& a, const std::vector<int>& ax, bool k) { return min(a, ax, k); },
      false, -4, 4, 97);
}

TEST(CudaReduce, AllAny) {
  INGOT_REQUIRE_CUDA();
  // Mostly-true data (all is interesting) and mostly-zero data (any is interesting).
  check_reduce(
      "all", [](const Array& a, const std::vector<int>& ax, bool k) { return all(a, ax, k); },
      false, 0.6, 40);
  check_reduce(
      "any", [](const Array& a, const std::vector<int>& ax, bool k) { return any(a, ax, k); },
      false, -0.4, 0.45);
}

TEST(CudaReduce, MeanVarIntegerToFloat) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {int32, int8, uint8, bfloat16, float16}) {
    const Operand x = make({37, 129}, t, Lay::transposed, 5, -50, 50);
    const std::string what = std::string(dtype_name(t));
    const double rt = dtype_rtol(is_floating(t) ? t : float32);
    expect_close(mean(x.gpu, 0), mean(x.cpu, 0), 1e-5, 1e-5 + rt, "mean " + what);
    expect_close(var(x.gpu, {1}), var(x.cpu, {1}), 1e-3, 1e-4 + rt, "var " + what);
  }
}

TEST(CudaReduce, ZeroSize) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, bfloat16, int32, bool_}) {
    const Array x = zeros({3, 0, 4}, t);
    const Array g = on_cuda(x);
    const std::string what = std::string(dtype_name(t));
    expect_close(sum(g, 1), sum(x, 1), 0, 0, "sum over empty axis " + what);
    expect_close(prod(g, {1}, true), prod(x, {1}, true), 0, 0, "prod over empty axis " + what);
    expect_close(all(g, 1), all(x, 1), 0, 0, "all over empty axis " + what);
    expect_close(any(g, 1), any(x, 1), 0, 0, "any over empty axis " + what);
    expect_close(sum(g, 0), sum(x, 0), 0, 0, "empty output " + what);
    expect_close(max(g, 2), max(x, 2), 0, 0, "max to an empty output " + what);
    expect_close(logsumexp(g, 1), logsumexp(x, 1), 0, 0, "logsumexp over empty axis " + what);
    expect_close(softmax(g, 1), softmax(x, 1), 0, 0, "softmax of empty " + what);
    expect_close(cumsum(g, 1), cumsum(x, 1), 0, 0, "cumsum of empty " + what);
    expect_close(argmax(g, 2), argmax(x, 2), 0, 0, "argmax to an empty output " + what);
  }
}

TEST(CudaReduce, Large) {
  INGOT_REQUIRE_CUDA();
  const int64_t big = (int64_t(1) << 20) + 3;  // full reductions: split into chunks
  for (Dtype t : {float32, bfloat16, float16, int32, float64}) {
    const std::string what = std::string(dtype_name(t));
    const Operand v = make({big}, t, Lay::contiguous, 21, -4, 4);
    const double tol = t == float64 ? 1e-9 : 1.0;  // ~1e-6 * n: float sums in another order
    expect_close(sum(v.gpu), sum(v.cpu), tol, dtype_rtol(t), "full sum " + what);
    expect_close(max(v.gpu), max(v.cpu), 0, 0, "full max " + what);
    const Operand rows = make({64, 70001}, t, Lay::contiguous, 22, -4, 4);
    expect_close(sum(rows.gpu, 1), sum(rows.cpu, 1), 0.07, dtype_rtol(t), "long rows " + what);
    expect_close(min(rows.gpu, 1), min(rows.cpu, 1), 0, 0, "long rows min " + what);
    const Operand cols = make({70001, 40}, t, Lay::contiguous, 23, -4, 4);
    expect_close(sum(cols.gpu, 0), sum(cols.cpu, 0), 0.07, dtype_rtol(t), "long cols " + what);
    expect_close(max(cols.gpu, 0), max(cols.cpu, 0), 0, 0, "long cols max " + what);
    const Operand tr = make({3, 1 << 19}, t, Lay::transposed, 24, -4, 4);
    expect_close(sum(tr.gpu), sum(tr.cpu), tol, dtype_rtol(t), "transposed full " + what);
    expect_close(sum(tr.gpu, 1), sum(tr.cpu, 1), tol, dtype_rtol(t), "transposed rows " + what);
  }
  // A NaN deep inside a split reduction still wins.
  std::vector<double> h = values(big, float32, 25);
  h[big - 17] = kNaN;
  const Array x(h, {big}, float32);
  expect_close(max(on_cuda(x)), max(x), 0, 0, "NaN in a long max");
  expect_close(min(on_cuda(x)), min(x), 0, 0, "NaN in a long min");
}

// ---- argmax / argmin ----

TEST(CudaReduce, ArgMaxArgMin) {
  INGOT_REQUIRE_CUDA();
  struct A {
    Shape shape;
    int axis;
  };
  // Few long contiguous rows (a decode step's argmax over a vocabulary: {1, 151936}) are split
  // into chunks whose bests a second kernel combines; the ties below put the first extreme in an
  // early chunk and equal values in later ones.
  const std::vector<A> cases = {{{3, 7, 5}, 0},  {{3, 7, 5}, 1}, {{3, 7, 5}, 2},   {{4, 3000}, 1},
                                {{3000, 4}, 0},  {{3, 5000}, 0}, {{2, 100000}, 1}, {{1, 151936}, 1},
                                {{5, 40003}, 1}, {{1, 1, 1}, 1}};
  for (const A& c : cases)
    for (Dtype t : kAllTypes)
      for (Lay l : {Lay::contiguous, Lay::transposed, Lay::sliced}) {
        // Few distinct values: ties everywhere (first index wins); NaNs in float rows.
        const Operand x = make(c.shape, t, l, 31, -3, 3, 211, true);
        const std::string what = std::string(dtype_name(t)) + " " + lay_name(l) + " " +
                                 shape_str(c.shape) + " axis " + std::to_string(c.axis);
        expect_close(argmax(x.gpu, c.axis), argmax(x.cpu, c.axis), 0, 0, "argmax " + what);
        expect_close(argmin(x.gpu, c.axis, true), argmin(x.cpu, c.axis, true), 0, 0,
                     "argmin " + what);
      }
}

TEST(CudaReduce, ArgMaxOfALongRowSplitIntoChunks) {
  INGOT_REQUIRE_CUDA();
  // Distinct values: the extreme sits at one index, placed in the first, a middle and the last
  // chunk, and right after a chunk boundary; then a NaN (the extreme of argmax and argmin) late
  // in the row behind an earlier +inf.
  const int64_t n = 151936;
  for (Dtype t : {float32, bfloat16, float64})
    for (int64_t at : {int64_t(3), n / 2 + 1, n - 1, int64_t(4096), int64_t(8193)}) {
      std::vector<double> v(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) v[size_t(j)] = std::sin(0.37 * double(j)) * 4.0;
      v[size_t(at)] = 9.0;
      v[size_t(n - 1 - at)] = -9.0;
      const Array x(v, {1, n}, t);
      const std::string what = std::string(dtype_name(t)) + " at " + std::to_string(at);
      EXPECT_EQ(argmax(on_cuda(x), 1).to_vector<int64_t>(), (std::vector<int64_t>{at})) << what;
      EXPECT_EQ(argmin(on_cuda(x), 1).to_vector<int64_t>(), (std::vector<int64_t>{n - 1 - at}))
          << what;
      v[size_t(at / 2)] = kInf;
      v[size_t(n - 2)] = kNaN;
      const Array y(v, {1, n}, t);
      EXPECT_EQ(argmax(on_cuda(y), 1).to_vector<int64_t>(), (std::vector<int64_t>{n - 2})) << what;
      EXPECT_EQ(argmin(on_cuda(y), 1).to_vector<int64_t>(), (std::vector<int64_t>{n - 2})) << what;
    }
}

// ---- logsumexp, softmax, log_softmax ----

/// Tolerance of softmax-family outputs: float32 inside, rounded once to the output dtype.
void expect_softmax_close(const Array& got, const Array& want, bool log, const std::string& what) {
  const double rt = want.dtype() == float64 ? 1e-12 : 2e-5 + dtype_rtol(want.dtype());
  // float16 probabilities below 2^-14 are subnormal: one ulp there is 2^-24 absolute.
  const double atol = log ? rt : (want.dtype() == float16 ? std::ldexp(1.0, -24) : 1e-30);
  expect_close(got, want, atol, rt, what);
}

TEST(CudaSoftmax, AxesDtypesLayouts) {
  INGOT_REQUIRE_CUDA();
  const std::vector<Case> cases = {{{6, 7, 5}, {2}},    {{6, 7, 5}, {0}},      {{6, 7, 5}, {1}},
                                   {{6, 7, 5}, {1, 2}}, {{5, 7, 6}, {0, 2}},   {{4, 3000}, {1}},
                                   {{2000, 8}, {0}},    {{2, 3, 5000}, {0, 2}}};
  for (const Case& c : cases)
    for (Dtype t : kAllTypes)
      for (Lay l : {Lay::contiguous, Lay::transposed, Lay::sliced, Lay::broadcast}) {
        const Operand x = make(c.shape, t, l, 41, -6, 6);
        const std::string what = std::string(dtype_name(t)) + " " + lay_name(l) + " " +
                                 shape_str(c.shape) + " axes " + axes_str(c.axes);
        expect_softmax_close(softmax(x.gpu, c.axes), softmax(x.cpu, c.axes), false,
                             "softmax " + what);
        expect_softmax_close(logsumexp(x.gpu, c.axes, true), logsumexp(x.cpu, c.axes, true), true,
                             "logsumexp " + what);
        if (c.axes.size() == 1)
          expect_softmax_close(log_softmax(x.gpu, c.axes[0]), log_softmax(x.cpu, c.axes[0]), true,
                               "log_softmax " + what);
      }
}

/// Rows: all -inf, some -inf, one NaN, one +inf, ordinary; n wide.
Array special_rows(int64_t n, Dtype t) {
  std::vector<double> v = values(5 * n, float32, 51, -8, 8);
  for (int64_t j = 0; j < n; ++j) {
    v[j] = -kInf;
    if (j % 3 == 0) v[n + j] = -kInf;
  }
  v[2 * n + n / 2] = kNaN;
  v[3 * n + 1] = kInf;
  return Array(v, {5, n}, t);
}

TEST(CudaSoftmax, NonFiniteRows) {
  INGOT_REQUIRE_CUDA();
  for (int64_t n : {40, 3000, 70000})
    for (Dtype t : {float32, bfloat16, float16, float64}) {
      const Array x = special_rows(n, t);
      const Array g = on_cuda(x);
      const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n);
      expect_softmax_close(softmax(g), softmax(x), false, "softmax " + what);
      expect_softmax_close(log_softmax(g), log_softmax(x), true, "log_softmax " + what);
      expect_softmax_close(logsumexp(g, 1), logsumexp(x, 1), true, "logsumexp " + what);
      // The same rows along axis 0 (strided kernels).
      const Array xt = transpose(x), gt = transpose(g);
      expect_softmax_close(softmax(gt, 0), softmax(xt, 0), false, "softmax axis 0 " + what);
      expect_softmax_close(logsumexp(gt, 0), logsumexp(xt, 0), true, "logsumexp axis 0 " + what);
    }
}

TEST(CudaSoftmax, VocabRows) {
  INGOT_REQUIRE_CUDA();
  const int64_t v = 262144;
  for (Dtype t : {float32, bfloat16}) {
    for (int64_t b : {1, 8}) {
      std::vector<double> h = values(b * v, float32, 61, -12, 12);
      for (int64_t i = 0; i < b * v; i += 7) h[i] = -kInf;  // masked logits
      const Array x(h, {b, v}, t);
      const Array g = on_cuda(x);
      const std::string what = std::string(dtype_name(t)) + " B=" + std::to_string(b);
      expect_softmax_close(softmax(g), softmax(x), false, "softmax " + what);
      expect_softmax_close(log_softmax(g), log_softmax(x), true, "log_softmax " + what);
      expect_softmax_close(logsumexp(g, -1), logsumexp(x, -1), true, "logsumexp " + what);
      // Sliced vocab rows (offset start, row stride > V).
      const Array xs = slice(x, {0, 3}, {b, v - 5}), gs = slice(g, {0, 3}, {b, v - 5});
      expect_softmax_close(softmax(gs), softmax(xs), false, "sliced softmax " + what);
    }
  }
}

TEST(CudaSoftmax, Vjp) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, float64}) {
    const Array x(values(6 * 300, t, 71, -3, 3), {6, 300}, t);
    const Array w(values(6 * 300, t, 72, -1, 1), {6, 300}, t);
    const double rt = t == float64 ? 1e-10 : 1e-4;
    const std::string what = std::string(dtype_name(t));
    auto check = [&](const std::function<Array(const Array&)>& f, const std::string& name) {
      auto fn = [&](const std::vector<Array>& in) {
        return std::vector<Array>{sum(multiply(f(in[0]), in[1]))};
      };
      auto g = grad(fn, {0});
      const auto want = g({x, w});
      const auto got = g({on_cuda(x), on_cuda(w)});
      expect_close(got[0], want[0], rt, rt, name + " " + what);
    };
    check([](const Array& a) { return softmax(a, -1); }, "grad softmax");
    check([](const Array& a) { return log_softmax(a, -1); }, "grad log_softmax");
    check([](const Array& a) { return softmax(a, std::vector<int>{0}); }, "grad softmax axis 0");
    check([](const Array& a) { return logsumexp(a, -1, true); }, "grad logsumexp");
    check(
        [](const Array& a) {
          return logsumexp(a, std::vector<int>{0, 1}, true);
        },
        "grad logsumexp all");
  }
}

// ---- softmax_cross_entropy (CrossEntropy / CrossEntropyGrad) ----

TEST(CudaCrossEntropy, LossAndGradientMatchCpu) {
  INGOT_REQUIRE_CUDA();
  const std::vector<Shape> shapes = {{7},       {5, 7},     {2, 3, 33}, {4, 1000},
                                     {3, 1025}, {700, 300}, {2, 151936}};
  int ci = 0;
  for (const Shape& s : shapes) {
    ++ci;
    const int64_t n = s.back();
    const Shape ts(s.begin(), s.end() - 1);
    std::mt19937 g(900 + ci);
    std::vector<double> tv(static_cast<size_t>(shape_size(ts)));
    for (auto& v : tv) v = static_cast<double>(g() % n);
    if (!tv.empty()) tv[0] = static_cast<double>(n - 1);
    for (Dtype t : {float32, bfloat16, float16, float64})
      for (Lay l : {Lay::contiguous, Lay::transposed, Lay::sliced, Lay::broadcast}) {
        if (s.size() < 2 && (l == Lay::transposed || l == Lay::broadcast)) continue;
        if (n > 5000 && l != Lay::contiguous && l != Lay::sliced) continue;
        const Operand x = make(s, t, l, 80 + ci, -8, 8);
        const Dtype ld = t == float64 ? float64 : float32;
        const Array w(values(shape_size(ts), float32, 90 + ci, -1, 1), ts, ld);
        for (Dtype tt : {int32, int64}) {
          const Array tc(tv, ts, tt);
          const Array tgpu = on_cuda(tc);
          const std::string what = std::string(dtype_name(t)) + " " + lay_name(l) + " " +
                                   shape_str(s) + " targets " + std::string(dtype_name(tt));
          // Both devices compute in float32: the sums of exponentials differ in order and
          // exp/log implementation (a few float32 ulps of the row's logsumexp).
          const double rt = ld == float64 ? 1e-12 : 2e-5;
          expect_close(softmax_cross_entropy(x.gpu, tgpu), softmax_cross_entropy(x.cpu, tc), rt, rt,
                       "loss " + what);
          auto grad_of = [&](const Array& xa, const Array& ta, const Array& wa) {
            return vjp(
                       [&](const std::vector<Array>& in) {
                         return std::vector<Array>{softmax_cross_entropy(in[0], ta)};
                       },
                       {xa}, {wa})
                .second[0];
          };
          // Probabilities within 2e-5 relative before the one rounding to the dtype; the
          // target's p * w - w within 2e-5 of |w| <= 1 absolute; float16 subnormals.
          const double grt = ld == float64 ? 1e-12 : 2e-5 + dtype_rtol(t);
          const double gat = ld == float64 ? 1e-12 : 2e-5;
          expect_close(grad_of(x.gpu, tgpu, on_cuda(w)), grad_of(x.cpu, tc, w), gat, grt,
                       "grad " + what);
        }
      }
  }
}

TEST(CudaCrossEntropy, OutOfRangeTargetRaisesAtTheNextRead) {
  INGOT_REQUIRE_CUDA();
  const Array x = on_cuda(Array(values(2 * 5, float32, 3), {2, 5}, float32));
  const Array bad = on_cuda(Array(std::vector<int32_t>{1, 9}, {2}));
  // Reading back raises the CPU's message (the kernels record the first bad target).
  auto expect_raises = [](const Array& a, const std::string& msg) {
    try {
      a.to_vector<double>();
      ADD_FAILURE() << "no error; expected: " << msg;
    } catch (const InvalidArgument& e) {
      EXPECT_EQ(std::string(e.what()), msg);
    }
  };
  const std::string msg = "[cross_entropy] index 9 is out of range for axis 1 of size 5";
  expect_raises(softmax_cross_entropy(x, bad), msg);
  expect_raises(vjp(
                    [&](const std::vector<Array>& in) {
                      return std::vector<Array>{softmax_cross_entropy(in[0], bad)};
                    },
                    {x}, {on_cuda(ones({2}))})
                    .second[0],
                msg);
  // The record is cleared: the next call with good targets works.
  const Array good = on_cuda(Array(std::vector<int32_t>{1, 4}, {2}));
  expect_close(softmax_cross_entropy(x, good),
               softmax_cross_entropy(Array(values(2 * 5, float32, 3), {2, 5}, float32),
                                     Array(std::vector<int32_t>{1, 4}, {2})),
               2e-5, 2e-5, "after the error");
}

// ---- cumsum (and cumprod through prod's VJP) ----

TEST(CudaScan, Cumsum) {
  INGOT_REQUIRE_CUDA();
  struct S {
    Shape shape;
    int axis;
  };
  const std::vector<S> cases = {{{3, 7, 5}, 0},   {{3, 7, 5}, 1}, {{3, 7, 5}, 2},   {{3, 5000}, 1},
                                {{1000, 600}, 0}, {{700, 3}, 0},  {{1, 300000}, 1}, {{2, 1, 9}, 1}};
  for (const S& c : cases)
    for (Dtype t : kAllTypes)
      for (Lay l : {Lay::contiguous, Lay::transposed, Lay::sliced, Lay::broadcast})
        for (int mode = 0; mode < 4; ++mode) {
          const bool reverse = mode & 1, inclusive = (mode & 2) == 0;
          if (shape_size(c.shape) > 100000 && (mode == 1 || l == Lay::broadcast)) continue;
          const Operand x = make(c.shape, t, l, 81, -4, 4);
          const std::string what = std::string(dtype_name(t)) + " " + lay_name(l) + " " +
                                   shape_str(c.shape) + " axis " + std::to_string(c.axis) +
                                   (reverse ? " reverse" : "") + (inclusive ? "" : " exclusive");
          const Array want = cumsum(x.cpu, c.axis, reverse, inclusive);
          const Array got = cumsum(x.gpu, c.axis, reverse, inclusive);
          if (t == float64) {
            // Both backends' partial sums carry up to (n - 1) u sum|x| of rounding (u = 2^-53)
            // in different orders: compare within twice that bound, element by element.
            const double n = static_cast<double>(c.shape[c.axis]);
            const auto g = got.to_vector<double>(), w = want.to_vector<double>(),
                       m = cumsum(abs(x.cpu), c.axis, reverse, true).to_vector<double>();
            ASSERT_EQ(g.size(), w.size());
            double worst = 0;
            for (size_t i = 0; i < g.size(); ++i)
              worst = std::max(worst, std::fabs(g[i] - w[i]) / (1e-300 + 2 * n * 0x1p-53 * m[i]));
            EXPECT_LE(worst, 1.0) << "cumsum " << what;
          } else if (is_floating(t)) {
            const double n = static_cast<double>(c.shape[c.axis]);
            const double acc = 2.5e-7;
            expect_close(got, want, acc * 16 * n, dtype_rtol(t) + acc * 4, "cumsum " + what);
          } else {
            expect_close(got, want, 0, 0, "cumsum " + what);
          }
        }
}

TEST(CudaScan, ProdVjpUsesCumprod) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, float64}) {
    std::vector<double> h = values(4 * 9 * 5, t, 91, 0.5, 1.5);
    h[7] = 0;  // exact with zeros: exclusive cumprods from both sides
    const Array x(h, {4, 9, 5}, t);
    for (const std::vector<int>& axes : {std::vector<int>{1}, {0, 2}, {2}}) {
      auto fn = [&](const std::vector<Array>& in) {
        return std::vector<Array>{sum(prod(in[0], axes))};
      };
      auto g = grad(fn, {0});
      const double rt = t == float64 ? 1e-12 : 1e-5;
      expect_close(g({on_cuda(x)})[0], g({x})[0], rt, rt,
                   "grad prod " + std::string(dtype_name(t)) + " axes " + axes_str(axes));
    }
  }
  // cumsum's VJP (a reverse cumsum) on CUDA.
  const Array x(values(3 * 400, float32, 92), {3, 400}, float32);
  auto fn = [](const std::vector<Array>& in) {
    return std::vector<Array>{sum(multiply(cumsum(in[0], 1), in[0]))};
  };
  auto g = grad(fn, {0});
  expect_close(g({on_cuda(x)})[0], g({x})[0], 1e-3, 1e-5, "grad cumsum");
}

}  // namespace
