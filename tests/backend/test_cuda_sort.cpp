// CUDA sort family against the CPU backend: sort/argsort (stable, NaN last), topk (ties by
// lower index), partition (its contract) over dtypes x axes x layouts and every kernel's row
// sizes (shared-memory sort, radix select, segmented sort), vocab rows, zero-size, VJPs.
#include <gtest/gtest.h>

#include <algorithm>
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

const Dtype kAllTypes[] = {float32, bfloat16, float16, float64, int32,
                           int64,   int8,     uint8,   uint32,  bool_};

/// n values for dtype t with many ties: floats are multiples of 0.5 in [-8, 8] with signed
/// zeros and a NaN every 97 values; integers in [-8, 8] (unsigned: [0, 8]); bools.
std::vector<double> tie_values(int64_t n, Dtype t, uint32_t seed, double range = 8) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(-range, range);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double x = std::round(u(g) * 2) / 2;
    if (t == bool_) {
      x = (g() & 1) ? 1 : 0;
    } else if (is_floating(t)) {
      if (x == 0 && (g() & 1)) x = -0.0;
      if (i % 97 == 50) x = kNaN;
    } else {
      x = std::round(x);
      if (is_unsigned_int(t)) x = std::fabs(x);
    }
    v[i] = x;
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

Operand make(const Shape& shape, Dtype t, Lay l, uint32_t seed, double range = 8) {
  auto both = [](const Array& base, const std::function<Array(const Array&)>& view) {
    return Operand{view(base), view(on_cuda(base))};
  };
  const int nd = static_cast<int>(shape.size());
  switch (l) {
    case Lay::transposed: {
      Shape rev(shape.rbegin(), shape.rend());
      Array base(tie_values(shape_size(rev), t, seed, range), rev, t);
      return both(base, [](const Array& a) { return transpose(a); });
    }
    case Lay::sliced: {
      Shape big = shape;
      big.back() = 2 * shape.back() + 1;
      Array base(tie_values(shape_size(big), t, seed, range), big, t);
      Shape start(nd, 0), stride(nd, 1);
      start.back() = 1;
      stride.back() = 2;
      return both(base, [&](const Array& a) { return slice(a, start, big, stride); });
    }
    case Lay::broadcast: {
      Shape tail(shape.begin() + 1, shape.end());
      Array base(tie_values(shape_size(tail), t, seed, range), tail, t);
      return both(base, [&](const Array& a) { return broadcast_to(a, shape); });
    }
    default: {
      Array base(tie_values(shape_size(shape), t, seed, range), shape, t);
      return Operand{base, on_cuda(base)};
    }
  }
}

struct Case {
  Shape shape;
  int axis;
};

std::string what_of(const char* op, Dtype t, Lay l, const Case& c) {
  return std::string(op) + " " + std::string(dtype_name(t)) + " " + lay_name(l) + " " +
         shape_str(c.shape) + " axis " + std::to_string(c.axis);
}

// Row lengths cover the shared-memory sort (<= 4096, including exactly 4096) and the
// segmented sort (5000, 70001), along the last axis and strided axes.
const std::vector<Case> kSortCases = {{{3, 7, 5}, 0},  {{3, 7, 5}, 1}, {{3, 7, 5}, 2},
                                      {{3, 7, 5}, -1}, {{5, 1000}, 1}, {{2, 4096}, 1},
                                      {{3, 5000}, 1},  {{5000, 3}, 0}, {{2, 70001}, 1},
                                      {{1, 1}, 0},     {{4, 33, 2}, 1}};

TEST(CudaSort, SortArgsort) {
  INGOT_REQUIRE_CUDA();
  for (const Case& c : kSortCases)
    for (Dtype t : kAllTypes)
      for (Lay l : {Lay::contiguous, Lay::transposed, Lay::sliced, Lay::broadcast}) {
        if (l == Lay::broadcast && c.shape.size() < 2) continue;
        if (shape_size(c.shape) > 20000 && l != Lay::contiguous && t != float32) continue;
        const Operand x = make(c.shape, t, l, 7);
        expect_close(sort(x.gpu, c.axis), sort(x.cpu, c.axis), 0, 0, what_of("sort", t, l, c));
        expect_close(argsort(x.gpu, c.axis), argsort(x.cpu, c.axis), 0, 0,
                     what_of("argsort", t, l, c));
      }
}

