// CUDA matmul / addmm (cuBLASLt) against the CPU backend: GEMV and GEMM shapes, every float
// dtype, transposed / sliced / misaligned / broadcast / non-BLAS operands, batch broadcasting
// (strided-batched, folded into M, looped), 1-d operands, empty K / M / N / batch, addmm's
// alpha, beta and c broadcasting, a > 1M-element output, and the VJP.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/ingot.h"
#include "cuda_test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

const Dtype kFloats[] = {float32, bfloat16, float16, float64};

/// Normal values on the CPU (host data, so the reference never touches the GPU).
Array host_normal(const Shape& shape, Dtype t, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(shape_size(shape)));
  for (auto& x : v) x = nd(g);
  return Array(v, shape, t);
}

/// One operand on both devices; the view is taken on each device, so the GPU input really has
/// the view's strides.
struct Pair {
  Array cpu, gpu;
};
using View = std::function<Array(const Array&)>;
Pair both(const Array& base, const View& view) {
  return {view(base), view(on_cuda(base))};
}
Array identity(const Array& a) {
  return a;
}

/// |a| @ |b| in float64 on the CPU: the scale of a product's rounding error.
Array abs_product(const Array& a, const Array& b) {
  return matmul(abs(astype(a, float64)), abs(astype(b, float64)));
}

/// Relative accumulation tolerance of a dtype (against |a| @ |b|).
double acc_tol(Dtype t) {
  return t == float64 ? 1e-12 : 1e-5;
}

/// Expects the CUDA result within tol * scale[i] + (one output ulp for 16-bit dtypes) of the
/// CPU result, element by element.
void expect_gemm_close(const Array& got, const Array& want, const Array& scale, double tol,
                       const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  EXPECT_EQ(got.device(), kCuda) << what;
  const auto g = got.to_vector<double>();
  const auto w = want.to_vector<double>();
  const auto s = broadcast_to(scale, want.shape()).to_vector<double>();
  const double r =
      want.dtype() == bfloat16 || want.dtype() == float16 ? dtype_rtol(want.dtype()) : 0.0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(w[i]) && std::isnan(g[i])) continue;
    const double lim = tol * s[i] + r * std::fabs(w[i]) + 1e-300;
    if (!(std::fabs(g[i] - w[i]) <= lim)) {
      ADD_FAILURE() << what << ": at flat index " << i << " got " << g[i] << ", want " << w[i]
                    << " (limit " << lim << ")";
      return;
    }
  }
}

/// matmul(a, b) on both devices, compared.
void check_matmul(const Pair& a, const Pair& b, const std::string& what) {
  const Array want = matmul(a.cpu, b.cpu);
  const Array got = matmul(a.gpu, b.gpu);
  expect_gemm_close(got, want, abs_product(a.cpu, b.cpu), acc_tol(want.dtype()), what);
}

std::string name(Dtype t, const std::string& what) {
  return std::string(dtype_name(t)) + " " + what;
}

struct ShapeCase {
  int64_t M, K, N;
};

TEST(CudaMatmul, ShapesAndDtypes) {
  INGOT_REQUIRE_CUDA();
  const ShapeCase cases[] = {{1, 1024, 512},  {7, 13, 5},     {256, 512, 384}, {3, 4096, 1},
                             {1, 1, 1},       {5, 1, 3},      {4, 64, 33},     {33, 100, 65},
                             {1, 4096, 2048}, {2, 2048, 1000}};
  uint32_t seed = 1;
  for (Dtype t : kFloats)
    for (const ShapeCase& c : cases) {
      const Pair a = both(host_normal({c.M, c.K}, t, seed++), identity);
      const Pair b = both(host_normal({c.K, c.N}, t, seed++), identity);
      check_matmul(
          a, b,
          name(t, std::to_string(c.M) + "x" + std::to_string(c.K) + "x" + std::to_string(c.N)));
    }
}

TEST(CudaMatmul, GemvRowsMatchCpu) {
  INGOT_REQUIRE_CUDA();
  // x [M, K] @ w^T with w a row-major [N, K] weight (nn::Linear) and M <= 8 runs on the GEMV
  // kernel: every row count, K that fill one or several unrolled load rounds or end mid-round
  // (K 2056 and 8192: under INGOT_CUDA_GEMV_SPLIT=1, each column split over 2 and 4 warps), N
  // below and above a block's eight warps (blocks whose last columns are past N), and the
  // cuBLASLt boundary (M = 9, odd K).
  const View wt = [](const Array& x) { return transpose(x); };
  uint32_t seed = 50;
  for (Dtype t : {float32, bfloat16, float16})
    for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 8, 9})
      for (int64_t K : {16, 1024, 2056, 8192})
        for (int64_t N : {1, 13, 2048}) {
          if (K * N > 2048 * 2056 && M > 2) continue;  // keep the CPU reference quick
          const Pair a = both(host_normal({M, K}, t, seed++), identity);
          const Pair b = both(host_normal({N, K}, t, seed++), wt);
          check_matmul(a, b, name(t, fmt::format("gemv M{} K{} N{}", M, K, N)));
        }
  for (Dtype t : {bfloat16, float32}) {
    // Rows of x with a stride (a slice of a wider activation), a batch folded into M, a
    // misaligned K (cuBLASLt), and a broadcast x row.
    const Pair xs = both(host_normal({4, 1040}, t, seed++), [](const Array& x) {
      return slice(x, {0, 8}, {4, 1032});
    });
    const Pair w = both(host_normal({300, 1024}, t, seed++), wt);
    check_matmul(xs, w, name(t, "gemv strided x rows"));
    const Pair xb = both(host_normal({2, 3, 1024}, t, seed++), identity);
    check_matmul(xb, w, name(t, "gemv batch [2,3,K] folded into M"));
    const Pair xo = both(host_normal({3, 1030}, t, seed++), identity);
    const Pair wo = both(host_normal({64, 1030}, t, seed++), wt);
    check_matmul(xo, wo, name(t, "odd K"));
    const Pair x1 = both(host_normal({1, 512}, t, seed++), [](const Array& x) {
      return broadcast_to(x, {5, 512});
    });
    const Pair w1 = both(host_normal({40, 512}, t, seed++), wt);
    check_matmul(x1, w1, name(t, "gemv broadcast x row"));
  }
}

