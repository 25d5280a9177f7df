// Affine quantization (MLX layout): packing checked against words built here from the layout's
// definition (element j of a uint32 at bits [j * bits, (j + 1) * bits)); quantize's error bound
// and exact edge; dequantize and quantized_matmul against float64 loops over the unpacked
// values, every bit width, group size, ISA path the CPU has, decode and prefill row counts;
// the gradient w.r.t. x; errors. The GEMM path's panel blocking (several K blocks, partial
// panels, row blocks) on every ISA; the int8-activation GEMV (the decode default on the AVX2 and
// AVX-512 levels) against its documented bound and its integer scheme: every kernel the CPU has
// (portable everywhere, AVX2, AVX-512 VNNI), every scale dtype, rows with a partial last span.
// The decode GEMVs' bytes equal at 1, 2 and 3 threads. The bf16 prefill GEMM (AVX512_BF16)
// against its documented bound and a float64 replay of its scheme, and the same bytes at 1 and
// 2 threads.
#include <cpuid.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>

#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/gemm_kernels.h"
#include "backend/cpu/quantized_int8.h"
#include "test_util.h"
#include "util/thread_pool.h"

namespace ingot {
namespace {

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

/// q values of a packed [rows, words] array, unpacked by the layout's definition.
std::vector<uint32_t> unpack(const std::vector<uint32_t>& words, int bits) {
  const int per = 32 / bits;
  std::vector<uint32_t> q;
  for (uint32_t w : words)
    for (int j = 0; j < per; ++j) q.push_back((w >> (j * bits)) & ((1u << bits) - 1u));
  return q;
}

/// Random packed weight, scales and biases for [n, k].
struct Packed {
  std::vector<uint32_t> words;
  std::vector<double> scales, biases;
  Array w, s, b;
};
Packed random_packed(int64_t n, int64_t k, int gs, int bits, Dtype sdt, uint32_t seed) {
  std::mt19937 g(seed);
  Packed p;
  p.words.resize(static_cast<size_t>(n * k * bits / 32));
  for (auto& w : p.words) w = static_cast<uint32_t>(g());
  p.scales = test::random_values(n * k / gs, sdt, seed + 1, 0.001, 0.05);
  p.biases = test::random_values(n * k / gs, sdt, seed + 2, -0.4, 0.2);
  p.w = Array(p.words, {n, k * bits / 32}, uint32);
  p.s = Array(p.scales, {n, k / gs}, sdt);
  p.b = Array(p.biases, {n, k / gs}, sdt);
  return p;
}

struct Case {
  int bits, gs;
};
const Case kCases[] = {{4, 32}, {4, 64}, {4, 128}, {8, 32}, {8, 64}, {8, 128}};

TEST(Quantized, DequantizeMatchesLayoutDefinition) {
  for (const Case c : kCases)
    for (Dtype sdt : {float32, bfloat16, float16}) {
      const int64_t n = 3, k = 256;
      Packed p = random_packed(n, k, c.gs, c.bits, sdt, 7);
      std::vector<uint32_t> q = unpack(p.words, c.bits);
      std::vector<double> got =
          dequantize(p.w, p.s, p.b, {.group_size = c.gs, .bits = c.bits}).to_vector<double>();
      ASSERT_EQ(got.size(), static_cast<size_t>(n * k));
      for (int64_t i = 0; i < n * k; ++i) {
        const double want = p.scales[i / c.gs] * q[i] + p.biases[i / c.gs];
        // float32 product and sum (one rounding each), then one rounding to the output dtype.
        const double sq = std::abs(p.scales[i / c.gs] * q[i]);
        ASSERT_NEAR(got[i], want,
                    (sq + std::abs(want)) * std::ldexp(1.0, -24) +
                        std::abs(want) * (sdt == float32 ? 0 : test::eps_of(sdt)) + 1e-30)
            << c.bits << "/" << c.gs << " " << dtype_name(sdt) << " at " << i;
      }
    }
}

TEST(Quantized, QuantizeRoundTripBoundAndExactEdge) {
  for (const Case c : kCases) {
    const int64_t n = 5, k = 384;
    std::vector<double> v = test::random_values(n * k, float32, 11, -1.5, 1.0);
    v[3] = 0.0;                                         // a group with an exact zero
    for (int j = 0; j < c.gs; ++j) v[c.gs + j] = 0.25;  // a constant group
    Array w(v, {n, k}, float32);
    QuantizedWeight qw = quantize(w, {.group_size = c.gs, .bits = c.bits});
    ASSERT_EQ(qw.w.dtype(), uint32);
    ASSERT_EQ(qw.w.shape(), (Shape{n, k * c.bits / 32}));
    ASSERT_EQ(qw.scales.shape(), (Shape{n, k / c.gs}));
    ASSERT_EQ(qw.biases.dtype(), float32);
    std::vector<uint32_t> q = unpack(qw.w.to_vector<uint32_t>(), c.bits);
    std::vector<double> s = qw.scales.to_vector<double>(), b = qw.biases.to_vector<double>();
    for (int64_t g = 0; g < n * k / c.gs; ++g) {
      double lo = 1e9, hi = -1e9;
      for (int j = 0; j < c.gs; ++j) {
        lo = std::min(lo, v[g * c.gs + j]);
        hi = std::max(hi, v[g * c.gs + j]);
      }
      const double edge = std::abs(lo) > std::abs(hi) ? lo : hi;
      // The step starts at (max - min) / n_bins; making the edge exact (step = edge / q0 with
      // q0 = rint(edge / step), |edge / step| >= n_bins / 2) moves it into
      // [(max - min) / (n_bins + 1), (max - min) / (n_bins - 1)]. Values past the far edge then
      // clip at n_bins, at most (max - min) / (n_bins + 1) away; others round to step / 2.
      const double n_bins = (1 << c.bits) - 1;
      const double step = std::abs(s[g]);
      const double range = hi - lo;
      EXPECT_LE(step, std::max(range / (n_bins - 1), 1e-7) * (1 + 1e-6)) << g;
      EXPECT_GE(step, std::min(range / (n_bins + 1), 1e-7) * (1 - 1e-6)) << g;
      const double bound = std::max(step / 2, range / (n_bins + 1));
      for (int j = 0; j < c.gs; ++j) {
        const int64_t i = g * c.gs + j;
        const double back = s[g] * q[i] + b[g];
        EXPECT_LE(std::abs(back - v[i]), bound + 1e-6 * (std::abs(v[i]) + 1e-6))
            << c.bits << "/" << c.gs << " at " << i;
        if (v[i] == edge) {
          EXPECT_EQ(back, edge) << "edge of group " << g;
        }
      }
    }
    // dequantize(quantize(w)) agrees with the unpacking above.
    std::vector<double> dq =
        dequantize(qw.w, qw.scales, qw.biases, {.group_size = c.gs, .bits = c.bits})
            .to_vector<double>();
    for (int64_t i = 0; i < n * k; ++i)
      ASSERT_NEAR(dq[i], s[i / c.gs] * q[i] + b[i / c.gs], 1e-6 * (std::abs(dq[i]) + 1));
  }
}

TEST(Quantized, QuantizeBf16KeepsDtype) {
  std::vector<double> v = test::random_values(2 * 64, bfloat16, 3);
  QuantizedWeight qw = quantize(Array(v, {2, 64}, bfloat16), {.group_size = 32, .bits = 8});
  EXPECT_EQ(qw.scales.dtype(), bfloat16);
  EXPECT_EQ(qw.biases.dtype(), bfloat16);
  std::vector<double> back =
      dequantize(qw.w, qw.scales, qw.biases, {.group_size = 32, .bits = 8}).to_vector<double>();
  std::vector<uint32_t> q = unpack(qw.w.to_vector<uint32_t>(), 8);
  std::vector<double> sc = qw.scales.to_vector<double>(), bi = qw.biases.to_vector<double>();
  const double u = test::eps_of(bfloat16);
  for (size_t i = 0; i < v.size(); ++i) {
    // Step / 2 (or the clip distance, <= step) plus the bf16 rounding of the scale (times q)
    // and of the bias, plus the bf16 rounding of the result.
    const double s = std::abs(sc[i / 32]), b = std::abs(bi[i / 32]);
    EXPECT_NEAR(back[i], v[i], s * (1 + u) + q[i] * s * u + b * u + std::abs(v[i]) * u + 1e-6) << i;
  }
}

/// x [m, k] @ dequant(w)^T in float64 and the error scale of the kernels' formula:
/// sum_g |s| sum |x q| + |b| |sum x| (float32 rounding of each term).
struct Ref {
  std::vector<double> v, scale;
};
Ref reference(const std::vector<double>& x, int64_t m, int64_t k, const Packed& p, int64_t n,
              int gs, int bits) {
  std::vector<uint32_t> q = unpack(p.words, bits);
  Ref r;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0, sc = 0;
      for (int64_t g = 0; g < k / gs; ++g) {
        const double s = p.scales[j * (k / gs) + g], b = p.biases[j * (k / gs) + g];
        double xq = 0, xs = 0, xsa = 0;
        for (int t = 0; t < gs; ++t) {
          const double xv = x[i * k + g * gs + t];
          const double qv = q[j * k + g * gs + t];
          acc += xv * (s * qv + b);
          xq += std::abs(xv * qv);
          xs += xv;
          xsa += std::abs(xv);
        }
        sc += std::abs(s) * xq + std::abs(b) * (std::abs(xs) + xsa);
      }
      r.v.push_back(acc);
      r.scale.push_back(sc);
    }
  return r;
}

void expect_close(const Array& got, const Ref& ref, int64_t k, const std::string& what) {
  std::vector<double> g = got.to_vector<double>();
  ASSERT_EQ(g.size(), ref.v.size()) << what;
  const double out_round = got.dtype() == float32 ? 0 : test::eps_of(got.dtype());
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    // float32 accumulation: ~sqrt(K) unit roundoffs of the error scale, then one rounding of
    // the result to a 16-bit output dtype.
    const double tol = 1e-6 * std::sqrt(static_cast<double>(k) + 1) * ref.scale[i] +
                       out_round * std::abs(ref.v[i]) + 1e-30;
    if (!(std::abs(g[i] - ref.v[i]) <= tol) && bad++ < 5)
      ADD_FAILURE() << what << " at " << i << ": got " << g[i] << " want " << ref.v[i] << " tol "
                    << tol;
  }
}

