// CUDA fast::lora_branch (forward and fused backward) against the CPU backend's kernels (which
// test_fast_lora checks against float64 loops): every x/y dtype, ranks 1..64 across the padded
// widths, row counts around the tiles, sizes that split the column and row sums over blocks, a
// column block of a stacked product as y, a transposed x; the same bits on every run; nn's
// LoRA layer on the GPU, fused against the composition (INGOT_FUSED_LORA=0).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/fast/lora.h"
#include "core/ingot.h"
#include "cuda_test_util.h"
#include "nn/layers.h"
#include "scoped_env.h"

using namespace ingot;
using namespace ingot::test;

namespace {

std::pair<std::vector<Array>, std::vector<Array>> branch_vjp(const Array& y, const Array& x,
                                                             const Array& a, const Array& b,
                                                             const Array& g, float scale) {
  auto res = vjp(
      [&](const std::vector<Array>& in) {
        return std::vector<Array>{fast::lora_branch(in[0], in[1], in[2], in[3], scale)};
      },
      {y, x, a, b}, {g});
  eval(res.first);
  eval(res.second);
  return res;
}

struct Case {
  int64_t rows, k, n, r;
};

/// da and db in float64 from the host values, with the sums of the absolute values of their
/// terms: a float32 result summed in any order over the case's rows and features is within
/// 2 (rows + k + n) 2^-24 of that absolute sum (dt and t are float32 sums themselves), which
/// holds for the CPU kernels' sequential sums and the GPU's split ones alike.
struct FactorGrads {
  std::vector<double> da, db, da_abs, db_abs;
};

FactorGrads factor_grads(const Array& x, const Array& a, const Array& b, const Array& g,
                         const Case& c, double scale) {
  const auto xv = x.to_vector<double>(), av = a.to_vector<double>(), bv = b.to_vector<double>(),
             gv = g.to_vector<double>();
  const auto M = static_cast<size_t>(c.rows), K = static_cast<size_t>(c.k),
             N = static_cast<size_t>(c.n), R = static_cast<size_t>(c.r);
  std::vector<double> t(M * R), ta(M * R), dt(M * R), dta(M * R);
  for (size_t m = 0; m < M; ++m)
    for (size_t j = 0; j < R; ++j) {
      for (size_t q = 0; q < K; ++q) {
        t[m * R + j] += xv[m * K + q] * av[j * K + q];
        ta[m * R + j] += std::fabs(xv[m * K + q] * av[j * K + q]);
      }
      for (size_t q = 0; q < N; ++q) {
        dt[m * R + j] += scale * gv[m * N + q] * bv[q * R + j];
        dta[m * R + j] += std::fabs(scale * gv[m * N + q] * bv[q * R + j]);
      }
    }
  FactorGrads f{std::vector<double>(R * K), std::vector<double>(N * R), std::vector<double>(R * K),
                std::vector<double>(N * R)};
  for (size_t m = 0; m < M; ++m)
    for (size_t j = 0; j < R; ++j) {
      for (size_t q = 0; q < K; ++q) {
        f.da[j * K + q] += dt[m * R + j] * xv[m * K + q];
        f.da_abs[j * K + q] += dta[m * R + j] * std::fabs(xv[m * K + q]);
      }
      for (size_t q = 0; q < N; ++q) {
        f.db[q * R + j] += scale * gv[m * N + q] * t[m * R + j];
        f.db_abs[q * R + j] += std::fabs(scale * gv[m * N + q]) * ta[m * R + j];
      }
    }
  return f;
}

void expect_within_sum_bound(const Array& got, const std::vector<double>& want,
                             const std::vector<double>& abs_sum, const Case& c,
                             const std::string& what) {
  const auto g = to_device(got, cpu_device).to_vector<double>();
  ASSERT_EQ(g.size(), want.size()) << what;
  const double u = 2.0 * static_cast<double>(c.rows + c.k + c.n) * std::ldexp(1.0, -24);
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i)
    if (std::fabs(g[i] - want[i]) > u * abs_sum[i] + 1e-30 && bad++ < 5)
      ADD_FAILURE() << what << " at " << i << ": got " << g[i] << ", float64 " << want[i]
                    << ", bound " << u * abs_sum[i];
}

