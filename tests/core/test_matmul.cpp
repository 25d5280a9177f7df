// matmul / addmm against float64 naive loops: decode and GEMM shapes, every float dtype, every
// ISA path the CPU has, transposed/sliced/broadcast operands, batch broadcasting, 1-d operands,
// errors; the decode GEMV's bytes equal at 1, 2 and 3 threads.
#include <cstdlib>
#include <string>

#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/gemm_kernels.h"
#include "core/primitives/linalg.h"
#include "test_util.h"
#include "util/thread_pool.h"

namespace ingot {
namespace {

using test::Layout;

/// Caps the kernels at one ISA for the scope's lifetime.
struct IsaScope {
  explicit IsaScope(const char* isa) { setenv("INGOT_CPU_ISA", isa, 1); }
  ~IsaScope() { unsetenv("INGOT_CPU_ISA"); }
};

std::vector<const char*> isas() {
  std::vector<const char*> r{"portable"};
  if (cpu::hardware_isa() >= cpu::Isa::avx2) r.push_back("avx2");
  if (cpu::hardware_isa() >= cpu::Isa::avx512) r.push_back("avx512");
  return r;
}

/// NumPy matmul in float64: result values and, per element, sum_k |a_k * b_k| (the scale of
/// the rounding error).
struct Ref {
  Shape shape;
  std::vector<double> v, absdot;
};
Ref ref_matmul(const std::vector<double>& a, Shape as, const std::vector<double>& b, Shape bs) {
  const bool a1 = as.size() == 1, b1 = bs.size() == 1;
  if (a1) as.insert(as.begin(), 1);
  if (b1) bs.push_back(1);
  const int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
  Shape ba(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  const size_t nb = std::max(ba.size(), bb.size());
  while (ba.size() < nb) ba.insert(ba.begin(), 1);
  while (bb.size() < nb) bb.insert(bb.begin(), 1);
  Shape batch(nb);
  for (size_t d = 0; d < nb; ++d) batch[d] = std::max(ba[d], bb[d]);
  Ref r;
  const int64_t nbatch = shape_size(batch);
  for (int64_t i = 0; i < nbatch; ++i) {
    int64_t rem = i, oa = 0, ob = 0, sa = 1, sb = 1;
    for (int d = static_cast<int>(nb) - 1; d >= 0; --d) {
      int64_t idx = rem % batch[d];
      rem /= batch[d];
      oa += (ba[d] == 1 ? 0 : idx) * sa;
      ob += (bb[d] == 1 ? 0 : idx) * sb;
      sa *= ba[d];
      sb *= bb[d];
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0, t = 0;
        for (int64_t k = 0; k < K; ++k) {
          double p = a[(oa * M + m) * K + k] * b[(ob * K + k) * N + n];
          s += p;
          t += std::abs(p);
        }
        r.v.push_back(s);
        r.absdot.push_back(t);
      }
  }
  r.shape = batch;
  if (!a1) r.shape.push_back(M);
  if (!b1) r.shape.push_back(N);
  return r;
}

/// Output tolerance: float32 accumulation error (~sqrt(K) ulps of sum |a b|) plus one rounding
/// of the result to a 16-bit dtype.
void expect_matches(const Array& got, const Ref& ref, int64_t k, const std::string& what,
                    const std::vector<double>* extra = nullptr, double extra_scale = 0) {
  ASSERT_EQ(got.shape(), ref.shape) << what;
  std::vector<double> g = got.to_vector<double>();
  ASSERT_EQ(g.size(), ref.v.size()) << what;
  const Dtype t = got.dtype();
  const double acc = t == float64 ? 1e-14 : 1e-6;
  const double out_round = (t == bfloat16 || t == float16) ? test::eps_of(t) : 0;
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    double want = ref.v[i], scale = ref.absdot[i];
    if (extra) {
      want += (*extra)[i];
      scale += std::abs(extra_scale * (*extra)[i]);
    }
    double tol =
        acc * std::sqrt(static_cast<double>(k) + 1) * scale + out_round * std::abs(want) + 1e-30;
    if (!(std::abs(g[i] - want) <= tol) && bad++ < 5)
      ADD_FAILURE() << what << " at " << i << ": got " << g[i] << " want " << want << " tol "
                    << tol;
  }
}

std::string tag(Dtype t, const char* isa, const Shape& as, const Shape& bs) {
  return fmt::format("{} {} {} @ {}", dtype_name(t), isa, shape_str(as), shape_str(bs));
}

/// a [M, K] @ b [K, N] with the given layouts, for every ISA.
void check_2d(int64_t M, int64_t K, int64_t N, Dtype t, Layout la = Layout::contiguous,
              Layout lb = Layout::contiguous, uint32_t seed = 1) {
  std::vector<double> av = test::random_values(M * K, t, seed, -2, 2);
  std::vector<double> bv = test::random_values(K * N, t, seed + 7, -2, 2);
  Array a = test::make_array(av, {M, K}, t, la);
  Array b = test::make_array(bv, {K, N}, t, lb);
  Ref ref = ref_matmul(av, {M, K}, bv, {K, N});
  for (const char* isa : isas()) {
    IsaScope scope(isa);
    std::string what = tag(t, isa, {M, K}, {K, N}) + " layouts " + test::layout_name(la) + "/" +
                       test::layout_name(lb);
    Array out = matmul(a, b);
    EXPECT_EQ(out.dtype(), t);
    expect_matches(out, ref, K, what);
  }
}

TEST(Matmul, ShapesEveryDtypeAndIsa) {
  const int64_t shapes[][3] = {
      {1, 64, 33}, {1, 1000, 7}, {7, 33, 5}, {33, 1000, 7}, {64, 64, 64}, {1, 300, 257}, {5, 40, 1},
      {3, 17, 70}, {9, 70, 130}, {1, 1, 1},  {2, 1, 3},     {1, 7, 1},    {3, 2048, 100}};
  for (Dtype t : test::kFloatDtypes)
    for (auto& s : shapes) check_2d(s[0], s[1], s[2], t);
}

TEST(Matmul, TransposedSlicedBroadcastOperands) {
  const int64_t shapes[][3] = {{1, 65, 37}, {7, 33, 5}, {6, 40, 70}, {1, 129, 1}};
  for (Dtype t : test::kFloatDtypes)
    for (auto& s : shapes)
      for (Layout la : test::kAllLayouts)
        for (Layout lb : test::kAllLayouts) check_2d(s[0], s[1], s[2], t, la, lb, 3);
}

TEST(Matmul, DecodeWithLinearWeight) {
  // x [1, K] @ W^T with W stored [N, K] (PyTorch Linear): the GEMV fast path.
  for (Dtype t : test::kFloatDtypes) {
    const int64_t K = 515, N = 67;
    std::vector<double> xv = test::random_values(K, t, 11), wv = test::random_values(N * K, t, 12);
    Array x = Array(xv, {1, K}, t);
    Array w = Array(wv, {N, K}, t);
    std::vector<double> wt(K * N);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) wt[k * N + n] = wv[n * K + k];
    Ref ref = ref_matmul(xv, {1, K}, wt, {K, N});
    for (const char* isa : isas()) {
      IsaScope scope(isa);
      expect_matches(matmul(x, transpose(w)), ref, K, tag(t, isa, {1, K}, {K, N}) + " W^T");
    }
  }
}

TEST(Matmul, BatchBroadcasting) {
  struct Case {
    Shape a, b;
  };
  const Case cases[] = {{{2, 1, 5, 9}, {3, 9, 4}}, {{4, 6, 17}, {17, 8}},
                        {{6, 17}, {3, 17, 8}},     {{3, 1, 20}, {3, 20, 9}},
                        {{2, 3, 1, 8}, {8, 5}},    {{2, 1, 1, 8}, {3, 8, 40}},
                        {{5, 6, 30}, {1, 30, 2}},  {{3, 4, 1}, {3, 1, 6}}};
  for (Dtype t : test::kFloatDtypes)
    for (const Case& c : cases) {
      std::vector<double> av = test::random_values(shape_size(c.a), t, 21, -2, 2);
      std::vector<double> bv = test::random_values(shape_size(c.b), t, 22, -2, 2);
      Ref ref = ref_matmul(av, c.a, bv, c.b);
      for (Layout l : {Layout::contiguous, Layout::transposed, Layout::sliced}) {
        Array a = test::make_array(av, c.a, t, l), b = test::make_array(bv, c.b, t, l);
        for (const char* isa : isas()) {
          IsaScope scope(isa);
          expect_matches(matmul(a, b), ref, c.a.back(),
                         tag(t, isa, c.a, c.b) + " " + test::layout_name(l));
        }
      }
    }
}

TEST(Matmul, OneDimensionalOperands) {
  struct Case {
    Shape a, b;
  };
  const Case cases[] = {{{33}, {33}},       {{40}, {40, 7}},    {{7, 40}, {40}},
                        {{12}, {3, 12, 5}}, {{2, 6, 12}, {12}}, {{1}, {1, 300}}};
  for (Dtype t : test::kFloatDtypes)
    for (const Case& c : cases) {
      std::vector<double> av = test::random_values(shape_size(c.a), t, 31);
      std::vector<double> bv = test::random_values(shape_size(c.b), t, 32);
      Ref ref = ref_matmul(av, c.a, bv, c.b);
      for (const char* isa : isas()) {
        IsaScope scope(isa);
        expect_matches(matmul(Array(av, c.a, t), Array(bv, c.b, t)), ref, c.a.back(),
                       tag(t, isa, c.a, c.b));
      }
    }
}

TEST(Matmul, PromotesMixedFloatDtypes) {
  std::vector<double> av = test::random_values(5 * 6, bfloat16, 41);
  std::vector<double> bv = test::random_values(6 * 4, float16, 42);
  Ref ref = ref_matmul(av, {5, 6}, bv, {6, 4});
  Array out = matmul(Array(av, {5, 6}, bfloat16), Array(bv, {6, 4}, float16));
  EXPECT_EQ(out.dtype(), float32);
  expect_matches(out, ref, 6, "bf16 @ f16");
  Array out2 = matmul(Array(av, {5, 6}, float32), Array(bv, {6, 4}, float64));
  EXPECT_EQ(out2.dtype(), float64);
  expect_matches(out2, ref, 6, "f32 @ f64");
}

TEST(Matmul, EmptyAndZeroInner) {
  Array z = matmul(zeros({3, 0}, float32), zeros({0, 4}, float32));
  EXPECT_EQ(z.shape(), (Shape{3, 4}));
  for (double v : z.to_vector<double>()) EXPECT_EQ(v, 0.0);
  Array e = matmul(zeros({0, 5}, bfloat16), zeros({5, 4}, bfloat16));
  EXPECT_EQ(e.shape(), (Shape{0, 4}));
  EXPECT_EQ(e.to_vector<float>().size(), 0u);
  Array c = addmm(full({4}, 2.0f), zeros({3, 0}, float32), zeros({0, 4}, float32), 1.0f, 0.5f);
  for (double v : c.to_vector<double>()) EXPECT_EQ(v, 1.0);
}

/// addmm(c, a, b, alpha, beta) on GEMV and GEMM shapes with a broadcast bias.
TEST(Matmul, AddmmBias) {
  const int64_t shapes[][3] = {{1, 300, 70}, {9, 70, 130}, {7, 33, 5}, {6, 20, 1}};
  for (Dtype t : test::kFloatDtypes)
    for (auto& s : shapes)
      for (int bias_rank : {0, 1, 2}) {
        const int64_t M = s[0], K = s[1], N = s[2];
        std::vector<double> av = test::random_values(M * K, t, 51, -2, 2);
        std::vector<double> bv = test::random_values(K * N, t, 52, -2, 2);
        Shape cs = bias_rank == 0 ? Shape{} : bias_rank == 1 ? Shape{N} : Shape{M, N};
        std::vector<double> cv = test::random_values(shape_size(cs), t, 53);
        Ref ref = ref_matmul(av, {M, K}, bv, {K, N});
        const float alpha = 0.5f, beta = -1.5f;
        std::vector<double> bias(ref.v.size());
        for (size_t i = 0; i < ref.v.size(); ++i) {
          ref.v[i] *= alpha;
          ref.absdot[i] *= alpha;
          int64_t m = static_cast<int64_t>(i) / N, n = static_cast<int64_t>(i) % N;
          double cval = bias_rank == 0 ? cv[0] : bias_rank == 1 ? cv[n] : cv[m * N + n];
          bias[i] = beta * cval;
        }
        Array a = Array(av, {M, K}, t), b = Array(bv, {K, N}, t), c = Array(cv, cs, t);
        for (const char* isa : isas()) {
          IsaScope scope(isa);
          expect_matches(
              addmm(c, a, b, alpha, beta), ref, K,
              tag(t, isa, {M, K}, {K, N}) + fmt::format(" addmm bias rank {}", bias_rank), &bias,
              1e-6);
        }
      }
}

TEST(Matmul, AddMatmulEqualsTheSeparateOps) {
  // add_matmul(c, a, b) is add(c, matmul(a, b)) in one primitive: the product rounds to the
  // dtype first, so the results are the same bits (the ops themselves are checked above).
  struct Case {
    Shape a, b, c;
  };
  const Case cases[] = {{{1, 300}, {300, 70}, {1, 70}},
                        {{9, 70}, {70, 130}, {130}},
                        {{2, 3, 33}, {33, 5}, {2, 3, 5}},
                        {{4, 1, 64}, {64, 16}, {4, 1, 16}},
                        {{3, 0}, {0, 4}, {3, 4}}};
  uint32_t seed = 60;
  for (Dtype t : test::kFloatDtypes)
    for (const Case& k : cases) {
      const Array a = Array(test::random_values(shape_size(k.a), t, seed++, -2, 2), k.a, t);
      const Array b = Array(test::random_values(shape_size(k.b), t, seed++, -2, 2), k.b, t);
      const Array c = Array(test::random_values(shape_size(k.c), t, seed++, -4, 4), k.c, t);
      for (const char* isa : isas()) {
        IsaScope scope(isa);
        const auto got = add_matmul(c, a, b).to_vector<double>();
        const auto want = add(c, matmul(a, b)).to_vector<double>();
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_EQ(got[i], want[i]) << dtype_name(t) << " " << isa << " at " << i;
      }
    }
  // A residual of another dtype: the ops' promotion order is kept (product in bf16, add in
  // float32).
  const Array a = Array(test::random_values(64, bfloat16, 1, -2, 2), {2, 32}, bfloat16);
  const Array b = Array(test::random_values(32 * 8, bfloat16, 2, -2, 2), {32, 8}, bfloat16);
  const Array c = Array(test::random_values(16, float32, 3), {2, 8}, float32);
  EXPECT_EQ(add_matmul(c, a, b).dtype(), float32);
  EXPECT_EQ(add_matmul(c, a, b).to_vector<double>(), add(c, matmul(a, b)).to_vector<double>());
}

TEST(Matmul, Avx512PathWhereAvailable) {
  if (cpu::hardware_isa() < cpu::Isa::avx512)
    GTEST_SKIP() << "this CPU has no AVX-512 (F+BW+VL): the avx512 kernels are not exercised";
  for (Dtype t : {bfloat16, float16, float32}) {
    IsaScope scope("avx512");
    check_2d(1, 1000, 300, t, Layout::contiguous, Layout::transposed);
    check_2d(1, 77, 300, t);
    check_2d(9, 70, 130, t, Layout::contiguous, Layout::transposed);
  }
}

// ---- bf16 GEMM: AVX512_BF16 kernel (gemm_bf16.h) and the convert + sgemm route ----

/// Sets INGOT_CPU_BF16_GEMM for the scope's lifetime.
struct Bf16RouteScope {
  explicit Bf16RouteScope(const char* v) { setenv("INGOT_CPU_BF16_GEMM", v, 1); }
  ~Bf16RouteScope() { unsetenv("INGOT_CPU_BF16_GEMM"); }
};

/// A bf16 result against the float64 reference with a worst-case bound: products of two bf16
/// values are exact in float32, so the float32 sum of K of them (any order) is within
/// gamma_K * sum |a b| (gamma_K = K u / (1 - K u), u = 2^-24), and the final rounding to bf16
/// adds at most 2^-8 of the result's magnitude. `scale` multiplies the product (alpha).
void expect_bf16_bound(const Array& got, const Ref& ref, int64_t K, const std::string& what,
                       const std::vector<double>* extra = nullptr) {
  ASSERT_EQ(got.shape(), ref.shape) << what;
  ASSERT_EQ(got.dtype(), bfloat16) << what;
  std::vector<double> g = got.to_vector<double>();
  const double u = std::ldexp(1.0, -24), gamma = K * u / (1 - K * u);
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double want = ref.v[i] + (extra ? (*extra)[i] : 0.0);
    // The bias term (addmm) is one more float32 rounding of the sum.
    const double acc = gamma * ref.absdot[i] + (extra ? u * (std::abs(want) + 1) : 0.0);
    const double tol = acc + test::eps_of(bfloat16) * (std::abs(want) + acc) + 1e-30;
    if (!(std::abs(g[i] - want) <= tol) && bad++ < 5)
      ADD_FAILURE() << what << " at " << i << ": got " << g[i] << " want " << want << " tol "
                    << tol;
  }
}

