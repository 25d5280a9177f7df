// fast::lora_branch on the CPU backend: the output and every gradient against float64 loops
// and against the composition it replaces (fast::ref::lora_branch), every float dtype of x/y,
// ranks 1..64, a column block of a stacked output as y, zero-size rows; argument errors.
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/fast/lora.h"
#include "core/primitives/fast_lora.h"
#include "core/test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

const Dtype kDtypes[] = {float32, bfloat16, float16};

struct Case {
  int64_t rows, k, n, r;
};

/// Float64 loops: out = y + s (x a^T) b^T; dx = dt a, da = dt^T x, db = s g^T t with
/// t = x a^T and dt = s g b.
struct Ref {
  std::vector<double> out, dx, da, db;
};

Ref reference(const std::vector<double>& y, const std::vector<double>& x,
              const std::vector<double>& a, const std::vector<double>& b,
              const std::vector<double>& g, const Case& c, double s) {
  const auto M = static_cast<size_t>(c.rows), K = static_cast<size_t>(c.k),
             N = static_cast<size_t>(c.n), R = static_cast<size_t>(c.r);
  std::vector<double> t(M * R, 0.0), dt(M * R, 0.0);
  for (size_t m = 0; m < M; ++m)
    for (size_t j = 0; j < R; ++j) {
      for (size_t q = 0; q < K; ++q) t[m * R + j] += x[m * K + q] * a[j * K + q];
      for (size_t q = 0; q < N; ++q) dt[m * R + j] += s * g[m * N + q] * b[q * R + j];
    }
  Ref ref{y, std::vector<double>(M * K, 0.0), std::vector<double>(R * K, 0.0),
          std::vector<double>(N * R, 0.0)};
  for (size_t m = 0; m < M; ++m)
    for (size_t j = 0; j < R; ++j) {
      for (size_t q = 0; q < N; ++q) {
        ref.out[m * N + q] += s * t[m * R + j] * b[q * R + j];
        ref.db[q * R + j] += s * g[m * N + q] * t[m * R + j];
      }
      for (size_t q = 0; q < K; ++q) {
        ref.dx[m * K + q] += dt[m * R + j] * a[j * K + q];
        ref.da[j * K + q] += dt[m * R + j] * x[m * K + q];
      }
    }
  return ref;
}

/// |got - want| within the output dtype's rounding of want plus float32 sums over `terms`
/// products of magnitude `mag` each.
void expect_rounded(const Array& got, const std::vector<double>& want, Dtype t, double mag,
                    int64_t terms, const std::string& what) {
  ASSERT_EQ(got.dtype(), t) << what;
  const double sums = 4.0 * static_cast<double>(terms) * std::ldexp(1.0, -24) * mag;
  expect_close(values_of(got), want, eps_of(t) * 1.01, sums + 1e-30, what);
}

}  // namespace

TEST(FastLora, OutputAndGradientsMatchFloat64) {
  const Case cases[] = {
      {1, 1, 1, 1}, {5, 12, 7, 3}, {33, 70, 130, 16}, {9, 64, 40, 17}, {4, 24, 20, 64}};
  uint32_t seed = 11;
  for (const Case& c : cases)
    for (Dtype yt : kDtypes)
      for (Dtype xt : kDtypes) {
        const std::string what = fmt::format("rows {} k {} n {} r {} y {} x {}", c.rows, c.k, c.n,
                                             c.r, dtype_name(yt), dtype_name(xt));
        std::vector<double> yv = random_values(c.rows * c.n, yt, seed++, -2, 2);
        std::vector<double> xv = random_values(c.rows * c.k, xt, seed++, -2, 2);
        std::vector<double> av = random_values(c.r * c.k, float32, seed++, -0.5, 0.5);
        std::vector<double> bv = random_values(c.n * c.r, float32, seed++, -0.5, 0.5);
        std::vector<double> gv = random_values(c.rows * c.n, yt, seed++, -1, 1);
        const double s = 0.75;
        const Ref ref = reference(yv, xv, av, bv, gv, c, s);
        Array y(yv, {c.rows, c.n}, yt), x(xv, {c.rows, c.k}, xt), a(av, {c.r, c.k}, float32),
            b(bv, {c.n, c.r}, float32), g(gv, {c.rows, c.n}, yt);
        auto [outs, grads] = vjp(
            [&](const std::vector<Array>& in) {
              return std::vector<Array>{fast::lora_branch(in[0], in[1], in[2], in[3], 0.75f)};
            },
            {y, x, a, b}, {g});
        // |t| <= 2 k / 2, |b| <= 0.5: bounds of each sum's terms.
        const double tmag = static_cast<double>(c.k), dtmag = 0.5 * static_cast<double>(c.n);
        expect_rounded(outs[0], ref.out, yt, tmag, c.k + c.r, what + " out");
        EXPECT_EQ(values_of(grads[0]), gv) << what << " dy";
        expect_rounded(grads[1], ref.dx, xt, dtmag, c.n + c.r, what + " dx");
        expect_rounded(grads[2], ref.da, float32, 2 * dtmag, c.rows + c.n, what + " da");
        expect_rounded(grads[3], ref.db, float32, tmag, c.rows + c.k, what + " db");
      }
}