/// CUDA against the CPU backend for the output, dy and dx (16-bit results may differ by one
/// ulp: float32 sums in another order on either side of a rounding boundary); da and db, sums
/// over every row, against float64 within the float32 summation bound (the CPU's sequential
/// float32 sums over thousands of rows are no closer to the truth than the GPU's).
void check_case(const Case& c, Dtype yt, Dtype xt, uint32_t seed) {
  const std::string what = "rows " + std::to_string(c.rows) + " k " + std::to_string(c.k) + " n " +
                           std::to_string(c.n) + " r " + std::to_string(c.r) + " y " +
                           std::string(dtype_name(yt)) + " x " + std::string(dtype_name(xt));
  const Array y = normal_host({c.rows, c.n}, yt, seed),
              x = normal_host({c.rows, c.k}, xt, seed + 1);
  const Array a = normal_host({c.r, c.k}, float32, seed + 2, 0.1),
              b = normal_host({c.n, c.r}, float32, seed + 3, 0.1);
  const Array g = normal_host({c.rows, c.n}, yt, seed + 4);
  auto [co, cg] = branch_vjp(y, x, a, b, g, 0.5f);
  auto [go, gg] = branch_vjp(on_cuda(y), on_cuda(x), on_cuda(a), on_cuda(b), on_cuda(g), 0.5f);
  expect_close(go[0], co[0], 1e-4, 2.02 * dtype_rtol(yt), what + " out");
  expect_close(gg[0], cg[0], 0, 0, what + " dy");
  expect_close(gg[1], cg[1], 1e-4, 2.02 * dtype_rtol(xt), what + " dx");
  const FactorGrads f = factor_grads(x, a, b, g, c, 0.5);
  expect_within_sum_bound(gg[2], f.da, f.da_abs, c, what + " da");
  expect_within_sum_bound(gg[3], f.db, f.db_abs, c, what + " db");
  expect_within_sum_bound(cg[2], f.da, f.da_abs, c, what + " da, CPU");
  expect_within_sum_bound(cg[3], f.db, f.db_abs, c, what + " db, CPU");
}

}  // namespace

TEST(CudaFastLora, EqualsCpuOverDtypesAndRanks) {
  INGOT_REQUIRE_CUDA();
  const Dtype dts[] = {float32, bfloat16, float16};
  uint32_t seed = 100;
  for (const Case& c :
       {Case{1, 8, 8, 1}, Case{31, 70, 130, 8}, Case{33, 129, 65, 16}, Case{64, 64, 200, 17},
        Case{97, 100, 300, 32}, Case{40, 260, 96, 33}, Case{65, 96, 129, 64}})
    for (Dtype yt : dts)
      for (Dtype xt : dts) check_case(c, yt, xt, seed += 10);
}

TEST(CudaFastLora, LargeShapesSplitTheSums) {
  INGOT_REQUIRE_CUDA();
  // 4096 tokens of a 2048-wide input (the project and colsum sums split over blocks), and a
  // rank-64 case with a float32 x (dropout's input).
  check_case({4096, 2048, 512, 16}, bfloat16, bfloat16, 1);
  check_case({1500, 640, 2304, 64}, bfloat16, float32, 2);
}

TEST(CudaFastLora, TensorCoreProjectEqualsCpu) {
  // x a^T and g b on tensor cores (the default, pinned here with INGOT_LORA_PROJECT_MMA=1; bf16
  // operands with a multiple of 8 columns, rank <= 16; p as three bf16 parts), held to the same
  // bounds as the float32 kernel.
  // Column counts around the 64-column stages (200: a partial last stage) and the splits,
  // ranks below 16, rows around the 64-row blocks; k = 70 is not a multiple of 8, so x a^T
  // stays on the SIMT kernel while g b (n = 96) takes the tensor cores.
  INGOT_REQUIRE_CUDA();
  const ScopedEnv mma("INGOT_LORA_PROJECT_MMA", "1");
  uint32_t seed = 700;
  for (const Case& c :
       {Case{1, 8, 8, 1}, Case{33, 128, 64, 16}, Case{64, 64, 200, 8}, Case{97, 136, 72, 12},
        Case{130, 70, 96, 16}, Case{65, 520, 1032, 5}, Case{4096, 2048, 512, 16}})
    check_case(c, bfloat16, bfloat16, seed += 10);
}

