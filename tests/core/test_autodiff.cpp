// Autodiff: the VJP of every differentiable primitive against central finite differences in
// float64, jvp against vjp, grad-of-grad, value_and_grad of an MLP against hand-derived
// gradients, stop_gradient, custom_vjp and checkpoint.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "core/primitive.h"
#include "test_util.h"
#include "util/env.h"

using namespace ingot;
using namespace ingot::test;

namespace {

Array f64(const std::vector<double>& v, const Shape& s) {
  return Array(v, s, float64);
}

Array rand64(const Shape& s, uint32_t seed, double lo = -2, double hi = 2) {
  return f64(random_values(shape_size(s), float64, seed, lo, hi), s);
}

// <fn(x), c> summed over outputs, in float64 on the host.
double dot_outputs(const ArrayFn& fn, const std::vector<Array>& x, const std::vector<Array>& c) {
  auto outs = fn(x);
  double acc = 0;
  for (size_t k = 0; k < outs.size(); ++k) {
    auto o = astype(outs[k], float64).to_vector<double>();
    auto cv = c[k].to_vector<double>();
    for (size_t i = 0; i < o.size(); ++i) acc += o[i] * cv[i];
  }
  return acc;
}

// Checks the VJP of fn at x against central differences with step h.
void check_vjp(const std::string& what, const ArrayFn& fn, const std::vector<Array>& x,
               double tol = 1e-6, double h = 1e-6) {
  auto outs = fn(x);
  std::vector<Array> cots;
  uint32_t seed = 1000;
  for (auto& o : outs) cots.push_back(rand64(o.shape(), seed++));
  auto [vals, grads] = vjp(fn, x, cots);
  ASSERT_EQ(grads.size(), x.size()) << what;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!is_floating(x[i].dtype())) continue;
    ASSERT_EQ(grads[i].shape(), x[i].shape()) << what << " input " << i;
    auto g = astype(grads[i], float64).to_vector<double>();
    auto base = x[i].to_vector<double>();
    for (size_t j = 0; j < base.size(); ++j) {
      auto xp = x, xm = x;
      auto vp = base, vm = base;
      vp[j] += h;
      vm[j] -= h;
      xp[i] = f64(vp, x[i].shape());
      xm[i] = f64(vm, x[i].shape());
      double fd = (dot_outputs(fn, xp, cots) - dot_outputs(fn, xm, cots)) / (2 * h);
      EXPECT_NEAR(g[j], fd, tol * (1 + std::abs(fd))) << what << ": d/dx" << i << "[" << j << "]";
    }
  }
}

ArrayFn un(Array (*f)(const Array&, StreamOrDevice)) {
  return [f](const std::vector<Array>& x) { return std::vector<Array>{f(x[0], {})}; };
}
ArrayFn bin(Array (*f)(const Array&, const Array&, StreamOrDevice)) {
  return [f](const std::vector<Array>& x) { return std::vector<Array>{f(x[0], x[1], {})}; };
}

}  // namespace

TEST(Autodiff, UnaryElementwise) {
  Array x = rand64({3, 5}, 1);
  Array pos = rand64({3, 5}, 2, 0.2, 3);
  Array away = rand64({3, 5}, 3, 0.3, 2);  // |x| away from 0 for abs
  check_vjp("exp", un(exp), {x});
  check_vjp("expm1", un(expm1), {x});
  check_vjp("log", un(log), {pos});
  check_vjp("log1p", un(log1p), {pos});
  check_vjp("sqrt", un(sqrt), {pos});
  check_vjp("rsqrt", un(rsqrt), {pos});
  check_vjp("sin", un(sin), {x});
  check_vjp("cos", un(cos), {x});
  check_vjp("tanh", un(tanh), {x});
  check_vjp("sigmoid", un(sigmoid), {x});
  check_vjp("erf", un(erf), {x});
  check_vjp("silu", un(silu), {x});
  check_vjp("gelu", un(gelu), {x});
  check_vjp("gelu_tanh", un(gelu_tanh), {x});
  check_vjp("square", un(square), {x});
  check_vjp("reciprocal", un(reciprocal), {pos});
  check_vjp("negative", un(negative), {x});
  check_vjp("abs", un(abs), {away});
  check_vjp("abs-neg", un(abs), {negative(away)});
}

