// fast::rms_norm and fast::layer_norm against float64 naive loops and their reference
// compositions, on every float dtype and layout; VJPs against finite differences.
#include "core/fast/fast.h"
#include "core/primitives/fast.h"
#include "core/transforms/autodiff.h"
#include "test_fast_util.h"

namespace ingot::test {
namespace {

const Dtype kDtypes[] = {float32, bfloat16, float16, float64};

// Tolerance for a result rounded once to dtype t from float32 math.
double tol_of(Dtype t) {
  return t == float64 ? 1e-12 : 4 * eps_of(t) + 4e-6;
}

std::vector<double> naive_rms(const std::vector<double>& x, const std::vector<double>* w, int64_t E,
                              const fast::RmsNormOptions& o, Dtype t) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / E; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < E; ++i) ss += x[r * E + i] * x[r * E + i];
    double inv = 1.0 / std::sqrt(ss / E + o.eps);
    for (int64_t i = 0; i < E; ++i) {
      double n = x[r * E + i] * inv;
      if (w) {
        double wi = (*w)[i] + (o.add_unit_offset ? 1.0 : 0.0);
        if (!o.weight_in_float32) n = round_to(n, t);
        n *= wi;
      }
      y[r * E + i] = round_to(n, t);
    }
  }
  return y;
}

std::vector<double> naive_ln(const std::vector<double>& x, const std::vector<double>* w,
                             const std::vector<double>* b, int64_t E, double eps, Dtype t) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / E; ++r) {
    double mu = 0, var = 0;
    for (int64_t i = 0; i < E; ++i) mu += x[r * E + i];
    mu /= E;
    for (int64_t i = 0; i < E; ++i) var += (x[r * E + i] - mu) * (x[r * E + i] - mu);
    double inv = 1.0 / std::sqrt(var / E + eps);
    for (int64_t i = 0; i < E; ++i) {
      double n = (x[r * E + i] - mu) * inv;
      if (w) n *= (*w)[i];
      if (b) n += (*b)[i];
      y[r * E + i] = round_to(n, t);
    }
  }
  return y;
}

// Expected values of 16-bit results may differ by one rounding step from float32 error.
void expect_norm_close(const Array& got, const std::vector<double>& want, Dtype t,
                       const std::string& what) {
  EXPECT_EQ(got.dtype(), t) << what;
  expect_close(values_of(got), want, tol_of(t), tol_of(t), what);
}

void check_rms_cases(const std::vector<Layout>& layouts) {
  const std::vector<Shape> shapes{{1, 1}, {7, 33}, {2, 3, 64}, {3, 1030}};
  uint32_t seed = 1;
  for (Dtype t : kDtypes)
    for (const Shape& sh : shapes)
      for (Layout lay : layouts)
        for (int variant = 0; variant < 4; ++variant) {
          const int64_t E = sh.back();
          auto xv = random_values(shape_size(sh), t, seed++);
          auto wv = random_values(E, t, seed++, -2, 2);
          Array x = make_array(xv, sh, t, lay);
          std::optional<Array> w;
          if (variant > 0) w = Array(wv, {E}, t);
          fast::RmsNormOptions o{
              .eps = 1e-5f, .add_unit_offset = variant == 2, .weight_in_float32 = variant != 3};
          std::string what = std::string(dtype_name(t)) + " " + shape_str(sh) + " " +
                             layout_name(lay) + " variant " + std::to_string(variant);
          auto want = naive_rms(xv, variant > 0 ? &wv : nullptr, E, o, t);
          expect_norm_close(fast::rms_norm(x, w, o), want, t, what);
          expect_norm_close(fast::ref::rms_norm(x, w, o), want, t, what + " (ref)");
        }
}

TEST(FastRmsNorm, MatchesNaiveAndReference) {
  check_rms_cases({kAllLayouts, kAllLayouts + 4});
}

TEST(FastRmsNorm, PortableKernelsMatchNaive) {
  ScopedIsa isa("portable");
  check_rms_cases({Layout::contiguous, Layout::sliced});
}

