// CUDA vs CPU for the random primitives: one key gives identical bits (random bits, split,
// randint, bernoulli, categorical samples) and floats within 2 ulps (uniform, normal, gumbel;
// float64 Box-Muller within a few ulps of libm) on both backends, for strided keys too.
#include <cmath>
#include <random>
#include <string>

#include "cuda_test_util.h"

namespace ingot::test {
namespace {

const Device kCpu = cpu_device;
const Dtype kFloats[] = {float32, bfloat16, float16, float64};

std::string name(const char* op, Dtype t, int64_t n) {
  return std::string(op) + " " + std::string(dtype_name(t)) + " n=" + std::to_string(n);
}

/// Mantissa bits of a float dtype.
int mantissa_bits(Dtype t) {
  switch (t) {
    case bfloat16:
      return 7;
    case float16:
      return 10;
    case float64:
      return 52;
    default:
      return 23;
  }
}

/// Expects every element of the CUDA array within `ulps` units in the last place (of the
/// dtype, at the CPU value's magnitude) plus atol of the CPU array; with `rare_ulps` > ulps,
/// elements may reach rare_ulps but at most one in 10^4 may exceed `ulps`.
void expect_ulps(const Array& got, const Array& want, double ulps, double atol,
                 const std::string& what, double rare_ulps = 0) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  EXPECT_EQ(got.device(), kCuda) << what;
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  const int p = mantissa_bits(want.dtype());
  int bad = 0;
  size_t rare = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    int e = 0;
    std::frexp(w[i], &e);
    const double ulp = w[i] == 0 ? std::ldexp(1.0, -p - 14) : std::ldexp(1.0, e - 1 - p);
    const double err = std::fabs(g[i] - w[i]);
    if (err <= ulps * ulp + atol) continue;
    if (rare_ulps > ulps && err <= rare_ulps * ulp + atol) {
      ++rare;
      continue;
    }
    if (bad++ < 5) ADD_FAILURE() << what << " at " << i << ": cuda " << g[i] << " cpu " << w[i];
  }
  EXPECT_EQ(bad, 0) << what << ": elements off";
  EXPECT_LE(rare, g.size() / 10000) << what << ": elements beyond " << ulps << " ulps";
}

const int64_t kSizes[] = {1, 2, 3, 7, 1000, 1001, (1 << 20) + 3};

TEST(CudaRandom, BitsAreIdentical) {
  INGOT_REQUIRE_CUDA();
  for (uint64_t seed : {0ull, 1ull, 0x123456789abcdefull})
    for (int64_t n : kSizes) {
      Array k = random::key(seed);
      expect_close(random::bits({n}, on_cuda(k), kCuda), random::bits({n}, k, kCpu), 0, 0,
                   name("bits", uint32, n));
    }
  Array k = random::key(5);
  expect_close(random::bits({3, 5, 7}, on_cuda(k), kCuda), random::bits({3, 5, 7}, k, kCpu), 0, 0,
               "bits 3-d");
  expect_close(random::bits({0, 4}, on_cuda(k), kCuda), random::bits({0, 4}, k, kCpu), 0, 0,
               "bits empty");
}

TEST(CudaRandom, SplitAndStridedKeys) {
  INGOT_REQUIRE_CUDA();
  Array k = random::key(42), gk = on_cuda(k);
  Array keys = random::split(k, 5, kCpu), gkeys = random::split(gk, 5, kCuda);
  expect_close(gkeys, keys, 0, 0, "split");
  for (int r = 0; r < 5; ++r) {  // row views: offset keys
    Array kr = reshape(slice(keys, {r, 0}, {r + 1, 2}, kCpu), {2}, kCpu);
    Array gkr = reshape(slice(gkeys, {r, 0}, {r + 1, 2}, kCuda), {2}, kCuda);
    expect_close(random::bits({999}, gkr, kCuda), random::bits({999}, kr, kCpu), 0, 0,
                 "bits from split key " + std::to_string(r));
  }
  // A column of a [2, 3] array: a key with stride 3.
  Array kk = reshape(random::bits({6}, k, kCpu), {2, 3}, kCpu);
  Array col = squeeze(slice(kk, {0, 1}, {2, 2}, kCpu), 1, kCpu);
  Array gcol = squeeze(slice(on_cuda(kk), {0, 1}, {2, 2}, kCuda), 1, kCuda);
  expect_close(random::bits({1001}, gcol, kCuda), random::bits({1001}, col, kCpu), 0, 0,
               "bits from a strided key");
}