TEST(Autodiff, BinaryElementwiseWithBroadcasting) {
  Array a = rand64({3, 4}, 4), b = rand64({4}, 5), c = rand64({3, 1}, 6);
  Array pos = rand64({3, 4}, 7, 0.5, 2), pb = rand64({4}, 8, 0.5, 2);
  for (auto& [n, f] : std::vector<std::pair<std::string, ArrayFn>>{{"add", bin(add)},
                                                                   {"subtract", bin(subtract)},
                                                                   {"multiply", bin(multiply)},
                                                                   {"maximum", bin(maximum)},
                                                                   {"minimum", bin(minimum)}}) {
    check_vjp(n + " [3,4]x[4]", f, {a, b});
    check_vjp(n + " [3,1]x[3,4]", f, {c, a});
  }
  check_vjp("divide", bin(divide), {a, pb});
  check_vjp("power", bin(power), {pos, b});
  check_vjp("where",
            [](const std::vector<Array>& x) {
              return std::vector<Array>{where(greater(x[0], 0.0), x[0], x[1])};
            },
            {a, b});
  // Through float32 rounding: a coarse step keeps the difference quotient meaningful.
  check_vjp(
      "astype roundtrip",
      [](const std::vector<Array>& x) {
        return std::vector<Array>{astype(astype(x[0], float32), float64) * 2.0};
      },
      {a}, 1e-3, 1e-3);
}

TEST(Autodiff, Reductions) {
  Array x = rand64({3, 4, 5}, 9);
  check_vjp("sum axes", [](auto& v) { return std::vector<Array>{sum(v[0], {0, 2})}; }, {x});
  check_vjp("sum keep", [](auto& v) { return std::vector<Array>{sum(v[0], {1}, true)}; }, {x});
  check_vjp("mean", [](auto& v) { return std::vector<Array>{mean(v[0], {-1})}; }, {x});
  check_vjp("max", [](auto& v) { return std::vector<Array>{max(v[0], {1})}; }, {x});
  check_vjp("min", [](auto& v) { return std::vector<Array>{min(v[0], {2, 0})}; }, {x});
  check_vjp("prod", [](auto& v) { return std::vector<Array>{prod(v[0], {2})}; }, {x});
  check_vjp("var", [](auto& v) { return std::vector<Array>{var(v[0], {1, 2}, false, 1)}; }, {x});
  check_vjp("logsumexp", [](auto& v) { return std::vector<Array>{logsumexp(v[0], {2})}; }, {x});
  check_vjp("softmax", [](auto& v) { return std::vector<Array>{softmax(v[0], -1)}; }, {x});
  check_vjp("log_softmax", [](auto& v) { return std::vector<Array>{log_softmax(v[0], 1)}; }, {x});
  check_vjp("cumsum", [](auto& v) { return std::vector<Array>{cumsum(v[0], 1)}; }, {x});
  check_vjp("cumsum rev excl",
            [](auto& v) { return std::vector<Array>{cumsum(v[0], 2, true, false)}; }, {x});
  check_vjp("sort", [](auto& v) { return std::vector<Array>{sort(v[0], 1)}; }, {x});
  check_vjp("topk", [](auto& v) { return std::vector<Array>{topk(v[0], 2, -1)}; }, {x});
}

TEST(Autodiff, Matmul) {
  check_vjp("matmul", bin(matmul), {rand64({3, 4}, 10), rand64({4, 5}, 11)});
  check_vjp("matmul batch broadcast", bin(matmul),
            {rand64({2, 1, 3, 4}, 12), rand64({3, 4, 2}, 13)});
  check_vjp("matmul 1-d", bin(matmul), {rand64({4}, 14), rand64({4, 3}, 15)});
  check_vjp("matmul 1-d rhs", bin(matmul), {rand64({2, 4}, 16), rand64({4}, 17)});
  check_vjp("addmm", [](auto& v) { return std::vector<Array>{addmm(v[0], v[1], v[2], 0.5f, 2.f)}; },
            {rand64({5}, 18), rand64({3, 4}, 19), rand64({4, 5}, 20)});
}

