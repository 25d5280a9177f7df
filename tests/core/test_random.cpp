// Random ops: Threefry known answers, the JAX key/split/bits construction, determinism, split
// independence, and statistical checks whose bounds (5 sigma) follow from the sample size.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <thread>

#include "core/primitives/random.h"
#include "test_util.h"

namespace ingot::test {
namespace {

constexpr int64_t kN = 100000;

std::vector<uint32_t> u32(const Array& a) {
  return a.to_vector<uint32_t>();
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}
double var_of(const std::vector<double>& v) {
  double m = mean_of(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / static_cast<double>(v.size() - 1);
}

/// Expects the sample mean and variance within 5 sigma of (mean, var); mu4 is the fourth
/// central moment (for the variance's standard error), extra covers 16-bit rounding.
void expect_moments(const std::vector<double>& v, double mean, double var, double mu4, double extra,
                    const std::string& what) {
  const double n = static_cast<double>(v.size());
  EXPECT_NEAR(mean_of(v), mean, 5 * std::sqrt(var / n) + extra) << what;
  EXPECT_NEAR(var_of(v), var, 5 * std::sqrt((mu4 - var * var) / n) + extra) << what;
}

/// Chi-square of counts against expected probabilities; expects it below dof + 5 sd.
void expect_chi2(const std::vector<int64_t>& counts, const std::vector<double>& probs,
                 const std::string& what) {
  double n = 0, chi2 = 0;
  for (int64_t c : counts) n += static_cast<double>(c);
  int dof = -1;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (probs[i] == 0) {
      EXPECT_EQ(counts[i], 0) << what << " bin " << i;
      continue;
    }
    const double e = n * probs[i];
    chi2 += (static_cast<double>(counts[i]) - e) * (static_cast<double>(counts[i]) - e) / e;
    ++dof;
  }
  EXPECT_LT(chi2, dof + 5 * std::sqrt(2.0 * dof)) << what;
}

TEST(Threefry, KnownAnswers) {
  // Random123 known-answer vectors for threefry2x32 with 20 rounds: (counter, key) -> output.
  auto r = threefry2x32(0, 0, 0, 0);
  EXPECT_EQ(r.first, 0x6b200159u);
  EXPECT_EQ(r.second, 0x99ba4efeu);
  r = threefry2x32(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  EXPECT_EQ(r.first, 0x1cb996fcu);
  EXPECT_EQ(r.second, 0xbb002be7u);
  r = threefry2x32(0x13198a2eu, 0x03707344u, 0x243f6a88u, 0x85a308d3u);
  EXPECT_EQ(r.first, 0xc4923a9cu);
  EXPECT_EQ(r.second, 0x483df7a0u);
}

TEST(RandomKey, SeedSplitAndBitsFollowJax) {
  EXPECT_EQ(u32(random::key(42)), (std::vector<uint32_t>{0, 42}));
  EXPECT_EQ(u32(random::key(0x123456789ull)), (std::vector<uint32_t>{1, 0x23456789u}));
  // jax.random.split(jax.random.PRNGKey(0)) with the original (non-partitionable) threefry.
  EXPECT_EQ(u32(random::split(random::key(0))),
            (std::vector<uint32_t>{4146024105u, 967050713u, 2718843009u, 1272950319u}));
  // bits: counters 0..m-1 (padded to even) split in halves and paired.
  for (int64_t m : {1, 2, 7, 33, 1001, 40000}) {
    Array k = random::key(7 + m);
    std::vector<uint32_t> got = u32(random::bits({m}, k));
    const int64_t h = (m + 1) / 2;
    std::vector<uint32_t> want(static_cast<size_t>(m));
    for (int64_t p = 0; p < h; ++p) {
      auto [y0, y1] = threefry2x32(0, static_cast<uint32_t>(7 + m), static_cast<uint32_t>(p),
                                   p + h < m ? static_cast<uint32_t>(p + h) : 0u);
      want[p] = y0;
      if (p + h < m) want[p + h] = y1;
    }
    EXPECT_EQ(got, want) << m;
  }
}

TEST(RandomKey, DeterminismAndSplitIndependence) {
  Array k = random::key(1234);
  EXPECT_EQ(u32(random::bits({5, 7}, k)), u32(random::bits({5, 7}, k)));
  EXPECT_EQ(u32(random::split(k, 5)), u32(random::split(k, 5)));
  Array ks = random::split(k, 3);
  EXPECT_EQ(ks.shape(), (Shape{3, 2}));
  std::vector<std::vector<uint32_t>> streams;
  for (int i = 0; i < 3; ++i) {
    Array ki = reshape(slice(ks, {i, 0}, {i + 1, 2}), {2});
    streams.push_back(u32(random::bits({kN}, ki)));
  }
  streams.push_back(u32(random::bits({kN}, k)));
  // Every pair of streams agrees on each bit with probability 1/2.
  for (size_t a = 0; a < streams.size(); ++a)
    for (size_t b = a + 1; b < streams.size(); ++b) {
      int64_t same = 0;
      for (int64_t i = 0; i < kN; ++i)
        same += 32 - __builtin_popcount(streams[a][i] ^ streams[b][i]);
      const double n = 32.0 * kN;
      EXPECT_NEAR(same / n, 0.5, 5 * std::sqrt(0.25 / n)) << a << " vs " << b;
    }
  // Each bit position of one stream is fair.
  for (int bit = 0; bit < 32; ++bit) {
    int64_t ones = 0;
    for (uint32_t w : streams[0]) ones += (w >> bit) & 1u;
    EXPECT_NEAR(static_cast<double>(ones) / kN, 0.5, 5 * std::sqrt(0.25 / kN)) << bit;
  }
}

TEST(RandomKey, GlobalSeedAndThreads) {
  random::seed(99);
  auto a = u32(random::bits({16}));
  auto b = u32(random::bits({16}));
  random::seed(99);
  EXPECT_EQ(u32(random::bits({16})), a);
  EXPECT_NE(a, b);
  std::vector<std::vector<uint32_t>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto v = u32(random::bits({2}));
        got[t].insert(got[t].end(), v.begin(), v.end());
      }
    });
  for (auto& th : threads) th.join();
  std::set<std::pair<uint32_t, uint32_t>> seen;
  for (auto& g : got)
    for (size_t i = 0; i < g.size(); i += 2) seen.insert({g[i], g[i + 1]});
  EXPECT_EQ(seen.size(), 200u);  // every call drew a distinct key
}