/// AVX512_VNNI (cpuid leaf 7, ECX bit 11).
bool cpu_has_vnni() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return cpu::hardware_isa() >= cpu::Isa::avx512 && ((c >> 11) & 1u);
}

/// quantized_matmul forced to the int8 kernels (true) or the float32 path (false) for a scope.
using Int8Scope = cpu::ScopedInt8Decode;

/// Whether quantized_matmul runs the int8 kernels on level `isa` with them switched on, for m
/// rows of x and `bits`-bit weights (the documented rule, cpu::int8_gemv_faster): VNNI always;
/// the AVX2 kernel for decode (m < 16), and for 4-bit prefill on the avx2 level; the portable
/// kernel for 8-bit decode.
bool int8_runs(const std::string& isa, int64_t m, int bits) {
  if (isa == "portable") return m < 16 && bits == 8;
  if (isa == "avx512" && cpu_has_vnni()) return true;
  return m < 16 || (bits == 4 && isa == "avx2");
}

/// Whether quantized_matmul runs the bf16 prefill GEMM on level `isa` with the int8 kernels
/// switched on (the documented rule, cpu::bf16_prefill_faster): the avx512 level of an
/// AVX512_BF16 CPU, from 32 rows of x (8-bit) or 48 (4-bit).
bool bf16_runs(const std::string& isa, int64_t m, int bits) {
  return isa == "avx512" && cpu::has_avx512_bf16() && m >= (bits == 8 ? 32 : 48);
}

/// x as the bf16 prefill multiplies it: rounded to bf16 (nearest even).
std::vector<double> bf16_rounded(const std::vector<double>& xv) {
  std::vector<double> r;
  for (double v : xv) r.push_back(test::round_to(v, bfloat16));
  return r;
}

/// The bf16 prefill's documented bound: against the float64 product of bf16(x) and the
/// dequantized weights, (2^-8 + 2^-23) * sum |bf16(x) w| (the weights' rounding to bf16), plus
/// float32 accumulation as elsewhere and the rounding to a 16-bit output dtype (out_round).
void expect_bf16_bound(const std::vector<double>& got, const std::vector<double>& xv, int64_t m,
                       int64_t k, const Packed& p, int64_t n, const Case c, const std::string& what,
                       double out_round = 0) {
  const std::vector<double> xb = bf16_rounded(xv);
  const std::vector<uint32_t> q = unpack(p.words, c.bits);
  const int64_t groups = k / c.gs;
  ASSERT_EQ(got.size(), static_cast<size_t>(m * n)) << what;
  int bad = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0, mag = 0;
      for (int64_t t = 0; t < k; ++t) {
        const double w =
            p.scales[j * groups + t / c.gs] * q[j * k + t] + p.biases[j * groups + t / c.gs];
        acc += xb[i * k + t] * w;
        mag += std::abs(xb[i * k + t] * w);
      }
      const double bound = (std::ldexp(1.0, -8) + std::ldexp(1.0, -23)) * mag;
      const double tol =
          bound + 1e-6 * std::sqrt(k + 1.0) * mag + out_round * (std::abs(acc) + bound);
      const double g = got[static_cast<size_t>(i * n + j)];
      if (!(std::abs(g - acc) <= tol) && bad++ < 5)
        ADD_FAILURE() << what << " at " << i << "," << j << ": got " << g << " want " << acc
                      << " tol " << tol;
    }
}