TEST(CudaSort, SortKeepsBits) {
  INGOT_REQUIRE_CUDA();
  // -0.0 and +0.0 compare equal: stable order keeps their input order, and values are copied
  // from the input (the sign of zero survives).
  for (int64_t n : {6, 5000}) {
    std::vector<float> h(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) h[i] = (i % 2) ? -0.0f : 0.0f;
    h[1] = 1.0f;
    const Array x(h, {n}, float32);
    const auto got = sort(on_cuda(x)).to_vector<float>();
    const auto want = sort(x).to_vector<float>();
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(std::signbit(got[i]), std::signbit(want[i])) << "n=" << n << " at " << i;
  }
}

const std::vector<Case> kTopkCases = {{{3, 7, 5}, 1}, {{5, 1000}, 1},  {{3, 5000}, 1},
                                      {{6000, 2}, 0}, {{2, 70000}, 1}, {{4, 9, 3}, 0}};

TEST(CudaSort, TopK) {
  INGOT_REQUIRE_CUDA();
  for (const Case& c : kTopkCases)
    for (Dtype t : kAllTypes)
      for (Lay l : {Lay::contiguous, Lay::transposed, Lay::sliced}) {
        const int64_t n = c.shape[c.axis < 0 ? c.axis + c.shape.size() : c.axis];
        if (shape_size(c.shape) > 20000 && l != Lay::contiguous && t != float32) continue;
        const Operand x = make(c.shape, t, l, 9);
        // k of 1, small, the radix-select limit (1024) and beyond it (sort path), and n.
        for (int64_t k : {int64_t(1), int64_t(3), int64_t(50), int64_t(1024), int64_t(1500), n}) {
          if (k > n) continue;
          const int ki = static_cast<int>(k);
          const std::string what = what_of("topk", t, l, c) + " k=" + std::to_string(k);
          expect_close(topk(x.gpu, ki, c.axis), topk(x.cpu, ki, c.axis), 0, 0, what);
          expect_close(topk_indices(x.gpu, ki, c.axis), topk_indices(x.cpu, ki, c.axis), 0, 0,
                       "indices " + what);
        }
      }
}

TEST(CudaSort, TopKVocab) {
  INGOT_REQUIRE_CUDA();
  const int64_t v = 262144;
  for (Dtype t : {float32, bfloat16, float16}) {
    // Logits with heavy ties (bf16 rounding of a narrow range) and masked (-inf) entries.
    std::mt19937 g(3);
    std::normal_distribution<double> nd(0, 3);
    std::vector<double> h(static_cast<size_t>(8 * v));
    for (size_t i = 0; i < h.size(); ++i)
      h[i] = (i % 11 == 0) ? -std::numeric_limits<double>::infinity() : nd(g);
    const Array x(h, {8, v}, t);
    const Array xg = on_cuda(x);
    for (int k : {1, 40, 1000}) {
      const std::string what = std::string(dtype_name(t)) + " k=" + std::to_string(k);
      expect_close(topk_indices(xg, k), topk_indices(x, k), 0, 0, "vocab topk_indices " + what);
      expect_close(topk(xg, k), topk(x, k), 0, 0, "vocab topk " + what);
    }
  }
}

/// Checks partition/argpartition results of one backend against the contract, row by row:
/// the indices permute the row, the values are the input's at them, position kth holds the
/// sorted row's kth value, and everything before (after) it is <= (>=) it, NaN last.
void check_partition(const Array& x, const Array& part, const Array& idx, int kth, int axis,
                     const std::string& what) {
  const int nd = x.ndim();
  const int ax = axis < 0 ? axis + nd : axis;
  const int64_t n = x.shape()[ax];
  const int64_t rows = n ? x.size() / n : 0;
  const auto xv = reshape(moveaxis(x, ax, -1), {rows, n}).to_vector<double>();
  const auto pv = reshape(moveaxis(part, ax, -1), {rows, n}).to_vector<double>();
  const auto iv = reshape(moveaxis(idx, ax, -1), {rows, n}).to_vector<double>();
  const int64_t k = kth < 0 ? kth + n : kth;
  auto less = [](double a, double b) { return !std::isnan(a) && (std::isnan(b) || a < b); };
  auto same = [](double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); };
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> row(xv.begin() + r * n, xv.begin() + (r + 1) * n);
    std::vector<double> sorted = row;
    std::stable_sort(sorted.begin(), sorted.end(), less);
    const double pivot = sorted[k];
    std::vector<bool> seen(static_cast<size_t>(n), false);
    for (int64_t j = 0; j < n; ++j) {
      const auto i = static_cast<int64_t>(iv[r * n + j]);
      ASSERT_TRUE(i >= 0 && i < n && !seen[i]) << what << " row " << r << ": not a permutation";
      seen[i] = true;
      auto placed = [&](double v) {
        return j < k ? !less(pivot, v) : (j == k ? same(v, pivot) : !less(v, pivot));
      };
      ASSERT_TRUE(placed(pv[r * n + j])) << what << " value row " << r << " j " << j;
      ASSERT_TRUE(placed(row[i])) << what << " index row " << r << " j " << j;
    }
  }
}

