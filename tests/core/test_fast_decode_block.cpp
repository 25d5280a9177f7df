// fast::decode_block: equal bit for bit to its composition of fast ops (ref::decode_block) and,
// within the dtype's rounding, to a float64 naive loop of the whole block (norms, products,
// q/k norms, rotary, masked softmax attention, GLU, residuals); cache donation; errors.
#include <cmath>

#include "core/fast/fast.h"
#include "test_fast_util.h"

namespace ingot::test {
namespace {

constexpr int64_t kE = 64, kH = 4, kI = 96, kC = 12, kColumn = 5;

struct BlockCase {
  int64_t b, hk, d;
  bool qk_norm, freqs, traditional, unit_offset;
  fast::GatedActivation act;
};

std::vector<BlockCase> block_cases() {
  using A = fast::GatedActivation;
  return {
      {1, 2, 16, true, false, false, false, A::silu},
      {2, 4, 32, true, true, false, false, A::silu},
      {2, 2, 32, false, false, false, false, A::gelu_tanh},
      {1, 4, 16, false, true, true, false, A::silu},
      {2, 2, 16, true, false, false, true, A::gelu_tanh},  // Gemma-style norms
  };
}

/// The inputs of one problem, as doubles (already representable in the dtype) and as arrays.
struct Block {
  BlockCase c;
  Dtype t;
  std::vector<double> x, in_norm, w_qkv, q_norm, k_norm, w_o, post_norm, w_gu, w_down, keys, values,
      mask, freqs;
  std::vector<int32_t> offsets;
  fast::DecodeBlockOptions opt;

  Block(const BlockCase& bc, Dtype dt, uint32_t seed) : c(bc), t(dt) {
    const int64_t n = (kH + 2 * c.hk) * c.d, kv = c.b * c.hk * kC * c.d;
    const double wr = 1.0 / std::sqrt(static_cast<double>(kE));
    x = random_values(c.b * kE, t, seed, -1, 1);
    in_norm = random_values(kE, t, seed + 1, c.unit_offset ? -0.5 : 0.5, c.unit_offset ? 0.5 : 1.5);
    post_norm =
        random_values(kE, t, seed + 2, c.unit_offset ? -0.5 : 0.5, c.unit_offset ? 0.5 : 1.5);
    w_qkv = random_values(n * kE, t, seed + 3, -wr, wr);
    if (c.qk_norm) {
      q_norm = random_values(c.d, t, seed + 4, 0.5, 1.5);
      k_norm = random_values(c.d, t, seed + 5, 0.5, 1.5);
    }
    w_o = random_values(kE * kH * c.d, t, seed + 6, -wr, wr);
    w_gu = random_values(2 * kI * kE, t, seed + 7, -wr, wr);
    w_down = random_values(kE * kI, t, seed + 8, -0.1, 0.1);
    keys = random_values(kv, t, seed + 9, -1, 1);
    values = random_values(kv, t, seed + 10, -1, 1);
    // Row bi keeps the columns written so far (<= kColumn) but column 1 + bi.
    for (int64_t bi = 0; bi < c.b; ++bi)
      for (int64_t j = 0; j < kC; ++j) mask.push_back(j <= kColumn && j != 1 + bi ? 1.0 : 0.0);
    for (int64_t bi = 0; bi < c.b; ++bi) offsets.push_back(static_cast<int32_t>(5 + 7 * bi));
    if (c.freqs)
      for (int64_t i = 0; i < c.d / 2; ++i)
        freqs.push_back(static_cast<float>(1.0 / static_cast<double>(1 + i * i)));
    opt.n_heads = static_cast<int>(kH);
    opt.n_kv_heads = static_cast<int>(c.hk);
    opt.norm = {.eps = 1e-6f, .add_unit_offset = c.unit_offset, .weight_in_float32 = c.unit_offset};
    opt.qk_norm = {.eps = 1e-5f, .add_unit_offset = false, .weight_in_float32 = false};
    opt.rope = {.traditional = c.traditional, .base = 10000.0f};
    opt.rope.offsets = Array(offsets, {c.b}, int32);
    if (c.freqs) opt.rope.freqs = Array(std::vector<float>(freqs.begin(), freqs.end()), {c.d / 2});
    opt.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.d)));
    opt.act = c.act;
  }

  Array a(const std::vector<double>& v, const Shape& s) const { return Array(v, s, t); }
  std::optional<Array> opt_a(const std::vector<double>& v) const {
    if (v.empty()) return std::nullopt;
    return a(v, {c.d});
  }

  template <typename F>
  std::vector<Array> call(F&& f) const {
    const int64_t n = (kH + 2 * c.hk) * c.d;
    const Shape kv{c.b, c.hk, kC, c.d};
    return f(a(x, {c.b, 1, kE}), a(in_norm, {kE}), a(w_qkv, {n, kE}), opt_a(q_norm), opt_a(k_norm),
             a(w_o, {kE, kH * c.d}), a(post_norm, {kE}), a(w_gu, {2 * kI, kE}), a(w_down, {kE, kI}),
             a(keys, kv), a(values, kv), Array({static_cast<int32_t>(kColumn)}, {1}, int32),
             Array(mask, {c.b, 1, 1, kC}, bool_), opt, StreamOrDevice{});
  }
};

