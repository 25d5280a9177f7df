// Sampler tests: greedy, seeds, empirical distributions vs float64 analytic ones (chi-square),
// exact penalty / logit-bias arithmetic, row removal, option validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "llm/sampler.h"

namespace ingot::llm {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Fixed logits of the distribution tests (ids deliberately not in sorted order).
const std::vector<float> kLogits = {0.3f, 2.0f, -1.0f, 1.2f, 0.0f, 1.5f, -2.0f, 0.9f, -0.4f, 0.5f};

// Chi-square critical values at p = 1e-4 for 1..11 degrees of freedom.
const double kChi2Crit[] = {0,      15.137, 18.421, 21.108, 23.513, 25.745,
                            27.856, 29.878, 31.828, 33.720, 35.564, 37.367};

std::vector<double> softmax64(const std::vector<double>& x) {
  double m = *std::max_element(x.begin(), x.end());
  std::vector<double> p(x.size());
  double z = 0;
  for (size_t i = 0; i < x.size(); ++i) z += p[i] = x[i] == kNegInf ? 0.0 : std::exp(x[i] - m);
  for (double& v : p) v /= z;
  return p;
}

/// Float64 reference of HF's warpers (temperature, top-k, top-p, min-p; min_tokens_to_keep 1):
/// the probabilities sampled from.
std::vector<double> reference_probs(const std::vector<float>& logits, const SamplerOptions& o) {
  const size_t n = logits.size();
  std::vector<double> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<double>(logits[i]) / o.temperature;
  if (o.top_k > 0 && static_cast<size_t>(o.top_k) < n) {
    std::vector<double> s = x;
    std::sort(s.begin(), s.end(), std::greater<>());
    const double kth = s[static_cast<size_t>(o.top_k) - 1];
    for (double& v : x)
      if (v < kth) v = kNegInf;
  }
  if (o.top_p < 1.0f) {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
    const std::vector<double> p = softmax64(x);
    double cum = 0;
    for (size_t j = 0; j + 1 < n; ++j) {
      cum += p[order[j]];
      if (cum <= 1.0 - o.top_p) x[order[j]] = kNegInf;
    }
  }
  if (o.min_p > 0.0f) {
    const std::vector<double> p = softmax64(x);
    const double top = *std::max_element(p.begin(), p.end());
    for (size_t i = 0; i < n; ++i)
      if (p[i] < o.min_p * top) x[i] = kNegInf;
  }
  return softmax64(x);
}

/// Counts of `steps` draws from a batch of `rows` identical rows of `logits`.
std::vector<int64_t> draw_counts(Sampler& s, const std::vector<float>& logits, int64_t rows,
                                 int steps) {
  const auto v = static_cast<int64_t>(logits.size());
  const Array batch = broadcast_to(Array(logits, {1, v}), {rows, v});
  std::vector<int64_t> counts(logits.size(), 0);
  for (int t = 0; t < steps; ++t) {
    const Array ids = s.sample(batch);
    EXPECT_EQ(ids.dtype(), int32);
    EXPECT_EQ(ids.shape(), (Shape{rows}));
    for (int32_t id : ids.to_vector<int32_t>()) {
      EXPECT_TRUE(id >= 0 && id < v) << id;
      if (id >= 0 && id < v) ++counts[static_cast<size_t>(id)];
    }
  }
  return counts;
}

/// Chi-square goodness of fit over tokens with non-zero probability; removed tokens must never
/// be drawn.
void expect_distribution(const SamplerOptions& o, const std::string& what) {
  SCOPED_TRACE(what);
  Sampler s(o, static_cast<int64_t>(kLogits.size()));
  const std::vector<int64_t> counts = draw_counts(s, kLogits, 4000, 5);
  const std::vector<double> p = reference_probs(kLogits, o);
  const double total = 20000.0;
  double chi2 = 0;
  int kept = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "removed token " << i << " was drawn";
      continue;
    }
    ++kept;
    const double e = total * p[i];
    ASSERT_GE(e, 5.0) << "test setup: expected count too small for token " << i;
    chi2 += (static_cast<double>(counts[i]) - e) * (static_cast<double>(counts[i]) - e) / e;
  }
  ASSERT_GE(kept, 2);
  EXPECT_LT(chi2, kChi2Crit[kept - 1]) << "df " << kept - 1;
}