TEST(CudaMatmul, GemvLoopsOverMoreColumnsThanResidentWarps) {
  INGOT_REQUIRE_CUDA();
  // Products with more columns than the card's resident warps (thousands to tens of thousands,
  // as an LM head's; short rows where there are many, so the CPU reference stays quick): each warp
  // of the GEMV takes several columns, requesting the next column's first chunks while it finishes
  // the current one. Every variant (plain, with the residual add, norm prologue, GLU pair), rows
  // that end mid-round (K 1152 bf16: 144 chunks, a full round of 128 then 16), N not a multiple
  // of 8.
  const View wt = [](const Array& x) { return transpose(x); };
  uint32_t seed = 900;
  for (Dtype t : {bfloat16, float32})
    for (int64_t M : {1, 3}) {
      // bf16: Gemma3's K; 9001 columns are ~3 per warp of an H100's resident GEMV blocks.
      const int64_t K = t == bfloat16 ? 1152 : 72, N = t == bfloat16 ? 9001 : 40001;
      const Pair a = both(host_normal({M, K}, t, seed++), identity);
      const Pair b = both(host_normal({N, K}, t, seed++), wt);
      check_matmul(a, b, name(t, fmt::format("looped gemv M{} K{} N{}", M, K, N)));
      // The residual add in the epilogue: bit for bit the separate add of the rounded product.
      const Pair c = both(host_normal({M, N}, t, seed++), identity);
      const auto got = add_matmul(c.gpu, a.gpu, b.gpu).to_vector<double>();
      const auto sep = add(c.gpu, matmul(a.gpu, b.gpu)).to_vector<double>();
      ASSERT_EQ(got.size(), sep.size());
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], sep[i]) << dtype_name(t) << " looped add_matmul M" << M << " at " << i;
      // The norm prologue and the GLU pair over the same rows (N gate|up pairs).
      const fast::RmsNormOptions o{.eps = 1e-6f, .weight_in_float32 = true};
      const Pair x = both(host_normal({1, M, K}, t, seed++), identity);
      const Pair nw = both(host_normal({K}, t, seed++), identity);
      const Pair w2 = both(host_normal({2 * N, K}, t, seed++), identity);
      const std::string what = name(t, fmt::format("looped norm/glu gemv M{}", M));
      const Array n_cpu = fast::rms_norm(x.cpu, nw.cpu, o);
      const double tol = t == float32 ? 1e-5 : dtype_rtol(t);
      expect_gemm_close(fast::rms_norm_linear(x.gpu, nw.gpu, w2.gpu, o),
                        fast::rms_norm_linear(x.cpu, nw.cpu, w2.cpu, o),
                        abs_product(n_cpu, wt(w2.cpu)), tol, what + " norm");
      // The pair against the norm product's halves on the GPU: bit for bit.
      const Array glu = fast::rms_norm_glu(x.gpu, nw.gpu, w2.gpu, fast::GatedActivation::silu, o);
      const Array yg = fast::rms_norm_linear(x.gpu, nw.gpu, w2.gpu, o);
      const Array sep2 =
          silu(slice(yg, {0, 0, 0}, {1, M, N})) * slice(yg, {0, 0, N}, {1, M, 2 * N});
      const auto gv = glu.to_vector<double>(), sv = sep2.to_vector<double>();
      ASSERT_EQ(gv.size(), sv.size()) << what;
      for (size_t i = 0; i < gv.size(); ++i) ASSERT_EQ(gv[i], sv[i]) << what << " glu at " << i;
    }
}