TEST(FastRmsNorm, WeightDtypeMayDiffer) {
  auto xv = random_values(2 * 40, bfloat16, 3);
  auto wv = random_values(40, float32, 4);
  Array y = fast::rms_norm(Array(xv, {2, 40}, bfloat16), Array(wv, {40}, float32));
  expect_norm_close(y, naive_rms(xv, &wv, 40, {}, bfloat16), bfloat16, "bf16 x, f32 w");
}

TEST(FastRmsNorm, DonatesAndLeavesInputIntact) {
  auto xv = random_values(4 * 16, float32, 5);
  Array x(xv, {4, 16}, float32);
  Array y = fast::rms_norm(x * 1.0f, std::nullopt);  // the temporary may be donated
  expect_norm_close(y, naive_rms(xv, nullptr, 16, {}, float32), float32, "donated");
  expect_close(values_of(x), xv, 0, 0, "input untouched");
}

TEST(FastRmsNorm, Errors) {
  Array x = zeros({2, 8});
  expect_error<InvalidArgument>([&] { fast::rms_norm(x, zeros({7})); },
                                "[rms_norm] weight must have shape [8] to match x [2, 8], got [7]");
  expect_error<InvalidArgument>(
      [&] {
        fast::rms_norm(zeros({2, 8}, int32), std::nullopt);
      },
      "[rms_norm] x must be a floating-point array, got int32");
  expect_error<InvalidArgument>(
      [&] {
        fast::ref::rms_norm(x, zeros({2, 8}));
      },
      "[rms_norm] weight must have shape [8]");
}

TEST(FastRmsNormAdd, EqualsNormThenAdd) {
  // residual + rms_norm(x): the norm rounds to the dtype, then the add rounds again. Bit for
  // bit the two ops on the CPU (rms_norm is checked against float64 loops above), and the
  // reference composition within rounding; every dtype, weight mode and layout of x and residual.
  const std::vector<Shape> shapes{{1, 1}, {7, 33}, {2, 3, 64}, {3, 1030}};
  uint32_t seed = 300;
  for (Dtype t : kDtypes)
    for (const Shape& sh : shapes)
      for (Layout xl : {Layout::contiguous, Layout::transposed, Layout::sliced})
        for (Layout rl : {Layout::contiguous, Layout::sliced, Layout::transposed})
          for (int variant = 0; variant < 4; ++variant) {
            const int64_t E = sh.back();
            auto xv = random_values(shape_size(sh), t, seed++);
            auto rv = random_values(shape_size(sh), t, seed++, -3, 3);
            auto wv = random_values(E, t, seed++, -2, 2);
            const Array x = make_array(xv, sh, t, xl), res = make_array(rv, sh, t, rl);
            std::optional<Array> w;
            if (variant > 0) w = Array(wv, {E}, t);
            const fast::RmsNormOptions o{
                .eps = 1e-5f, .add_unit_offset = variant == 2, .weight_in_float32 = variant != 3};
            const std::string what = std::string(dtype_name(t)) + " " + shape_str(sh) + " x " +
                                     layout_name(xl) + " residual " + layout_name(rl) +
                                     " variant " + std::to_string(variant);
            const Array got = fast::rms_norm_add(res, x, w, o);
            EXPECT_EQ(got.dtype(), t) << what;
            const auto two = values_of(res + fast::rms_norm(x, w, o)), g = values_of(got);
            ASSERT_EQ(g.size(), two.size()) << what;
            for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], two[i]) << what << " at " << i;
            // The reference sums in another order: within the roundings of values up to ~4.
            expect_close(values_of(fast::ref::rms_norm_add(res, x, w, o)), two, tol_of(t),
                         4 * tol_of(t), what + " (ref)");
          }
}

