// GatedMLP under a gradient transform: act(gate) * up is traced as one Glu whose backward is one
// GluGrad (INGOT_FUSED_GLU_GRAD unset), or as the separate ops (=0: CMake runs this file once
// more with it, as "ComposedGlu.*"). Either way the forward is the separate ops' bit for bit and
// the gradients of x and of the weights agree with the separate ops' (written out here) within
// bf16 rounding, and to float64 precision in float64.
#include <cstdlib>
#include <cstring>

#include "core/test_util.h"
#include "nn/layers.h"

using namespace ingot;
using namespace ingot::test;
using namespace ingot::nn;

namespace {

bool fused_on() {
  const char* v = std::getenv("INGOT_FUSED_GLU_GRAD");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

/// down(act(gate(x)) * up(x)) with the separate ops (today's composition, not nn's gated()).
Array separate_ops(const GatedMLP& m, const Array& x, Activation act) {
  return m.down_proj()(activate(m.gate_proj()(x), act) * m.up_proj()(x));
}

struct Case {
  Activation act;
  const char* name;
};
const Case kCases[] = {
    {Activation::silu, "silu"}, {Activation::gelu, "gelu"}, {Activation::gelu_tanh, "gelu_tanh"}};

/// The gradients of sum(f(x) * w) for x and every parameter of m, and the value f(x).
struct Grads {
  Array value, dx;
  ParamMap params;
};
Grads grads_of(GatedMLP& m, const Array& x, const Array& w,
               const std::function<Array(const Array&)>& f) {
  Grads r;
  auto [outs, gx] =
      vjp([&](const std::vector<Array>& in) { return std::vector<Array>{f(in[0])}; }, {x}, {w});
  r.value = outs[0];
  r.dx = gx[0];
  r.params = value_and_grad(m, [&] { return sum(f(x) * w); }).second;
  return r;
}

TEST(GatedMlpGrad, TracesOneGluAndOneGluGradPerMlp) {
  const int expect = fused_on() ? 1 : 0;
  for (const Case& c : kCases) {
    random::seed(3);
    GatedMLP m(16, 40, c.act, false, bfloat16);
    const Array x = random::normal({2, 5, 16}, bfloat16), w = random::normal({2, 5, 16}, bfloat16);
    const Array r = random::normal({2, 5, 16}, bfloat16);
    const RMSNorm norm(16, {}, bfloat16);
    // The plain call, the residual add fused into down, and the normed variant (all traced).
    const std::function<Array(const Array&)> fns[] = {
        [&](const Array& y) { return m(y); }, [&](const Array& y) { return m(y, r); },
        [&](const Array& y) { return m.normed(y, norm, &r); }};
    for (const auto& f : fns) {
      const Grads g = grads_of(m, x, w, f);
      EXPECT_EQ(count_primitives({g.value}, "Glu"), expect) << c.name;
      EXPECT_EQ(count_primitives({g.dx}, "GluGrad"), expect) << c.name;
      std::vector<Array> dw;  // the weights' gradients (another trace than dx's)
      for (const auto& [n, a] : g.params) dw.push_back(a);
      EXPECT_EQ(count_primitives(dw, "GluGrad"), expect) << c.name;
      EXPECT_EQ(count_primitives({g.dx}, "ActivationGrad"), 1 - expect) << c.name;
    }
    // Outside a transform nothing changes (the separate ops on the CPU).
    EXPECT_EQ(count_primitives({m(x)}, "Glu"), 0) << c.name;
  }
}

TEST(GatedMlpGrad, MatchesTheSeparateOps) {
  for (const Case& c : kCases)
    for (Dtype t : {bfloat16, float64}) {
      random::seed(5);
      GatedMLP m(24, 72, c.act, false, t);
      const Array x = random::normal({3, 7, 24}, t, 0.0, 2.0), w = random::normal({3, 7, 24}, t);
      const std::string what = std::string(c.name) + " " + std::string(dtype_name(t));
      const Grads got = grads_of(m, x, w, [&](const Array& y) { return m(y); });
      const Grads want =
          grads_of(m, x, w, [&](const Array& y) { return separate_ops(m, y, c.act); });
      // The same forward values bit for bit.
      EXPECT_EQ(values_of(got.value), values_of(want.value)) << what;
      // GluGrad rounds dg once where the separate ops round dh * u and act' op by op: one or two
      // bf16 roundings of the terms summed into each gradient element.
      auto close = [&](const Array& a, const Array& b, const std::string& name) {
        const auto bv = values_of(b);
        double scale = 0;
        for (double v : bv) scale = std::max(scale, std::abs(v));
        if (t == float64)
          expect_close(values_of(a), bv, 1e-12, 1e-12 * scale, what + " " + name);
        else
          expect_close(values_of(a), bv, 1.0 / 64, scale / 128, what + " " + name);
      };
      close(got.dx, want.dx, "dx");
      ASSERT_EQ(got.params.size(), want.params.size());
      for (const auto& [n, a] : want.params) close(got.params.at(n), a, n);
    }
}

}  // namespace