TEST(CudaMatmul, AddMatmulEqualsTheSeparateOps) {
  INGOT_REQUIRE_CUDA();
  // add_matmul rounds the product first: on the GPU it equals add(c, matmul(a, b)) bit for bit,
  // whether the add runs in the GEMV's epilogue (few rows against a Linear weight) or after a
  // cuBLASLt product, and it agrees with the CPU within the matmul tolerance.
  const View wt = [](const Array& x) { return transpose(x); };
  uint32_t seed = 80;
  for (Dtype t : {float32, bfloat16, float16})
    for (int64_t M : {1, 4, 8, 40}) {
      const Pair a = both(host_normal({M, 1024}, t, seed++), identity);
      const Pair b = both(host_normal({512, 1024}, t, seed++), wt);
      const Pair c = both(host_normal({M, 512}, t, seed++), identity);
      const Array got = add_matmul(c.gpu, a.gpu, b.gpu);
      const Array sep = add(c.gpu, matmul(a.gpu, b.gpu));
      const auto g = got.to_vector<double>(), w = sep.to_vector<double>();
      ASSERT_EQ(g.size(), w.size());
      for (size_t i = 0; i < g.size(); ++i)
        ASSERT_EQ(g[i], w[i]) << dtype_name(t) << " M " << M << " at " << i;
      const Array scale = add(abs(astype(c.cpu, float64)), abs_product(a.cpu, b.cpu));
      // 16-bit: each side rounds its product once, so they may differ by an ulp of it.
      const double tol = t == float32 ? acc_tol(t) : dtype_rtol(t);
      expect_gemm_close(got, add_matmul(c.cpu, a.cpu, b.cpu), scale, tol,
                        name(t, fmt::format("add_matmul M{}", M)));
    }
}

TEST(CudaMatmul, NormGemvEqualsNormThenMatmul) {
  INGOT_REQUIRE_CUDA();
  // fast::rms_norm_linear on a few rows runs the GEMV with the norm in its prologue. Its
  // normalised rows must be RmsNorm's kernel's bit for bit (rows up to 256 16-byte vectors),
  // so it equals the norm then the matmul on the GPU exactly; longer rows may differ by the
  // sum order. Every norm weight mode; 9 rows take the unfused path. Against the CPU: within
  // one rounding of each normalised element.
  const View wt = [](const Array& x) { return transpose(x); };
  const View none = identity;
  struct Mode {
    bool weight;
    fast::RmsNormOptions opt;
  };
  const Mode modes[] = {{false, {.eps = 1e-6f}},
                        {true, {.eps = 1e-5f, .weight_in_float32 = false}},
                        {true, {.eps = 1e-6f, .add_unit_offset = true, .weight_in_float32 = true}}};
  uint32_t seed = 500;
  for (Dtype t : {bfloat16, float16, float32})
    for (int64_t E : {64, 1024, 1152, 2048, 4096})
      for (int64_t M : {1, 2, 5, 8, 9})
        for (const Mode& mode : modes) {
          const int64_t N = M == 5 ? 1000 : 40;
          const Pair x = both(host_normal({1, M, E}, t, seed++), none);
          const Pair w = both(host_normal({N, E}, t, seed++), none);
          std::optional<Array> nw_cpu, nw_gpu;
          if (mode.weight) {
            const Pair nw = both(host_normal({E}, t, seed++), none);
            nw_cpu = nw.cpu;
            nw_gpu = nw.gpu;
          }
          const std::string what =
              name(t, fmt::format("E{} M{} weight {} unit {} w_f32 {}", E, M, mode.weight,
                                  mode.opt.add_unit_offset, mode.opt.weight_in_float32));
          const Array got = fast::rms_norm_linear(x.gpu, nw_gpu, w.gpu, mode.opt);
          const Array sep = matmul(fast::rms_norm(x.gpu, nw_gpu, mode.opt), wt(w.gpu));
          ASSERT_EQ(got.shape(), (Shape{1, M, N})) << what;
          const bool exact_sums = E * static_cast<int64_t>(size_of(t)) <= 256 * 16;
          if (exact_sums) {
            const auto g = got.to_vector<double>(), s2 = sep.to_vector<double>();
            for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], s2[i]) << what << " at " << i;
          }
          const Array n_cpu = fast::rms_norm(x.cpu, nw_cpu, mode.opt);
          const double tol = t == float32 ? 1e-5 : dtype_rtol(t);
          expect_gemm_close(got, fast::rms_norm_linear(x.cpu, nw_cpu, w.cpu, mode.opt),
                            abs_product(n_cpu, wt(w.cpu)), tol, what);
        }
}