/// The routes to check on this machine: (ISA cap, INGOT_CPU_BF16_GEMM).
std::vector<std::pair<const char*, const char*>> bf16_routes() {
  std::vector<std::pair<const char*, const char*>> r;
  for (const char* isa : isas()) {
    r.push_back({isa, "1"});
    if (std::string(isa) == "avx512") r.push_back({isa, "0"});
  }
  return r;
}

TEST(Matmul, Bf16GemmSelection) {
  {
    IsaScope scope("avx512");
    EXPECT_EQ(cpu::bf16_gemm_enabled(), cpu::has_avx512_bf16());
    Bf16RouteScope off("0");
    EXPECT_FALSE(cpu::bf16_gemm_enabled());
  }
  for (const char* isa : {"portable", "avx2"}) {
    IsaScope scope(isa);
    EXPECT_FALSE(cpu::bf16_gemm_enabled()) << isa;
  }
  if (!cpu::has_avx512_bf16())
    GTEST_SKIP() << "this CPU has no AVX512_BF16: the direct bf16 kernel is not exercised";
}

TEST(Matmul, Bf16GemmAwkwardShapes) {
  // M, K, N around the kernel's blocking (16-row panels, 6..16 W rows per micro-kernel, K blocks
  // of 512, <= 240-column tiles, 192-row tiles), odd K, K = 1..3 (M <= 8 runs the GEMV), and a
  // packed A over 8 MB (a buffer of its own, not the kept per-thread one).
  const int64_t shapes[][3] = {{5, 1, 7},       {5, 2, 9},     {6, 3, 17},      {7, 31, 65},
                               {17, 33, 241},   {63, 64, 240}, {64, 513, 97},   {65, 1025, 250},
                               {129, 100, 481}, {193, 77, 33}, {700, 257, 130}, {33, 1030, 49},
                               {48, 16, 6},     {385, 40, 23}, {9, 1, 7},       {12, 2, 9},
                               {15, 3, 17},     {10, 513, 30}, {4100, 1030, 9}};
  for (auto& s : shapes) {
    const int64_t M = s[0], K = s[1], N = s[2];
    std::vector<double> av = test::random_values(M * K, bfloat16, 61, -2, 2);
    std::vector<double> bv = test::random_values(K * N, bfloat16, 62, -2, 2);
    Ref ref = ref_matmul(av, {M, K}, bv, {K, N});
    // transposed b is the Linear weight (x @ W^T, W [N, K]); contiguous b is [K, N].
    for (Layout la : {Layout::contiguous, Layout::transposed, Layout::sliced})
      for (Layout lb : {Layout::transposed, Layout::contiguous, Layout::sliced}) {
        if (M * K * N > 2000000 && (la != Layout::contiguous || lb == Layout::sliced)) continue;
        Array a = test::make_array(av, {M, K}, bfloat16, la);
        Array b = test::make_array(bv, {K, N}, bfloat16, lb);
        for (auto [isa, route] : bf16_routes()) {
          IsaScope scope(isa);
          Bf16RouteScope rs(route);
          expect_bf16_bound(matmul(a, b), ref, K,
                            tag(bfloat16, isa, {M, K}, {K, N}) + " route " + route + " layouts " +
                                test::layout_name(la) + "/" + test::layout_name(lb));
        }
      }
  }
}