TEST(Uniform, MomentsRangeAndDtypes) {
  for (Dtype t : kFloatDtypes) {
    const double lo = -2, hi = 3, w = hi - lo;
    Array u = random::uniform({kN}, t, lo, hi, random::key(3));
    ASSERT_EQ(u.dtype(), t);
    auto v = values_of(u);
    for (double x : v) {
      ASSERT_GE(x, lo);
      ASSERT_LT(x, hi);
    }
    const double q = (t == float16 || t == bfloat16) ? 2 * eps_of(t) * hi : 0;
    expect_moments(v, lo + w / 2, w * w / 12, w * w * w * w / 80, q, dtype_name(t).data());
    // Deterministic for a key, different for another.
    EXPECT_EQ(values_of(random::uniform({7}, t, lo, hi, random::key(3))),
              values_of(random::uniform({7}, t, lo, hi, random::key(3))));
    EXPECT_NE(values_of(random::uniform({7}, t, lo, hi, random::key(3))),
              values_of(random::uniform({7}, t, lo, hi, random::key(4))));
  }
}

TEST(Uniform, HalfNeverReachesHigh) {
  for (Dtype t : {float16, bfloat16}) {
    for (double hi : {1.0, 0.3, 1e-3}) {
      auto v = values_of(random::uniform({kN}, t, 0.0, hi, random::key(11)));
      double mx = 0;
      for (double x : v) {
        ASSERT_LT(x, hi) << dtype_name(t);
        ASSERT_GE(x, 0.0);
        mx = std::max(mx, x);
      }
      EXPECT_GT(mx, hi * 0.98) << dtype_name(t);  // the top of the range is reached
    }
  }
  // A tiny interval that holds a single bfloat16 value gives that value.
  auto v = values_of(random::uniform({100}, bfloat16, 1.0, 1.001, random::key(1)));
  for (double x : v) EXPECT_EQ(x, 1.0);
}