TEST(CudaMatmul, GluGemvEqualsTheSeparateOps) {
  INGOT_REQUIRE_CUDA();
  // fast::rms_norm_glu on a few rows runs one GEMV with the norm in its prologue whose warps
  // each compute a gate and its up column and write act(gate) * up with the activation's and
  // the multiply's own functors, so it equals the separate ops on the GPU bit for bit (rows up
  // to 256 16-byte vectors, where the norm's sums are RmsNorm's). 9 rows take the stacked
  // product and the gated-rows kernel, also bit for bit. Against the CPU: within the product's
  // accumulation error carried through act and the multiply.
  const fast::GatedActivation acts[] = {fast::GatedActivation::silu, fast::GatedActivation::gelu,
                                        fast::GatedActivation::gelu_tanh};
  uint32_t seed = 700;
  for (Dtype t : {bfloat16, float16, float32, float64})  // float64: never the GEMV
    for (int64_t E : {64, 1024, 2048})
      for (int64_t M : {1, 2, 5, 8, 9}) {
        const fast::GatedActivation a = acts[seed % 3];
        const int64_t I = M == 5 ? 1000 : 40;
        const fast::RmsNormOptions o{.eps = 1e-6f, .weight_in_float32 = seed % 2 == 0};
        const Pair x = both(host_normal({1, M, E}, t, seed++), identity);
        const Pair w = both(host_normal({2 * I, E}, t, seed++), identity);
        const Pair nw = both(host_normal({E}, t, seed++), identity);
        const std::string what = name(t, fmt::format("E{} M{} act {}", E, M, static_cast<int>(a)));
        const Array got = fast::rms_norm_glu(x.gpu, nw.gpu, w.gpu, a, o);
        // The separate ops: the stacked product (the norm GEMV for few rows), act, multiply.
        const Array yg = fast::rms_norm_linear(x.gpu, nw.gpu, w.gpu, o);
        const Array gg = slice(yg, {0, 0, 0}, {1, M, I}), ug = slice(yg, {0, 0, I}, {1, M, 2 * I});
        const Array sep = (a == fast::GatedActivation::silu   ? silu(gg)
                           : a == fast::GatedActivation::gelu ? gelu(gg)
                                                              : gelu_tanh(gg)) *
                          ug;
        ASSERT_EQ(got.shape(), (Shape{1, M, I})) << what;
        if (E * static_cast<int64_t>(size_of(t)) <= 256 * 16) {
          const auto gv = got.to_vector<double>(), sv = sep.to_vector<double>();
          for (size_t i = 0; i < gv.size(); ++i) ASSERT_EQ(gv[i], sv[i]) << what << " at " << i;
        }
        // The gate and up products' error bound, carried through act(g) * u to first order
        // (|act'| <= 1.2 for these activations): |u| * 1.2 * eg + |act(g)| * eu.
        const Array n = fast::rms_norm(x.cpu, nw.cpu, o);
        const Array err = abs_product(n, transpose(w.cpu));
        const Array y = astype(fast::rms_norm_linear(x.cpu, nw.cpu, w.cpu, o), float64);
        auto half = [&](const Array& v, int64_t first) {
          return slice(v, {0, 0, first}, {1, M, first + I});
        };
        const Array g = half(y, 0), u = half(y, I);
        const Array ag = a == fast::GatedActivation::silu   ? silu(g)
                         : a == fast::GatedActivation::gelu ? gelu(g)
                                                            : gelu_tanh(g);
        const Array scale = abs(u) * half(err, 0) * 1.2 + abs(ag) * half(err, I);
        const double tol = t == float32 ? 1e-5 : t == float64 ? 1e-12 : dtype_rtol(t);
        expect_gemm_close(got, fast::rms_norm_glu(x.cpu, nw.cpu, w.cpu, a, o), scale, tol, what);
      }
}

TEST(CudaMatmul, NormAddGemvEqualsTheSeparateOps) {
  INGOT_REQUIRE_CUDA();
  // fast::rms_norm_add_linear on a few rows runs one GEMV whose prologue computes h = residual +
  // norm(y) (every block; block 0 writes it) and then the product's norm of h. Both outputs
  // must equal rms_norm_add then rms_norm_linear / rms_norm_glu on the GPU bit for bit (rows up
  // to 256 16-byte vectors, where the GEMV's norm sums are RmsNorm's); 9 rows take the separate
  // primitives. h against the CPU: within an output rounding.
  uint32_t seed = 1300;
  for (Dtype t : {bfloat16, float16, float32})
    for (int64_t E : {64, 1152, 2048})
      for (int64_t M : {1, 2, 5, 8, 9})
        for (bool glu : {false, true}) {
          const int64_t N = M == 5 ? 1000 : 40;
          const fast::RmsNormOptions po{
              .eps = 1e-6f, .add_unit_offset = true, .weight_in_float32 = seed % 2 == 0};
          const fast::RmsNormOptions o{.eps = 1e-5f, .weight_in_float32 = seed % 3 != 0};
          const Pair res = both(host_normal({1, M, E}, t, seed++), identity);
          const Pair y = both(host_normal({1, M, E}, t, seed++), identity);
          const Pair w = both(host_normal({2 * N, E}, t, seed++), identity);
          const Pair pw = both(host_normal({E}, t, seed++), identity);
          const Pair nw = both(host_normal({E}, t, seed++), identity);
          std::optional<fast::GatedActivation> act;
          if (glu) act = fast::GatedActivation::gelu_tanh;
          const std::string what = name(t, fmt::format("E{} M{} glu {}", E, M, glu));
          const std::vector<Array> got =
              fast::rms_norm_add_linear(res.gpu, y.gpu, pw.gpu, po, nw.gpu, w.gpu, o, act);
          const Array h = fast::rms_norm_add(res.gpu, y.gpu, pw.gpu, po);
          const Array p = glu ? fast::rms_norm_glu(h, nw.gpu, w.gpu, *act, o)
                              : fast::rms_norm_linear(h, nw.gpu, w.gpu, o);
          ASSERT_EQ(got[0].shape(), h.shape()) << what;
          ASSERT_EQ(got[1].shape(), p.shape()) << what;
          if (E * static_cast<int64_t>(size_of(t)) <= 256 * 16) {
            const auto gh = got[0].to_vector<double>(), sh = h.to_vector<double>();
            for (size_t i = 0; i < gh.size(); ++i) ASSERT_EQ(gh[i], sh[i]) << what << " h at " << i;
            const auto gp = got[1].to_vector<double>(), sp = p.to_vector<double>();
            for (size_t i = 0; i < gp.size(); ++i)
              ASSERT_EQ(gp[i], sp[i]) << what << " product at " << i;
          }
          // The norm may round an ulp apart (its sums' order), then the add rounds once more.
          const Array hc = fast::rms_norm_add(res.cpu, y.cpu, pw.cpu, po);
          const auto nc = fast::rms_norm(y.cpu, pw.cpu, po).to_vector<double>();
          const double r = dtype_rtol(t);
          const auto gh = got[0].to_vector<double>(), ch = hc.to_vector<double>();
          for (size_t i = 0; i < gh.size(); ++i)
            ASSERT_NEAR(gh[i], ch[i], r * (std::fabs(ch[i]) + std::fabs(nc[i])) + 1e-30)
                << what << " h vs CPU at " << i;
        }
}