TEST(FastLora, EqualsTheCompositionOnAStackedColumnBlock) {
  // y: the middle 24 columns of a [2, 3, 64] stacked product; x: [2, 3, 40] bf16.
  Array stacked(random_values(2 * 3 * 64, bfloat16, 5), {2, 3, 64}, bfloat16);
  Array y = slice(stacked, {0, 0, 16}, {2, 3, 40});
  Array x(random_values(2 * 3 * 40, bfloat16, 6), {2, 3, 40}, bfloat16);
  Array a(random_values(8 * 40, float32, 7, -0.3, 0.3), {8, 40}, float32);
  Array b(random_values(24 * 8, float32, 8, -0.3, 0.3), {24, 8}, float32);
  Array g(random_values(2 * 3 * 24, bfloat16, 9, -1, 1), {2, 3, 24}, bfloat16);
  auto run = [&](bool fused) {
    return vjp(
        [&](const std::vector<Array>& in) {
          return std::vector<Array>{fused
                                        ? fast::lora_branch(in[0], in[1], in[2], in[3], 2.0f)
                                        : fast::ref::lora_branch(in[0], in[1], in[2], in[3], 2.0f)};
        },
        {y, x, a, b}, {g});
  };
  auto [fo, fg] = run(true);
  auto [ro, rg] = run(false);
  ASSERT_EQ(fo[0].shape(), (Shape{2, 3, 24}));
  // Both round float32 values to bf16: equal, or one bf16 ulp apart where the float32 sums,
  // in different orders, fall on either side of a rounding boundary.
  expect_close(values_of(fo[0]), values_of(ro[0]), eps_of(bfloat16) * 2.02, 0, "out");
  EXPECT_EQ(values_of(fg[0]), values_of(rg[0])) << "dy";
  expect_close(values_of(fg[1]), values_of(rg[1]), eps_of(bfloat16) * 2.02, 1e-6, "dx");
  expect_close(values_of(fg[2]), values_of(rg[2]), 1e-5, 1e-5, "da");
  expect_close(values_of(fg[3]), values_of(rg[3]), 1e-5, 1e-5, "db");
}

TEST(FastLora, BackwardTakesTheForwardsProductInsteadOfRecomputingIt) {
  // The VJP's LoraBranchGrad reads t = x a^T from the forward (its fifth input, the forward
  // node's second output) rather than reading x again; the gradients are those of a backward
  // that recomputes t (the forward evaluated and detached before the VJP is built: t is then
  // gone and the VJP must fall back) bit for bit.
  Array y(random_values(6 * 20, bfloat16, 21), {6, 20}, bfloat16);
  Array x(random_values(6 * 12, bfloat16, 22), {6, 12}, bfloat16);
  Array a(random_values(4 * 12, float32, 23, -0.5, 0.5), {4, 12}, float32);
  Array b(random_values(20 * 4, float32, 24, -0.5, 0.5), {20, 4}, float32);
  Array g(random_values(6 * 20, bfloat16, 25, -1, 1), {6, 20}, bfloat16);
  Array out = fast::lora_branch(y, x, a, b, 0.5f);
  std::vector<Array> grads =
      out.primitive().vjp({y, x, a, b}, {g, zeros({6, 4}, float32)}, {1, 2, 3}, out.outputs());
  ASSERT_EQ(grads.size(), 3u);
  ASSERT_TRUE(grads[0].has_primitive());
  const std::vector<Array>& in = grads[0].inputs();
  ASSERT_EQ(in.size(), 5u) << grads[0].primitive().name();
  EXPECT_TRUE(in[4].same_node(out.outputs()[1])) << "t is the forward's second output";
  EXPECT_EQ(in[4].shape(), (Shape{6, 4}));

  // The same gradients bit for bit from a LoraBranchGrad without t (it recomputes x a^T, as
  // under INGOT_LORA_KEEP_PRODUCT=0).
  std::vector<Array> recomputed = Array::make_arrays(
      {x.shape(), a.shape(), b.shape()}, {x.dtype(), float32, float32},
      std::make_shared<LoraBranchGrad>(out.primitive().stream(), 0.5f), {g, x, a, b});
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(values_of(grads[i]), values_of(recomputed[i])) << "gradient " << i;
}