TEST(Matmul, Bf16DecodeGemvRowsAndTails) {
  // x [M, K] @ W^T, W [N, K] bf16 (a Linear weight): M = 1..8 runs the GEMV (with AVX512_BF16:
  // one pass over each W row for all M rows of x, 32-element steps unrolled to 128/64 for M
  // = 1/2, a masked tail), M = 9 the GEMM; K around those steps, N around the row blocks of
  // ~128 KB (K = 33: 1985 rows, K = 1030: 63 rows).
  const int64_t ms[] = {1, 2, 3, 4, 5, 7, 8, 9};
  const int64_t ks[] = {1, 31, 33, 64, 65, 127, 129, 1030};
  const int64_t ns[] = {1, 7, 70, 300};
  for (int64_t K : ks)
    for (int64_t N : ns) {
      std::vector<double> bv = test::random_values(K * N, bfloat16, 81, -2, 2);
      Array b = test::make_array(bv, {K, N}, bfloat16, Layout::transposed);
      for (int64_t M : ms) {
        std::vector<double> av = test::random_values(M * K, bfloat16, 82, -2, 2);
        Array a = Array(av, {M, K}, bfloat16);
        Ref ref = ref_matmul(av, {M, K}, bv, {K, N});
        for (auto [isa, route] : bf16_routes()) {
          IsaScope scope(isa);
          Bf16RouteScope rs(route);
          expect_bf16_bound(matmul(a, b), ref, K,
                            tag(bfloat16, isa, {M, K}, {K, N}) + " W^T route " + route);
        }
      }
    }
  // Several row blocks per product (N = 2100 rows of K = 33), strided x rows, and per-batch
  // weights (the rows of x sharing one W are grouped; batches are not).
  {
    const int64_t M = 3, K = 33, N = 2100;
    std::vector<double> av = test::random_values(M * K, bfloat16, 83, -2, 2);
    std::vector<double> bv = test::random_values(K * N, bfloat16, 84, -2, 2);
    Ref ref = ref_matmul(av, {M, K}, bv, {K, N});
    for (Layout la : {Layout::contiguous, Layout::transposed, Layout::sliced}) {
      Array a = test::make_array(av, {M, K}, bfloat16, la);
      Array b = test::make_array(bv, {K, N}, bfloat16, Layout::transposed);
      for (auto [isa, route] : bf16_routes()) {
        IsaScope scope(isa);
        Bf16RouteScope rs(route);
        expect_bf16_bound(matmul(a, b), ref, K,
                          tag(bfloat16, isa, {M, K}, {K, N}) + " x " + test::layout_name(la));
      }
    }
  }
  {
    const Shape as{3, 2, 65}, bs{3, 65, 19};
    std::vector<double> av = test::random_values(shape_size(as), bfloat16, 85, -2, 2);
    std::vector<double> bv = test::random_values(shape_size(bs), bfloat16, 86, -2, 2);
    Ref ref = ref_matmul(av, as, bv, bs);
    Array a = Array(av, as, bfloat16);
    std::vector<double> bt(bv.size());  // b stored [3, 19, 65], used transposed
    for (int64_t q = 0; q < 3; ++q)
      for (int64_t k = 0; k < 65; ++k)
        for (int64_t n = 0; n < 19; ++n) bt[(q * 19 + n) * 65 + k] = bv[(q * 65 + k) * 19 + n];
    Array w = swapaxes(Array(bt, {3, 19, 65}, bfloat16), 1, 2);
    for (auto [isa, route] : bf16_routes()) {
      IsaScope scope(isa);
      Bf16RouteScope rs(route);
      expect_bf16_bound(matmul(a, w), ref, 65,
                        tag(bfloat16, isa, as, bs) + " per-batch W^T route " + route);
    }
  }
  // addmm on the GEMV (alpha, bias): the float32 rows go through the scaled store.
  {
    const int64_t M = 2, K = 97, N = 45;
    std::vector<double> av = test::random_values(M * K, bfloat16, 87, -2, 2);
    std::vector<double> bv = test::random_values(K * N, bfloat16, 88, -2, 2);
    std::vector<double> cv = test::random_values(N, bfloat16, 89, -2, 2);
    Ref ref = ref_matmul(av, {M, K}, bv, {K, N});
    const float alpha = 0.5f, beta = -1.5f;
    std::vector<double> bias(ref.v.size());
    for (size_t i = 0; i < ref.v.size(); ++i) {
      ref.v[i] *= alpha;
      ref.absdot[i] *= alpha;
      bias[i] = beta * cv[i % static_cast<size_t>(N)];
    }
    Array a = Array(av, {M, K}, bfloat16), c = Array(cv, {N}, bfloat16);
    Array b = test::make_array(bv, {K, N}, bfloat16, Layout::transposed);
    for (auto [isa, route] : bf16_routes()) {
      IsaScope scope(isa);
      Bf16RouteScope rs(route);
      expect_bf16_bound(addmm(c, a, b, alpha, beta), ref, K,
                        tag(bfloat16, isa, {M, K}, {K, N}) + " addmm route " + route, &bias);
    }
  }
}