double rms(const double* v, int64_t n, double eps) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += v[i] * v[i];
  return 1.0 / std::sqrt(s / static_cast<double>(n) + eps);
}

// w [rows, cols] row-major times v [cols].
std::vector<double> matvec(const std::vector<double>& w, const std::vector<double>& v,
                           int64_t rows) {
  const int64_t cols = static_cast<int64_t>(v.size());
  std::vector<double> y(static_cast<size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k) y[r] += w[r * cols + k] * v[k];
  return y;
}

/// The block in float64, no rounding anywhere: {out, keys', values'}.
std::vector<std::vector<double>> naive_block(const Block& p) {
  const BlockCase& c = p.c;
  const int64_t d = c.d, hk = c.hk, g = kH / hk, half = d / 2;
  std::vector<double> out, keys = p.keys, values = p.values;
  auto norm = [&](std::vector<double> v, const std::vector<double>& w, double eps, bool unit) {
    const double r = rms(v.data(), static_cast<int64_t>(v.size()), eps);
    for (size_t i = 0; i < v.size(); ++i) v[i] *= r * (w[i] + (unit ? 1.0 : 0.0));
    return v;
  };
  auto rope = [&](double* v, int32_t pos) {
    for (int64_t i = 0; i < half; ++i) {
      const double inv =
          c.freqs ? p.freqs[i]
                  : std::pow(10000.0, -static_cast<double>(2 * i) / static_cast<double>(d));
      const double ang = pos * inv, cs = std::cos(ang), sn = std::sin(ang);
      const int64_t i1 = c.traditional ? 2 * i : i, i2 = c.traditional ? 2 * i + 1 : i + half;
      const double x1 = v[i1], x2 = v[i2];
      v[i1] = x1 * cs - x2 * sn;
      v[i2] = x2 * cs + x1 * sn;
    }
  };
  for (int64_t bi = 0; bi < c.b; ++bi) {
    const std::vector<double> x(p.x.begin() + bi * kE, p.x.begin() + (bi + 1) * kE);
    const std::vector<double> qkv =
        matvec(p.w_qkv, norm(x, p.in_norm, 1e-6, c.unit_offset), (kH + 2 * hk) * d);
    std::vector<std::vector<double>> q(kH), k(hk), v(hk);
    for (int64_t h = 0; h < kH; ++h) q[h].assign(qkv.begin() + h * d, qkv.begin() + (h + 1) * d);
    for (int64_t j = 0; j < hk; ++j) {
      k[j].assign(qkv.begin() + (kH + j) * d, qkv.begin() + (kH + j + 1) * d);
      v[j].assign(qkv.begin() + (kH + hk + j) * d, qkv.begin() + (kH + hk + j + 1) * d);
    }
    for (auto& qh : q) {
      if (c.qk_norm) qh = norm(qh, p.q_norm, 1e-5, false);
      rope(qh.data(), p.offsets[bi]);
    }
    for (int64_t j = 0; j < hk; ++j) {
      if (c.qk_norm) k[j] = norm(k[j], p.k_norm, 1e-5, false);
      rope(k[j].data(), p.offsets[bi]);
      for (int64_t i = 0; i < d; ++i) {
        keys[((bi * hk + j) * kC + kColumn) * d + i] = k[j][i];
        values[((bi * hk + j) * kC + kColumn) * d + i] = v[j][i];
      }
    }
    std::vector<double> o(static_cast<size_t>(kH * d), 0.0);
    for (int64_t h = 0; h < kH; ++h) {
      const int64_t j = h / g;
      std::vector<double> logit(kC, -INFINITY);
      double mx = -INFINITY, sum = 0;
      for (int64_t col = 0; col < kC; ++col) {
        if (p.mask[bi * kC + col] == 0) continue;
        double s = 0;
        for (int64_t i = 0; i < d; ++i) s += q[h][i] * keys[((bi * hk + j) * kC + col) * d + i];
        logit[col] = s / std::sqrt(static_cast<double>(d));
        mx = std::max(mx, logit[col]);
      }
      for (int64_t col = 0; col < kC; ++col) sum += std::exp(logit[col] - mx);
      for (int64_t col = 0; col < kC; ++col) {
        const double pr = std::exp(logit[col] - mx) / sum;
        for (int64_t i = 0; i < d; ++i)
          o[h * d + i] += pr * values[((bi * hk + j) * kC + col) * d + i];
      }
    }
    std::vector<double> hid = matvec(p.w_o, o, kE);
    for (int64_t e = 0; e < kE; ++e) hid[e] += x[e];
    const std::vector<double> y =
        matvec(p.w_gu, norm(hid, p.post_norm, 1e-6, c.unit_offset), 2 * kI);
    std::vector<double> gl(kI);
    for (int64_t i = 0; i < kI; ++i) {
      const double z = y[i];
      const double act =
          c.act == fast::GatedActivation::silu
              ? z / (1.0 + std::exp(-z))
              : 0.5 * z * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (z + 0.044715 * z * z * z)));
      gl[i] = act * y[kI + i];
    }
    const std::vector<double> down = matvec(p.w_down, gl, kE);
    for (int64_t e = 0; e < kE; ++e) out.push_back(hid[e] + down[e]);
  }
  return {out, keys, values};
}