/// The bf16 prefill's scheme replayed in float64: bf16(x) times bf16(fma_f32(q, s, b)).
std::vector<double> bf16_scheme(const std::vector<double>& xv, int64_t m, int64_t k,
                                const Packed& p, int64_t n, const Case c) {
  const std::vector<double> xb = bf16_rounded(xv);
  const std::vector<uint32_t> q = unpack(p.words, c.bits);
  const int64_t groups = k / c.gs;
  std::vector<double> wb(static_cast<size_t>(n * k));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t t = 0; t < k; ++t) {
      const float f = std::fma(static_cast<float>(q[j * k + t]),
                               static_cast<float>(p.scales[j * groups + t / c.gs]),
                               static_cast<float>(p.biases[j * groups + t / c.gs]));
      wb[j * k + t] = static_cast<float>(bfloat16_t(f));
    }
  std::vector<double> y;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t t = 0; t < k; ++t) acc += xb[i * k + t] * wb[j * k + t];
      y.push_back(acc);
    }
  return y;
}

/// INGOT_CPU_INT8 set (or, with nullptr, unset) for a scope; the previous value comes back.
struct Int8EnvScope {
  explicit Int8EnvScope(const char* v) {
    if (const char* old = std::getenv("INGOT_CPU_INT8")) prev = old;
    if (v)
      setenv("INGOT_CPU_INT8", v, 1);
    else
      unsetenv("INGOT_CPU_INT8");
  }
  ~Int8EnvScope() {
    if (prev)
      setenv("INGOT_CPU_INT8", prev->c_str(), 1);
    else
      unsetenv("INGOT_CPU_INT8");
  }
  std::optional<std::string> prev;
};

/// The int8-activation GEMV's documented bound: rounding x to a step of max|x_g| / 127 moves
/// each group's product by <= step / 2 * |s| * sum(q); plus float32 rounding as elsewhere.
/// out_round: unit roundoff of the output dtype (0 for float32).
void expect_int8_bound(const std::vector<double>& got, const std::vector<double>& xv, int64_t m,
                       int64_t k, const Packed& p, int64_t n, const Case c, const std::string& what,
                       double out_round = 0) {
  const Ref ref = reference(xv, m, k, p, n, c.gs, c.bits);
  std::vector<uint32_t> q = unpack(p.words, c.bits);
  ASSERT_EQ(got.size(), ref.v.size()) << what;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double bound = 0;
      for (int64_t gi = 0; gi < k / c.gs; ++gi) {
        double amax = 0, qsum = 0;
        for (int t = 0; t < c.gs; ++t) {
          amax = std::max(amax, std::abs(xv[i * k + gi * c.gs + t]));
          qsum += q[j * k + gi * c.gs + t];
        }
        bound += std::abs(p.scales[j * (k / c.gs) + gi]) * amax / 127 / 2 * qsum;
      }
      const size_t o = static_cast<size_t>(i * n + j);
      const double tol = bound * (1 + 1e-5) + 1e-6 * std::sqrt(k + 1.0) * ref.scale[o] +
                         out_round * (std::abs(ref.v[o]) + bound);
      ASSERT_NEAR(got[o], ref.v[o], tol) << what << " at " << o;
    }
}

TEST(Quantized, MatmulAgainstFloat64EveryPath) {
  const int64_t k = 256, n = 37;
  for (const char* isa : isas()) {
    IsaScope scope(isa);
    for (const Case c : kCases)
      for (int64_t m : {1, 2, 3, 5, 17, 33, 50}) {
        const Dtype xdt = m % 2 ? float32 : bfloat16;
        const Dtype sdt = c.gs == 64 ? bfloat16 : (c.gs == 32 ? float16 : float32);
        Packed p = random_packed(n, k, c.gs, c.bits, sdt, static_cast<uint32_t>(m * 31 + c.gs));
        std::vector<double> xv = test::random_values(m * k, xdt, static_cast<uint32_t>(m), -1, 1);
        Array x(xv, {m, k}, xdt);
        for (bool int8 : {false, true}) {
          Int8Scope i8(int8);
          Array y = quantized_matmul(x, p.w, p.s, p.b, true, {.group_size = c.gs, .bits = c.bits});
          ASSERT_EQ(y.shape(), (Shape{m, n}));
          ASSERT_EQ(y.dtype(), xdt);
          const std::string what =
              fmt::format("{} int8={} bits={} gs={} m={}", isa, int8, c.bits, c.gs, m);
          // The bf16 prefill or the int8 kernels where they run (bf16_runs, int8_runs);
          // elsewhere the float32 paths.
          if (int8 && bf16_runs(isa, m, c.bits))
            expect_bf16_bound(y.to_vector<double>(), xv, m, k, p, n, c, what,
                              xdt == float32 ? 0 : test::eps_of(xdt));
          else if (int8 && int8_runs(isa, m, c.bits))
            expect_int8_bound(y.to_vector<double>(), xv, m, k, p, n, c, what,
                              xdt == float32 ? 0 : test::eps_of(xdt));
          else
            expect_close(y, reference(xv, m, k, p, n, c.gs, c.bits), k, what);
        }
      }
  }
}

