// fast::packed_attention on the CPU: within the dtype's rounding of a float64 naive loop (q/k
// norms, rotary at positions P + i, causal attention over the shared prefix and the sequence's
// own rows, sliding window, softcap), equal bit for bit to its composition of fast ops
// (ref::packed_attention); sequences never see each other; empty sequences, T = 0, qkv
// layouts, thread counts and the portable kernels; errors.
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "core/fast/fast.h"
#include "test_fast_util.h"
#include "util/thread_pool.h"

namespace ingot::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

enum class Norm { none, hf, gemma };  // hf: weight_in_float32 false; gemma: 1 + w in float32

struct PackedCase {
  int64_t h, hk, d;
  std::vector<int64_t> lens;
  Norm norm = Norm::none;
  bool traditional = false, freqs = false;
  int window = 0;
  float softcap = 0;
  int64_t prefix = 0;  // P
  float rope_scale = 1.0f;
};

const std::vector<int64_t> kLens{1, 7, 0, 33, 64};

std::vector<PackedCase> cases() {
  return {
      {4, 2, 64, kLens},
      {4, 2, 128, kLens, Norm::hf, false, false, 0, 0, 5},
      {8, 1, 256, kLens, Norm::gemma, false, false, 16, 1.5f, 5},
      {4, 2, 32, kLens, Norm::none, true, true, 8, 0, 0, 0.5f},
      {8, 1, 64, kLens, Norm::hf, true, true, 0, 2.0f, 5},
      {8, 1, 128, {0, 5, 0, 3, 0}, Norm::gemma, true, false, 0, 0, 0},
      {4, 4, 32, {40}, Norm::hf, false, true, 9, 0, 5, 0.25f},
      {2, 1, 16, {2, 2, 1, 9}, Norm::none, false, false, 3, 1.0f, 5},
  };
}

std::string describe(const PackedCase& c, Dtype t) {
  std::string lens;
  for (int64_t l : c.lens) lens += (lens.empty() ? "" : ",") + std::to_string(l);
  return std::string(dtype_name(t)) + " H " + std::to_string(c.h) + " Hkv " + std::to_string(c.hk) +
         " D " + std::to_string(c.d) + " lens {" + lens + "}" +
         (c.norm == Norm::hf      ? " hf_norm"
          : c.norm == Norm::gemma ? " gemma_norm"
                                  : "") +
         (c.traditional ? " traditional" : "") + (c.freqs ? " freqs" : "") + " window " +
         std::to_string(c.window) + " softcap " + std::to_string(c.softcap) + " P " +
         std::to_string(c.prefix);
}

/// One problem: values as doubles (representable in the dtype) and the options.
struct Packed {
  PackedCase c;
  Dtype t;
  int64_t rows = 0, width = 0;
  std::vector<double> qkv, q_norm, k_norm, pk, pv;
  std::vector<float> freqs;
  fast::PackedAttentionOptions opt;

