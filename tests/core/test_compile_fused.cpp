// compile's fused CPU kernel: bitwise equality with the unfused graph for every dtype, on
// contiguous, transposed, sliced and broadcast inputs, sizes around the block (512) and vector
// widths, trees that need several scratch slots, special float values, and runs split across
// threads; the benchmark's 10-op chain against a scalar reference.
#include <cmath>
#include <cstring>
#include <limits>

#include "test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

const int64_t kSizes[] = {1, 7, 33, 511, 512, 513, 1031, 16411};

/// Bit patterns of the values: floats through float64 (exact for every float dtype, NaN
/// payloads kept), integers and bools through int64.
std::vector<uint64_t> bits(const Array& a) {
  std::vector<uint64_t> b(static_cast<size_t>(a.size()));
  if (is_floating(a.dtype())) {
    auto v = a.to_vector<double>();
    std::memcpy(b.data(), v.data(), v.size() * 8);
  } else {
    auto v = a.to_vector<int64_t>();
    std::memcpy(b.data(), v.data(), v.size() * 8);
  }
  return b;
}

void expect_fused_equal(const std::function<std::vector<Array>(const std::vector<Array>&)>& fn,
                        const std::vector<Array>& in, const std::string& what) {
  auto f = compile(fn);
  auto want = fn(in);
  auto got = f(in);
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_GE(compile_stats(f).fused_kernels, 1) << what;
  for (size_t k = 0; k < got.size(); ++k) {
    ASSERT_EQ(got[k].dtype(), want[k].dtype()) << what;
    ASSERT_EQ(got[k].shape(), want[k].shape()) << what;
    EXPECT_EQ(bits(got[k]), bits(want[k])) << what << " output " << k;
  }
}

// Ops every non-bool dtype accepts (integers wrap, so any values are fine).
std::vector<Array> int_chain(const std::vector<Array>& in) {
  const Array &x = in[0], &y = in[1];
  Array t = x * y + x;
  t = maximum(t, y) - square(x);
  t = minimum(abs(t), x * Array(3, x.dtype())) + negative(y);
  Array u = floor_divide(t, y) + remainder(t, Array(5, x.dtype()));
  return {u, greater(t, x)};
}

std::vector<Array> float_chain(const std::vector<Array>& in) {
  const Array &x = in[0], &y = in[1];
  const Dtype d = x.dtype();
  Array t = x * Array(1.5, d) + y;
  t = maximum(t, Array(-1.0, d)) * x - Array(0.5, d);
  t = minimum(abs(t), Array(3.0, d)) / (square(y) + Array(1.0, d));
  Array u = sqrt(abs(t)) + reciprocal(abs(x) + Array(0.25, d)) - floor(y) * round(t);
  u = where(less(u, Array(0.0, d)), negative(u), u * tanh(x));
  return {u, astype(u, float32) + Array(1.0f)};
}

std::vector<Array> bool_chain(const std::vector<Array>& in) {
  const Array &x = in[0], &y = in[1];
  Array t = logical_or(logical_and(x, y), logical_not(y));
  return {logical_and(t, not_equal(x, y)) + x};  // + on bools is logical or
}

// A tree: both halves stay live until the final multiply, so several slots are in use.
std::vector<Array> tree(const std::vector<Array>& in) {
  const Array &x = in[0], &y = in[1];
  Array l = (x * Array(2.0f) + Array(1.0f)) * (y - Array(3.0f));
  Array r = (y * y - x) / (abs(x) + Array(1.0f));
  return {(l + r) * (l - abs(r)), maximum(l, r)};
}

}  // namespace

TEST(CompileFused, EveryDtypeAndLayoutBitwise) {
  for (Dtype d : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (int64_t n : {7, 513, 16411}) {
        auto xv = random_values(3 * n, d, 11);
        auto yv = random_values(n, d, 12);
        if (!is_floating(d) && d != Dtype::bool_)
          for (auto& v : yv) v = v == 0 ? 3 : v;  // mostly nonzero divisors
        Array x = make_array(xv, {3, n}, d, l);
        Array y = Array(yv, {n}, d);  // broadcast over the rows
        const std::string what =
            std::string(dtype_name(d)) + " " + layout_name(l) + " n=" + std::to_string(n);
        if (d == Dtype::bool_)
          expect_fused_equal(bool_chain, {x, y}, what);
        else if (is_floating(d))
          expect_fused_equal(float_chain, {x, y}, what);
        else
          expect_fused_equal(int_chain, {x, y}, what);
      }
}

TEST(CompileFused, OddSizesAroundBlockAndVectorWidths) {
  for (int64_t n : kSizes)
    for (Layout l : kAllLayouts) {
      auto xv = random_values(2 * n, float32, 21);
      auto yv = random_values(2 * n, float32, 22);
      Array x = make_array(xv, {2, n}, float32, l);
      Array y = make_array(yv, {2, n}, float32, Layout::contiguous);
      const std::string what = std::string(layout_name(l)) + " n=" + std::to_string(n);
      expect_fused_equal(float_chain, {x, y}, what);
      expect_fused_equal(tree, {x, y}, what + " tree");
    }
}

TEST(CompileFused, SpecialFloatValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float specials[] = {nan, inf, -inf, 0.0f, -0.0f, 1e-40f, -1e-40f, 3.0f, -3.0f, 1e30f};
  for (int64_t n : {10, 1030}) {
    std::vector<float> xv(n), yv(n);
    for (int64_t i = 0; i < n; ++i) {
      xv[i] = specials[i % 10];
      yv[i] = specials[(i / 10) % 10];
    }
    Array x(xv, {n}), y(yv, {n});
    expect_fused_equal(float_chain, {x, y}, "specials n=" + std::to_string(n));
    expect_fused_equal(tree, {x, y}, "specials tree n=" + std::to_string(n));
  }
}

// The benchmark's chain (bench/core/bench_compile.cpp) on 3 threads' worth of blocks, against
// a scalar loop doing the same float operations one by one.
TEST(CompileFused, BenchChainMatchesScalarReference) {
  auto chain10 = [](const std::vector<Array>& in) {
    Array t = in[0] * 1.5f;
    t = t + 0.25f;
    t = maximum(t, Array(-1.0f));
    t = t * in[0];
    t = t - 0.5f;
    t = abs(t);
    t = minimum(t, Array(3.0f));
    t = t * 0.5f;
    t = t + in[0];
    return std::vector<Array>{square(t)};
  };
  const int64_t n = 3 * 16411;
  auto xv = random_values(n, float32, 31, -3, 3);
  Array x = Array(xv, {n}, float32);
  auto f = compile(chain10);
  auto got = f({x})[0].to_vector<float>();
  auto eager = chain10({x})[0].to_vector<float>();
  ASSERT_EQ(got.size(), static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(xv[i]);
    float t = v * 1.5f;
    t = t + 0.25f;
    t = t > -1.0f ? t : -1.0f;
    t = t * v;
    t = t - 0.5f;
    t = std::fabs(t);
    t = t < 3.0f ? t : 3.0f;
    t = t * 0.5f;
    t = t + v;
    t = t * t;
    ASSERT_EQ(got[i], t) << "i=" << i;
    ASSERT_EQ(eager[i], t) << "i=" << i;
  }
  EXPECT_EQ(compile_stats(f).fused_kernels, 1);
}