TEST(CudaMatmul, GluRowsOverEveryGateValue) {
  INGOT_REQUIRE_CUDA();
  // Many rows of fast::rms_norm_glu run the stacked product, then the gated-rows kernel; for
  // 16-bit dtypes that kernel reads act(g) from a table of all 65,536 gate values (filled on the
  // device with the activation's own functor). Every finite gate value goes through it here and
  // must give the separate ops' bits: x row r is 16 * e_(r mod 16) and the norm weight 1/4, so
  // the normalised row is e_(r mod 16) exactly and gate column j of row r is w[j, r mod 16].
  constexpr int64_t E = 16, M = 256, I = 4096;
  const fast::GatedActivation acts[] = {fast::GatedActivation::silu, fast::GatedActivation::gelu,
                                        fast::GatedActivation::gelu_tanh};
  for (Dtype t : {bfloat16, float16}) {
    const auto value = [&](uint16_t b) {
      return t == bfloat16 ? double(float(bfloat16_t::from_bits(b)))
                           : double(float(float16_t::from_bits(b)));
    };
    std::vector<double> xv(M * E, 0.0), wv(2 * I * E), nwv(E, 0.25);
    for (int64_t r = 0; r < M; ++r) xv[r * E + r % E] = 16.0;
    std::mt19937 gen(17);
    std::normal_distribution<double> nd(0.0, 1.0);
    int64_t finite = 0;
    for (int64_t j = 0; j < I; ++j)
      for (int64_t k = 0; k < E; ++k) {
        const double v = value(static_cast<uint16_t>(k * I + j));
        // Infinities and NaNs would reach other rows through 0 * w in the product.
        wv[j * E + k] = std::isfinite(v) ? v : 0.0;
        finite += std::isfinite(v) ? 1 : 0;
        wv[(I + j) * E + k] = nd(gen);
      }
    const Array x = on_cuda(Array(xv, {M, E}, t)), w = on_cuda(Array(wv, {2 * I, E}, t)),
                nw = on_cuda(Array(nwv, {E}, t));
    const fast::RmsNormOptions o{.eps = 0.0f};
    const Array y = fast::rms_norm_linear(x, nw, w, o);
    const Array g = slice(y, {0, 0}, {M, I}), u = slice(y, {0, I}, {M, 2 * I});
    // The sweep covers what it claims: the gates are w's values (normal ones at least, in case
    // the product flushes subnormals: both sides below then see the same flushed gates).
    const std::vector<double> gv = g.to_vector<double>();
    int64_t seen = 0;
    for (int64_t r = 0; r < E; ++r)
      for (int64_t j = 0; j < I; ++j) {
        const double want = wv[j * E + r], a = std::fabs(want);
        if (a == 0.0 || a >= (t == bfloat16 ? 1.1754943508222875e-38 : 6.103515625e-05)) {
          ASSERT_EQ(gv[r * I + j], want) << dtype_name(t) << " gate " << r << "," << j;
          ++seen;
        }
      }
    EXPECT_GT(seen, finite * 9 / 10) << dtype_name(t);
    for (fast::GatedActivation a : acts) {
      const std::string what = name(t, fmt::format("act {}", static_cast<int>(a)));
      const Array got = fast::rms_norm_glu(x, nw, w, a, o);
      const Array sep = (a == fast::GatedActivation::silu   ? silu(g)
                         : a == fast::GatedActivation::gelu ? gelu(g)
                                                            : gelu_tanh(g)) *
                        u;
      const auto gb = got.to_vector<double>(), sb = sep.to_vector<double>();
      ASSERT_EQ(gb.size(), sb.size()) << what;
      for (size_t i = 0; i < gb.size(); ++i) {
        if (std::isnan(gb[i]) && std::isnan(sb[i])) continue;
        ASSERT_EQ(gb[i], sb[i]) << what << " at row " << i / I << " gate " << gv[i];
      }
    }
  }
}

