// Test helpers: random host data, arrays of a chosen layout (contiguous, transposed, sliced,
// broadcast) holding given logical values, and float64 comparison.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/ingot.h"
#include "core/primitive.h"

namespace ingot::test {

/// Layouts every op is tested on.
enum class Layout { contiguous, transposed, sliced, broadcast };
inline const Layout kAllLayouts[] = {Layout::contiguous, Layout::transposed, Layout::sliced,
                                     Layout::broadcast};
inline const char* layout_name(Layout l) {
  switch (l) {
    case Layout::contiguous:
      return "contiguous";
    case Layout::transposed:
      return "transposed";
    case Layout::sliced:
      return "sliced";
    case Layout::broadcast:
      return "broadcast";
  }
  return "?";
}

inline const Dtype kAllDtypes[] = {bool_, uint8,   int8,     int32,   uint32,
                                   int64, float16, bfloat16, float32, float64};
inline const Dtype kFloatDtypes[] = {float16, bfloat16, float32, float64};

/// Random values representable in dtype (ints in a small range, bool 0/1, floats in [lo, hi]
/// rounded to the dtype), as doubles.
inline std::vector<double> random_values(int64_t n, Dtype t, uint32_t seed, double lo = -4,
                                         double hi = 4) {
  std::mt19937 g(seed);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) {
    double u = std::uniform_real_distribution<double>(lo, hi)(g);
    switch (t) {
      case Dtype::bool_:
        x = (g() & 1) ? 1.0 : 0.0;
        break;
      case Dtype::uint8:
      case Dtype::uint32:
        x = std::floor(std::abs(u) * 8);
        break;
      case Dtype::int8:
      case Dtype::int32:
      case Dtype::int64:
        x = std::floor(u * 8);
        break;
      case Dtype::float16:
        x = static_cast<float>(float16_t(static_cast<float>(u)));
        break;
      case Dtype::bfloat16:
        x = static_cast<float>(bfloat16_t(static_cast<float>(u)));
        break;
      case Dtype::float32:
        x = static_cast<float>(u);
        break;
      case Dtype::float64:
        x = u;
        break;
    }
  }
  return v;
}

/// Array of `shape` and `dtype` whose logical (row-major) values are `values`, stored with the
/// requested layout: transposed = a transpose of a contiguous array of the reversed shape;
/// sliced = every other element of a larger array along the last axis (plus an offset);
/// broadcast = the first row (last axis) broadcast with zero strides over the other axes, and
/// `values` rewritten to the logical values. The result is evaluated.
inline Array make_array(std::vector<double>& values, const Shape& shape, Dtype dtype,
                        Layout layout) {
  const int nd = static_cast<int>(shape.size());
  Array r;
  switch (layout) {
    case Layout::contiguous:
      r = Array(values, shape, dtype);
      break;
    case Layout::transposed: {
      if (nd < 2) {
        r = Array(values, shape, dtype);
        break;
      }
      Shape rev(shape.rbegin(), shape.rend());
      // element at reversed index (i_{n-1},...,i_0) must equal values[i_0,...,i_{n-1}]
      std::vector<double> buf(values.size());
      Strides st = row_major_strides(shape), rst = row_major_strides(rev);
      for (int64_t k = 0; k < static_cast<int64_t>(values.size()); ++k) {
        int64_t rem = k, off = 0;
        for (int d = 0; d < nd; ++d) {
          int64_t i = rem / st[d];
          rem %= st[d];
          off += i * rst[nd - 1 - d];
        }
        buf[off] = values[k];
      }
      r = transpose(Array(buf, rev, dtype));
      break;
    }
    case Layout::sliced: {
      Shape big = shape;
      if (nd == 0) {
        r = Array(values, shape, dtype);
        break;
      }
      big[nd - 1] = shape[nd - 1] * 2 + 1;
      std::vector<double> buf(static_cast<size_t>(shape_size(big)), -7.0);
      int64_t inner = shape[nd - 1], outer = inner ? shape_size(shape) / inner : 0;
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < inner; ++i)
          buf[o * big[nd - 1] + 1 + 2 * i] = values[o * inner + i];
      Shape start(nd, 0), stop = big, step(nd, 1);
      start[nd - 1] = 1;
      step[nd - 1] = 2;
      r = slice(Array(buf, big, dtype), start, stop, step);
      break;
    }
    case Layout::broadcast: {
      // Zero strides on every axis but the last: the first row is repeated, and `values` is
      // rewritten to the logical values of the result.
      if (nd == 0 || shape_size(shape) == 0) {
        r = Array(values, shape, dtype);
        break;
      }
      int64_t inner = shape[nd - 1];
      std::vector<double> row(values.begin(), values.begin() + inner);
      for (size_t k = 0; k < values.size(); ++k) values[k] = row[k % inner];
      r = broadcast_to(Array(row, {inner}, dtype), shape);
      break;
    }
  }
  r.eval();
  return r;
}