std::string describe(const BlockCase& c, Dtype t) {
  return std::string(dtype_name(t)) + " B " + std::to_string(c.b) + " Hkv " + std::to_string(c.hk) +
         " D " + std::to_string(c.d) + (c.qk_norm ? " qk_norm" : "") + (c.freqs ? " freqs" : "") +
         (c.traditional ? " traditional" : "") + (c.unit_offset ? " unit_offset" : "") +
         (c.act == fast::GatedActivation::silu ? " silu" : " gelu_tanh");
}

TEST(FastDecodeBlock, EqualsTheOpsAndFloat64) {
  uint32_t seed = 500;
  for (const BlockCase& c : block_cases())
    for (Dtype t : {float32, bfloat16}) {
      const Block p(c, t, seed += 20);
      const std::vector<Array> got =
          p.call([](auto&&... a) { return fast::decode_block(std::forward<decltype(a)>(a)...); });
      const std::vector<Array> want = p.call(
          [](auto&&... a) { return fast::ref::decode_block(std::forward<decltype(a)>(a)...); });
      const std::vector<std::vector<double>> naive = naive_block(p);
      ASSERT_EQ(got.size(), 3u);
      const char* names[] = {"out", "keys", "values"};
      // The naive loop rounds nowhere: the dtype's rounding of each of the block's steps
      // (products of 64 to 96 terms, softmax, two residual adds) bounds the difference.
      const double tol = t == float32 ? 2e-6 : 2e-2;
      for (int i = 0; i < 3; ++i) {
        const std::string what = describe(c, t) + " " + names[i];
        EXPECT_EQ(got[i].dtype(), t) << what;
        EXPECT_EQ(got[i].shape(), want[i].shape()) << what;
        expect_close(values_of(got[i]), values_of(want[i]), 0, 0, what + " vs ref");
        expect_close(values_of(got[i]), naive[static_cast<size_t>(i)], tol, tol,
                     what + " vs float64");
      }
    }
}