TEST(Quantized, PrefillPanelsAgainstFloat64EveryPath) {
  // The GEMM path's blocking: K = 1152 is two full K blocks of 512 and a partial one of 128,
  // N = 133 is two full panels of 64 weight rows and one of 5 (padded to 8), M = 150 splits
  // into two row blocks; 16 and 19 rows exercise every register-tile height. The int8 kernels
  // on the same cases where they run prefill.
  const int64_t k = 1152, n = 133;
  for (const Case c : kCases)
    for (int64_t m : {16, 19, 150}) {
      const Dtype xdt = m == 19 ? float32 : bfloat16;
      const Dtype sdt = c.gs == 128 ? float32 : bfloat16;
      Packed p = random_packed(n, k, c.gs, c.bits, sdt, static_cast<uint32_t>(m + c.gs + c.bits));
      std::vector<double> xv = test::random_values(m * k, xdt, static_cast<uint32_t>(m + 5), -1, 1);
      const Ref ref = reference(xv, m, k, p, n, c.gs, c.bits);
      for (const char* isa : isas()) {
        IsaScope scope(isa);
        {
          Int8Scope i8(false);  // the float32 GEMM
          Array y = quantized_matmul(Array(xv, {m, k}, xdt), p.w, p.s, p.b, true,
                                     {.group_size = c.gs, .bits = c.bits});
          ASSERT_EQ(y.shape(), (Shape{m, n}));
          expect_close(y, ref, k, fmt::format("{} bits={} gs={} m={}", isa, c.bits, c.gs, m));
        }
        // Switched on: the bf16 prefill where it runs (AVX512_BF16, 150 rows), the int8 kernels
        // where they take prefill (AVX-512 VNNI, 4-bit AVX2 on the avx2 level; 150 rows are
        // three chunks of x codes), the float32 GEMM elsewhere.
        Int8Scope i8(true);
        Array y = quantized_matmul(Array(xv, {m, k}, xdt), p.w, p.s, p.b, true,
                                   {.group_size = c.gs, .bits = c.bits});
        const std::string what = fmt::format("int8 {} bits={} gs={} m={}", isa, c.bits, c.gs, m);
        if (bf16_runs(isa, m, c.bits))
          expect_bf16_bound(y.to_vector<double>(), xv, m, k, p, n, c, what,
                            xdt == float32 ? 0 : test::eps_of(xdt));
        else if (int8_runs(isa, m, c.bits))
          expect_int8_bound(y.to_vector<double>(), xv, m, k, p, n, c, what,
                            xdt == float32 ? 0 : test::eps_of(xdt));
        else
          expect_close(y, ref, k, what);
      }
    }
}

TEST(Quantized, Bf16PrefillAgainstFloat64) {
  // The bf16 prefill GEMM (AVX512_BF16) through quantized_matmul: within its documented bound of
  // the float64 product of bf16(x) and the dequantized weights, and within float32 accumulation
  // of its scheme replayed in float64 (weights bf16(fma(q, s, b)), nearest even). K = 1152 is
  // two K blocks of 512 and one of 128; N = 261 is two column tiles (144 + 117 columns at 1
  // thread, not multiples of any micro-kernel width); M just at and above the thresholds
  // (32, 48), odd, and 1041 (two row passes of <= 1024; N = 70 there). float32, bf16 and
  // float16 x; bf16, float16 and float32 scales. 2 threads give the bytes of 1 thread.
  if (!cpu::has_avx512_bf16()) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  IsaScope scope("avx512");
  Int8Scope i8(true);
  const int64_t k = 1152;
  int run = 0;
  for (const Case c : kCases)
    for (int64_t m : {int64_t{c.bits == 8 ? 32 : 48}, int64_t{c.bits == 8 ? 33 : 49}, int64_t{77},
                      int64_t{1041}}) {
      if (m == 1041 && c.gs != 64) continue;  // the row passes: once per bit width
      ASSERT_TRUE(cpu::bf16_prefill_faster(m, c.bits));
      const Dtype xdt = run % 3 == 0 ? float32 : (run % 3 == 1 ? bfloat16 : float16);
      const Dtype sdt = run % 4 == 0 ? float32 : (run % 4 == 1 ? float16 : bfloat16);
      ++run;
      const int64_t n = m == 1041 ? 70 : 261;
      Packed p = random_packed(n, k, c.gs, c.bits, sdt, static_cast<uint32_t>(m * 3 + c.gs));
      std::vector<double> xv = test::random_values(m * k, xdt, static_cast<uint32_t>(m + 9), -1, 1);
      xv[7] = 37.5;  // an outlier (no effect on the scheme: each x is rounded alone)
      Array x(xv, {m, k}, xdt);
      const std::vector<double> want = bf16_scheme(xv, m, k, p, n, c);
      const std::vector<double> xb = bf16_rounded(xv);
      std::vector<uint8_t> one;
      for (int threads : {1, 2}) {
        ScopedPoolThreads pool(threads);
        const std::string what = fmt::format("bits={} gs={} m={} x {} scales {} threads {}", c.bits,
                                             c.gs, m, dtype_name(xdt), dtype_name(sdt), threads);
        Array y = quantized_matmul(x, p.w, p.s, p.b, true, {.group_size = c.gs, .bits = c.bits});
        ASSERT_EQ(y.shape(), (Shape{m, n}));
        ASSERT_EQ(y.dtype(), xdt);
        const std::vector<double> got = y.to_vector<double>();
        y.eval();
        const auto* b = static_cast<const uint8_t*>(y.raw_ptr());
        std::vector<uint8_t> bytes(b, b + y.nbytes());
        if (threads == 2) {
          EXPECT_TRUE(bytes == one) << what << ": bytes differ from 1 thread";
          continue;
        }
        one = bytes;
        const double out_round = xdt == float32 ? 0 : test::eps_of(xdt);
        expect_bf16_bound(got, xv, m, k, p, n, c, what, out_round);
        const std::vector<uint32_t> q = unpack(p.words, c.bits);
        int bad = 0;
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            // float32 sums of exact bf16 products (|w| of the replayed weights, bounded here by
            // the scale and bias magnitudes).
            double mag = 0;
            for (int64_t t = 0; t < k; ++t)
              mag += std::abs(xb[i * k + t]) *
                     (std::abs(p.scales[j * (k / c.gs) + t / c.gs]) * q[j * k + t] +
                      std::abs(p.biases[j * (k / c.gs) + t / c.gs])) *
                     (1 + std::ldexp(1.0, -7));
            const size_t o = static_cast<size_t>(i * n + j);
            const double tol = 1e-6 * std::sqrt(k + 1.0) * mag + out_round * std::abs(want[o]);
            if (!(std::abs(got[o] - want[o]) <= tol) && bad++ < 5)
              ADD_FAILURE() << what << " replay at " << i << "," << j << ": got " << got[o]
                            << " want " << want[o] << " tol " << tol;
          }
      }
    }
}