TEST(FastRmsNormAdd, ErrorsAndGradients) {
  const Array x = zeros({2, 8});
  expect_error<InvalidArgument>(
      [&] {
        fast::rms_norm_add(zeros({2, 7}), x, std::nullopt);
      },
      "[rms_norm_add] residual must have x's shape and dtype float32 [2, 8], got float32 [2, 7]");
  expect_error<InvalidArgument>(
      [&] {
        fast::rms_norm_add(zeros({2, 8}, bfloat16), x, std::nullopt);
      },
      "[rms_norm_add] residual must have x's shape and dtype float32 [2, 8], got bfloat16 [2, 8]");
  expect_error<InvalidArgument>([&] { fast::rms_norm_add(x, x, zeros({7})); },
                                "[rms_norm_add] weight must have shape [8]");
  auto xv = random_values(3 * 5, float64, 21), wv = random_values(5, float64, 22),
       rv = random_values(3 * 5, float64, 23);
  for (bool unit : {false, true})
    check_vjp(
        [&](std::vector<Array> a) {
          return fast::rms_norm_add(a[2], a[0], a[1], {.eps = 1e-3f, .add_unit_offset = unit});
        },
        {xv, wv, rv}, {{3, 5}, {5}, {3, 5}}, "rms_norm_add");
  check_vjp([&](std::vector<Array> a) { return fast::rms_norm_add(a[1], a[0], std::nullopt); },
            {xv, rv}, {{3, 5}, {3, 5}}, "rms_norm_add without weight");
}

TEST(FastLayerNorm, MatchesNaiveAndReference) {
  const std::vector<Shape> shapes{{1, 2}, {7, 33}, {2, 3, 64}, {3, 1030}};
  uint32_t seed = 100;
  for (Dtype t : kDtypes)
    for (const Shape& sh : shapes)
      for (Layout lay : kAllLayouts)
        for (int variant = 0; variant < 4; ++variant) {
          const int64_t E = sh.back();
          auto xv = random_values(shape_size(sh), t, seed++);
          auto wv = random_values(E, t, seed++, -2, 2);
          auto bv = random_values(E, t, seed++, -2, 2);
          Array x = make_array(xv, sh, t, lay);
          std::optional<Array> w, b;
          if (variant & 1) w = Array(wv, {E}, t);
          if (variant & 2) b = Array(bv, {E}, t);
          std::string what = std::string(dtype_name(t)) + " " + shape_str(sh) + " " +
                             layout_name(lay) + " variant " + std::to_string(variant);
          auto want = naive_ln(xv, w ? &wv : nullptr, b ? &bv : nullptr, E, double(1e-5f), t);
          expect_norm_close(fast::layer_norm(x, w, b), want, t, what);
          expect_norm_close(fast::ref::layer_norm(x, w, b), want, t, what + " (ref)");
        }
}

TEST(FastLayerNorm, Errors) {
  expect_error<InvalidArgument>(
      [&] {
        fast::layer_norm(zeros({2, 8}), std::nullopt, zeros({9}));
      },
      "[layer_norm] bias must have shape [8] to match x [2, 8], got [9]");
  expect_error<InvalidArgument>([&] { fast::layer_norm(Array(1.0f), std::nullopt, std::nullopt); },
                                "[layer_norm] x must have at least one dimension");
}

TEST(FastNormVjp, MatchesFiniteDifferences) {
  auto xv = random_values(3 * 5, float64, 11), wv = random_values(5, float64, 12),
       bv = random_values(5, float64, 13);
  for (bool unit : {false, true})
    check_vjp(
        [&](std::vector<Array> a) {
          return fast::rms_norm(a[0], a[1], {.eps = 1e-3f, .add_unit_offset = unit});
        },
        {xv, wv}, {{3, 5}, {5}}, "rms_norm");
  check_vjp([&](std::vector<Array> a) { return fast::rms_norm(a[0], std::nullopt); }, {xv},
            {{3, 5}}, "rms_norm without weight");
  check_vjp([&](std::vector<Array> a) { return fast::layer_norm(a[0], a[1], a[2]); }, {xv, wv, bv},
            {{3, 5}, {5}, {5}}, "layer_norm");
  check_vjp([&](std::vector<Array> a) { return fast::layer_norm(a[0], std::nullopt, a[1]); },
            {xv, bv}, {{3, 5}, {5}}, "layer_norm bias only");
}

// ---- RmsNormGrad: rms_norm's x gradient in one pass a row ----