TEST(CudaMatmul, OperandLayouts) {
  INGOT_REQUIRE_CUDA();
  const int64_t M = 37, K = 64, N = 29;
  struct LayoutCase {
    const char* what;
    Shape base;
    View view;
  };
  const LayoutCase a_cases[] = {
      {"a contiguous", {M, K}, identity},
      {"a transposed", {K, M}, [](const Array& x) { return transpose(x); }},
      {"a sliced (row stride, odd offset)",
       {M + 3, K + 5},
       [](const Array& x) {
         return slice(x, {1, 1}, {M + 1, K + 1});
       }},
      {"a step-2 columns (copied)",
       {M, 2 * K},
       [](const Array& x) {
         return slice(x, {0, 0}, {M, 2 * K}, {1, 2});
       }},
      {"a broadcast row (copied)",
       {1, K},
       [](const Array& x) {
         return broadcast_to(x, {M, K});
       }},
      {"a transposed slice",
       {K + 2, M},
       [](const Array& x) {
         return transpose(slice(x, {1, 0}, {K + 1, M}));
       }},
  };
  const LayoutCase b_cases[] = {
      {"b contiguous", {K, N}, identity},
      {"b transposed (Linear weight)", {N, K}, [](const Array& x) { return transpose(x); }},
      {"b sliced",
       {K, N + 7},
       [](const Array& x) {
         return slice(x, {0, 1}, {K, N + 1});
       }},
      {"b broadcast column (copied)",
       {K, 1},
       [](const Array& x) {
         return broadcast_to(x, {K, N});
       }},
  };
  uint32_t seed = 100;
  for (Dtype t : {float32, bfloat16, float64})
    for (const LayoutCase& ca : a_cases)
      for (const LayoutCase& cb : b_cases) {
        const Pair a = both(host_normal(ca.base, t, seed++), ca.view);
        const Pair b = both(host_normal(cb.base, t, seed++), cb.view);
        check_matmul(a, b, name(t, std::string(ca.what) + " @ " + cb.what));
      }
}

TEST(CudaMatmul, OneDimensionalOperands) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, bfloat16}) {
    const Pair v = both(host_normal({48}, t, 1), identity);
    const Pair m = both(host_normal({48, 20}, t, 2), identity);
    const Pair mt = both(host_normal({20, 48}, t, 3), identity);
    const Pair w = both(host_normal({48}, t, 4), identity);
    const Pair strided =
        both(host_normal({96}, t, 5), [](const Array& x) { return slice(x, {0}, {96}, {2}); });
    check_matmul(v, m, name(t, "[K] @ [K, N]"));
    check_matmul(mt, v, name(t, "[M, K] @ [K]"));
    check_matmul(v, w, name(t, "[K] @ [K]"));
    check_matmul(strided, m, name(t, "strided [K] @ [K, N]"));
    check_matmul(mt, strided, name(t, "[M, K] @ strided [K]"));
    const Pair batch = both(host_normal({3, 5, 48}, t, 6), identity);
    check_matmul(batch, v, name(t, "[B, M, K] @ [K]"));
    check_matmul(v, both(host_normal({3, 48, 7}, t, 7), identity), name(t, "[K] @ [B, K, N]"));
  }
}

TEST(CudaMatmul, BatchBroadcasting) {
  INGOT_REQUIRE_CUDA();
  const int64_t M = 9, K = 24, N = 11;
  auto swap01 = [](const Array& x) { return swapaxes(x, 0, 1); };
  auto last_t = [](const Array& x) { return swapaxes(x, -1, -2); };
  struct BatchCase {
    const char* what;
    Shape a_base, b_base;
    View a_view, b_view;
  };
  const BatchCase cases[] = {
      {"[4,3,M,K] @ [K,N] (folded)", {4, 3, M, K}, {K, N}, identity, identity},
      {"[4,3,1,K] @ [K,N] (decode rows folded)", {4, 3, 1, K}, {K, N}, identity, identity},
      {"[4,3,M,K] @ [4,3,K,N]", {4, 3, M, K}, {4, 3, K, N}, identity, identity},
      {"[4,1,M,K] @ [3,K,N] (looped)", {4, 1, M, K}, {3, K, N}, identity, identity},
      {"[M,K] @ [4,3,K,N] (a shared)", {M, K}, {4, 3, K, N}, identity, identity},
      {"[2,3,M,K] @ [2,3,N,K]^T (scores)", {2, 3, M, K}, {2, 3, N, K}, identity, last_t},
      {"[3,4,M,K] swapped batch axes", {3, 4, M, K}, {4, 3, K, N}, swap01, identity},
      {"[4,3,K,M]^T @ [K,N]", {4, 3, K, M}, {K, N}, last_t, identity},
      {"[4,M,K] @ [4,K,N] batch-sliced",
       {8, M, K},
       {4, K, N},
       [](const Array& x) {
         return slice(x, {0, 0, 0}, {8, M, K}, {2, 1, 1});
       },
       identity},
      {"[2,1,3,M,K] @ [1,5,1,K,N]", {2, 1, 3, M, K}, {1, 5, 1, K, N}, identity, identity},
  };
  uint32_t seed = 300;
  for (Dtype t : {float32, bfloat16, float16, float64})
    for (const BatchCase& c : cases) {
      const Pair a = both(host_normal(c.a_base, t, seed++), c.a_view);
      const Pair b = both(host_normal(c.b_base, t, seed++), c.b_view);
      check_matmul(a, b, name(t, c.what));
    }
}