// Disjoint column slices of one array (q/k/v or gate/up of a stacked projection): their padded
// cotangents are written into one zero array instead of added; overlapping or strided slices
// still add. Either way the gradient is the sum of the padded cotangents.
TEST(Autodiff, DisjointSliceCotangentsMerge) {
  const Array x = rand64({4, 10}, 31);
  const Array w1 = rand64({4, 3}, 32), w2 = rand64({4, 5}, 33), w3 = rand64({4, 2}, 34);
  auto f = [&](const Array& a) {  // the weighted sum of slices [0:3), [3:8), [8:10) of a
    return sum(slice(a, {0, 0}, {4, 3}) * w1) + sum(slice(a, {0, 3}, {4, 8}) * w2) +
           sum(slice(a, {0, -2}, {4, 10}) * w3);
  };
  const auto [outs, grads] =
      vjp([&](const std::vector<Array>& v) { return std::vector<Array>{f(v[0])}; }, {x},
          {Array(1.0, float64)});
  ASSERT_TRUE(grads[0].has_primitive());
  const char* merge = std::getenv("INGOT_MERGE_SLICE_GRADS");  // "0": the adds
  EXPECT_STREQ(grads[0].primitive().name(),
               merge && std::string(merge) == "0" ? "Add" : "SliceUpdate");
  const auto g = grads[0].to_vector<double>();
  const auto a = w1.to_vector<double>(), b = w2.to_vector<double>(), c = w3.to_vector<double>();
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 10; ++k) {
      const double want = k < 3 ? a[r * 3 + k] : k < 8 ? b[r * 5 + k - 3] : c[r * 2 + k - 8];
      EXPECT_EQ(g[r * 10 + k], want) << r << "," << k;
    }
  check_vjp("disjoint slices", [&](auto& v) { return std::vector<Array>{f(v[0])}; }, {x});
  // Overlapping slices ([0:5) and [3:10)) and a strided one add.
  auto h = [&](const Array& a) {
    return sum(slice(a, {0, 0}, {4, 5}) * 2.0) + sum(slice(a, {0, 3}, {4, 10}) * 3.0) +
           sum(slice(a, {0, 1}, {4, 10}, {1, 4}) * 5.0);
  };
  const auto gh = vjp([&](const std::vector<Array>& v) { return std::vector<Array>{h(v[0])}; }, {x},
                      {Array(1.0, float64)})
                      .second[0]
                      .to_vector<double>();
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 10; ++k) {
      const double want = (k < 5 ? 2.0 : 0.0) + (k >= 3 ? 3.0 : 0.0) + (k % 4 == 1 ? 5.0 : 0.0);
      EXPECT_EQ(gh[r * 10 + k], want) << r << "," << k;
    }
  check_vjp("overlapping slices", [&](auto& v) { return std::vector<Array>{h(v[0])}; }, {x});
}

TEST(Autodiff, ProductCotangentFoldsIntoAddMM) {
  // x feeds a product and an elementwise op: its cotangent u @ w^T + cos(x) becomes one AddMM
  // (INGOT_FOLD_PRODUCT_GRADS=0: the Add of the two).
  const Array x = rand64({3, 4, 5}, 41), w = rand64({5, 6}, 42), u = rand64({3, 4, 6}, 43);
  auto f = [&](const Array& a) { return sum(matmul(a, w) * u) + sum(sin(a)); };
  const auto [outs, grads] =
      vjp([&](const std::vector<Array>& v) { return std::vector<Array>{f(v[0])}; }, {x},
          {Array(1.0, float64)});
  ASSERT_TRUE(grads[0].has_primitive());
  const char* fold = std::getenv("INGOT_FOLD_PRODUCT_GRADS");
  EXPECT_STREQ(grads[0].primitive().name(), fold && std::string(fold) == "0" ? "Add" : "AddMM");
  const auto g = grads[0].to_vector<double>(), xv = x.to_vector<double>();
  const auto wv = w.to_vector<double>(), uv = u.to_vector<double>();
  for (int r = 0; r < 12; ++r)
    for (int k = 0; k < 5; ++k) {
      double want = std::cos(xv[r * 5 + k]);
      for (int n = 0; n < 6; ++n) want += uv[r * 6 + n] * wv[k * 6 + n];
      EXPECT_NEAR(g[r * 5 + k], want, 1e-12) << r << "," << k;
    }
  check_vjp("product next to an elementwise op",
            [&](auto& v) { return std::vector<Array>{f(v[0])}; }, {x});
  // bfloat16: the fold adds the float32 product to the other term before rounding once.
  const Array xb = astype(x, bfloat16), wb = astype(w, bfloat16), ub = astype(u, bfloat16);
  const auto gb = vjp(
                      [&](const std::vector<Array>& v) {
                        return std::vector<Array>{sum(astype(matmul(v[0], wb) * ub, float32)) +
                                                  sum(astype(sin(v[0]), float32))};
                      },
                      {xb}, {Array(1.0f, float32)})
                      .second[0]
                      .to_vector<double>();
  const auto xbv = xb.to_vector<double>(), wbv = wb.to_vector<double>();
  const auto ubv = ub.to_vector<double>();
  for (int r = 0; r < 12; ++r)
    for (int k = 0; k < 5; ++k) {
      double prod = 0;
      for (int n = 0; n < 6; ++n) prod += ubv[r * 6 + n] * wbv[k * 6 + n];
      // cos rounds to bf16 (its own op), then the sum once: within u = 2^-8 of it; without
      // the fold the product rounds first (u |prod| more).
      const double want = prod + Array(std::cos(xbv[r * 5 + k]), bfloat16).item<double>();
      const bool off = fold && std::string(fold) == "0";
      EXPECT_NEAR(gb[r * 5 + k], want,
                  std::ldexp(std::fabs(want) + (off ? std::fabs(prod) : 0.0), -8) + 1e-7)
          << r << "," << k;
    }
}