  Packed(const PackedCase& pc, Dtype dt, uint32_t seed) : c(pc), t(dt) {
    rows = std::accumulate(c.lens.begin(), c.lens.end(), int64_t{0});
    width = (c.h + 2 * c.hk) * c.d;
    qkv = random_values(rows * width, t, seed, -2, 2);
    if (c.norm != Norm::none) {
      const bool unit = c.norm == Norm::gemma;
      q_norm = random_values(c.d, t, seed + 1, unit ? -0.5 : 0.5, unit ? 0.5 : 1.5);
      k_norm = random_values(c.d, t, seed + 2, unit ? -0.5 : 0.5, unit ? 0.5 : 1.5);
    }
    if (c.prefix > 0) {
      pk = random_values(c.hk * c.prefix * c.d, t, seed + 3, -2, 2);
      pv = random_values(c.hk * c.prefix * c.d, t, seed + 4, -2, 2);
    }
    if (c.freqs)
      for (int64_t i = 0; i < c.d / 2; ++i)
        freqs.push_back(static_cast<float>(1.0 / static_cast<double>(1 + i * i)));
    opt.n_heads = static_cast<int>(c.h);
    opt.n_kv_heads = static_cast<int>(c.hk);
    opt.starts = {0};
    for (int64_t l : c.lens) opt.starts.push_back(opt.starts.back() + l);
    opt.qk_norm = {.eps = 1e-5f,
                   .add_unit_offset = c.norm == Norm::gemma,
                   .weight_in_float32 = c.norm == Norm::gemma};
    opt.rope = {.traditional = c.traditional, .base = 10000.0f, .scale = c.rope_scale};
    if (c.freqs) opt.rope.freqs = Array(freqs, {c.d / 2});
    opt.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.d)));
    opt.window = c.window;
    opt.softcap = c.softcap;
  }

  Array a(const std::vector<double>& v, const Shape& s) const { return Array(v, s, t); }
  std::optional<Array> opt_a(const std::vector<double>& v, const Shape& s) const {
    if (v.empty()) return std::nullopt;
    return a(v, s);
  }
  Array qkv_array() const { return a(qkv, {rows, width}); }

  /// f(qkv, q_norm, k_norm, prefix_keys, prefix_values, opt, cpu_device).
  template <typename F>
  Array call(F&& f, const std::optional<Array>& x = std::nullopt) const {
    const Shape ps{1, c.hk, c.prefix, c.d};
    return f(x ? *x : qkv_array(), opt_a(q_norm, {c.d}), opt_a(k_norm, {c.d}), opt_a(pk, ps),
             opt_a(pv, ps), opt, cpu_device);
  }
  Array fused(const std::optional<Array>& x = std::nullopt) const {
    return call([](auto&&... a) { return fast::packed_attention(std::forward<decltype(a)>(a)...); },
                x);
  }
  Array ref(const std::optional<Array>& x = std::nullopt) const {
    return call(
        [](auto&&... a) { return fast::ref::packed_attention(std::forward<decltype(a)>(a)...); },
        x);
  }
};

/// The op in float64, rounding to the dtype where the separate ops do (the norm's output, the
/// rotary's cos/sin, products and sums, the output); the rotary angles in float32 as the
/// spec (Hugging Face) computes them, then cos and sin in double; attention unrounded.
std::vector<double> naive(const Packed& p) {
  const PackedCase& c = p.c;
  const int64_t d = c.d, hk = c.hk, g = c.h / hk, half = d / 2, np = c.prefix;
  auto R = [&](double v) { return round_to(v, p.t); };
  auto norm = [&](double* v, const std::vector<double>& w) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += v[i] * v[i];
    const double r = 1.0 / std::sqrt(ss / static_cast<double>(d) + 1e-5);
    for (int64_t i = 0; i < d; ++i) {
      double n = v[i] * r;
      if (c.norm == Norm::hf) n = R(n) * w[i];
      if (c.norm == Norm::gemma) n = n * (1.0 + w[i]);
      v[i] = R(n);
    }
  };
  auto rope = [&](double* v, int64_t pos) {
    const float fpos = static_cast<float>(pos) * c.rope_scale;
    for (int64_t i = 0; i < half; ++i) {
      const float inv =
          c.freqs ? p.freqs[i]
                  : 1.0f / std::pow(10000.0f, static_cast<float>(2 * i) / static_cast<float>(d));
      const float ang = fpos * inv;
      const double cs = R(static_cast<float>(std::cos(static_cast<double>(ang))));
      const double sn = R(static_cast<float>(std::sin(static_cast<double>(ang))));
      const int64_t i1 = c.traditional ? 2 * i : i, i2 = c.traditional ? 2 * i + 1 : i + half;
      const double x1 = v[i1], x2 = v[i2];
      v[i1] = R(R(x1 * cs) + R(-x2 * sn));
      v[i2] = R(R(x2 * cs) + R(x1 * sn));
    }
  };
  std::vector<double> out(static_cast<size_t>(p.rows * c.h * d));
  int64_t r0 = 0;
  for (int64_t len : c.lens) {
    const int64_t s = np + len;
    // Keys and values [Hkv][S][D]: the prefix, then the sequence's rotated rows.
    std::vector<double> keys(hk * s * d), vals(hk * s * d), q(len * c.h * d);
    for (int64_t j = 0; j < hk; ++j)
      for (int64_t col = 0; col < np; ++col)
        for (int64_t i = 0; i < d; ++i) {
          keys[(j * s + col) * d + i] = p.pk[(j * np + col) * d + i];
          vals[(j * s + col) * d + i] = p.pv[(j * np + col) * d + i];
        }
    for (int64_t l = 0; l < len; ++l) {
      const double* row = &p.qkv[(r0 + l) * p.width];
      for (int64_t hh = 0; hh < c.h; ++hh) {
        double* qv = &q[(l * c.h + hh) * d];
        std::copy(row + hh * d, row + (hh + 1) * d, qv);
        if (c.norm != Norm::none) norm(qv, p.q_norm);
        rope(qv, np + l);
      }
      for (int64_t j = 0; j < hk; ++j) {
        double* kv = &keys[(j * s + np + l) * d];
        std::copy(row + (c.h + j) * d, row + (c.h + j + 1) * d, kv);
        if (c.norm != Norm::none) norm(kv, p.k_norm);
        rope(kv, np + l);
        std::copy(row + (c.h + hk + j) * d, row + (c.h + hk + j + 1) * d,
                  &vals[(j * s + np + l) * d]);
      }
    }
    std::vector<double> logit(static_cast<size_t>(s));
    for (int64_t l = 0; l < len; ++l)
      for (int64_t hh = 0; hh < c.h; ++hh) {
        const int64_t j = hh / g, pos = np + l;
        double mx = -kInf;
        for (int64_t col = 0; col < s; ++col) {
          logit[col] = -kInf;
          if (col > pos || (c.window > 0 && pos - col >= c.window)) continue;
          double acc = 0;
          for (int64_t i = 0; i < d; ++i)
            acc += q[(l * c.h + hh) * d + i] * keys[(j * s + col) * d + i];
          acc *= static_cast<double>(p.opt.scale);
          if (c.softcap > 0) acc = c.softcap * std::tanh(acc / c.softcap);
          logit[col] = acc;
          mx = std::max(mx, acc);
        }
        double sum = 0;
        for (int64_t col = 0; col < s; ++col) sum += (logit[col] = std::exp(logit[col] - mx));
        for (int64_t i = 0; i < d; ++i) {
          double acc = 0;
          for (int64_t col = 0; col < s; ++col) acc += logit[col] * vals[(j * s + col) * d + i];
          out[((r0 + l) * c.h + hh) * d + i] = R(acc / sum);
        }
      }
    r0 += len;
  }
  return out;
}