TEST(FastDecodeBlock, DonatesTheCacheBuffers) {
  const Block p({2, 2, 16, true, false, false, false, fast::GatedActivation::silu}, float32, 9);
  const int64_t n = (kH + 2 * p.c.hk) * p.c.d;
  const Shape kv{p.c.b, p.c.hk, kC, p.c.d};
  Array keys = p.a(p.keys, kv), values = p.a(p.values, kv);
  eval({keys, values});
  const void* kstore = keys.raw_ptr();
  const void* vstore = values.raw_ptr();
  std::vector<Array> out = fast::decode_block(
      p.a(p.x, {p.c.b, 1, kE}), p.a(p.in_norm, {kE}), p.a(p.w_qkv, {n, kE}), p.opt_a(p.q_norm),
      p.opt_a(p.k_norm), p.a(p.w_o, {kE, kH * p.c.d}), p.a(p.post_norm, {kE}),
      p.a(p.w_gu, {2 * kI, kE}), p.a(p.w_down, {kE, kI}), keys, values, Array({5}, int32),
      Array(p.mask, {p.c.b, 1, 1, kC}, bool_), p.opt, cpu_device);  // the host buffers' device
  keys = Array();  // only the block holds the buffers now
  values = Array();
  eval(out);
  EXPECT_EQ(out[1].raw_ptr(), kstore) << "the keys buffer was not reused";
  EXPECT_EQ(out[2].raw_ptr(), vstore) << "the values buffer was not reused";
  expect_close(values_of(out[1]), naive_block(p)[1], 2e-6, 2e-6, "donated keys");
}

TEST(FastDecodeBlock, KeepsBuffersOthersHold) {
  const Block p({1, 2, 16, false, false, false, false, fast::GatedActivation::silu}, float32, 19);
  const std::vector<Array> out =
      p.call([](auto&&... a) { return fast::decode_block(std::forward<decltype(a)>(a)...); });
  // p.call's keys are temporaries; hold one explicitly and check it stays unchanged.
  const Shape kv{p.c.b, p.c.hk, kC, p.c.d};
  Array keys = p.a(p.keys, kv);
  eval({keys});
  const int64_t n = (kH + 2 * p.c.hk) * p.c.d;
  std::vector<Array> out2 = fast::decode_block(
      p.a(p.x, {p.c.b, 1, kE}), p.a(p.in_norm, {kE}), p.a(p.w_qkv, {n, kE}), std::nullopt,
      std::nullopt, p.a(p.w_o, {kE, kH * p.c.d}), p.a(p.post_norm, {kE}), p.a(p.w_gu, {2 * kI, kE}),
      p.a(p.w_down, {kE, kI}), keys, p.a(p.values, kv), Array({5}, int32),
      Array(p.mask, {p.c.b, 1, 1, kC}, bool_), p.opt, cpu_device);
  eval(out2);
  EXPECT_NE(out2[1].raw_ptr(), keys.raw_ptr());
  EXPECT_EQ(values_of(keys), p.keys) << "a held keys buffer was written";
  expect_close(values_of(out2[1]), values_of(out[1]), 0, 0, "keys'");
}