/// Array with exact broadcasting of a smaller row: values of shape [shape[-1]] broadcast to
/// `shape` (zero strides); `row` gets its logical expansion in `expanded`.
inline Array make_broadcast_row(const std::vector<double>& row, const Shape& shape, Dtype dtype,
                                std::vector<double>* expanded = nullptr) {
  Array r = broadcast_to(Array(row, {static_cast<int64_t>(row.size())}, dtype), shape);
  if (expanded) {
    expanded->clear();
    for (int64_t i = 0; i < shape_size(shape); ++i) expanded->push_back(row[i % row.size()]);
  }
  r.eval();
  return r;
}

/// Values of an array as doubles.
inline std::vector<double> values_of(const Array& a) {
  return a.to_vector<double>();
}

/// Rounds a double to what a dtype can hold (for 16-bit expectations).
inline double round_to(double x, Dtype t) {
  switch (t) {
    case Dtype::float16:
      return static_cast<float>(float16_t(static_cast<float>(x)));
    case Dtype::bfloat16:
      return static_cast<float>(bfloat16_t(static_cast<float>(x)));
    case Dtype::float32:
      return static_cast<float>(x);
    default:
      return x;
  }
}

/// Unit roundoff of a float dtype (2^-p).
inline double eps_of(Dtype t) {
  switch (t) {
    case Dtype::float16:
      return std::ldexp(1.0, -11);
    case Dtype::bfloat16:
      return std::ldexp(1.0, -8);
    case Dtype::float32:
      return std::ldexp(1.0, -24);
    case Dtype::float64:
      return std::ldexp(1.0, -53);
    default:
      return 0;
  }
}

/// Expects |got - want| <= atol + rtol * |want| elementwise (NaN matches NaN; infinities must
/// match exactly).
inline void expect_close(const std::vector<double>& got, const std::vector<double>& want,
                         double rtol, double atol, const std::string& what = "") {
  ASSERT_EQ(got.size(), want.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double g = got[i], w = want[i];
    bool ok;
    if (std::isnan(w))
      ok = std::isnan(g);
    else if (std::isinf(w))
      ok = g == w;
    else
      ok = std::abs(g - w) <= atol + rtol * std::abs(w);
    if (!ok && reported++ < 5)
      ADD_FAILURE() << what << " at " << i << ": got " << g << ", want " << w;
  }
}

/// Checks vjp(fn) at x against central differences of sum(fn(x) * w).
inline void check_grad(const std::function<Array(const Array&)>& fn, const Array& x) {
  Array y = fn(x);
  std::vector<double> wv = random_values(y.size(), float64, 77);
  Array w(wv, y.shape(), float64);
  auto [outs, grads] =
      vjp([&](const std::vector<Array>& in) { return std::vector<Array>{fn(in[0])}; }, {x}, {w});
  std::vector<double> g = values_of(grads[0]), xv = values_of(x);
  const double h = 1e-6;
  for (size_t i = 0; i < xv.size(); ++i) {
    auto f = [&](double d) {
      auto v = xv;
      v[i] += d;
      auto yv = values_of(fn(Array(v, x.shape(), float64)));
      double s = 0;
      for (size_t k = 0; k < yv.size(); ++k) s += yv[k] * wv[k];
      return s;
    };
    EXPECT_NEAR(g[i], (f(h) - f(-h)) / (2 * h), 1e-6) << "element " << i;
  }
}

/// Checks jvp(fn) at x along a random tangent against central differences.
inline void check_jvp(const std::function<Array(const Array&)>& fn, const Array& x) {
  std::vector<double> tv = random_values(x.size(), float64, 78), xv = values_of(x);
  auto res = jvp([&](const std::vector<Array>& in) { return std::vector<Array>{fn(in[0])}; }, {x},
                 {Array(tv, x.shape(), float64)});
  auto shifted = [&](double h) {
    std::vector<double> v = xv;
    for (size_t i = 0; i < v.size(); ++i) v[i] += h * tv[i];
    return values_of(fn(Array(v, x.shape(), float64)));
  };
  const double h = 1e-6;
  std::vector<double> up = shifted(h), down = shifted(-h), want(up.size());
  for (size_t i = 0; i < up.size(); ++i) want[i] = (up[i] - down[i]) / (2 * h);
  expect_close(values_of(res.second[0]), want, 1e-6, 1e-6, "jvp");
}

/// Distinct primitives named `name` in the graphs behind `roots`, down to evaluated arrays (eval
/// detaches a node from its inputs): which kernels a traced computation will run.
inline int count_primitives(const std::vector<Array>& roots, const std::string& name) {
  std::vector<Array> stack = roots;
  std::set<uintptr_t> nodes;
  std::set<const Primitive*> found;
  while (!stack.empty()) {
    const Array a = stack.back();
    stack.pop_back();
    if (!nodes.insert(a.id()).second || !a.has_primitive()) continue;
    if (a.primitive().name() == name) found.insert(&a.primitive());
    for (const Array& in : a.inputs()) stack.push_back(in);
  }
  return static_cast<int>(found.size());
}

/// Expects an exception of type E whose message contains `needle`.
template <typename E, typename F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an exception containing: " << needle;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

}  // namespace ingot::test