// The naive loop rounds where the ops do; what is left is float32 attention arithmetic and a
// rounding boundary crossed here and there (an element one ulp off, then propagated).
double tolerance(Dtype t) {
  return t == float32 ? 2e-6 : 4 * eps_of(t);
}

TEST(FastPackedAttention, MatchesFloat64AndTheOps) {
  uint32_t seed = 100;
  for (const PackedCase& c : cases())
    for (Dtype t : {float32, bfloat16}) {
      const Packed p(c, t, seed += 10);
      const std::string what = describe(c, t);
      const Array got = p.fused();
      EXPECT_EQ(got.dtype(), t) << what;
      EXPECT_EQ(got.shape(), (Shape{p.rows, c.h * c.d})) << what;
      const std::vector<double> gv = values_of(got);
      const double tol = tolerance(t);
      expect_close(gv, naive(p), tol, tol, what + " vs float64");
      expect_close(gv, values_of(p.ref()), 0, 0, what + " vs ref");
    }
}

TEST(FastPackedAttention, Float16) {
  const Packed p({4, 2, 64, kLens, Norm::hf, false, false, 12, 0, 5}, float16, 7);
  const std::vector<double> gv = values_of(p.fused());
  expect_close(gv, naive(p), tolerance(float16), tolerance(float16), "float16 vs float64");
  expect_close(gv, values_of(p.ref()), 0, 0, "float16 vs ref");
}

TEST(FastPackedAttention, PortableKernels) {
  ScopedIsa isa("portable");
  for (Dtype t : {float32, bfloat16}) {
    const Packed p({4, 2, 64, kLens, Norm::gemma, true, false, 0, 1.5f, 5}, t, 31);
    const std::vector<double> gv = values_of(p.fused());
    expect_close(gv, naive(p), tolerance(t), tolerance(t), std::string(dtype_name(t)) + " naive");
    expect_close(gv, values_of(p.ref()), 0, 0, std::string(dtype_name(t)) + " ref");
  }
}