// dx = r * (gw - n * mean(gw * n)) in float64, n = x r, gw = g w, rounded to t.
std::vector<double> naive_rms_dx(const std::vector<double>& x, const std::vector<double>& g,
                                 const std::vector<double>* w, int64_t E, double eps,
                                 bool unit_offset, Dtype t) {
  std::vector<double> dx(x.size());
  for (size_t r = 0; r < x.size() / E; ++r) {
    const double* xr = &x[r * E];
    double ss = 0, dot = 0;
    for (int64_t i = 0; i < E; ++i) ss += xr[i] * xr[i];
    const double inv = 1.0 / std::sqrt(ss / E + eps);
    auto gw = [&](int64_t i) {
      return g[r * E + i] * (w ? (*w)[i] + (unit_offset ? 1.0 : 0.0) : 1.0);
    };
    for (int64_t i = 0; i < E; ++i) dot += gw(i) * xr[i] * inv;
    for (int64_t i = 0; i < E; ++i)
      dx[r * E + i] = round_to(inv * (gw(i) - xr[i] * inv * dot / E), t);
  }
  return dx;
}

/// The x gradient of rms_norm(x, w, o) for cotangent g, through whichever path
/// INGOT_FUSED_NORM_GRAD selects ("0": the composition).
Array rms_norm_dx(const Array& x, const std::optional<Array>& w, const Array& g,
                  const fast::RmsNormOptions& o, const char* fused) {
  setenv("INGOT_FUSED_NORM_GRAD", fused, 1);
  auto res = vjp(
      [&](const std::vector<Array>& a) { return std::vector<Array>{fast::rms_norm(a[0], w, o)}; },
      {x}, {g});
  unsetenv("INGOT_FUSED_NORM_GRAD");
  return res.second[0];
}

TEST(FastRmsNormGrad, MatchesNaiveOnEveryDtypeAndLayout) {
  const std::vector<Shape> shapes{{1, 1}, {7, 33}, {2, 3, 64}, {3, 1030}, {2, 2056}};
  uint32_t seed = 100;
  for (Dtype t : kDtypes)
    for (const Shape& sh : shapes)
      for (Layout lay : {Layout::contiguous, Layout::transposed, Layout::sliced})
        for (int variant = 0; variant < 3; ++variant) {
          const int64_t E = sh.back();
          auto xv = random_values(shape_size(sh), t, seed++);
          auto gv = random_values(shape_size(sh), t, seed++);
          auto wv = random_values(E, t, seed++, -2, 2);
          Array x = make_array(xv, sh, t, lay), g = make_array(gv, sh, t, Layout::contiguous);
          std::optional<Array> w;
          if (variant > 0) w = Array(wv, {E}, t);
          const fast::RmsNormOptions o{.eps = 1e-5f, .add_unit_offset = variant == 2};
          const std::string what = std::string(dtype_name(t)) + " " + shape_str(sh) + " " +
                                   layout_name(lay) + " variant " + std::to_string(variant);
          Array dx = rms_norm_dx(x, w, g, o, "1");
          ASSERT_TRUE(dx.has_primitive()) << what;
          EXPECT_STREQ(dx.primitive().name(), "RmsNormGrad") << what;
          auto want =
              naive_rms_dx(xv, gv, variant > 0 ? &wv : nullptr, E, double{1e-5f}, variant == 2, t);
          // |dx| reaches ~10 here; the float32 sums cost a few ulps of float32 on top of the
          // one rounding to t.
          const double tol = t == float64 ? 1e-12 : 4 * eps_of(t) + 2e-5;
          expect_close(values_of(dx), want, tol, tol, what);
          expect_close(values_of(rms_norm_dx(x, w, g, o, "0")), want, tol, tol,
                       what + " (composition)");
        }
}