/// The primitive names of the graph behind a (a's own first), depth first, each node once.
std::vector<std::string> graph_names(const Array& a) {
  std::vector<std::string> names;
  std::vector<Array> stack{a};
  std::vector<uintptr_t> seen;
  while (!stack.empty()) {
    Array cur = stack.back();
    stack.pop_back();
    if (std::find(seen.begin(), seen.end(), cur.id()) != seen.end() || !cur.has_primitive())
      continue;
    seen.push_back(cur.id());
    names.push_back(cur.primitive().name());
    for (const Array& in : cur.inputs()) stack.push_back(in);
  }
  return names;
}

TEST(Autodiff, StackedProductGradientSkipsThePaddedCotangent) {
  // y = x @ [Wq; Wk; Wv]^T with its column blocks feeding separate consumers (as q/k/v of a
  // stacked projection do) and x also feeding an elementwise op: x's gradient is the sum of
  // g_i @ W_i over the blocks plus the other term, a chain of AddMMs over the blocks, with no
  // zero fill and no slice updates of the full-width cotangent
  // (INGOT_SPLIT_STACKED_GRADS=0 or INGOT_MERGE_SLICE_GRADS=0: the product over the padded
  // cotangent).
  const Array x = rand64({2, 3, 6}, 51), stack = rand64({9, 6}, 52);
  const Array uq = rand64({2, 3, 4}, 53), uk = rand64({2, 3, 2}, 54), uv = rand64({2, 3, 3}, 55);
  auto f = [&](const Array& a) {
    const Array y = matmul(a, transpose(stack));
    return sum(slice(y, {0, 0, 0}, {2, 3, 4}) * uq) +
           sum(exp(slice(y, {0, 0, 4}, {2, 3, 6})) * uk) +
           sum(square(slice(y, {0, 0, 6}, {2, 3, 9})) * uv) + sum(sin(a));
  };
  const auto [outs, grads] =
      vjp([&](const std::vector<Array>& v) { return std::vector<Array>{f(v[0])}; }, {x},
          {Array(1.0, float64)});
  const std::vector<std::string> names = graph_names(grads[0]);
  // The split needs the merged cotangent (INGOT_MERGE_SLICE_GRADS=0 leaves the padded pieces).
  const bool off =
      !env::flag("INGOT_SPLIT_STACKED_GRADS", true) || !env::flag("INGOT_MERGE_SLICE_GRADS", true);
  const bool folds = env::flag("INGOT_FOLD_PRODUCT_GRADS", true);
  const auto count = [&](const char* n) { return std::count(names.begin(), names.end(), n); };
  EXPECT_EQ(count("SliceUpdate"), off ? 3 : 0);
  // On: a Matmul and two AddMMs over the blocks, rebuilt as three AddMMs into the sin term's
  // cotangent when products fold; off: one product over the padded cotangent (folded: 1).
  EXPECT_EQ(count("AddMM"), off ? (folds ? 1 : 0) : (folds ? 3 : 2));
  // Against float64 loops: dx[r, k] = cos(x) + sum_n dy[r, n] stack[n, k].
  const auto xv = x.to_vector<double>(), sv = stack.to_vector<double>();
  const auto y = matmul(x, transpose(stack)).to_vector<double>();
  const auto qv = uq.to_vector<double>(), kv = uk.to_vector<double>(), vv = uv.to_vector<double>();
  const auto g = grads[0].to_vector<double>();
  for (int r = 0; r < 6; ++r)
    for (int k = 0; k < 6; ++k) {
      double want = std::cos(xv[r * 6 + k]);
      for (int n = 0; n < 9; ++n) {
        const double yn = y[r * 9 + n];
        const double dy = n < 4   ? qv[r * 4 + n]
                          : n < 6 ? std::exp(yn) * kv[r * 2 + n - 4]
                                  : 2 * yn * vv[r * 3 + n - 6];
        want += dy * sv[n * 6 + k];
      }
      EXPECT_NEAR(g[r * 6 + k], want, 1e-12 * (1 + std::fabs(want))) << r << "," << k;
    }
  check_vjp("stacked product", [&](auto& v) { return std::vector<Array>{f(v[0])}; }, {x});
  // A block missing (the middle columns unused) leaves those columns out of the sum; the
  // weight's gradient still takes the padded cotangent.
  auto h = [&](const std::vector<Array>& v) {
    const Array y = matmul(v[0], transpose(v[1]));
    return std::vector<Array>{sum(slice(y, {0, 0, 0}, {2, 3, 4}) * uq) +
                              sum(slice(y, {0, 0, 6}, {2, 3, 9}) * uv)};
  };
  const auto gh = vjp(h, {x, stack}, {Array(1.0, float64)}).second;
  for (int r = 0; r < 6; ++r)
    for (int k = 0; k < 6; ++k) {
      double want = 0;
      for (int n = 0; n < 4; ++n) want += qv[r * 4 + n] * sv[n * 6 + k];
      for (int n = 6; n < 9; ++n) want += vv[r * 3 + n - 6] * sv[n * 6 + k];
      EXPECT_NEAR(gh[0].to_vector<double>()[r * 6 + k], want, 1e-12 * (1 + std::fabs(want)));
    }
  check_vjp("stacked product, a block unused, and the weight", h, {x, stack});
}