TEST(Matmul, Bf16GemmBatchedAndAddmm) {
  struct Case {
    Shape a, b;
  };
  // Per-batch products (b differs per batch), a batch folded into M (b shared), broadcast.
  const Case cases[] = {{{3, 37, 70}, {3, 70, 29}},
                        {{2, 50, 33}, {33, 300}},
                        {{2, 1, 9, 40}, {3, 40, 17}},
                        {{4, 20, 129}, {1, 129, 65}}};
  for (const Case& c : cases) {
    std::vector<double> av = test::random_values(shape_size(c.a), bfloat16, 71, -2, 2);
    std::vector<double> bv = test::random_values(shape_size(c.b), bfloat16, 72, -2, 2);
    Ref ref = ref_matmul(av, c.a, bv, c.b);
    for (Layout l : {Layout::contiguous, Layout::transposed}) {
      Array a = test::make_array(av, c.a, bfloat16, l), b = test::make_array(bv, c.b, bfloat16, l);
      for (auto [isa, route] : bf16_routes()) {
        IsaScope scope(isa);
        Bf16RouteScope rs(route);
        expect_bf16_bound(
            matmul(a, b), ref, c.a.back(),
            tag(bfloat16, isa, c.a, c.b) + " route " + route + " " + test::layout_name(l));
      }
    }
  }
  // addmm: alpha * a @ b + beta * bias[N], a Linear weight (b transposed).
  const int64_t M = 70, K = 130, N = 250;
  std::vector<double> av = test::random_values(M * K, bfloat16, 73, -2, 2);
  std::vector<double> bv = test::random_values(K * N, bfloat16, 74, -2, 2);
  std::vector<double> cv = test::random_values(N, bfloat16, 75, -2, 2);
  Ref ref = ref_matmul(av, {M, K}, bv, {K, N});
  const float alpha = 0.5f, beta = -1.5f;
  std::vector<double> bias(ref.v.size());
  for (size_t i = 0; i < ref.v.size(); ++i) {
    ref.v[i] *= alpha;
    ref.absdot[i] *= alpha;
    bias[i] = beta * cv[i % static_cast<size_t>(N)];
  }
  Array a = Array(av, {M, K}, bfloat16), c = Array(cv, {N}, bfloat16);
  Array b = test::make_array(bv, {K, N}, bfloat16, Layout::transposed);
  for (auto [isa, route] : bf16_routes()) {
    IsaScope scope(isa);
    Bf16RouteScope rs(route);
    expect_bf16_bound(addmm(c, a, b, alpha, beta), ref, K,
                      tag(bfloat16, isa, {M, K}, {K, N}) + " addmm route " + route, &bias);
  }
}