TEST(CudaRandom, UniformWithinTwoUlps) {
  INGOT_REQUIRE_CUDA();
  const std::pair<double, double> ranges[] = {{0, 1}, {-3, 5}, {100, 100.5}};
  uint64_t seed = 10;
  for (Dtype t : kFloats)
    for (auto [lo, hi] : ranges)
      for (int64_t n : kSizes) {
        Array k = random::key(seed++);
        expect_ulps(random::uniform({n}, t, lo, hi, on_cuda(k), kCuda),
                    random::uniform({n}, t, lo, hi, k, kCpu), 2, 0, name("uniform", t, n));
      }
}

TEST(CudaRandom, NormalWithinTwoUlps) {
  INGOT_REQUIRE_CUDA();
  uint64_t seed = 100;
  for (Dtype t : kFloats)
    for (auto [loc, scale] : {std::pair{0.0, 1.0}, std::pair{2.0, 0.5}})
      for (int64_t n : kSizes) {
        Array k = random::key(seed++);
        // The CPU's logf and the GPU's log may round w one ulp apart (rarely): z then moves by
        // up to ~2 ulps of |z| < 8, which scale carries into loc + scale * z (an absolute floor
        // where loc cancels); measured on an H200: 10 of 2^20 float32 values 3 ulps apart, so
        // at most 1 in 10^4 may reach 4 ulps. float64 is Box-Muller through libm's log and cos.
        const double ulps = t == float64 ? 16 : 2;
        const double atol = t == float64 ? 1e-14
                            : loc == 0.0 ? 0.0
                                         : scale * std::ldexp(16.0, -mantissa_bits(t));
        expect_ulps(random::normal({n}, t, loc, scale, on_cuda(k), kCuda),
                    random::normal({n}, t, loc, scale, k, kCpu), ulps, atol, name("normal", t, n),
                    t == float64 ? 0 : 4);
      }
}

TEST(CudaRandom, GumbelWithinTwoUlps) {
  INGOT_REQUIRE_CUDA();
  uint64_t seed = 200;
  for (Dtype t : kFloats)
    for (int64_t n : kSizes) {
      Array k = random::key(seed++);
      // -log(-log(u)) near 0 cancels: an absolute floor for the last bits of the double log.
      const double ulps = t == float64 ? 16 : 2, atol = t == float64 ? 1e-14 : 1e-12;
      expect_ulps(random::gumbel({n}, t, on_cuda(k), kCuda), random::gumbel({n}, t, k, kCpu), ulps,
                  atol, name("gumbel", t, n));
    }
}

TEST(CudaRandom, RandIntIsIdentical) {
  INGOT_REQUIRE_CUDA();
  const struct {
    Dtype t;
    int64_t lo, hi;
  } cases[] = {
      {int32, -50, 50},   {int32, 0, 1},     {int64, -(int64_t(1) << 62), int64_t(1) << 62},
      {uint8, 0, 256},    {int8, -128, 128}, {uint32, 0, 4294967295ll},
      {int64, 7, 1000003}};
  uint64_t seed = 300;
  for (const auto& c : cases)
    for (int64_t n : kSizes) {
      Array k = random::key(seed++);
      expect_close(random::randint(c.lo, c.hi, {n}, c.t, on_cuda(k), kCuda),
                   random::randint(c.lo, c.hi, {n}, c.t, k, kCpu), 0, 0, name("randint", c.t, n));
    }
}