TEST(FastRmsNormGrad, StridedCotangentAndDonation) {
  auto xv = random_values(6 * 40, bfloat16, 1), gv = random_values(6 * 40, bfloat16, 2);
  Array x(xv, {6, 40}, bfloat16);
  Array g = make_array(gv, {6, 40}, bfloat16, Layout::transposed);
  const fast::RmsNormOptions o{.eps = 1e-6f};
  auto want = naive_rms_dx(xv, gv, nullptr, 40, double{1e-6f}, false, bfloat16);
  expect_close(values_of(rms_norm_dx(x, std::nullopt, g, o, "1")), want, 4 * eps_of(bfloat16),
               4 * eps_of(bfloat16), "transposed cotangent");
  // A cotangent held nowhere else gives its buffer to dx; x is left as it was.
  Array dx = rms_norm_dx(x, std::nullopt, Array(gv, {6, 40}, bfloat16), o, "1");
  expect_close(values_of(dx), want, 4 * eps_of(bfloat16), 4 * eps_of(bfloat16), "donated");
  expect_close(values_of(x), xv, 0, 0, "x intact");
}

TEST(FastRmsNormGrad, SecondOrderEqualsTheComposition) {
  auto xv = random_values(4 * 9, float64, 21), wv = random_values(9, float64, 22),
       gv = random_values(4 * 9, float64, 23), hv = random_values(4 * 9, float64, 24);
  const Array x(xv, {4, 9}, float64), w(wv, {9}, float64), g(gv, {4, 9}, float64),
      h(hv, {4, 9}, float64);
  const fast::RmsNormOptions o{.eps = 1e-3f, .add_unit_offset = true};
  // d/d(x, w, g) of sum(dx * h), dx the first-order x gradient.
  auto second = [&](const char* fused) {
    setenv("INGOT_FUSED_NORM_GRAD", fused, 1);
    auto f = [&](const std::vector<Array>& a) {
      auto inner = [&](const std::vector<Array>& b) {
        return std::vector<Array>{fast::rms_norm(b[0], b[1], o)};
      };
      const Array dx = vjp(inner, {a[0], a[1]}, {a[2]}).second[0];
      return std::vector<Array>{sum(dx * h)};
    };
    auto res = vjp(f, {x, w, g}, {Array(1.0, float64)}).second;
    unsetenv("INGOT_FUSED_NORM_GRAD");
    return res;
  };
  const auto fused = second("1"), composed = second("0");
  ASSERT_EQ(fused.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    expect_close(values_of(fused[i]), values_of(composed[i]), 1e-12, 1e-10,
                 "second order, input " + std::to_string(i));
}

TEST(FastRmsNormLinear, EqualsNormThenMatmul) {
  // One primitive, the same numbers as rms_norm then x @ w^T (bit for bit on the CPU, which
  // runs the two kernels), on every float dtype, weight mode, and a row count around the
  // GPU's few-row limit; and a float64 naive check of the composition.
  uint32_t seed = 900;
  for (Dtype t : kDtypes)
    for (int64_t rows : {1, 8, 9})
      for (int mode = 0; mode < 3; ++mode) {
        const int64_t E = 48, N = 10;
        const fast::RmsNormOptions o{
            .eps = 1e-5f, .add_unit_offset = mode == 2, .weight_in_float32 = mode != 1};
        const Array x(random_values(rows * E, float64, seed++), {1, rows, E}, t);
        const Array w(random_values(N * E, float64, seed++), {N, E}, t);
        std::optional<Array> nw;
        if (mode > 0) nw = Array(random_values(E, float64, seed++), {E}, t);
        const std::string what = fmt::format("{} rows {} mode {}", dtype_name(t), rows, mode);
        const Array got = fast::rms_norm_linear(x, nw, w, o);
        ASSERT_EQ(got.shape(), (Shape{1, rows, N})) << what;
        EXPECT_EQ(got.dtype(), t) << what;
        expect_close(values_of(got), values_of(matmul(fast::rms_norm(x, nw, o), transpose(w))), 0,
                     0, what);
        // float64 reference: the normalised rows rounded to t, products summed in float64.
        const auto xv = values_of(x), wv = values_of(w);
        std::vector<double> nwv;
        if (nw) nwv = values_of(*nw);
        const auto n = naive_rms(xv, nw ? &nwv : nullptr, E, o, t);
        std::vector<double> want(static_cast<size_t>(rows * N));
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < N; ++j) {
            double acc = 0;
            for (int64_t k = 0; k < E; ++k) acc += n[r * E + k] * wv[j * E + k];
            want[r * N + j] = round_to(acc, t);
          }
        const double tol = t == float64 ? 1e-12 : 8 * eps_of(t) + 1e-5;
        expect_close(values_of(got), want, tol, tol, what + " vs float64");
        expect_close(values_of(got), values_of(fast::ref::rms_norm_linear(x, nw, w, o)), tol, tol,
                     what + " vs ref");
      }
}