TEST(FastDecodeBlock, Errors) {
  const Block p({1, 2, 16, true, false, false, false, fast::GatedActivation::silu}, float32, 3);
  const int64_t n = (kH + 2 * p.c.hk) * p.c.d, d = p.c.d;
  const Shape kvs{1, 2, kC, d};
  // Calls decode_block with the problem's arguments, one of them replaced by `edit`.
  struct Args {
    Array x, in_norm, w_qkv;
    std::optional<Array> qn, kn;
    Array w_o, post, w_gu, w_down, keys, values, column, mask;
    fast::DecodeBlockOptions opt;
  };
  auto call = [&](const std::function<void(Args&)>& edit) {
    Args a{p.a(p.x, {1, 1, kE}),
           p.a(p.in_norm, {kE}),
           p.a(p.w_qkv, {n, kE}),
           p.opt_a(p.q_norm),
           p.opt_a(p.k_norm),
           p.a(p.w_o, {kE, kH * d}),
           p.a(p.post_norm, {kE}),
           p.a(p.w_gu, {2 * kI, kE}),
           p.a(p.w_down, {kE, kI}),
           p.a(p.keys, kvs),
           p.a(p.values, kvs),
           Array({5}, int32),
           Array(p.mask, {1, 1, 1, kC}, bool_),
           p.opt};
    edit(a);
    // On the CPU whatever the default device (a GPU reports an out-of-range column through
    // its own fault at the next read: tests/backend/test_cuda_decode_block.cpp).
    return fast::decode_block(a.x, a.in_norm, a.w_qkv, a.qn, a.kn, a.w_o, a.post, a.w_gu, a.w_down,
                              a.keys, a.values, a.column, a.mask, a.opt, cpu_device);
  };
  expect_error<InvalidArgument>([&] { call([](Args& a) {
                                        a.x = zeros({1, 2, kE});
                                      }); },
                                "[decode_block] x must be [B, 1, E] (one new token per row)");
  expect_error<InvalidArgument>(
      [&] { call([](Args& a) { a.kn = std::nullopt; }); },
      "[decode_block] q_norm and k_norm must both be given or both be absent");
  expect_error<InvalidArgument>([&] { call([](Args& a) {
                                        a.mask = zeros({1, 1, 1, kC});
                                      }); },
                                "[decode_block] mask must be bool [B, 1, 1, C] = [1, 1, 1, 12]");
  expect_error<InvalidArgument>([&] { call([](Args& a) { a.opt.rope.offsets.reset(); }); },
                                "[decode_block] rope.offsets");
  expect_error<InvalidArgument>([&] { call([](Args& a) { a.opt.rope.offset = 3; }); },
                                "[decode_block] rope.offset must be 0");
  expect_error<InvalidArgument>(
      [&] { call([&](Args& a) {
              a.w_o = zeros({kE, kH * d + 1});
            }); },
      "[decode_block] w_o [E, H D] must be [64, 64] of x's dtype float32, got float32 [64, 65]");
  expect_error<InvalidArgument>(
      [&] { call([&](Args& a) {
              a.w_down = zeros({kE, kI}, bfloat16);
            }); },
      "[decode_block] w_down [E, I] must be [64, 96] of x's dtype float32");
  expect_error<InvalidArgument>(
      [&] { call([](Args& a) { a.opt.n_kv_heads = 3; }); },
      "[decode_block] n_heads and n_kv_heads must be positive with n_heads a multiple");
  expect_error<InvalidArgument>(
      [&] {
        call([](Args& a) {
          a.keys = zeros({1, 2, kC, 24});
          a.values = zeros({1, 2, kC, 24});
        });
      },
      "[decode_block] the head dimension must be a multiple of 16 and at most 256, got 24");
  expect_error<InvalidArgument>([&] { call([](Args& a) {
                                        a.column = Array({0, 1}, int32);
                                      }); },
                                "[decode_block] column must be an integer array of one element");
  expect_error<InvalidArgument>([&] { eval(call([](Args& a) { a.column = Array({12}, int32); })); },
                                "[decode_block] column 12 is outside the cache's 12 columns");
  // Not differentiable: the block writes the cache.
  const std::vector<Array> out = call([](Args&) {});
  expect_error<Unsupported>(
      [&] { out[0].primitive().vjp(out[0].inputs(), {ones_like(out[0])}, {0}, out); },
      "[decode_block] is not differentiable");
}

}  // namespace
}  // namespace ingot::test