TEST(CudaFastLora, TensorCoreColsumEqualsCpu) {
  // da = dt^T x and db = s g^T t on tensor cores (the default, pinned here with
  // INGOT_LORA_COLSUM_MMA=1; bf16 operands with a multiple of 8 columns, rank <= 16; the float32
  // side as three bf16 parts), held to the same float64 bounds as the float32 kernel. Columns
  // around the 128-column blocks (200, 1032: a partial last block), rows around the 64-row stages
  // and the row splits (4096 rows), ranks below 16; k = 70 keeps da on the SIMT kernel while db (n
  // = 96) takes the tensor cores. Both kernels at once (with INGOT_LORA_PROJECT_MMA=1) as training
  // runs them.
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 800;
  for (const char* project : {"0", "1"}) {
    const ScopedEnv sum("INGOT_LORA_COLSUM_MMA", "1"), proj("INGOT_LORA_PROJECT_MMA", project);
    for (const Case& c :
         {Case{1, 8, 8, 1}, Case{33, 128, 64, 16}, Case{64, 64, 200, 8}, Case{97, 136, 72, 12},
          Case{130, 70, 96, 16}, Case{65, 520, 1032, 5}, Case{4096, 2048, 512, 16}})
      check_case(c, bfloat16, bfloat16, seed += 10);
  }
}

TEST(CudaFastLora, SimtProjectAndColsumEqualCpu) {
  // INGOT_LORA_PROJECT_MMA=0 / INGOT_LORA_COLSUM_MMA=0: the SIMT kernels (the tensor-core ones
  // are the default for bf16 at rank <= 16) on the cases the tensor-core tests use.
  INGOT_REQUIRE_CUDA();
  const ScopedEnv proj("INGOT_LORA_PROJECT_MMA", "0"), sum("INGOT_LORA_COLSUM_MMA", "0");
  uint32_t seed = 900;
  for (const Case& c :
       {Case{1, 8, 8, 1}, Case{33, 128, 64, 16}, Case{64, 64, 200, 8}, Case{97, 136, 72, 12},
        Case{130, 70, 96, 16}, Case{65, 520, 1032, 5}, Case{4096, 2048, 512, 16}})
    check_case(c, bfloat16, bfloat16, seed += 10);
}

TEST(CudaFastLora, WideExpandEqualsCpu) {
  // INGOT_LORA_EXPAND_WIDE=1: the expand kernel's 2 x 8 mapping with 16-byte loads and stores
  // (opt-in) over every output dtype, ranks up to 64, column counts that leave partial vectors
  // and unaligned rows (the element-wise fallback), and a strided y (a column block).
  INGOT_REQUIRE_CUDA();
  const ScopedEnv wide("INGOT_LORA_EXPAND_WIDE", "1");
  const Dtype dts[] = {float32, bfloat16, float16};
  uint32_t seed = 1300;
  for (const Case& c : {Case{1, 8, 8, 1}, Case{31, 70, 130, 8}, Case{33, 129, 65, 16},
                        Case{97, 100, 300, 32}, Case{65, 96, 129, 64}, Case{4096, 2048, 512, 16}})
    for (Dtype yt : dts) check_case(c, yt, yt, seed += 10);
  const Array stacked = on_cuda(normal_host({2, 40, 200}, bfloat16, 31));
  const Array y = slice(stacked, {0, 0, 64}, {2, 40, 192});
  const Array x = on_cuda(normal_host({2, 40, 72}, bfloat16, 32));
  const Array a = on_cuda(normal_host({16, 72}, float32, 33, 0.1));
  const Array b = on_cuda(normal_host({128, 16}, float32, 34, 0.1));
  const Array g = on_cuda(normal_host({2, 40, 128}, bfloat16, 35));
  auto to_cpu = [](const Array& v) { return to_device(v, cpu_device); };
  auto [o, gr] = branch_vjp(y, x, a, b, g, 0.5f);
  auto [co, cg] = branch_vjp(to_cpu(y), to_cpu(x), to_cpu(a), to_cpu(b), to_cpu(g), 0.5f);
  expect_close(o[0], co[0], 1e-4, 2.02 * dtype_rtol(bfloat16), "out of a column block");
  expect_close(gr[1], cg[1], 1e-4, 2.02 * dtype_rtol(bfloat16), "dx of a column block");
}