TEST(FastRmsNormLinear, ErrorsAndGradients) {
  expect_error<InvalidArgument>(
      [&] {
        fast::rms_norm_linear(zeros({2, 8}), std::nullopt, zeros({4, 9}));
      },
      "[rms_norm_linear] w must be a Linear weight [N, E] with E = 8");
  expect_error<InvalidArgument>(
      [&] {
        fast::rms_norm_linear(zeros({2, 8}), std::nullopt, zeros({4, 8}, bfloat16));
      },
      "[rms_norm_linear] w must have x's dtype float32, got bfloat16");
  // VJP against finite differences for x, the norm weight and w.
  auto xv = random_values(3 * 5, float64, 21), nv = random_values(5, float64, 22),
       wv = random_values(4 * 5, float64, 23);
  const std::vector<Shape> shapes{{3, 5}, {5}, {4, 5}};
  for (bool unit : {false, true}) {
    const auto f = [&](std::vector<Array> a) {
      return fast::rms_norm_linear(a[0], a[1], a[2], {.eps = 1e-3f, .add_unit_offset = unit});
    };
    std::vector<Array> in;
    for (size_t i = 0; i < 3; ++i)
      in.emplace_back(std::vector<double>(i == 0 ? xv : i == 1 ? nv : wv), shapes[i], float64);
    const auto g = random_values(3 * 4, float64, 77);
    const auto [outs, grads] =
        vjp([&](const std::vector<Array>& a) { return std::vector<Array>{f(a)}; }, in,
            {Array(g, {3, 4}, float64)});
    for (size_t i = 0; i < 3; ++i)
      expect_close(values_of(grads[i]), finite_diff(f, {xv, nv, wv}, shapes, g, i), 1e-5, 1e-6,
                   fmt::format("rms_norm_linear unit {} input {}", unit, i));
  }
}

double naive_act(double g, fast::GatedActivation a) {
  switch (a) {
    case fast::GatedActivation::silu:
      return g / (1.0 + std::exp(-g));
    case fast::GatedActivation::gelu:
      return 0.5 * g * std::erfc(-g / std::sqrt(2.0));
    case fast::GatedActivation::gelu_tanh:
      return 0.5 * g * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g)));
  }
  return 0;
}

Array act_of(const Array& g, fast::GatedActivation a) {
  return a == fast::GatedActivation::silu   ? silu(g)
         : a == fast::GatedActivation::gelu ? gelu(g)
                                            : gelu_tanh(g);
}