TEST(Quantized, Bf16PrefillSelection) {
  // The documented rule: from 32 rows (8-bit) or 48 (4-bit) on the avx512 level of an
  // AVX512_BF16 CPU; never below the avx512 cap or with INGOT_CPU_BF16_GEMM=0; INGOT_CPU_INT8=0
  // keeps the float32 GEMM (its result within float32 rounding of the float64 product).
  for (const char* isa : isas()) {
    IsaScope scope(isa);
    for (int bits : {4, 8})
      for (int64_t m : {16, 31, 32, 47, 48, 128})
        EXPECT_EQ(cpu::bf16_prefill_faster(m, bits), bf16_runs(isa, m, bits))
            << isa << " bits " << bits << " m " << m;
  }
  if (!cpu::has_avx512_bf16()) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  IsaScope scope("avx512");
  setenv("INGOT_CPU_BF16_GEMM", "0", 1);
  EXPECT_FALSE(cpu::bf16_prefill_faster(128, 4));
  unsetenv("INGOT_CPU_BF16_GEMM");
  EXPECT_TRUE(cpu::bf16_prefill_faster(128, 4));
  const int64_t m = 64, k = 256, n = 40;
  const Case c{4, 64};
  Packed p = random_packed(n, k, c.gs, c.bits, bfloat16, 11);
  std::vector<double> xv = test::random_values(m * k, float32, 12, -1, 1);
  Array x(xv, {m, k}, float32);
  auto run = [&] {
    return quantized_matmul(x, p.w, p.s, p.b, true, {.group_size = c.gs, .bits = c.bits});
  };
  Int8EnvScope unset(nullptr);
  Array on = run(), off;
  {
    Int8EnvScope env("0");
    off = run();
    eval({off});
  }
  expect_close(off, reference(xv, m, k, p, n, c.gs, c.bits), k, "INGOT_CPU_INT8=0");
  const std::vector<double> got = on.to_vector<double>();
  expect_bf16_bound(got, xv, m, k, p, n, c, "default");
  // The rounding to bf16 shows: the default differs from the float32 path.
  EXPECT_NE(got, off.to_vector<double>());
}

/// The int8 scheme replayed here: x rounded per group exactly as documented (float32 step
/// 127 / max|x_g|, round to nearest), then everything else in float64; the kernels' own error
/// against it is float32 accumulation only.
std::vector<double> int8_scheme(const std::vector<double>& xv, int64_t m, int64_t k,
                                const Packed& p, int64_t n, const Case c) {
  std::vector<uint32_t> q = unpack(p.words, c.bits);
  const int64_t groups = k / c.gs;
  std::vector<double> xr(xv.size());  // x as the kernel sees it: dx * xq
  for (int64_t i = 0; i < m; ++i)
    for (int64_t g = 0; g < groups; ++g) {
      float amax = 0;
      for (int t = 0; t < c.gs; ++t)
        amax = std::max(amax, std::abs(static_cast<float>(xv[i * k + g * c.gs + t])));
      const float inv = amax > 0 ? 127.0f / amax : 0.0f;
      const double dx = static_cast<double>(amax / 127.0f);
      for (int t = 0; t < c.gs; ++t) {
        const size_t e = static_cast<size_t>(i * k + g * c.gs + t);
        xr[e] = dx * std::rint(static_cast<float>(xv[e]) * inv);
      }
    }
  std::vector<double> y;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t g = 0; g < groups; ++g)
        for (int t = 0; t < c.gs; ++t) {
          const size_t e = static_cast<size_t>(i * k + g * c.gs + t);
          // The bias multiplies the unquantized x.
          acc += p.scales[j * groups + g] * q[j * k + g * c.gs + t] * xr[e] +
                 p.biases[j * groups + g] * xv[e];
        }
      y.push_back(acc);
    }
  return y;
}

/// Scales or biases as raw storage of dtype t (the values are representable in t).
std::vector<uint8_t> raw_of(const std::vector<double>& v, Dtype t) {
  std::vector<uint8_t> r;
  auto put = [&](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    r.insert(r.end(), b, b + n);
  };
  for (double d : v) {
    if (t == float32) {
      const float f = static_cast<float>(d);
      put(&f, 4);
    } else if (t == bfloat16) {
      const uint16_t u = bfloat16_t(static_cast<float>(d)).bits;
      put(&u, 2);
    } else {
      const uint16_t u = float16_t(static_cast<float>(d)).bits;
      put(&u, 2);
    }
  }
  return r;
}

TEST(Quantized, Int8ActivationGemvWithinBound) {
  // Every int8 kernel this CPU has (the portable one everywhere) against the documented bound and
  // against the scheme replayed in float64: per-group int8 x, the 4-bit code order, int32 sums,
  // the lane-wise scales. k = 224 / 320 / 1056 / 1088 leave a partial last span (4-bit spans
  // are 128 elements, 8-bit 64); 33 and 17 groups are several windows of 16 groups and a partial
  // one (the VNNI kernel's); 29 weight rows leave a partial block of 4; 1, 3 and 6 rows of x
  // cover both x-row tile heights, 33 rows at k = 2176 two chunks of x codes (64 KB each at
  // most, prefill). Each scale dtype is read natively.
  const int64_t n = 29;
  const std::pair<cpu::Int8Gemv, const char*> kerns[] = {{cpu::Int8Gemv::portable, "portable"},
                                                         {cpu::Int8Gemv::avx2, "avx2"},
                                                         {cpu::Int8Gemv::avx512vnni, "vnni"}};
  for (const Case c : kCases)
    for (int64_t k : {int64_t{512}, int64_t{c.gs == 32 ? 224 : (c.gs == 64 ? 320 : 640)},
                      int64_t{c.gs == 32 ? 1056 : (c.gs == 64 ? 1088 : 2176)}})
      for (int64_t m : {1, 3, 6, 33}) {
        if (m == 33 && k < 2048) continue;  // chunks of x codes: only where k makes them small
        const Dtype sdt = m % 3 == 1 ? float32 : (m == 3 ? bfloat16 : float16);
        const cpu::QScale st =
            m % 3 == 1 ? cpu::QScale::f32 : (m == 3 ? cpu::QScale::bf16 : cpu::QScale::f16);
        Packed p = random_packed(n, k, c.gs, c.bits, sdt, static_cast<uint32_t>(m * 7 + c.gs + k));
        std::vector<double> xv =
            test::random_values(m * k, float32, static_cast<uint32_t>(m + k), -1, 1);
        for (int j = 0; j < c.gs; ++j) xv[j] = 0.0;         // an all-zero group (step 0)
        xv[static_cast<size_t>(k + 5) % xv.size()] = 40.0;  // an outlier
        std::vector<float> xf(xv.begin(), xv.end()), out(static_cast<size_t>(m * n));
        const std::vector<uint8_t> sr = raw_of(p.scales, sdt), br = raw_of(p.biases, sdt);
        const std::vector<double> want = int8_scheme(xv, m, k, p, n, c);
        const Ref ref = reference(xv, m, k, p, n, c.gs, c.bits);
        for (const auto& [kern, name] : kerns) {
          const std::string what =
              fmt::format("{} bits={} gs={} k={} m={}", name, c.bits, c.gs, k, m);
          if (!cpu::int8_gemv_supported(kern)) {
            EXPECT_THROW(cpu::quantized_gemv_int8(kern, xf.data(), m, k, p.words.data(), sr.data(),
                                                  br.data(), st, n, c.gs, c.bits, out.data()),
                         Unsupported)
                << what;
            continue;
          }
          std::fill(out.begin(), out.end(), std::nanf(""));
          cpu::quantized_gemv_int8(kern, xf.data(), m, k, p.words.data(), sr.data(), br.data(), st,
                                   n, c.gs, c.bits, out.data());
          expect_int8_bound(std::vector<double>(out.begin(), out.end()), xv, m, k, p, n, c, what);
          for (size_t o = 0; o < want.size(); ++o)
            ASSERT_NEAR(out[o], want[o], 1e-6 * std::sqrt(k + 1.0) * ref.scale[o])
                << what << " " << o;
        }
      }
  if (!cpu_has_vnni()) std::printf("note: no AVX512_VNNI on this CPU; its kernel did not run\n");
}