TEST(Normal, MomentsAndQuantiles) {
  for (Dtype t : kFloatDtypes) {
    const double loc = 1, scale = 2;
    auto v = values_of(random::normal({kN}, t, loc, scale, random::key(5)));
    for (double x : v) ASSERT_TRUE(std::isfinite(x));
    const double q = (t == float16 || t == bfloat16) ? 4 * eps_of(t) * scale : 0;
    expect_moments(v, loc, scale * scale, 3 * std::pow(scale, 4), q, dtype_name(t).data());
    // P(|z| < 1) and P(z < -2) of the standard normal.
    int64_t inside = 0, low_tail = 0;
    for (double x : v) {
      const double z = (x - loc) / scale;
      inside += std::abs(z) < 1;
      low_tail += z < -2;
    }
    const double p1 = std::erf(1 / std::sqrt(2.0)), p2 = 0.5 * std::erfc(2 / std::sqrt(2.0));
    EXPECT_NEAR(static_cast<double>(inside) / kN, p1, 5 * std::sqrt(p1 * (1 - p1) / kN) + q);
    EXPECT_NEAR(static_cast<double>(low_tail) / kN, p2, 5 * std::sqrt(p2 * (1 - p2) / kN) + q);
  }
}

TEST(RandInt, ChiSquareAndRanges) {
  for (Dtype t : {int8, int32, int64}) {
    auto v = values_of(random::randint(-3, 7, {kN}, t, random::key(8)));
    std::vector<int64_t> counts(10, 0);
    for (double x : v) {
      ASSERT_GE(x, -3);
      ASSERT_LT(x, 7);
      ++counts[static_cast<size_t>(x + 3)];
    }
    expect_chi2(counts, std::vector<double>(10, 0.1), dtype_name(t).data());
  }
  auto full8 = values_of(random::randint(0, 256, {kN}, uint8, random::key(2)));
  std::vector<int64_t> counts(256, 0);
  for (double x : full8) ++counts[static_cast<size_t>(x)];
  expect_chi2(counts, std::vector<double>(256, 1.0 / 256), "uint8 full range");
  // A range wider than 2^32: the high half of the range is hit half the time.
  const int64_t lo = -(int64_t{1} << 62), hi = int64_t{1} << 62;
  auto big = random::randint(lo, hi, {kN}, int64, random::key(3)).to_vector<int64_t>();
  int64_t upper = 0;
  for (int64_t x : big) {
    ASSERT_GE(x, lo);
    ASSERT_LT(x, hi);
    upper += x >= 0;
  }
  EXPECT_NEAR(static_cast<double>(upper) / kN, 0.5, 5 * std::sqrt(0.25 / kN));
  auto u = random::randint(5, 6, {10}, uint32, random::key(1)).to_vector<uint32_t>();
  for (uint32_t x : u) EXPECT_EQ(x, 5u);
}

TEST(Bernoulli, Frequencies) {
  const int64_t rows = kN / 4;
  Array p = Array({0.0f, 0.25f, 0.5f, 1.0f}, {4});
  auto v = values_of(random::bernoulli(p, {rows, 4}, random::key(6)));
  for (int c = 0; c < 4; ++c) {
    double pc = c / 4.0 + (c == 3 ? 0.25 : 0);
    int64_t ones = 0;
    for (int64_t r = 0; r < rows; ++r) ones += v[r * 4 + c] != 0;
    EXPECT_NEAR(static_cast<double>(ones) / rows, pc, 5 * std::sqrt(pc * (1 - pc) / rows))
        << "p = " << pc;
  }
  for (Dtype t : {float16, bfloat16, float64}) {
    auto b = values_of(random::bernoulli(Array(0.3, t), {kN}, random::key(9)));
    EXPECT_EQ(random::bernoulli(Array(0.3, t), {3}, random::key(9)).dtype(), bool_);
    EXPECT_NEAR(mean_of(b), 0.3, 5 * std::sqrt(0.21 / kN) + eps_of(t)) << dtype_name(t);
  }
}