TEST(Autodiff, ShapeOps) {
  Array x = rand64({3, 4}, 21);
  check_vjp("reshape",
            [](auto& v) {
              return std::vector<Array>{reshape(v[0], {2, 6}) * 1.0};
            },
            {x});
  check_vjp("transpose", [](auto& v) { return std::vector<Array>{transpose(v[0]) * 1.0}; }, {x});
  check_vjp("broadcast",
            [](auto& v) {
              return std::vector<Array>{broadcast_to(v[0], {2, 3, 4})};
            },
            {x});
  check_vjp("slice",
            [](auto& v) {
              return std::vector<Array>{slice(v[0], {2, 0}, {-4, 4}, {-1, 2})};
            },
            {x});
  check_vjp("slice_update",
            [](auto& v) {
              return std::vector<Array>{slice_update(v[0], v[1], {0, 1}, {3, 3})};
            },
            {x, rand64({3, 2}, 22)});
  check_vjp("concatenate",
            [](auto& v) {
              return std::vector<Array>{concatenate({v[0], v[1]}, 1)};
            },
            {x, rand64({3, 2}, 23)});
  check_vjp("stack",
            [](auto& v) {
              return std::vector<Array>{stack({v[0], v[1]}, 1)};
            },
            {x, rand64({3, 4}, 24)});
  check_vjp("split", [](auto& v) { return split(v[0], std::vector<int64_t>{1, 3}, 1); }, {x});
  check_vjp("pad",
            [](auto& v) {
              return std::vector<Array>{pad(v[0], {0, 1}, {1, 0}, {2, 3}, Array(0.0))};
            },
            {x});
  check_vjp("tile", [](auto& v) { return std::vector<Array>{tile(v[0], {2, 1})}; }, {x});
  check_vjp("repeat", [](auto& v) { return std::vector<Array>{repeat(v[0], 2, 1)}; }, {x});
}