TEST(Quantized, DecodeGemvSameBytesAtEveryThreadCount) {
  // The decode GEMVs split the weight rows over the pool (parallel_for_dynamic): each output
  // comes from the same kernel call whatever the split, so 1, 2 and 3 threads give the same bytes
  // (quantized_matmul on every ISA, int8 kernels on and off; each int8 kernel called directly),
  // each also within its float64 bound. n = 1100 rows of k = 512 are 3 to 5 chunks on each path.
  const int64_t k = 512, n = 1100;
  for (const Case c : {Case{4, 64}, Case{8, 64}})
    for (int64_t m : {1, 3}) {
      const Dtype xdt = m == 1 ? bfloat16 : float32;
      Packed p = random_packed(n, k, c.gs, c.bits, bfloat16, static_cast<uint32_t>(m + c.bits));
      std::vector<double> xv = test::random_values(m * k, xdt, static_cast<uint32_t>(m), -1, 1);
      Array x(xv, {m, k}, xdt);
      for (const char* isa : isas()) {
        IsaScope scope(isa);
        for (bool int8 : {false, true}) {
          Int8Scope i8(int8);
          const std::string what =
              fmt::format("{} int8={} bits={} gs={} m={}", isa, int8, c.bits, c.gs, m);
          std::vector<uint8_t> one;
          for (int threads : {1, 2, 3}) {
            ScopedPoolThreads pool(threads);
            Array y =
                quantized_matmul(x, p.w, p.s, p.b, true, {.group_size = c.gs, .bits = c.bits});
            const std::string w = what + fmt::format(" threads {}", threads);
            if (int8 && int8_runs(isa, m, c.bits))
              expect_int8_bound(y.to_vector<double>(), xv, m, k, p, n, c, w,
                                xdt == float32 ? 0 : test::eps_of(xdt));
            else
              expect_close(y, reference(xv, m, k, p, n, c.gs, c.bits), k, w);
            y.eval();
            const auto* b = static_cast<const uint8_t*>(y.raw_ptr());
            std::vector<uint8_t> got(b, b + y.nbytes());
            if (threads == 1)
              one = got;
            else
              EXPECT_TRUE(got == one) << w << ": bytes differ from 1 thread";
          }
        }
      }
      std::vector<float> xf(xv.begin(), xv.end()), out(static_cast<size_t>(m * n));
      const std::vector<uint8_t> sr = raw_of(p.scales, bfloat16), br = raw_of(p.biases, bfloat16);
      for (cpu::Int8Gemv kern :
           {cpu::Int8Gemv::portable, cpu::Int8Gemv::avx2, cpu::Int8Gemv::avx512vnni}) {
        if (!cpu::int8_gemv_supported(kern)) continue;
        std::vector<float> one;
        for (int threads : {1, 2, 3}) {
          ScopedPoolThreads pool(threads);
          std::fill(out.begin(), out.end(), std::nanf(""));
          cpu::quantized_gemv_int8(kern, xf.data(), m, k, p.words.data(), sr.data(), br.data(),
                                   cpu::QScale::bf16, n, c.gs, c.bits, out.data());
          const std::string w = fmt::format("int8 kernel {} bits={} m={} threads {}",
                                            static_cast<int>(kern), c.bits, m, threads);
          expect_int8_bound(std::vector<double>(out.begin(), out.end()), xv, m, k, p, n, c, w);
          if (threads == 1)
            one = out;
          else
            EXPECT_EQ(0, std::memcmp(out.data(), one.data(), out.size() * sizeof(float)))
                << w << ": bytes differ from 1 thread";
        }
      }
    }
}

TEST(Quantized, Int8DecodeRowEqualsItsRowInABatch) {
  // One row of x (decode: the VNNI kernel's run-of-rows path with row sums reduced 16 at a time,
  // the other kernels' one-row path) gives the same bytes as the same row inside a call with two
  // rows of x (the per-pass kernels): a sequence's logits do not depend on what it was batched
  // with. n = 37 rows: two groups of 16 and a partial one; k = 1024 and 1088 (a partial span).
  const int64_t n = 37;
  for (const Case c : {Case{4, 64}, Case{8, 64}, Case{4, 32}, Case{8, 128}})
    for (int64_t k : {int64_t{1024}, int64_t{c.gs == 128 ? 1152 : 1088}})
      for (cpu::QScale st : {cpu::QScale::bf16, cpu::QScale::f16, cpu::QScale::f32}) {
        const Dtype sdt =
            st == cpu::QScale::bf16 ? bfloat16 : (st == cpu::QScale::f16 ? float16 : float32);
        Packed p = random_packed(n, k, c.gs, c.bits, sdt, static_cast<uint32_t>(k + c.gs));
        std::vector<double> xv = test::random_values(2 * k, float32, 5, -1, 1);
        const std::vector<float> xf(xv.begin(), xv.end());
        const std::vector<uint8_t> sr = raw_of(p.scales, sdt), br = raw_of(p.biases, sdt);
        for (cpu::Int8Gemv kern :
             {cpu::Int8Gemv::portable, cpu::Int8Gemv::avx2, cpu::Int8Gemv::avx512vnni}) {
          if (!cpu::int8_gemv_supported(kern)) continue;
          std::vector<float> two(static_cast<size_t>(2 * n)), one(static_cast<size_t>(n));
          cpu::quantized_gemv_int8(kern, xf.data(), 2, k, p.words.data(), sr.data(), br.data(), st,
                                   n, c.gs, c.bits, two.data());
          for (int64_t r = 0; r < 2; ++r) {
            std::fill(one.begin(), one.end(), std::nanf(""));
            cpu::quantized_gemv_int8(kern, xf.data() + r * k, 1, k, p.words.data(), sr.data(),
                                     br.data(), st, n, c.gs, c.bits, one.data());
            EXPECT_EQ(0, std::memcmp(one.data(), two.data() + r * n, one.size() * sizeof(float)))
                << "kernel " << static_cast<int>(kern) << " bits=" << c.bits << " gs=" << c.gs
                << " k=" << k << " scales " << static_cast<int>(st) << " row " << r;
          }
        }
      }
}