TEST(Gumbel, Moments) {
  const double pi = 3.14159265358979323846, gamma = 0.57721566490153286;
  for (Dtype t : kFloatDtypes) {
    auto v = values_of(random::gumbel({kN}, t, random::key(12)));
    for (double x : v) ASSERT_TRUE(std::isfinite(x));
    const double var = pi * pi / 6;
    const double q = (t == float16 || t == bfloat16) ? 8 * eps_of(t) : 0;
    expect_moments(v, gamma, var, 5.4 * var * var, q, dtype_name(t).data());
  }
}

TEST(Categorical, ChiSquareAlongAxes) {
  const std::vector<double> probs{0.2, 0.3, 0.5, 0.0};
  std::vector<double> logits;
  for (double p : probs) logits.push_back(p > 0 ? std::log(p) + 1.5 : -INFINITY);
  for (Dtype t : {float32, bfloat16, float64}) {
    // [kN, 4] logits broadcast from one row; sample along the last axis.
    Array l = broadcast_to(Array(logits, {1, 4}, t), {kN, 4});
    Array s = random::categorical(l, -1, random::key(13));
    ASSERT_EQ(s.dtype(), uint32);
    ASSERT_EQ(s.shape(), (Shape{kN}));
    std::vector<int64_t> counts(4, 0);
    for (uint32_t x : u32(s)) ++counts[x];
    expect_chi2(counts, probs, dtype_name(t).data());
  }
  // Along axis 0 of a transposed [4, n] view.
  Array lt = transpose(broadcast_to(Array(logits, {1, 4}, float32), {kN / 10, 4}));
  Array s = random::categorical(lt, 0, random::key(14));
  ASSERT_EQ(s.shape(), (Shape{kN / 10}));
  std::vector<int64_t> counts(4, 0);
  for (uint32_t x : u32(s)) ++counts[x];
  expect_chi2(counts, probs, "axis 0");
}

TEST(RandomErrors, Messages) {
  expect_error<InvalidArgument>([] { random::bits({2}, zeros({2}, int32)); },
                                "[random.bits] a key must be a uint32 array of shape [2], got "
                                "int32 of shape [2]");
  expect_error<InvalidArgument>([] { random::split(zeros({3}, uint32)); },
                                "[random.split] a key must be a uint32 array of shape [2]");
  expect_error<InvalidArgument>([] { random::split(random::key(0), 0); },
                                "[random.split] number of keys must be positive, got 0");
  expect_error<InvalidArgument>([] { random::uniform({2}, int32); },
                                "[uniform] dtype must be a floating type, got int32");
  expect_error<InvalidArgument>([] { random::uniform({2}, float32, 1.0, 1.0); },
                                "[uniform] need finite low < high, got low 1 and high 1");
  expect_error<InvalidArgument>([] { random::uniform({2}, float16, 1.0001, 1.0002); },
                                "[uniform] no float16 value lies in");
  expect_error<InvalidArgument>([] { random::normal({2}, float32, 0.0, -1.0); },
                                "[normal] need a finite loc and a finite scale >= 0");
  expect_error<InvalidArgument>([] { random::randint(3, 3, {2}); },
                                "[randint] high (3) must be greater than low (3)");
  expect_error<InvalidArgument>([] { random::randint(0, 300, {2}, uint8); },
                                "[randint] range [0, 300) does not fit in uint8");
  expect_error<InvalidArgument>([] { random::randint(0, 3, {2}, float32); },
                                "[randint] dtype must be an integer type, got float32");
  expect_error<InvalidArgument>(
      [] {
        random::bernoulli(zeros({3}), {2, 4});
      },
      "[bernoulli] p of shape [3] cannot be broadcast to shape [2, 4]");
  expect_error<InvalidArgument>([] { random::gumbel({-1}); },
                                "[gumbel] negative dimension in shape [-1]");
  expect_error<InvalidArgument>(
      [] {
        random::categorical(zeros({3, 0}), 1);
      },
      "[categorical] axis 1 of logits [3, 0] is empty");
  expect_error<InvalidArgument>([] { random::categorical(zeros({3}), 2); }, "[categorical]");
}

}  // namespace
}  // namespace ingot::test