// qkv as a strided view (every other column of a wider array, or a transpose): same values.
TEST(FastPackedAttention, QkvLayouts) {
  const Packed p({4, 2, 32, kLens, Norm::hf, false, true, 0, 0, 5}, float32, 41);
  const int64_t t = p.rows, w = p.width;
  // Every other column of [T, 2 W + 1] (from column 1), and the transpose of [W, T].
  std::vector<double> wide(static_cast<size_t>(t * (2 * w + 1)), -7.0), tr(p.qkv.size());
  for (int64_t r = 0; r < t; ++r)
    for (int64_t i = 0; i < w; ++i) {
      wide[r * (2 * w + 1) + 1 + 2 * i] = p.qkv[r * w + i];
      tr[i * t + r] = p.qkv[r * w + i];
    }
  const Array sliced =
      slice(Array(wide, {t, 2 * w + 1}, float32), {0, 1}, {t, 2 * w + 1}, {1, 2}, cpu_device);
  const Array transposed = transpose(Array(tr, {w, t}, float32), cpu_device);
  const std::vector<double> contiguous = values_of(p.fused());
  for (const Array& x : {sliced, transposed}) {
    const std::string what = x.same_node(sliced) ? "sliced" : "transposed";
    ASSERT_EQ(values_of(x), p.qkv) << what;
    const std::vector<double> gv = values_of(p.fused(x));
    expect_close(gv, naive(p), 2e-6, 2e-6, what + " vs float64");
    expect_close(gv, values_of(p.ref(x)), 0, 0, what + " vs ref");
    expect_close(gv, contiguous, 0, 0, what + " vs contiguous");
  }
}

// Many sequences (side by side on the pool) and few (each on the ops' threads): the values do
// not depend on the thread count.
TEST(FastPackedAttention, ThreadCounts) {
  std::vector<int64_t> lens;
  for (int i = 0; i < 24; ++i) lens.push_back((i * 7) % 19);
  lens.push_back(70);
  for (const std::vector<int64_t>& ls : {lens, kLens}) {
    const Packed p({4, 2, 64, ls, Norm::hf, false, false, 0, 0, 5}, bfloat16, 51);
    std::vector<double> one;
    {
      ScopedPoolThreads pool(1);
      one = values_of(p.fused());
    }
    for (int threads : {2, 4}) {
      ScopedPoolThreads pool(threads);
      expect_close(values_of(p.fused()), one, 0, 0, std::to_string(threads) + " threads");
    }
    expect_close(one, naive(p), tolerance(bfloat16), tolerance(bfloat16), "vs float64");
  }
}

// Changing one sequence's rows leaves every other sequence's output as it was, exactly.
TEST(FastPackedAttention, SequencesDoNotSeeEachOther) {
  for (int64_t prefix : {0, 5}) {
    Packed p({4, 2, 64, kLens, Norm::hf, false, false, 0, 0, prefix}, float32, 61);
    const std::vector<double> before = values_of(p.fused());
    const int64_t width = p.c.h * p.c.d;
    for (size_t s = 0; s < kLens.size(); ++s) {
      const int64_t r0 = p.opt.starts[s], r1 = p.opt.starts[s + 1];
      Packed q = p;
      const std::vector<double> fresh =
          random_values((r1 - r0) * p.width, float32, 71 + static_cast<uint32_t>(s), -2, 2);
      std::copy(fresh.begin(), fresh.end(), q.qkv.begin() + r0 * p.width);
      const std::vector<double> after = values_of(q.fused());
      const std::string what =
          "prefix " + std::to_string(prefix) + " sequence " + std::to_string(s) + " changed";
      for (int64_t r = 0; r < p.rows; ++r) {
        const bool inside = r >= r0 && r < r1;
        bool same = true;
        for (int64_t i = 0; i < width; ++i)
          same = same && after[r * width + i] == before[r * width + i];
        EXPECT_EQ(same, !inside) << what << ": row " << r;
      }
    }
  }
}