TEST(Autodiff, Indexing) {
  Array table = rand64({5, 3}, 25);
  Array ids = Array({4, 0, 4, 2}, int32);
  check_vjp("take axis0 (duplicates)",
            [&](auto& v) { return std::vector<Array>{take(v[0], ids, 0)}; }, {table});
  check_vjp("gather",
            [&](auto& v) {
              return std::vector<Array>{gather(v[0], reshape(ids, {2, 2}))};
            },
            {table});
  check_vjp("take axis1",
            [&](auto& v) {
              return std::vector<Array>{take(v[0], Array({2, -1}, int32), 1)};
            },
            {table});
  Array idx = Array(std::vector<int32_t>{1, 0, 2, 2, 1, 0, 0, 0, 1, 2}, {5, 2});
  check_vjp("take_along_axis",
            [&](auto& v) { return std::vector<Array>{take_along_axis(v[0], idx, 1)}; }, {table});
  Array uniq = Array(std::vector<int32_t>{1, 0, 2, 0, 1}, {5, 1});
  check_vjp("put_along_axis",
            [&](auto& v) { return std::vector<Array>{put_along_axis(v[0], uniq, v[1], 1)}; },
            {table, rand64({5, 1}, 26)});
  check_vjp("scatter_add",
            [&](auto& v) { return std::vector<Array>{scatter_add(v[0], ids, v[1], 0)}; },
            {table, rand64({4, 3}, 27)});
}

TEST(Autodiff, JvpMatchesVjp) {
  // <J t, c> == <t, J^T c> for a composite function.
  ArrayFn f = [](const std::vector<Array>& x) {
    return std::vector<Array>{sum(tanh(matmul(x[0], x[1])) * x[0], {1})};
  };
  Array a = rand64({3, 3}, 30), b = rand64({3, 3}, 31);
  Array ta = rand64({3, 3}, 32), tb = rand64({3, 3}, 33), c = rand64({3}, 34);
  auto [o1, jt] = jvp(f, {a, b}, {ta, tb});
  auto [o2, vj] = vjp(f, {a, b}, {c});
  double lhs = sum(jt[0] * c).item<double>();
  double rhs = sum(ta * vj[0]).item<double>() + sum(tb * vj[1]).item<double>();
  EXPECT_NEAR(lhs, rhs, 1e-9 * (1 + std::abs(lhs)));
}

TEST(Autodiff, GradOfGrad) {
  // f is a sum of elementwise terms, so sum(grad f) has the second derivatives as gradient.
  auto g1 = grad([](const Array& x) { return sum(sin(x) * x); });
  auto d2 = grad([&](const Array& x) { return sum(g1(x)); });
  Array x = rand64({5}, 35);
  // d/dx (sin x + x cos x) = 2 cos x - x sin x
  auto want = (2.0 * cos(x) - x * sin(x)).to_vector<double>();
  expect_close(d2(x).to_vector<double>(), want, 1e-12, 1e-12, "d2 x sin x");
  auto q1 = grad([](const Array& x) { return sum(x * x * x * x); });
  auto q2 = grad([&](const Array& x) { return sum(q1(x)); });
  auto d3 = grad([&](const Array& x) { return sum(q2(x)); });
  expect_close(d3(x).to_vector<double>(), (24.0 * x).to_vector<double>(), 1e-12, 1e-12, "x^4");
  // Second derivative through softmax: check against finite differences of the gradient.
  auto g = grad([](const Array& x) {
    return sum(softmax(x, -1) * Array({1.0, 2.0, 3.0, 4.0, 5.0}, {5}, float64));
  });
  check_vjp(
      "grad of softmax", [&](auto& v) { return std::vector<Array>{g(v[0])}; }, {x}, 1e-5);
}

TEST(Autodiff, ValueAndGradTwoLayerMlp) {
  // loss = 0.5 * sum((W2 tanh(W1 x + b1) + b2 - y)^2) / N, gradients derived by hand.
  const int n = 6, din = 4, dh = 5, dout = 3;
  Array x = rand64({n, din}, 40), y = rand64({n, dout}, 41);
  Array w1 = rand64({din, dh}, 42), b1 = rand64({dh}, 43);
  Array w2 = rand64({dh, dout}, 44), b2 = rand64({dout}, 45);
  auto loss = [&](const std::vector<Array>& p) {
    Array h = tanh(matmul(x, p[0]) + p[1]);
    Array e = matmul(h, p[2]) + p[3] - y;
    return std::vector<Array>{0.5 * sum(e * e) / static_cast<double>(n)};
  };
  auto [vals, g] = value_and_grad(loss, {0, 1, 2, 3})({w1, b1, w2, b2});
  Array h = tanh(matmul(x, w1) + b1);
  Array e = (matmul(h, w2) + b2 - y) / static_cast<double>(n);
  Array gw2 = matmul(transpose(h), e), gb2 = sum(e, {0});
  Array dh_ = matmul(e, transpose(w2)) * (1.0 - h * h);
  Array gw1 = matmul(transpose(x), dh_), gb1 = sum(dh_, {0});
  Array ev = matmul(h, w2) + b2 - y;
  EXPECT_NEAR(vals[0].item<double>(), 0.5 * sum(ev * ev).item<double>() / n, 1e-12);
  std::vector<Array> want{gw1, gb1, gw2, gb2};
  for (int i = 0; i < 4; ++i)
    expect_close(g[i].to_vector<double>(), want[i].to_vector<double>(), 1e-10, 1e-12,
                 "param " + std::to_string(i));
}