TEST(CudaMatmul, EmptyDimensions) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, bfloat16, float64}) {
    const Pair a = both(host_normal({3, 0}, t, 1), identity);
    const Pair b = both(host_normal({0, 4}, t, 2), identity);
    const Array z = matmul(a.gpu, b.gpu);
    expect_close(z, matmul(a.cpu, b.cpu), 0, 0, name(t, "K = 0"));
    expect_close(z, zeros({3, 4}, t, cpu_device), 0, 0, name(t, "K = 0 is zeros"));
    struct Empty {
      Shape a, b;
    };
    for (const Empty& e : {Empty{{0, 5}, {5, 4}}, Empty{{3, 5}, {5, 0}}, Empty{{0, 3, 5}, {5, 4}},
                           Empty{{2, 0, 5}, {2, 5, 4}}, Empty{{2, 3, 0}, {0, 6}}}) {
      const Pair x = both(host_normal(e.a, t, 3), identity);
      const Pair y = both(host_normal(e.b, t, 4), identity);
      expect_close(matmul(x.gpu, y.gpu), matmul(x.cpu, y.cpu), 0, 0,
                   name(t, shape_str(e.a) + " @ " + shape_str(e.b)));
    }
  }
}

TEST(CudaMatmul, LargeOutput) {
  INGOT_REQUIRE_CUDA();
  const Pair a = both(host_normal({1030, 96}, float32, 1), identity);
  const Pair b =
      both(host_normal({1100, 96}, float32, 2), [](const Array& x) { return transpose(x); });
  check_matmul(a, b, "float32 1030x96x1100");
  const Pair ah = both(host_normal({1030, 96}, bfloat16, 3), identity);
  const Pair bh = both(host_normal({96, 1100}, bfloat16, 4), identity);
  check_matmul(ah, bh, "bfloat16 1030x96x1100");
}

// ---- addmm ----

void check_addmm(const Pair& c, const Pair& a, const Pair& b, float alpha, float beta,
                 const std::string& what) {
  const Array want = addmm(c.cpu, a.cpu, b.cpu, alpha, beta);
  const Array got = addmm(c.gpu, a.gpu, b.gpu, alpha, beta);
  const Array scale = add(multiply(abs_product(a.cpu, b.cpu), Array(std::fabs(double(alpha)))),
                          multiply(abs(astype(c.cpu, float64)), Array(std::fabs(double(beta)))));
  expect_gemm_close(got, want, scale, acc_tol(want.dtype()), what);
}

TEST(CudaAddmm, AlphaBetaAndBroadcastC) {
  INGOT_REQUIRE_CUDA();
  const int64_t M = 17, K = 40, N = 23;
  const float ab[][2] = {{1.0f, 1.0f}, {0.5f, -2.0f}, {2.0f, 0.0f}, {0.0f, 1.5f}};
  struct CCase {
    const char* what;
    Shape shape;
  };
  const CCase cs[] = {
      {"c [M,N]", {M, N}}, {"c [N] (bias)", {N}}, {"c [M,1]", {M, 1}}, {"c [1]", {1}}};
  uint32_t seed = 500;
  for (Dtype t : {float32, bfloat16, float16, float64})
    for (const CCase& cc : cs)
      for (const auto& p : ab) {
        const Pair c = both(host_normal(cc.shape, t, seed++), identity);
        const Pair a = both(host_normal({M, K}, t, seed++), identity);
        const Pair b =
            both(host_normal({N, K}, t, seed++), [](const Array& x) { return transpose(x); });
        check_addmm(c, a, b, p[0], p[1],
                    name(t, std::string(cc.what) + " alpha " + std::to_string(p[0]) + " beta " +
                                std::to_string(p[1])));
      }
}

TEST(CudaAddmm, BatchedStridedCAndDecode) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, bfloat16}) {
    const Pair c = both(host_normal({2, 3, 7 + 4}, t, 1), [](const Array& x) {
      return slice(x, {0, 0, 2}, {2, 3, 9});
    });
    const Pair a = both(host_normal({2, 3, 16}, t, 2), identity);
    const Pair b = both(host_normal({16, 7}, t, 3), identity);
    check_addmm(c, a, b, 1.0f, 1.0f, name(t, "sliced c [2,3,7], a [2,3,K] @ [K,N]"));
    const Pair c1 = both(host_normal({1, 4096}, t, 4), identity);
    const Pair x1 = both(host_normal({1, 1024}, t, 5), identity);
    const Pair w1 =
        both(host_normal({4096, 1024}, t, 6), [](const Array& x) { return transpose(x); });
    check_addmm(c1, x1, w1, 1.0f, 1.0f, name(t, "decode row with bias"));
  }
}