/// The bytes of an evaluated array.
std::vector<uint8_t> bytes_of(Array a) {
  a.eval();
  const auto* p = static_cast<const uint8_t*>(a.raw_ptr());
  return std::vector<uint8_t>(p, p + a.nbytes());
}

TEST(Matmul, DecodeGemvSameBytesAtEveryThreadCount) {
  // The decode GEMVs split the output columns over the pool (parallel_for_dynamic for W [N, K],
  // one chunk per thread for [K, N]): every output stays one dot product in one order, so 1, 2
  // and 3 threads give the same bytes, each also within the float64 bound. N = 1100 rows of
  // K = 256 are several column chunks on every path (the AVX512_BF16 GEMV's 256-row blocks, the
  // float32-accumulating GEMV's 64 KB chunks); M = 3 groups rows of x on one weight block.
  const int64_t K = 256, N = 1100;
  for (Dtype t : {bfloat16, float16, float32}) {
    std::vector<double> bv = test::random_values(K * N, t, 91, -2, 2);
    for (Layout lb : {Layout::transposed, Layout::contiguous}) {
      Array b = test::make_array(bv, {K, N}, t, lb);
      for (int64_t M : {1, 3}) {
        std::vector<double> av = test::random_values(M * K, t, 92, -2, 2);
        Array a(av, {M, K}, t);
        Ref ref = ref_matmul(av, {M, K}, bv, {K, N});
        std::vector<std::pair<const char*, const char*>> routes = bf16_routes();
        if (t != bfloat16) {
          routes.clear();
          for (const char* isa : isas()) routes.push_back({isa, "1"});
        }
        for (auto [isa, route] : routes) {
          IsaScope scope(isa);
          Bf16RouteScope rs(route);
          const std::string what = tag(t, isa, {M, K}, {K, N}) + " " + test::layout_name(lb);
          std::vector<uint8_t> one;
          for (int threads : {1, 2, 3}) {
            ScopedPoolThreads pool(threads);
            Array y = matmul(a, b);
            const std::string w = what + fmt::format(" threads {}", threads);
            if (t == bfloat16)
              expect_bf16_bound(y, ref, K, w);
            else
              expect_matches(y, ref, K, w);
            if (threads == 1)
              one = bytes_of(y);
            else
              EXPECT_TRUE(bytes_of(y) == one) << w << ": bytes differ from 1 thread";
          }
        }
      }
    }
  }
}