std::vector<float> processed_row(const Sampler& s, const Array& logits, int64_t row) {
  const std::vector<float> all = s.processed_logits(logits).to_vector<float>();
  const int64_t v = logits.shape(1);
  return {all.begin() + row * v, all.begin() + (row + 1) * v};
}

void expect_row_near(const std::vector<float>& got, const std::vector<double>& want,
                     const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (want[i] == kNegInf)
      EXPECT_EQ(static_cast<double>(got[i]), kNegInf) << "token " << i;
    else
      EXPECT_NEAR(got[i], want[i], 1e-5 * std::max(1.0, std::abs(want[i]))) << "token " << i;
  }
}

// ---- greedy and seeds ----

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  const Array logits({1.f, 3.f, 3.f, 2.f, 5.f, 5.f, 0.f, -1.f, -1.f, -2.f, -.5f, -3.f}, {3, 4});
  Sampler plain({}, 4);
  EXPECT_TRUE(plain.greedy());
  EXPECT_EQ(plain.sample(logits).to_vector<int32_t>(), (std::vector<int32_t>{1, 0, 2}));
  // With temperature 0 the warpers are ignored and the seed does not matter.
  Sampler warped({.temperature = 0.f, .top_k = 1, .top_p = 0.1f, .min_p = 0.9f, .seed = 7}, 4);
  for (int t = 0; t < 3; ++t)
    EXPECT_EQ(warped.sample(logits).to_vector<int32_t>(), (std::vector<int32_t>{1, 0, 2}));
  // Greedy over 16-bit logits too (processed in float32).
  EXPECT_EQ(plain.sample(astype(logits, bfloat16)).to_vector<int32_t>(),
            (std::vector<int32_t>{1, 0, 2}));
}

Array random_logits(int64_t b, int64_t v, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.f, 2.f);
  std::vector<float> x(static_cast<size_t>(b * v));
  for (float& f : x) f = n(g);
  return Array(x, {b, v});
}

