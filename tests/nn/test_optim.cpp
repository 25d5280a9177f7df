// Optimizers against hand-computed PyTorch-semantics updates, schedules, clipping, state
// save/load.
#include <cmath>

#include "core/test_util.h"
#include "nn/optimizers.h"

using namespace ingot;
using namespace ingot::test;
using namespace ingot::nn;

namespace {
ParamMap one(const std::vector<float>& v) {
  return {{"w", Array(v, {(int64_t)v.size()})}};
}
std::vector<double> get(const ParamMap& m) {
  return m.at("w").to_vector<double>();
}
}  // namespace

TEST(Optim, SgdMomentumNesterovWeightDecay) {
  std::vector<double> p{1.0, -2.0}, buf{0, 0};
  const double lr = 0.1, mu = 0.9, wd = 0.01;
  SGD opt(constant_schedule(lr), {.momentum = 0.9f, .weight_decay = 0.01f, .nesterov = true});
  ParamMap cur = one({1.f, -2.f});
  for (int step = 0; step < 4; ++step) {
    std::vector<float> g{0.5f * (step + 1), -0.25f};
    cur = opt.apply(cur, one(g));
    for (int i = 0; i < 2; ++i) {
      double d = g[i] + wd * p[i];
      buf[i] = step == 0 ? d : mu * buf[i] + d;
      p[i] -= lr * (d + mu * buf[i]);
    }
    expect_close(get(cur), p, 1e-6, 1e-7, "sgd step " + std::to_string(step));
  }
}

TEST(Optim, AdamAndAdamW) {
  for (bool decoupled : {false, true}) {
    std::vector<double> p{0.5, -1.5, 2.0}, m(3, 0), v(3, 0);
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    std::unique_ptr<Optimizer> opt;
    if (decoupled)
      opt = std::make_unique<AdamW>(constant_schedule(lr), AdamOptions{.weight_decay = 0.1f});
    else
      opt = std::make_unique<Adam>(constant_schedule(lr), AdamOptions{.weight_decay = 0.1f});
    ParamMap cur = one({0.5f, -1.5f, 2.0f});
    for (int t = 1; t <= 5; ++t) {
      std::vector<float> g{0.1f * t, -0.3f, 0.02f};
      cur = opt->apply(cur, one(g));
      for (int i = 0; i < 3; ++i) {
        double gi = g[i];
        if (decoupled)
          p[i] *= 1 - lr * wd;
        else
          gi += wd * p[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
        p[i] -= lr * mh / (std::sqrt(vh) + eps);
      }
      expect_close(get(cur), p, 1e-5, 1e-6, decoupled ? "adamw" : "adam");
    }
  }
}

TEST(Optim, StateSaveLoadResumesExactly) {
  AdamW a(constant_schedule(0.05f));
  ParamMap p = one({1.f, 2.f});
  for (int i = 0; i < 3; ++i) p = a.apply(p, one({0.3f, -0.1f * i}));
  auto st = a.state();
  EXPECT_EQ(st.at("step").item<int64_t>(), 3);
  EXPECT_TRUE(st.count("w.m") && st.count("w.v"));
  AdamW b(constant_schedule(0.05f));
  b.load_state(st);
  ParamMap pa = a.apply(p, one({0.2f, 0.2f}));
  ParamMap pb = b.apply(p, one({0.2f, 0.2f}));
  EXPECT_EQ(get(pa), get(pb));
  expect_error<InvalidArgument>(
      [&] {
        b.load_state({{"nodot", zeros({1})}});
      },
      "[optimizer] unknown state entry 'nodot'");
}

TEST(Optim, SchedulesAndClipping) {
  auto warm = linear_schedule(0.0f, 1e-3f, 10);
  auto cos = cosine_decay(1e-3f, 100, 1e-5f);
  auto s = join_schedules({warm, cos}, {10});
  EXPECT_FLOAT_EQ(s(0), 0.0f);
  EXPECT_FLOAT_EQ(s(5), 5e-4f);
  EXPECT_FLOAT_EQ(s(10), 1e-3f);
  EXPECT_NEAR(s(60), 1e-5 + (1e-3 - 1e-5) * 0.5, 1e-9);
  EXPECT_FLOAT_EQ(s(500), 1e-5f);
  ParamMap g{{"a", Array({3.f, 0.f})}, {"b", Array({4.f})}};
  auto [c, norm] = clip_grad_norm(g, 1.0f);
  EXPECT_NEAR(norm.item<float>(), 5.0f, 1e-6);
  EXPECT_NEAR(c.at("a").to_vector<float>()[0], 0.6f, 1e-5);
  EXPECT_NEAR(c.at("b").to_vector<float>()[0], 0.8f, 1e-5);
  auto [c2, n2] = clip_grad_norm(g, 10.0f);
  EXPECT_FLOAT_EQ(c2.at("b").to_vector<float>()[0], 4.0f);
  expect_error<InvalidArgument>([] { join_schedules({constant_schedule(1)}, {5}); },
                                "[schedule] join needs one boundary fewer");
}

TEST(Optim, GradScaleStepsAsClippedGradients) {
  // apply(params, grads, clip_grad_scale's factor) is the step on clip_grad_norm's scaled
  // gradients, bit for bit, for Adam/AdamW (one fused step over float32/bfloat16/float16
  // parameters, a float64 one updated on its own) and SGD.
  auto vals = [](int64_t n, Dtype t, uint32_t seed) {
    return Array(random_values(n, t, seed, -1, 1), {n}, t);
  };
  const ParamMap p0{{"a", vals(5, float32, 1)},
                    {"b", vals(7, bfloat16, 2)},
                    {"c", vals(3, float16, 3)},
                    {"d", vals(4, float64, 4)}};
  for (int kind = 0; kind < 3; ++kind) {
    auto make = [&]() -> std::unique_ptr<Optimizer> {
      if (kind == 0) return std::make_unique<AdamW>(constant_schedule(0.01f));
      if (kind == 1)
        return std::make_unique<Adam>(constant_schedule(0.01f), AdamOptions{.weight_decay = 0.1f});
      return std::make_unique<SGD>(constant_schedule(0.01f), SGDOptions{.momentum = 0.9f});
    };
    auto x = make(), y = make();
    ParamMap px = p0, py = p0;
    for (int step = 0; step < 3; ++step) {
      ParamMap g{{"a", vals(5, float32, 10 + step)},
                 {"b", vals(7, bfloat16, 20 + step)},
                 {"c", vals(3, float16, 30 + step)},
                 {"d", vals(4, float64, 40 + step)}};
      auto [scale, norm] = clip_grad_scale(g, 0.5f);
      auto [clipped, norm2] = clip_grad_norm(g, 0.5f);
      EXPECT_EQ(norm.item<float>(), norm2.item<float>());
      EXPECT_LT(scale.item<float>(), 1.0f);  // the gradients' norm is above 0.5: they clip
      px = x->apply(px, g, scale);
      py = y->apply(py, clipped);
      for (auto& [k, v] : px) {
        EXPECT_EQ(v.dtype(), p0.at(k).dtype()) << k;
        EXPECT_EQ(v.to_vector<double>(), py.at(k).to_vector<double>())
            << "optimizer " << kind << " param " << k << " step " << step;
      }
    }
  }
}