TEST(CudaFastLora, FusedSplitSumsGiveTheSeparateLaunchsBits) {
  // INGOT_LORA_FUSED_SPLITS=1: the tensor-core project and colsum kernels add their split sums
  // in the CTA that finishes last (opt-in) instead of a sum_splits_kernel launch: the same
  // float32 sums in the same order, so the same bits, on shapes that split (4096 rows), one that
  // does not, and twice in a row (the arrival counters must be back at 0 for the next launch).
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 1500;
  for (const Case& c : {Case{4096, 2048, 512, 16}, Case{4096, 8192, 2048, 16},
                        Case{1000, 2056, 136, 8}, Case{33, 128, 64, 16}}) {
    const Array y = on_cuda(normal_host({c.rows, c.n}, bfloat16, seed += 10));
    const Array x = on_cuda(normal_host({c.rows, c.k}, bfloat16, seed + 1));
    const Array a = on_cuda(normal_host({c.r, c.k}, float32, seed + 2, 0.1));
    const Array b = on_cuda(normal_host({c.n, c.r}, float32, seed + 3, 0.1));
    const Array g = on_cuda(normal_host({c.rows, c.n}, bfloat16, seed + 4));
    const std::string what = "rows " + std::to_string(c.rows) + " k " + std::to_string(c.k);
    auto [so, sg] = branch_vjp(y, x, a, b, g, 0.5f);
    const ScopedEnv fused("INGOT_LORA_FUSED_SPLITS", "1");
    for (int run = 0; run < 2; ++run) {
      auto [fo, fg] = branch_vjp(y, x, a, b, g, 0.5f);
      expect_close(fo[0], to_device(so[0], cpu_device), 0, 0, what + " out");
      for (size_t i = 1; i < 4; ++i)
        expect_close(fg[i], to_device(sg[i], cpu_device), 0, 0,
                     what + " grad " + std::to_string(i) + " run " + std::to_string(run));
    }
  }
}

TEST(CudaFastLora, StridedOperandsAndRepeatableBits) {
  INGOT_REQUIRE_CUDA();
  // y: columns [16, 56) of a [3, 50, 96] product; x: a transposed view (copied first).
  const Array stacked = on_cuda(normal_host({3, 50, 96}, bfloat16, 7));
  const Array y = slice(stacked, {0, 0, 16}, {3, 50, 56});
  const Array x = transpose(on_cuda(normal_host({3, 72, 50}, bfloat16, 8)), {0, 2, 1});
  const Array a = on_cuda(normal_host({12, 72}, float32, 9, 0.1));
  const Array b = on_cuda(normal_host({40, 12}, float32, 10, 0.1));
  const Array g = on_cuda(normal_host({3, 50, 40}, bfloat16, 11));
  auto [o1, g1] = branch_vjp(y, x, a, b, g, 1.5f);
  auto [o2, g2] = branch_vjp(y, x, a, b, g, 1.5f);
  auto to_cpu = [](const Array& v) { return to_device(v, cpu_device); };
  auto [co, cg] = branch_vjp(to_cpu(y), to_cpu(x), to_cpu(a), to_cpu(b), to_cpu(g), 1.5f);
  expect_close(o1[0], co[0], 1e-4, 2.02 * dtype_rtol(bfloat16), "out");
  for (size_t i = 1; i < 4; ++i)
    expect_close(g1[i], cg[i], 1e-4, i == 1 ? 2.02 * dtype_rtol(bfloat16) : 1e-4,
                 "grad " + std::to_string(i));
  expect_close(o2[0], to_cpu(o1[0]), 0, 0, "out, second run");
  for (size_t i = 0; i < 4; ++i)
    expect_close(g2[i], to_cpu(g1[i]), 0, 0, "grad, second run " + std::to_string(i));
}

TEST(CudaFastLora, LinearLayerFusedEqualsComposition) {
  INGOT_REQUIRE_CUDA();
  nn::Linear lin(256, 192, false, bfloat16);
  lin.update({{"weight", on_cuda(normal_host({192, 256}, bfloat16, 5, 0.05))}});
  const Array a = on_cuda(normal_host({16, 256}, float32, 1, 0.05));
  const Array b = on_cuda(normal_host({192, 16}, float32, 2, 0.05));
  const Array x = on_cuda(normal_host({4, 33, 256}, bfloat16, 3));
  const Array g = on_cuda(normal_host({4, 33, 192}, bfloat16, 4));
  auto run = [&](const char* flag) {
    setenv("INGOT_FUSED_LORA", flag, 1);
    auto res = vjp(
        [&](const std::vector<Array>& in) {
          lin.set_branch(nn::LowRankBranch{in[0], in[1], 2.0f, 0.0f});
          return std::vector<Array>{lin(in[2])};
        },
        {a, b, x}, {g});
    eval(res.first);
    eval(res.second);
    unsetenv("INGOT_FUSED_LORA");
    return res;
  };
  auto [fo, fg] = run("1");
  auto [ro, rg] = run("0");
  expect_close(fo[0], to_device(ro[0], cpu_device), 1e-3, 2.02 * dtype_rtol(bfloat16), "out");
  expect_close(fg[0], to_device(rg[0], cpu_device), 1e-4, 1e-4, "da");
  expect_close(fg[1], to_device(rg[1], cpu_device), 1e-4, 1e-4, "db");
  expect_close(fg[2], to_device(rg[2], cpu_device), 1e-3, 2.02 * dtype_rtol(bfloat16), "dx");
}