TEST(CudaAddmm, UnheldCIsUpdatedInPlace) {
  // c computed on the device and held by nothing but the AddMM (an accumulated gradient): its
  // buffer becomes the output and the GEMM adds into it. Batched [2, 40, K] @ [K, N] rows (the
  // GEMM path, not the GEMV's), alpha/beta other than 1. The result must equal, bit for bit,
  // the one from a held c (copied into the output first), which must leave c unchanged.
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 900;
  for (Dtype t : {float32, bfloat16}) {
    const Pair c = both(host_normal({2, 40, 24}, t, seed++), identity);
    const Pair a = both(host_normal({2, 40, 32}, t, seed++), identity);
    const Pair b =
        both(host_normal({24, 32}, t, seed++), [](const Array& x) { return transpose(x); });
    for (const auto& p : {std::pair{1.0f, 1.0f}, std::pair{0.5f, -2.0f}}) {
      const Array c3 = multiply(c.cpu, Array(3.0, t));
      const Array want = astype(addmm(astype(c3, float64), astype(a.cpu, float64),
                                      astype(b.cpu, float64), p.first, p.second),
                                t);
      const Array got = addmm(multiply(c.gpu, Array(3.0, t)), a.gpu, b.gpu, p.first, p.second);
      const Array held = multiply(c.gpu, Array(3.0, t));
      held.eval();
      const std::vector<double> before = held.to_vector<double>();
      const Array got2 = addmm(held, a.gpu, b.gpu, p.first, p.second);
      EXPECT_EQ(got.to_vector<double>(), got2.to_vector<double>()) << name(t, "unheld vs held c");
      EXPECT_EQ(held.to_vector<double>(), before) << name(t, "held c changed");
      // Against float64 rounded once: float32 within the accumulation tolerance; for bf16 the
      // GEMM's epilogue may round the terms (an H100 gave 2 ulps off the rounded result where
      // terms of ~25 cancel to 0.45), so within a bf16 rounding of their magnitudes.
      const Array scale =
          add(multiply(abs_product(a.cpu, b.cpu), Array(std::fabs(double(p.first)))),
              multiply(abs(astype(c3, float64)), Array(std::fabs(double(p.second)))));
      expect_gemm_close(got, want, scale, t == float32 ? acc_tol(t) : dtype_rtol(t),
                        name(t, "unheld c, batched"));
    }
  }
}

TEST(CudaAddmm, EmptyKGivesBetaC) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, bfloat16, float64}) {
    const Pair c = both(host_normal({3, 4}, t, 1), identity);
    const Pair a = both(host_normal({3, 0}, t, 2), identity);
    const Pair b = both(host_normal({0, 4}, t, 3), identity);
    const Array got = addmm(c.gpu, a.gpu, b.gpu, 2.0f, -0.5f);
    expect_close(got, addmm(c.cpu, a.cpu, b.cpu, 2.0f, -0.5f), 0, 0, name(t, "K = 0 addmm"));
    const Pair cb = both(host_normal({4}, t, 4), identity);
    expect_close(addmm(cb.gpu, a.gpu, b.gpu, 1.0f, 3.0f), addmm(cb.cpu, a.cpu, b.cpu, 1.0f, 3.0f),
                 0, 0, name(t, "K = 0 addmm, broadcast c"));
  }
}

// ---- autodiff ----

TEST(CudaMatmul, VjpMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, float64}) {
    const Array a = host_normal({2, 5, 16}, t, 1);
    const Array w = host_normal({7, 16}, t, 2);  // Linear weight [N, K]
    const Array ct = host_normal({2, 5, 7}, t, 3);
    auto fn = [](const std::vector<Array>& in) {
      return std::vector<Array>{matmul(in[0], transpose(in[1]))};
    };
    const auto want = vjp(fn, {a, w}, {ct});
    const auto got = vjp(fn, {on_cuda(a), on_cuda(w)}, {on_cuda(ct)});
    const double tol = t == float64 ? 1e-12 : 2e-5;
    expect_close(got.first[0], want.first[0], tol, tol, name(t, "vjp output"));
    ASSERT_EQ(got.second.size(), 2u);
    expect_close(got.second[0], want.second[0], tol, tol, name(t, "vjp d/da"));
    expect_close(got.second[1], want.second[1], tol, tol, name(t, "vjp d/dw"));
  }
}

TEST(CudaAddmm, GradMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  const Array c = host_normal({6}, float32, 1);
  const Array a = host_normal({4, 8}, float32, 2);
  const Array b = host_normal({8, 6}, float32, 3);
  auto fn = [](const std::vector<Array>& in) {
    return std::vector<Array>{sum(square(addmm(in[0], in[1], in[2], 0.5f, 2.0f)))};
  };
  auto g = grad(fn, {0, 1, 2});
  const auto want = g({c, a, b});
  const auto got = g({on_cuda(c), on_cuda(a), on_cuda(b)});
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    expect_close(got[i], want[i], 1e-4, 1e-4, "addmm grad " + std::to_string(i));
}

}  // namespace