TEST(CudaRandom, BernoulliIsIdentical) {
  INGOT_REQUIRE_CUDA();
  std::mt19937 g(7);
  auto probs = [&](int64_t n) {
    std::vector<double> v(static_cast<size_t>(n));
    for (auto& x : v) x = std::uniform_real_distribution<double>(0, 1)(g);
    return v;
  };
  Array k = random::key(400), gk = on_cuda(k);
  Array p0(0.3f);
  expect_close(random::bernoulli(on_cuda(p0), {1001}, gk, kCuda),
               random::bernoulli(p0, {1001}, k, kCpu), 0, 0, "bernoulli scalar p");
  for (Dtype t : {float32, bfloat16, float64, float16}) {
    Array row(probs(200), {1, 200}, t);  // broadcast over rows
    expect_close(random::bernoulli(on_cuda(row), {50, 200}, gk, kCuda),
                 random::bernoulli(row, {50, 200}, k, kCpu), 0, 0,
                 "bernoulli row p " + std::string(dtype_name(t)));
    Array col(probs(50), {50, 1}, t);
    expect_close(random::bernoulli(on_cuda(col), {50, 200}, gk, kCuda),
                 random::bernoulli(col, {50, 200}, k, kCpu), 0, 0,
                 "bernoulli column p " + std::string(dtype_name(t)));
  }
  Array base(probs(30 * 40), {30, 40}, float32);  // transposed p
  expect_close(random::bernoulli(transpose(on_cuda(base), kCuda), {40, 30}, gk, kCuda),
               random::bernoulli(transpose(base, kCpu), {40, 30}, k, kCpu), 0, 0,
               "bernoulli transposed p");
  Array big(probs(1 << 20), {1 << 20}, float32);
  expect_close(random::bernoulli(on_cuda(big), {1 << 20}, gk, kCuda),
               random::bernoulli(big, {1 << 20}, k, kCpu), 0, 0, "bernoulli large");
}

TEST(CudaRandom, CategoricalSamplesAreIdentical) {
  INGOT_REQUIRE_CUDA();
  std::mt19937 g(9);
  auto logits = [&](int64_t n) {
    std::vector<double> v(static_cast<size_t>(n));
    for (auto& x : v) x = std::uniform_real_distribution<double>(-3, 3)(g);
    return v;
  };
  const struct {
    Shape s;
    int axis;
    Dtype t;
  } cases[] = {{{8, 1000}, -1, float32}, {{4, 50000}, -1, bfloat16}, {{6, 7, 5}, 1, float32},
               {{3, 4}, 0, float16},     {{5, 1}, -1, float32},      {{2, 1 << 17}, 1, float32},
               {{1000, 3}, 1, float64},  {{0, 5}, 1, float32}};
  uint64_t seed = 500;
  for (const auto& c : cases) {
    Array k = random::key(seed++);
    Array l(logits(shape_size(c.s)), c.s, c.t);
    expect_close(random::categorical(on_cuda(l), c.axis, on_cuda(k), kCuda),
                 random::categorical(l, c.axis, k, kCpu), 0, 0,
                 "categorical " + shape_str(c.s) + " " + std::string(dtype_name(c.t)));
  }
  // Strided logits, -inf entries (never drawn) and equal logits (pure Gumbel argmax).
  Array k = random::key(600), gk = on_cuda(k);
  Array base(logits(300 * 40), {300, 40}, float32);
  expect_close(random::categorical(transpose(on_cuda(base), kCuda), -1, gk, kCuda),
               random::categorical(transpose(base, kCpu), -1, k, kCpu), 0, 0,
               "categorical transposed");
  std::vector<double> masked = logits(16 * 64);
  for (size_t i = 0; i < masked.size(); ++i)
    if (i % 3 != 0) masked[i] = -INFINITY;
  Array lm(masked, {16, 64}, float32);
  expect_close(random::categorical(on_cuda(lm), -1, gk, kCuda),
               random::categorical(lm, -1, k, kCpu), 0, 0, "categorical masked");
  Array flat = zeros({32, 100}, bfloat16, kCpu);
  expect_close(random::categorical(on_cuda(flat), -1, gk, kCuda),
               random::categorical(flat, -1, k, kCpu), 0, 0, "categorical equal logits");
}

}  // namespace
}  // namespace ingot::test