TEST(Quantized, Int8DecodeSelection) {
  // Switched on: the VNNI kernel on the avx512 level of a VNNI CPU, AVX2 on the other SIMD
  // levels, the portable one on the portable level (quantized_matmul then runs it where
  // int8_runs says).
  auto kernel_for = [](const std::string& isa) {
    if (isa == "portable") return cpu::Int8Gemv::portable;
    return isa == "avx512" && cpu_has_vnni() ? cpu::Int8Gemv::avx512vnni : cpu::Int8Gemv::avx2;
  };
  Int8EnvScope unset(nullptr);  // the default, whatever the environment of the test run
  cpu::Int8Gemv kern = cpu::Int8Gemv::portable;
  {
    Int8Scope i8(true);
    for (const char* isa : isas()) {
      IsaScope scope(isa);
      kern = static_cast<cpu::Int8Gemv>(-1);
      EXPECT_TRUE(cpu::int8_gemv_active(kern)) << isa;
      EXPECT_EQ(kern, kernel_for(isa)) << isa;
      for (int bits : {4, 8})
        for (int64_t m : {1, 15, 16, 128})
          EXPECT_EQ(cpu::int8_gemv_faster(kern, m, bits), int8_runs(isa, m, bits))
              << isa << " bits " << bits << " m " << m;
    }
  }
  {
    Int8Scope i8(false);
    IsaScope scope("avx512vnni");
    EXPECT_FALSE(cpu::int8_gemv_active(kern));
  }
  // Default: on, on every level; INGOT_CPU_INT8=0 turns it off, other values leave it on;
  // set_int8_decode overrides the variable both ways. INGOT_CPU_ISA=avx512vnni (the former
  // opt-in) caps nothing.
  for (const char* isa : isas()) {
    IsaScope scope(isa);
    EXPECT_TRUE(cpu::int8_gemv_active(kern)) << isa;
    EXPECT_EQ(kern, kernel_for(isa)) << isa;
    {
      Int8EnvScope env("0");
      EXPECT_FALSE(cpu::int8_gemv_active(kern)) << isa;
      Int8Scope i8(true);
      EXPECT_TRUE(cpu::int8_gemv_active(kern)) << isa;
    }
    {
      Int8EnvScope env("1");
      EXPECT_TRUE(cpu::int8_gemv_active(kern)) << isa;
      Int8Scope i8(false);
      EXPECT_FALSE(cpu::int8_gemv_active(kern)) << isa;
    }
  }
  IsaScope scope("avx512vnni");
  EXPECT_TRUE(cpu::int8_gemv_active(kern));
  EXPECT_EQ(kern, kernel_for(cpu::isa_name(cpu::hardware_isa())));
}

TEST(Quantized, Int8SwitchSelectsTheFloatPath) {
  // Through quantized_matmul on every level, decode of 4- and 8-bit weights: with
  // INGOT_CPU_INT8=0 the float32 path's result (within float32 rounding of float64); by default
  // the int8 kernel's, bit for bit, where it runs (int8_runs), else the float32 path's.
  const int64_t k = 256, n = 21, m = 1;
  Int8EnvScope unset(nullptr);  // the default, whatever the environment of the test run
  for (const char* isa : isas()) {
    IsaScope scope(isa);
    for (const Case c : {Case{4, 64}, Case{8, 64}}) {
      const std::string what = fmt::format("{} bits={}", isa, c.bits);
      Packed p = random_packed(n, k, c.gs, c.bits, bfloat16, 77);
      std::vector<double> xv = test::random_values(m * k, float32, 78, -1, 1);
      Array x(xv, {m, k}, float32);
      auto run = [&] {
        return quantized_matmul(x, p.w, p.s, p.b, true, {.group_size = c.gs, .bits = c.bits});
      };
      Array on = run(), off;
      {
        Int8EnvScope env("0");
        off = run();
        eval({off});
      }
      expect_close(off, reference(xv, m, k, p, n, c.gs, c.bits), k, what + " off");
      if (!int8_runs(isa, m, c.bits)) {
        expect_close(on, reference(xv, m, k, p, n, c.gs, c.bits), k, what + " default");
        continue;
      }
      const std::vector<double> got = on.to_vector<double>();
      expect_int8_bound(got, xv, m, k, p, n, c, what + " default");
      // The paths differ: the rounding of x shows (x in [-1, 1] is not a grid of 1/127) ...
      EXPECT_NE(got, off.to_vector<double>()) << what;
      // ... and the default is the selected kernel's result, bit for bit.
      cpu::Int8Gemv kern;
      ASSERT_TRUE(cpu::int8_gemv_active(kern));
      std::vector<float> xf(xv.begin(), xv.end()), out(static_cast<size_t>(m * n));
      const std::vector<uint8_t> sr = raw_of(p.scales, bfloat16), br = raw_of(p.biases, bfloat16);
      cpu::quantized_gemv_int8(kern, xf.data(), m, k, p.words.data(), sr.data(), br.data(),
                               cpu::QScale::bf16, n, c.gs, c.bits, out.data());
      EXPECT_EQ(got, std::vector<double>(out.begin(), out.end())) << what;
    }
  }
}