TEST(FastRmsNormGlu, EqualsTheSeparateOps) {
  // One primitive, the same numbers as rms_norm_linear, then act of the gate columns times the
  // up columns (bit for bit on the CPU, which runs the separate kernels), for every activation,
  // float dtype, norm weight mode and rows around the GPU's few-row limit; and a float64 naive
  // check of the composition.
  uint32_t seed = 1900;
  const fast::GatedActivation acts[] = {fast::GatedActivation::silu, fast::GatedActivation::gelu,
                                        fast::GatedActivation::gelu_tanh};
  for (Dtype t : kDtypes)
    for (fast::GatedActivation a : acts)
      for (int64_t rows : {1, 8, 9})
        for (int mode = 0; mode < 3; ++mode) {
          const int64_t E = 48, I = 10;
          const fast::RmsNormOptions o{
              .eps = 1e-5f, .add_unit_offset = mode == 2, .weight_in_float32 = mode != 1};
          const Array x(random_values(rows * E, float64, seed++), {1, rows, E}, t);
          const Array w(random_values(2 * I * E, float64, seed++), {2 * I, E}, t);
          std::optional<Array> nw;
          if (mode > 0) nw = Array(random_values(E, float64, seed++), {E}, t);
          const std::string what = fmt::format("{} act {} rows {} mode {}", dtype_name(t),
                                               static_cast<int>(a), rows, mode);
          const Array got = fast::rms_norm_glu(x, nw, w, a, o);
          ASSERT_EQ(got.shape(), (Shape{1, rows, I})) << what;
          EXPECT_EQ(got.dtype(), t) << what;
          const Array y = fast::rms_norm_linear(x, nw, w, o);
          const Array sep =
              act_of(slice(y, {0, 0, 0}, {1, rows, I}), a) * slice(y, {0, 0, I}, {1, rows, 2 * I});
          expect_close(values_of(got), values_of(sep), 0, 0, what);
          // float64: the normalised rows, the products, act and the multiply rounded to t.
          // An error e in a product moves the output by about |act'| e (gate) or |act(g)| e
          // (up), so each element's limit scales with its products' sums of |terms|.
          const auto xv = values_of(x), wv = values_of(w);
          std::vector<double> nwv;
          if (nw) nwv = values_of(*nw);
          const auto n = naive_rms(xv, nw ? &nwv : nullptr, E, o, t);
          auto dot = [&](int64_t r, int64_t j, bool magnitude) {
            double acc = 0;
            for (int64_t k = 0; k < E; ++k)
              acc += magnitude ? std::fabs(n[r * E + k] * wv[j * E + k])
                               : n[r * E + k] * wv[j * E + k];
            return magnitude ? acc : round_to(acc, t);
          };
          const double tol = t == float64 ? 1e-12 : 16 * eps_of(t) + 1e-6;
          const auto gv = values_of(got), rv = values_of(fast::ref::rms_norm_glu(x, nw, w, a, o));
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < I; ++j) {
              const double g = dot(r, j, false), u = dot(r, I + j, false);
              const double ag = round_to(naive_act(g, a), t);
              const double want = round_to(ag * u, t);
              const double lim = tol * (std::fabs(want) + 1.2 * std::fabs(u) * dot(r, j, true) +
                                        std::fabs(ag) * dot(r, I + j, true));
              const size_t e = static_cast<size_t>(r * I + j);
              EXPECT_NEAR(gv[e], want, lim) << what << " vs float64 at " << e;
              EXPECT_NEAR(gv[e], rv[e], lim) << what << " vs ref at " << e;
            }
        }
}