TEST(Autodiff, ParamMapGradients) {
  ParamMap p{{"layer.w", rand64({3, 2}, 50)}, {"layer.b", rand64({2}, 51)}};
  Array x = rand64({4, 3}, 52);
  auto [v, g] = value_and_grad(
      [&](const ParamMap& m) { return sum(square(matmul(x, m.at("layer.w")) + m.at("layer.b"))); },
      p);
  Array z = matmul(x, p.at("layer.w")) + p.at("layer.b");
  expect_close(g.at("layer.b").to_vector<double>(), sum(2.0 * z, {0}).to_vector<double>(), 1e-12,
               1e-12, "b");
  expect_close(g.at("layer.w").to_vector<double>(),
               matmul(transpose(x), 2.0 * z).to_vector<double>(), 1e-12, 1e-12, "w");
}

TEST(Autodiff, StopGradientAndCustomVjp) {
  auto g = grad([](const Array& x) { return sum(x * stop_gradient(x)); });
  Array x = rand64({4}, 60);
  expect_close(g(x).to_vector<double>(), x.to_vector<double>(), 0, 0, "stop_gradient");
  // custom rule: pretend d/dx = 3 (instead of the true derivative of sin)
  ArrayFn f = custom_vjp([](const std::vector<Array>& v) { return std::vector<Array>{sin(v[0])}; },
                         [](const std::vector<Array>&, const std::vector<Array>& c,
                            const std::vector<Array>&) { return std::vector<Array>{3.0 * c[0]}; });
  auto [outs, grads] = vjp(f, {x}, {ones_like(x)});
  expect_close(outs[0].to_vector<double>(), sin(x).to_vector<double>(), 0, 0, "value");
  expect_close(grads[0].to_vector<double>(), std::vector<double>(4, 3.0), 0, 0, "custom");
}

TEST(Autodiff, MultiOutputPrimitiveGetsTheCotangentsOfAllItsOutputs) {
  // checkpoint's one primitive with two outputs, consumed on two paths: the tape reaches b only
  // after a's consumers, so the VJP must wait for the earlier output (a) to see both cotangents.
  const Array x = rand64({5}, 61), w = rand64({5}, 62), v = rand64({5}, 63);
  const ArrayFn two = checkpoint([](const std::vector<Array>& in) {
    return std::vector<Array>{in[0] * 2.0, in[0] * 3.0};
  });
  auto g = grad([&](const Array& y) {
    const std::vector<Array> ab = two({y});
    return sum(ab[0] * w) + sum(ab[1] * v);
  });
  expect_close(g(x).to_vector<double>(), (2.0 * w + 3.0 * v).to_vector<double>(), 1e-15, 0,
               "both outputs' cotangents");
}

TEST(Autodiff, ErrorsNameTheProblem) {
  auto vg =
      value_and_grad([](const std::vector<Array>& x) { return std::vector<Array>{x[0] * 2.0}; });
  expect_error<InvalidArgument>(
      [&] { vg({rand64({3}, 1)}); },
      "[value_and_grad] the first output must be a scalar, got shape [3]");
  expect_error<InvalidArgument>(
      [&] { value_and_grad([](auto& x) { return x; }, {2})({rand64({1}, 1)}); },
      "[value_and_grad] argnum 2 is out of range for 1 inputs");
  expect_error<InvalidArgument>(
      [&] { vjp([](auto& x) { return x; }, {rand64({3}, 1)}, {rand64({2}, 1)}); },
      "[vjp] cotangent 0 has shape [2] but output 0 has shape [3]");
}