TEST(Quantized, Int8GemvErrors) {
  std::vector<float> x(64), s(2), out(2);
  std::vector<uint32_t> w(16);
  EXPECT_THROW(cpu::quantized_gemv_int8(cpu::Int8Gemv::portable, x.data(), 1, 64, w.data(),
                                        s.data(), s.data(), cpu::QScale::f32, 1, 32, 3, out.data()),
               InvalidArgument);
  EXPECT_THROW(cpu::quantized_gemv_int8(cpu::Int8Gemv::portable, x.data(), 1, 48, w.data(),
                                        s.data(), s.data(), cpu::QScale::f32, 1, 32, 4, out.data()),
               InvalidArgument);
}

TEST(Quantized, MatmulBatchedAndStridedX) {
  const int64_t k = 128, n = 9, gs = 64;
  Packed p = random_packed(n, k, gs, 4, bfloat16, 5);
  std::vector<double> xv = test::random_values(2 * 3 * k, float32, 9, -1, 1);
  // x [2, 3, K] stored transposed (strided).
  Array x = test::make_array(xv, {2, 3, k}, float32, test::Layout::transposed);
  Array y = quantized_matmul(x, p.w, p.s, p.b, true, {.group_size = gs, .bits = 4});
  ASSERT_EQ(y.shape(), (Shape{2, 3, n}));
  const std::string isa = cpu::isa_name(cpu::active_isa());
  if (int8_runs(isa, 6, 4))  // the default
    expect_int8_bound(y.to_vector<double>(), xv, 6, k, p, n, {4, gs}, "batched strided");
  else
    expect_close(y, reference(xv, 6, k, p, n, gs, 4), k, "batched strided");
  for (bool int8 : {false, true}) {
    Int8Scope i8(int8);
    Array yi = quantized_matmul(x, p.w, p.s, p.b, true, {.group_size = gs, .bits = 4});
    if (int8 && int8_runs(isa, 6, 4))
      expect_int8_bound(yi.to_vector<double>(), xv, 6, k, p, n, {4, gs}, "batched strided int8");
    else
      expect_close(yi, reference(xv, 6, k, p, n, gs, 4), k, "batched strided float");
  }
}

TEST(Quantized, NonTransposedMatchesDequantizedMatmul) {
  // x [m, N'] @ W [N', K'] with W quantized along its last axis.
  const int64_t rows = 12, cols = 64, m = 3;
  Packed p = random_packed(rows, cols, 32, 8, float32, 21);
  std::vector<uint32_t> q = unpack(p.words, 8);
  std::vector<double> xv = test::random_values(m * rows, float32, 4, -1, 1);
  Array y = quantized_matmul(Array(xv, {m, rows}, float32), p.w, p.s, p.b, false,
                             {.group_size = 32, .bits = 8});
  ASSERT_EQ(y.shape(), (Shape{m, cols}));
  std::vector<double> g = y.to_vector<double>();
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double want = 0, sc = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const double w = p.scales[r * 2 + j / 32] * q[r * cols + j] + p.biases[r * 2 + j / 32];
        want += xv[i * rows + r] * w;
        sc += std::abs(xv[i * rows + r] * w);
      }
      EXPECT_NEAR(g[i * cols + j], want, 1e-6 * std::sqrt(rows + 1.0) * sc + 1e-30);
    }
}

TEST(Quantized, GradientFlowsToXOnly) {
  const int64_t k = 64, n = 5, m = 2;
  Packed p = random_packed(n, k, 32, 4, float32, 8);
  std::vector<uint32_t> q = unpack(p.words, 4);
  std::vector<double> xv = test::random_values(m * k, float32, 2, -1, 1);
  std::vector<double> cv = test::random_values(m * n, float32, 3, -1, 1);
  Array cot(cv, {m, n}, float32);
  auto fn = [&](const std::vector<Array>& a) {
    return std::vector<Array>{
        sum(quantized_matmul(a[0], p.w, p.s, p.b, true, {.group_size = 32, .bits = 4}) * cot)};
  };
  std::vector<Array> g = grad(fn, {0})({Array(xv, {m, k}, float32)});
  std::vector<double> gx = g[0].to_vector<double>();
  // d/dx sum(c * (x W^T)) = c W
  for (int64_t i = 0; i < m; ++i)
    for (int64_t t = 0; t < k; ++t) {
      double want = 0, sc = 0;
      for (int64_t j = 0; j < n; ++j) {
        const double w = p.scales[j * 2 + t / 32] * q[j * k + t] + p.biases[j * 2 + t / 32];
        want += cv[i * n + j] * w;
        sc += std::abs(cv[i * n + j] * w);
      }
      EXPECT_NEAR(gx[i * k + t], want, 1e-6 * std::sqrt(n + 1.0) * sc + 1e-30);
    }
  auto fs = [&](const std::vector<Array>& a) {
    return std::vector<Array>{sum(quantized_matmul(Array(xv, {m, k}, float32), p.w, a[0], p.b, true,
                                                   {.group_size = 32, .bits = 4}))};
  };
  EXPECT_THROW(grad(fs, {0})({p.s}), Unsupported);
}

TEST(Quantized, Errors) {
  Array w = zeros({4, 64}, float32);
  EXPECT_THROW(quantize(w, {.group_size = 64, .bits = 3}), Unsupported);
  EXPECT_THROW(quantize(w, {.group_size = 16, .bits = 4}), Unsupported);
  EXPECT_THROW(quantize(zeros({4, 48}, float32), {.group_size = 32, .bits = 4}), InvalidArgument);
  EXPECT_THROW(quantize(zeros({4, 64}, int32), {.group_size = 32, .bits = 4}), InvalidArgument);
  QuantizedWeight qw = quantize(w, {.group_size = 32, .bits = 4});
  // Wrong dtype of the packed weight, mismatched scales, x of the wrong width.
  EXPECT_THROW(dequantize(astype(qw.w, int32), qw.scales, qw.biases, {.group_size = 32, .bits = 4}),
               InvalidArgument);
  EXPECT_THROW(dequantize(qw.w, qw.scales, qw.biases, {.group_size = 64, .bits = 4}),
               InvalidArgument);
  EXPECT_THROW(
      dequantize(qw.w, qw.scales, astype(qw.biases, bfloat16), {.group_size = 32, .bits = 4}),
      InvalidArgument);
  EXPECT_THROW(quantized_matmul(zeros({2, 32}, float32), qw.w, qw.scales, qw.biases, true,
                                {.group_size = 32, .bits = 4}),
               InvalidArgument);
  EXPECT_THROW(quantized_matmul(zeros({2, 64}, int32), qw.w, qw.scales, qw.biases, true,
                                {.group_size = 32, .bits = 4}),
               InvalidArgument);
}

}  // namespace
}  // namespace ingot