std::vector<int32_t> run_steps(uint64_t seed, const Array& logits, int steps) {
  Sampler s({.temperature = 1.f, .top_k = 40, .top_p = 0.95f, .seed = seed}, logits.shape(1));
  std::vector<int32_t> out;
  for (int t = 0; t < steps; ++t) {
    std::vector<int32_t> ids = s.sample(logits).to_vector<int32_t>();
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

TEST(Sampler, SameSeedSameOutputsDifferentSeedDiffers) {
  const Array logits = random_logits(32, 64, 1);
  const std::vector<int32_t> a = run_steps(42, logits, 4);
  const std::vector<int32_t> b = run_steps(42, logits, 4);
  const std::vector<int32_t> c = run_steps(43, logits, 4);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // The key advances: consecutive steps on the same logits are not copies of each other.
  EXPECT_FALSE(std::equal(a.begin(), a.begin() + 32, a.begin() + 32));
  // Identical rows in one call get independent draws.
  Sampler s({.temperature = 1.f, .seed = 5}, 10);
  const std::vector<int64_t> counts = draw_counts(s, kLogits, 64, 1);
  EXPECT_LT(*std::max_element(counts.begin(), counts.end()), 64);
}

TEST(Sampler, ProcessedLogprobsDoNotAdvanceTheKey) {
  const Array logits = random_logits(8, 32, 2);
  Sampler a({.temperature = 1.f, .seed = 9}, 32);
  Sampler b({.temperature = 1.f, .seed = 9}, 32);
  (void)b.processed_logprobs(logits).to_vector<float>();
  EXPECT_EQ(a.sample(logits).to_vector<int32_t>(), b.sample(logits).to_vector<int32_t>());
}

// ---- distributions ----

TEST(SamplerDistribution, Temperature) {
  expect_distribution({.temperature = 1.f, .seed = 1}, "T=1");
  expect_distribution({.temperature = 0.7f, .seed = 2}, "T=0.7");
}

TEST(SamplerDistribution, TopK) {
  expect_distribution({.temperature = 1.5f, .top_k = 4, .seed = 3}, "T=1.5 top_k=4");
}

TEST(SamplerDistribution, TopP) {
  expect_distribution({.temperature = 1.f, .top_p = 0.8f, .seed = 4}, "top_p=0.8");
  expect_distribution({.temperature = 1.3f, .top_p = 0.75f, .seed = 5}, "T=1.3 top_p=0.75");
}

TEST(SamplerDistribution, MinP) {
  expect_distribution({.temperature = 1.f, .min_p = 0.1f, .seed = 6}, "min_p=0.1");
}

TEST(SamplerDistribution, Combined) {
  const SamplerOptions o{.temperature = 0.8f, .top_k = 6, .top_p = 0.9f, .min_p = 0.2f, .seed = 7};
  // Every stage removes something here: top-k {2,4,6,8}, top-p {0}, min-p {9}.
  const std::vector<double> p = reference_probs(kLogits, o);
  for (size_t i : {0, 2, 4, 6, 8, 9}) EXPECT_EQ(p[i], 0.0) << i;
  expect_distribution(o, "combined");
}

TEST(SamplerDistribution, ProcessedLogprobsMatchReference) {
  const std::vector<SamplerOptions> opts = {
      {.temperature = 0.7f},
      {.temperature = 1.5f, .top_k = 4},
      {.temperature = 1.3f, .top_p = 0.75f},
      {.temperature = 1.f, .min_p = 0.1f},
      {.temperature = 0.8f, .top_k = 6, .top_p = 0.9f, .min_p = 0.2f}};
  const Array logits(kLogits, {1, 10});
  for (size_t c = 0; c < opts.size(); ++c) {
    const std::vector<double> want = reference_probs(kLogits, opts[c]);
    const std::vector<float> got =
        Sampler(opts[c], 10).processed_logprobs(logits).to_vector<float>();
    for (size_t i = 0; i < want.size(); ++i) {
      if (want[i] == 0.0)
        EXPECT_EQ(static_cast<double>(got[i]), kNegInf) << "config " << c << " token " << i;
      else
        EXPECT_NEAR(std::exp(static_cast<double>(got[i])), want[i], 1e-6)
            << "config " << c << " token " << i;
    }
  }
}

// ---- warper edge cases (exact processed logits) ----

TEST(SamplerWarpers, TopKKeepsTiesTopPDropsLowerIdsFirstMinPThreshold) {
  const double ni = kNegInf;
  Sampler k1({.temperature = 1.f, .top_k = 1}, 4);
  expect_row_near(processed_row(k1, Array({1.f, 3.f, 3.f, 2.f}, {1, 4}), 0), {ni, 3, 3, ni},
                  "top_k ties kept");
  Sampler k9({.temperature = 1.f, .top_k = 9}, 4);  // k >= V: nothing removed
  expect_row_near(processed_row(k9, Array({1.f, 3.f, 3.f, 2.f}, {1, 4}), 0), {1, 3, 3, 2},
                  "top_k >= V");
  // Uniform over 4: cumulative 0.25, 0.5, 0.75, 1 ascending; <= 0.5 goes (ids 0 and 1).
  Sampler p5({.temperature = 1.f, .top_p = 0.5f}, 4);
  expect_row_near(processed_row(p5, Array({0.f, 0.f, 0.f, 0.f}, {1, 4}), 0), {ni, ni, 0, 0},
                  "top_p ties");
  // A tiny top_p keeps only the most likely token.
  Sampler p0({.temperature = 1.f, .top_p = 1e-6f}, 4);
  expect_row_near(processed_row(p0, Array({0.f, 2.f, 1.f, -1.f}, {1, 4}), 0), {ni, 2, ni, ni},
                  "top_p keeps one");
  // Relative probabilities 1, 0.2, 0.5, 0.31 against min_p 0.3: only 0.2 goes.
  const std::vector<float> lp = {0.f, std::log(0.2f), std::log(0.5f), std::log(0.31f)};
  Sampler mp({.temperature = 1.f, .min_p = 0.3f}, 4);
  expect_row_near(processed_row(mp, Array(lp, {1, 4}), 0), {0, ni, lp[2], lp[3]}, "min_p");
  // Temperature divides.
  Sampler t2({.temperature = 2.f}, 4);
  expect_row_near(processed_row(t2, Array({1.f, -3.f, 0.5f, 4.f}, {1, 4}), 0),
                  {0.5, -1.5, 0.25, 2.0}, "temperature");
}

// ---- penalties and bias ----

/// HF order: bias, then repetition penalty, then presence/frequency over counts.
std::vector<double> reference_penalised(const std::vector<float>& logits,
                                        const std::vector<int>& counts, const SamplerOptions& o) {
  std::vector<double> x(logits.begin(), logits.end());
  for (const auto& [id, b] : o.logit_bias) x[static_cast<size_t>(id)] += b;
  for (size_t i = 0; i < x.size(); ++i) {
    if (counts[i] == 0) continue;
    x[i] = x[i] < 0 ? x[i] * o.repetition_penalty : x[i] / o.repetition_penalty;
    x[i] -= o.frequency_penalty * counts[i] + o.presence_penalty;
  }
  return x;
}

const std::vector<float> kRow0 = {1.0f, -2.0f, 0.5f, 3.0f, -0.5f, 2.0f, 0.0f, -1.0f};
const std::vector<float> kRow1 = {-1.0f, 2.5f, 0.25f, 1.5f, -3.0f, 0.75f, 1.0f, -0.25f};
const std::vector<float> kRow2 = {0.5f, 0.5f, -1.5f, 2.0f, 1.0f, -0.5f, 3.0f, 1.25f};

Array three_rows() {
  std::vector<float> v = kRow0;
  v.insert(v.end(), kRow1.begin(), kRow1.end());
  v.insert(v.end(), kRow2.begin(), kRow2.end());
  return Array(v, {3, 8});
}

TEST(SamplerPenalties, RepetitionPresenceFrequencyBiasExact) {
  const SamplerOptions o{.repetition_penalty = 1.5f,
                         .presence_penalty = 0.5f,
                         .frequency_penalty = 0.25f,
                         .logit_bias = {{2, 1.0f}, {5, -2.0f}, {0, 0.5f}}};
  Sampler s(o, 8);
  s.add_prompt(0, {0, 1, 1});
  s.add_prompt(1, {3});
  s.accept({3, 3, 7});
  s.accept({1, 4, 7});
  // Row 0: 0 once (positive after bias), 1 three times (negative), 3 once. Row 1: 3 twice, 4
  // once (negative). Row 2: only 7 twice (the prompt of row 2 was never given).
  const Array logits = three_rows();
  expect_row_near(processed_row(s, logits, 0),
                  reference_penalised(kRow0, {1, 3, 0, 1, 0, 0, 0, 0}, o), "row 0");
  expect_row_near(processed_row(s, logits, 1),
                  reference_penalised(kRow1, {0, 0, 0, 2, 1, 0, 0, 0}, o), "row 1");
  expect_row_near(processed_row(s, logits, 2),
                  reference_penalised(kRow2, {0, 0, 0, 0, 0, 0, 0, 2}, o), "row 2");
  // Hand-checked values: row 0 token 1: -2 * 1.5 - (0.75 + 0.5) = -4.25; token 0: (1 + 0.5) / 1.5
  // - 0.75 = 0.25.
  const std::vector<float> r0 = processed_row(s, logits, 0);
  EXPECT_NEAR(r0[1], -4.25f, 1e-6);
  EXPECT_NEAR(r0[0], 0.25f, 1e-6);
  // Greedy takes the argmax of the processed logits: in row 0 the bias lifts token 2 to 1.5
  // above token 3 (3 / 1.5 - 0.75 = 1.25); row 1 keeps token 1; row 2 keeps token 6.
  EXPECT_EQ(s.sample(logits).to_vector<int32_t>(), (std::vector<int32_t>{2, 1, 6}));
}

TEST(SamplerPenalties, RepetitionOnlyMatchesHF) {
  // HF RepetitionPenaltyLogitsProcessor: each seen id once, regardless of its count.
  const SamplerOptions o{.repetition_penalty = 2.0f};
  Sampler s(o, 8);
  s.add_prompt(0, {3, 3, 3, 1});
  std::vector<float> two = kRow0;
  two.insert(two.end(), kRow1.begin(), kRow1.end());
  const Array logits(two, {2, 8});
  expect_row_near(processed_row(s, logits, 0), {1.0, -4.0, 0.5, 1.5, -0.5, 2.0, 0.0, -1.0},
                  "repetition");
  // Row 1 was never registered: no history, logits untouched.
  expect_row_near(processed_row(s, logits, 1), std::vector<double>(kRow1.begin(), kRow1.end()),
                  "untracked row");
}

TEST(SamplerPenalties, PenaltyContextWindow) {
  Sampler rep({.repetition_penalty = 2.0f, .penalty_context = 3}, 8);
  rep.add_prompt(0, {1, 2, 3, 4});  // window {2, 3, 4}
  rep.accept({5});                  // window {3, 4, 5}
  expect_row_near(processed_row(rep, Array(kRow0, {1, 8}), 0),
                  {1.0, -2.0, 0.5, 1.5, -1.0, 1.0, 0.0, -1.0}, "repetition window");
  Sampler freq({.frequency_penalty = 1.0f, .penalty_context = 3}, 8);
  freq.add_prompt(0, {1, 1, 1, 2});  // window {1, 1, 2}
  expect_row_near(processed_row(freq, Array(kRow0, {1, 8}), 0),
                  {1.0, -4.0, -0.5, 3.0, -0.5, 2.0, 0.0, -1.0}, "frequency window");
  freq.accept({6});  // window {1, 2, 6}
  freq.accept({6});  // window {2, 6, 6}
  expect_row_near(processed_row(freq, Array(kRow0, {1, 8}), 0),
                  {1.0, -2.0, -0.5, 3.0, -0.5, 2.0, -2.0, -1.0}, "window slides");
}

TEST(SamplerPenalties, BiasAloneAndBanning) {
  const float ni = -std::numeric_limits<float>::infinity();
  Sampler s({.logit_bias = {{3, -10.f}, {6, 5.f}, {6, 1.f}, {1, ni}}}, 8);
  EXPECT_FALSE(s.has_penalties());
  expect_row_near(processed_row(s, Array(kRow0, {1, 8}), 0),
                  {1.0, kNegInf, 0.5, -7.0, -0.5, 2.0, 6.0, -1.0}, "bias (repeated ids add)");
  EXPECT_EQ(s.sample(Array(kRow0, {1, 8})).item<int32_t>(), 6);
  // A banned token is never sampled.
  Sampler t({.temperature = 1.f, .logit_bias = {{1, ni}}, .seed = 3}, 10);
  EXPECT_EQ(draw_counts(t, kLogits, 500, 2)[1], 0);
}

TEST(SamplerPenalties, NoPenaltyKeepsNoState) {
  Sampler s({.temperature = 1.f, .top_k = 3}, 8);
  s.add_prompt(0, {1, 2, 3});
  s.accept({1});
  EXPECT_EQ(s.tracked_rows(), 0);
  expect_row_near(processed_row(Sampler({}, 8), Array(kRow0, {1, 8}), 0),
                  {1.0, -2.0, 0.5, 3.0, -0.5, 2.0, 0.0, -1.0}, "identity");
}

TEST(SamplerPenalties, RemoveRowsKeepsOthersState) {
  const SamplerOptions o{.repetition_penalty = 1.25f, .frequency_penalty = 0.5f};
  Sampler s(o, 8);
  s.add_prompt(0, {0});
  s.add_prompt(1, {1, 1});
  s.add_prompt(2, {2});
  s.accept({5, 6, 7});
  s.remove_rows({1});
  EXPECT_EQ(s.tracked_rows(), 2);
  std::vector<float> two = kRow0;
  two.insert(two.end(), kRow2.begin(), kRow2.end());
  const Array logits(two, {2, 8});
  expect_row_near(processed_row(s, logits, 0),
                  reference_penalised(kRow0, {1, 0, 0, 0, 0, 1, 0, 0}, o), "old row 0");
  expect_row_near(processed_row(s, logits, 1),
                  reference_penalised(kRow2, {0, 0, 1, 0, 0, 0, 0, 1}, o), "old row 2");
  s.accept({0, 2});
  expect_row_near(processed_row(s, logits, 1),
                  reference_penalised(kRow2, {0, 0, 2, 0, 0, 0, 0, 1}, o), "after accept");
  s.remove_rows({0, 1});
  EXPECT_EQ(s.tracked_rows(), 0);
}

// ---- errors ----

void expect_invalid(const SamplerOptions& o, const std::string& field) {
  try {
    Sampler s(o, 8);
    ADD_FAILURE() << "no error for bad " << field;
  } catch (const InvalidArgument& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("[sampler]", 0), 0u) << msg;
    EXPECT_NE(msg.find(field), std::string::npos) << msg;
  }
}

TEST(SamplerErrors, InvalidOptionsNameTheField) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  expect_invalid({.temperature = -0.5f}, "temperature");
  expect_invalid({.temperature = nan}, "temperature");
  expect_invalid({.top_k = -1}, "top_k");
  expect_invalid({.top_p = 0.0f}, "top_p");
  expect_invalid({.top_p = 1.5f}, "top_p");
  expect_invalid({.min_p = 1.0f}, "min_p");
  expect_invalid({.min_p = -0.1f}, "min_p");
  expect_invalid({.repetition_penalty = 0.0f}, "repetition_penalty");
  expect_invalid({.repetition_penalty = -1.0f}, "repetition_penalty");
  expect_invalid({.presence_penalty = nan}, "presence_penalty");
  expect_invalid({.frequency_penalty = std::numeric_limits<float>::infinity()},
                 "frequency_penalty");
  expect_invalid({.penalty_context = -2}, "penalty_context");
  expect_invalid({.logit_bias = {{8, 1.f}}}, "logit_bias");
  expect_invalid({.logit_bias = {{-1, 1.f}}}, "logit_bias");
  expect_invalid({.logit_bias = {{2, nan}}}, "logit_bias");
  // The message carries the bad value.
  try {
    Sampler s({.top_p = 1.5f}, 8);
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("1.5"), std::string::npos) << e.what();
  }
}

TEST(SamplerErrors, BadLogitsAndIds) {
  Sampler s({.repetition_penalty = 1.1f}, 8);
  EXPECT_THROW(s.sample(zeros({2, 7})), InvalidArgument);
  EXPECT_THROW(s.sample(zeros({8})), InvalidArgument);
  EXPECT_THROW(s.sample(zeros({2, 8}, int32)), InvalidArgument);
  EXPECT_THROW(s.add_prompt(0, {8}), InvalidArgument);
  EXPECT_THROW(s.add_prompt(-1, {1}), InvalidArgument);
  s.accept({1, 2, 3});
  EXPECT_THROW(s.accept({1, 2}), InvalidArgument);  // fewer ids than tracked rows
  EXPECT_THROW(s.accept({1, 2, -1}), InvalidArgument);
  EXPECT_THROW(s.sample(zeros({2, 8})), InvalidArgument);  // fewer logits rows than tracked
  EXPECT_THROW(s.remove_rows({1, 1}), InvalidArgument);
  EXPECT_THROW(s.remove_rows({-1}), InvalidArgument);
  EXPECT_THROW(Sampler({}, 0), InvalidArgument);
}

}  // namespace
}  // namespace ingot::llm