TEST(FastPackedAttention, EmptyBatchAndEmptySequences) {
  fast::PackedAttentionOptions o;
  o.n_heads = 4;
  o.n_kv_heads = 2;
  o.starts = {0, 0};
  for (Dtype t : {float32, bfloat16}) {
    const Array qkv = zeros({0, 8 * 16}, t, cpu_device);
    for (const auto& f : {fast::packed_attention, fast::ref::packed_attention}) {
      const Array y = f(qkv, std::nullopt, std::nullopt, std::nullopt, std::nullopt, o, cpu_device);
      EXPECT_EQ(y.shape(), (Shape{0, 4 * 16}));
      EXPECT_EQ(y.dtype(), t);
      EXPECT_EQ(values_of(y).size(), 0u);
    }
  }
  // Empty sequences first, between and last (and a prefix every row sees).
  const Packed p({4, 2, 32, {0, 0, 4, 0, 1, 0}, Norm::none, false, false, 0, 0, 5}, float32, 81);
  const std::vector<double> gv = values_of(p.fused());
  expect_close(gv, naive(p), 2e-6, 2e-6, "empty sequences vs float64");
  expect_close(gv, values_of(p.ref()), 0, 0, "empty sequences vs ref");
  // A prefix of no columns is no prefix.
  const Packed np({4, 2, 32, kLens, Norm::hf, true, false, 0, 0, 0}, bfloat16, 83);
  const std::vector<double> plain = values_of(np.fused());
  const Array e = zeros({1, 2, 0, 32}, bfloat16, cpu_device);
  for (const auto& f : {fast::packed_attention, fast::ref::packed_attention})
    expect_close(values_of(f(np.qkv_array(), np.a(np.q_norm, {32}), np.a(np.k_norm, {32}), e, e,
                             np.opt, cpu_device)),
                 plain, 0, 0, "empty prefix");
}