TEST(Matmul, VjpMatchesReference) {
  // d(sum(g * (a @ b)))/da = g @ b^T summed over broadcast batches; checked on float64.
  std::vector<double> av = test::random_values(2 * 3 * 4, float64, 61);
  std::vector<double> bv = test::random_values(4 * 5, float64, 62);
  std::vector<double> gv = test::random_values(2 * 3 * 5, float64, 63);
  Array a(av, {2, 3, 4}, float64), b(bv, {4, 5}, float64), g(gv, {2, 3, 5}, float64);
  Array out = matmul(a, b);
  auto grads = out.primitive().vjp({a, b}, {g}, {0, 1}, {out});
  ASSERT_EQ(grads.size(), 2u);
  EXPECT_EQ(grads[0].shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(grads[1].shape(), (Shape{4, 5}));
  std::vector<double> ga(24, 0.0), gb(20, 0.0);
  for (int bi = 0; bi < 2; ++bi)
    for (int m = 0; m < 3; ++m)
      for (int k = 0; k < 4; ++k)
        for (int n = 0; n < 5; ++n) {
          ga[(bi * 3 + m) * 4 + k] += gv[(bi * 3 + m) * 5 + n] * bv[k * 5 + n];
          gb[k * 5 + n] += av[(bi * 3 + m) * 4 + k] * gv[(bi * 3 + m) * 5 + n];
        }
  test::expect_close(grads[0].to_vector<double>(), ga, 1e-12, 1e-12, "da");
  test::expect_close(grads[1].to_vector<double>(), gb, 1e-12, 1e-12, "db");
  // 1-d operands: a [4] @ b [4, 5].
  Array v(std::vector<double>(av.begin(), av.begin() + 4), {4}, float64);
  Array g1(std::vector<double>(gv.begin(), gv.begin() + 5), {5}, float64);
  Array o1 = matmul(v, b);
  auto gr = o1.primitive().vjp({v, b}, {g1}, {0}, {o1});
  std::vector<double> gv1(4, 0.0);
  for (int k = 0; k < 4; ++k)
    for (int n = 0; n < 5; ++n) gv1[k] += gv[n] * bv[k * 5 + n];
  EXPECT_EQ(gr[0].shape(), (Shape{4}));
  test::expect_close(gr[0].to_vector<double>(), gv1, 1e-12, 1e-12, "dv");
}

TEST(Matmul, AddmmVjpMatchesReference) {
  // out = beta * c + alpha * a @ b with c [N] broadcast over rows: dc = beta * sum_rows(g).
  std::vector<double> av = test::random_values(3 * 4, float64, 71);
  std::vector<double> bv = test::random_values(4 * 5, float64, 72);
  std::vector<double> cv = test::random_values(5, float64, 73);
  std::vector<double> gv = test::random_values(3 * 5, float64, 74);
  Array a(av, {3, 4}, float64), b(bv, {4, 5}, float64), c(cv, {5}, float64);
  Array g(gv, {3, 5}, float64);
  Array out = addmm(c, a, b, 2.0f, 0.5f);
  auto grads = out.primitive().vjp({c, a, b}, {g}, {0, 1, 2}, {out});
  ASSERT_EQ(grads.size(), 3u);
  std::vector<double> gc(5, 0.0), ga(12, 0.0), gb(20, 0.0);
  for (int m = 0; m < 3; ++m)
    for (int n = 0; n < 5; ++n) {
      gc[n] += 0.5 * gv[m * 5 + n];
      for (int k = 0; k < 4; ++k) {
        ga[m * 4 + k] += 2.0 * gv[m * 5 + n] * bv[k * 5 + n];
        gb[k * 5 + n] += 2.0 * av[m * 4 + k] * gv[m * 5 + n];
      }
    }
  EXPECT_EQ(grads[0].shape(), (Shape{5}));
  test::expect_close(grads[0].to_vector<double>(), gc, 1e-12, 1e-12, "dc");
  test::expect_close(grads[1].to_vector<double>(), ga, 1e-12, 1e-12, "da");
  test::expect_close(grads[2].to_vector<double>(), gb, 1e-12, 1e-12, "db");
}

TEST(Matmul, Errors) {
  Array a = zeros({2, 3}, float32), b = zeros({4, 5}, float32);
  test::expect_error<InvalidArgument>([&] { matmul(a, b); },
                                      "[matmul] inner dimensions differ: a is [2, 3] (float32), "
                                      "b is [4, 5] (float32)");
  test::expect_error<InvalidArgument>(
      [&] {
        matmul(zeros({2, 3}, int32), zeros({3, 2}, int32));
      },
      "[matmul] a must be a floating-point array, got [2, 3] "
      "(int32)");
  test::expect_error<InvalidArgument>(
      [&] {
        matmul(zeros({2, 3}, float32), zeros({3, 2}, bool_));
      },
      "[matmul] b must be a floating-point array, got [3, 2] (bool)");
  test::expect_error<InvalidArgument>(
      [&] {
        matmul(zeros({2, 4, 3}, float32), zeros({3, 3, 5}, float32));
      },
      "[matmul] batch dimensions do not broadcast: a is [2, 4, 3] (float32), b is [3, 3, 5] "
      "(float32)");
  test::expect_error<InvalidArgument>([&] { matmul(Array(1.0f), zeros({3}, float32)); },
                                      "[matmul] operands must have at least one dimension");
  test::expect_error<InvalidArgument>(
      [&] {
        addmm(zeros({3}, float32), zeros({2, 4}, float32), zeros({4, 5}, float32));
      },
      "[addmm] c [3] (float32) does not broadcast to the result [2, 5]");
  test::expect_error<InvalidArgument>(
      [&] {
        addmm(zeros({5}, float32), zeros({2, 4}, float32), zeros({3, 5}, float32));
      },
      "[addmm] inner dimensions differ: a is [2, 4] (float32), b is [3, 5] (float32)");
}

}  // namespace
}  // namespace ingot