TEST(CudaSort, PartitionContract) {
  INGOT_REQUIRE_CUDA();
  const std::vector<Case> cases = {{{3, 7, 5}, 0}, {{3, 7, 5}, 2}, {{4, 3000}, 1}, {{2, 6000}, 1}};
  for (const Case& c : cases)
    for (Dtype t : {float32, bfloat16, int32, int64, float64, uint8})
      for (Lay l : {Lay::contiguous, Lay::transposed}) {
        const Operand x = make(c.shape, t, l, 13);
        const int64_t n = c.shape[c.axis];
        for (int kth : {0, static_cast<int>(n / 2), static_cast<int>(n - 1), -1}) {
          const std::string what = what_of("partition", t, l, c) + " kth " + std::to_string(kth);
          const Array part = partition(x.gpu, kth, c.axis);
          const Array idx = argpartition(x.gpu, kth, c.axis);
          ASSERT_EQ(part.dtype(), t) << what;
          ASSERT_EQ(idx.dtype(), uint32) << what;
          ASSERT_EQ(part.device(), kCuda) << what;
          check_partition(x.cpu, part, idx, kth, c.axis, what);
          // The kth element itself is defined: the same on both backends.
          const int64_t kk = kth < 0 ? kth + n : kth;
          expect_close(slice_axis(part, c.axis, kk, kk + 1),
                       slice_axis(partition(x.cpu, kth, c.axis), c.axis, kk, kk + 1), 0, 0,
                       what + " kth value");
        }
      }
}

TEST(CudaSort, ZeroSize) {
  INGOT_REQUIRE_CUDA();
  for (const Shape& s : {Shape{0, 5}, Shape{5, 0}}) {
    const Array x = zeros(s, float32);
    const Array g = on_cuda(x);
    expect_close(sort(g, 1), sort(x, 1), 0, 0, "sort " + shape_str(s));
    expect_close(argsort(g, 0), argsort(x, 0), 0, 0, "argsort " + shape_str(s));
    expect_close(topk(g, 0, 1), topk(x, 0, 1), 0, 0, "topk k=0 " + shape_str(s));
  }
  const Array x = zeros({4, 6}, int32);
  expect_close(topk_indices(on_cuda(x), 0), topk_indices(x, 0), 0, 0, "topk_indices k=0");
}

TEST(CudaSort, Vjp) {
  INGOT_REQUIRE_CUDA();
  std::mt19937 g(5);
  std::normal_distribution<double> nd;
  std::vector<double> h(6 * 300), w(6 * 300);
  for (auto& v : h) v = nd(g);
  for (auto& v : w) v = nd(g);
  const Array x(h, {6, 300}, float32), wt(w, {6, 300}, float32);
  const Array wk(std::vector<double>(w.begin(), w.begin() + 6 * 20), {6, 20}, float32);
  auto check = [&](const std::function<Array(const std::vector<Array>&)>& f,
                   const std::vector<Array>& in, const std::string& what) {
    auto fn = [&](const std::vector<Array>& a) { return std::vector<Array>{f(a)}; };
    auto gr = grad(fn, {0});
    std::vector<Array> gin;
    for (const Array& a : in) gin.push_back(on_cuda(a));
    expect_close(gr(gin)[0], gr(in)[0], 1e-6, 1e-6, what);
  };
  check([](const std::vector<Array>& a) { return sum(multiply(sort(a[0], 1), a[1])); }, {x, wt},
        "grad sort");
  check([](const std::vector<Array>& a) { return sum(multiply(topk(a[0], 20, 1), a[1])); }, {x, wk},
        "grad topk");
  // The order around kth is free: a loss symmetric in the row's values.
  check([](const std::vector<Array>& a) { return sum(square(partition(a[0], 150, 1))); }, {x},
        "grad partition");
}

}  // namespace