TEST(FastPackedAttention, Errors) {
  const Packed p({4, 2, 16, {3, 2}, Norm::hf, false, true, 0, 0, 2}, float32, 91);
  const int64_t d = p.c.d;
  struct Args {
    Array qkv;
    std::optional<Array> qn, kn, pk, pv;
    fast::PackedAttentionOptions opt;
  };
  // packed_attention with the problem's arguments, some replaced by `edit`, on the CPU.
  auto call = [&](const std::function<void(Args&)>& edit) {
    const Shape ps{1, 2, 2, d};
    Args a{p.qkv_array(), p.a(p.q_norm, {d}), p.a(p.k_norm, {d}),
           p.a(p.pk, ps), p.a(p.pv, ps),      p.opt};
    edit(a);
    return fast::packed_attention(a.qkv, a.qn, a.kn, a.pk, a.pv, a.opt, cpu_device);
  };
  // The error names the op and contains `msg`; the reference checks the same way.
  auto expect = [&](const std::function<void(Args&)>& edit, const std::string& msg) {
    for (const auto& f : {fast::packed_attention, fast::ref::packed_attention}) {
      try {
        const Shape ps{1, 2, 2, d};
        Args a{p.qkv_array(), p.a(p.q_norm, {d}), p.a(p.k_norm, {d}),
               p.a(p.pk, ps), p.a(p.pv, ps),      p.opt};
        edit(a);
        f(a.qkv, a.qn, a.kn, a.pk, a.pv, a.opt, cpu_device);
        ADD_FAILURE() << "expected an InvalidArgument containing: " << msg;
      } catch (const InvalidArgument& e) {
        const std::string w = e.what();
        EXPECT_EQ(w.rfind("[packed_attention] ", 0), 0u) << w;
        EXPECT_NE(w.find(msg), std::string::npos) << w << "\nexpected to contain: " << msg;
      }
    }
  };
  call([](Args&) {}).eval();  // the unedited arguments are fine
  expect(
      [](Args& a) {
        a.qkv = zeros({5, 128}, int32);
      },
      "qkv must be a floating-point array, got int32 [5, 128]");
  expect(
      [](Args& a) {
        a.qkv = zeros({5, 128}, float64);
      },
      "qkv must be float32, bfloat16 or float16, got float64");
  expect([](Args& a) { a.opt.n_heads = 0; }, "n_heads and n_kv_heads must be positive");
  expect([](Args& a) { a.opt.n_kv_heads = -1; }, "got 4 and -1");
  expect([](Args& a) { a.opt.n_kv_heads = 3; }, "n_heads a multiple of n_kv_heads, got 4 and 3");
  expect(
      [](Args& a) {
        a.qkv = zeros({1, 5, 128});
      },
      "qkv must be [T, (H + 2 Hkv) D] with H + 2 Hkv = 8 and D > 0, got [1, 5, 128]");
  expect([](Args& a) { a.qkv = zeros({5, 132}); }, "H + 2 Hkv = 8 and D > 0, got [5, 132]");
  expect([](Args& a) { a.qkv = zeros({5, 0}); }, "got [5, 0]");
  expect(
      [](Args& a) {
        a.qkv = zeros({5, 8 * 15});
        a.qn = a.kn = std::nullopt;
        a.pk = a.pv = std::nullopt;
        a.opt.rope.freqs.reset();
      },
      "the head dimension D must be even, got 15");
  expect([](Args& a) { a.kn = std::nullopt; },
         "q_norm and k_norm must both be given or both be absent");
  expect([](Args& a) { a.qn = zeros({8}); },
         "q_norm and k_norm must be [D = 16] of qkv's dtype float32, got float32 [8]");
  expect([](Args& a) { a.kn = zeros({16}, bfloat16); }, "got bfloat16 [16]");
  expect([](Args& a) { a.opt.starts = {5}; },
         "starts must have at least two entries (one sequence), got 1");
  expect([](Args& a) { a.opt.starts = {1, 5}; }, "starts[0] must be 0, got 1");
  expect(
      [](Args& a) {
        a.opt.starts = {0, 3, 2, 5};
      },
      "starts must not decrease, got starts[2] = 2 after starts[1] = 3");
  expect(
      [](Args& a) {
        a.opt.starts = {0, 3, 4};
      },
      "the last entry of starts must be T = 5 (qkv's rows), got 4");
  expect([](Args& a) { a.opt.rope.offset = 2; }, "rope.offset must be 0");
  expect([](Args& a) { a.opt.rope.offsets = Array({0}, int32); }, "rope.offsets must be absent");
  expect([](Args& a) { a.opt.rope.freqs = zeros({16}); },
         "rope.freqs must be a floating-point [D / 2] = [8], got float32 [16]");
  expect([](Args& a) { a.opt.rope.freqs = zeros({8}, int32); }, "got int32 [8]");
  expect([](Args& a) { a.pv = std::nullopt; },
         "prefix_keys and prefix_values must both be given or both be absent");
  expect(
      [](Args& a) {
        a.pk = zeros({1, 2, 3, 16});
      },
      "prefix_keys and prefix_values must both be [1, Hkv = 2, P, D = 16], got [1, 2, 3, 16] "
      "and [1, 2, 2, 16]");
  expect(
      [](Args& a) {
        a.pk = zeros({2, 2, 2, 16});
        a.pv = zeros({2, 2, 2, 16});
      },
      "got [2, 2, 2, 16] and [2, 2, 2, 16]");
  expect(
      [](Args& a) {
        a.pk = zeros({1, 1, 2, 16});
        a.pv = zeros({1, 1, 2, 16});
      },
      "got [1, 1, 2, 16]");
  expect([](Args& a) { a.pv = zeros({1, 2, 2, 8}); }, "got [1, 2, 2, 16] and [1, 2, 2, 8]");
  expect(
      [](Args& a) {
        a.pv = zeros({1, 2, 2, 16}, float16);
      },
      "prefix_keys and prefix_values must have qkv's dtype float32, got float32 and float16");
  expect([](Args& a) { a.opt.window = -1; }, "window must be >= 0, got -1");
  expect([](Args& a) { a.opt.softcap = -0.5f; }, "softcap must be >= 0, got -0.5");
  // Not differentiable.
  const Array y = call([](Args&) {});
  expect_error<Unsupported>([&] { y.primitive().vjp(y.inputs(), {ones_like(y)}, {0}, {y}); },
                            "[packed_attention] is not differentiable");
}

}  // namespace
}  // namespace ingot::test