TEST(FastRmsNormAddLinear, EqualsTheSeparateOps) {
  // {h, product} equals rms_norm_add then rms_norm_linear / rms_norm_glu bit for bit (the CPU
  // runs the separate kernels), every float dtype, both norms' weight modes, with and without
  // the GLU, rows around the GPU's few-row limit; errors as the separate ops'.
  uint32_t seed = 2100;
  for (Dtype t : kDtypes)
    for (int64_t rows : {1, 8, 9})
      for (int mode = 0; mode < 3; ++mode)
        for (bool glu : {false, true}) {
          const int64_t E = 48, N = 20;
          const fast::RmsNormOptions po{.eps = 1e-6f, .add_unit_offset = mode == 2};
          const fast::RmsNormOptions o{
              .eps = 1e-5f, .add_unit_offset = mode == 2, .weight_in_float32 = mode != 1};
          const Array res(random_values(rows * E, float64, seed++), {1, rows, E}, t);
          const Array y(random_values(rows * E, float64, seed++), {1, rows, E}, t);
          const Array w(random_values(N * E, float64, seed++), {N, E}, t);
          std::optional<Array> pw, nw;
          if (mode > 0) {
            pw = Array(random_values(E, float64, seed++), {E}, t);
            nw = Array(random_values(E, float64, seed++), {E}, t);
          }
          const std::string what =
              fmt::format("{} rows {} mode {} glu {}", dtype_name(t), rows, mode, glu);
          std::optional<fast::GatedActivation> act;
          if (glu) act = fast::GatedActivation::gelu_tanh;
          const std::vector<Array> got = fast::rms_norm_add_linear(res, y, pw, po, nw, w, o, act);
          ASSERT_EQ(got.size(), 2u) << what;
          const Array h = fast::rms_norm_add(res, y, pw, po);
          const Array p =
              glu ? fast::rms_norm_glu(h, nw, w, *act, o) : fast::rms_norm_linear(h, nw, w, o);
          ASSERT_EQ(got[0].shape(), h.shape()) << what;
          ASSERT_EQ(got[1].shape(), p.shape()) << what;
          EXPECT_EQ(got[1].dtype(), t) << what;
          expect_close(values_of(got[0]), values_of(h), 0, 0, what + " h");
          expect_close(values_of(got[1]), values_of(p), 0, 0, what + " product");
        }
  expect_error<InvalidArgument>(
      [&] {
        fast::rms_norm_add_linear(zeros({2, 8}), zeros({2, 7}), std::nullopt, {}, std::nullopt,
                                  zeros({4, 8}), {});
      },
      "[rms_norm_add]");
  expect_error<InvalidArgument>(
      [&] {
        fast::rms_norm_add_linear(zeros({2, 8}), zeros({2, 8}), std::nullopt, {}, std::nullopt,
                                  zeros({5, 8}), {}, fast::GatedActivation::silu);
      },
      "[rms_norm_glu] w must be stacked gate|up Linear weights [2I, E] with E = 8");
}

TEST(FastRmsNormGlu, ErrorsAndGradients) {
  const auto silu_act = fast::GatedActivation::silu;
  expect_error<InvalidArgument>(
      [&] {
        fast::rms_norm_glu(zeros({2, 8}), std::nullopt, zeros({5, 8}), silu_act);
      },
      "[rms_norm_glu] w must be stacked gate|up Linear weights [2I, E] with E = 8");
  expect_error<InvalidArgument>(
      [&] {
        fast::rms_norm_glu(zeros({2, 8}), std::nullopt, zeros({4, 9}), silu_act);
      },
      "got [4, 9]");
  expect_error<InvalidArgument>(
      [&] {
        fast::rms_norm_glu(zeros({2, 8}), std::nullopt, zeros({4, 8}, bfloat16), silu_act);
      },
      "[rms_norm_glu] w must have x's dtype float32, got bfloat16");
  expect_error<InvalidArgument>(
      [&] {
        fast::rms_norm_glu(zeros({2, 8}, int32), std::nullopt, zeros({4, 8}, int32), silu_act);
      },
      "[rms_norm_glu] x must be a floating-point array");
  // VJP against finite differences for x, the norm weight and w, every activation.
  const std::vector<Shape> shapes{{3, 5}, {5}, {6, 5}};
  std::vector<std::vector<double>> vals;
  for (uint32_t i = 0; i < 3; ++i)
    vals.push_back(random_values(static_cast<size_t>(shape_size(shapes[i])), float64, 31 + i));
  for (auto a : {fast::GatedActivation::silu, fast::GatedActivation::gelu,
                 fast::GatedActivation::gelu_tanh}) {
    const auto f = [&](std::vector<Array> in) {
      return fast::rms_norm_glu(in[0], in[1], in[2], a, {.eps = 1e-3f});
    };
    std::vector<Array> in;
    for (size_t i = 0; i < 3; ++i)
      in.emplace_back(std::vector<double>(vals[i]), shapes[i], float64);
    const auto g = random_values(3 * 3, float64, 78);
    const auto [outs, grads] =
        vjp([&](const std::vector<Array>& x) { return std::vector<Array>{f(x)}; }, in,
            {Array(g, {3, 3}, float64)});
    for (size_t i = 0; i < 3; ++i)
      expect_close(values_of(grads[i]), finite_diff(f, vals, shapes, g, i), 1e-5, 1e-6,
                   fmt::format("rms_norm_glu act {} input {}", static_cast<int>(a), i));
  }
}

}  // namespace
}  // namespace ingot::test