TEST(FastLora, ZeroRows) {
  Array y = zeros({0, 6}, bfloat16), x = zeros({0, 5}, bfloat16);
  Array a(random_values(4 * 5, float32, 1), {4, 5}, float32);
  Array b(random_values(6 * 4, float32, 2), {6, 4}, float32);
  auto [outs, grads] = vjp(
      [&](const std::vector<Array>& in) {
        return std::vector<Array>{fast::lora_branch(in[0], in[1], in[2], in[3], 1.0f)};
      },
      {y, x, a, b}, {zeros({0, 6}, bfloat16)});
  EXPECT_EQ(outs[0].shape(), (Shape{0, 6}));
  EXPECT_EQ(values_of(grads[2]), std::vector<double>(20, 0.0));
  EXPECT_EQ(values_of(grads[3]), std::vector<double>(24, 0.0));
}

TEST(FastLora, Errors) {
  Array y = zeros({3, 6}, bfloat16), x = zeros({3, 5}, bfloat16);
  Array a = zeros({4, 5}, float32), b = zeros({6, 4}, float32);
  expect_error<InvalidArgument>([&] { fast::lora_branch(y, x, astype(a, bfloat16), b, 1.0f); },
                                "factors must be float32");
  expect_error<InvalidArgument>(
      [&] {
        fast::lora_branch(y, x, zeros({4, 6}, float32), b, 1.0f);
      },
      "do not fit");
  expect_error<InvalidArgument>(
      [&] {
        fast::lora_branch(y, zeros({2, 5}, bfloat16), a, b, 1.0f);
      },
      "leading axes");
  expect_error<InvalidArgument>(
      [&] {
        fast::lora_branch(y, zeros({3, 5}, int32), a, b, 1.0f);
      },
      "float32, bfloat16 or float16");
  expect_error<Unsupported>(
      [&] {
        fast::lora_branch(y, x, zeros({65, 5}, float32), zeros({6, 65}, float32), 1.0f);
      },
      "rank 65");
  // Second-order gradients through the fused backward name the switch.
  expect_error<Unsupported>(
      [&] {
        auto inner = [&](const std::vector<Array>& in) {
          Array o = fast::lora_branch(y, x, in[0], b, 1.0f);
          return std::vector<Array>{sum(astype(o, float32))};
        };
        auto outer = [&](const std::vector<Array>& in) {
          return std::vector<Array>{sum(grad(inner, {0})(in)[0])};
        };
        eval({grad(outer, {0})({a})[0]});
      },
      "INGOT_FUSED_LORA=0");
}

// The switch nn reads: unset or empty means CUDA only, "0" never, anything else everywhere.
TEST(FastLora, SwitchIsOnByDefaultOnCudaOnly) {
  const Device gpu{Device::Type::cuda, 1};
  const char* before = std::getenv("INGOT_FUSED_LORA");
  const std::string saved = before ? before : "";
  unsetenv("INGOT_FUSED_LORA");
  EXPECT_FALSE(fast::lora_branch_enabled(cpu_device));
  EXPECT_TRUE(fast::lora_branch_enabled(gpu));
  setenv("INGOT_FUSED_LORA", "", 1);
  EXPECT_FALSE(fast::lora_branch_enabled(cpu_device));
  EXPECT_TRUE(fast::lora_branch_enabled(gpu));
  setenv("INGOT_FUSED_LORA", "0", 1);
  EXPECT_FALSE(fast::lora_branch_enabled(cpu_device));
  EXPECT_FALSE(fast::lora_branch_enabled(gpu));
  setenv("INGOT_FUSED_LORA", "1", 1);
  EXPECT_TRUE(fast::lora_branch_enabled(cpu_device));
  EXPECT_TRUE(fast::lora_branch_enabled(gpu));
  if (before)
    setenv("INGOT_FUSED_LORA", saved.c_str(), 1);
  else
    unsetenv("INGOT_FUSED_LORA");
}
