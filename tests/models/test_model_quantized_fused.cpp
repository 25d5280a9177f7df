// A quantized model (the mlx-community fixtures: 4-bit Qwen3 with group size 32, 8-bit Llama
// with a tied head) gives the same logits with its projections stacked (fuse_projections: the
// stacked q/k/v and gate/up quantized products, the norms fused into them and the residual
// adds into the o/down products) as without: on the CPU the fused primitives compose the
// separate kernels, so the logits are equal bit for bit, in float32 and bfloat16.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "core/ingot.h"
#include "models/model.h"
#include "models/parity_util.h"
#include "models/transformer.h"

namespace ingot::models {
namespace {

void expect_fused_equal(const std::string& fx, Dtype t) {
  SCOPED_TRACE(fx + " " + std::string(dtype_name(t)));
  auto m = load_model(fixture_dir(fx), {.dtype = t, .warn = false});
  const std::vector<int32_t> ids = {1, 17, 42, 99, 128, 3, 250, 7, 64, 200, 11};
  Array in(ids, {1, static_cast<int64_t>(ids.size())}, int32);
  Array in1(std::vector<int32_t>{5}, {1, 1}, int32);
  Array before = m->forward(in), before1 = m->forward(in1);
  eval({before, before1});
  fuse_projections(*m);
  // The projections really are stacked: k's packed words and scales follow q's in one buffer,
  // up's follow gate's.
  const ParamMap p = m->parameters();
  const auto find = [&](const std::string& suffix) {
    for (const auto& [name, a] : p)
      if (name.ends_with(suffix)) return a;
    ADD_FAILURE() << "no parameter " << suffix;
    return Array(0.0f);
  };
  for (const auto& [first, second] :
       {std::pair{"layers.0.self_attn.q_proj.", "layers.0.self_attn.k_proj."},
        std::pair{"layers.0.mlp.gate_proj.", "layers.0.mlp.up_proj."}})
    for (const char* what : {"weight", "scales"}) {
      const Array a = find(std::string(first) + what), b = find(std::string(second) + what);
      EXPECT_EQ(static_cast<const char*>(b.raw_ptr()),
                static_cast<const char*>(a.raw_ptr()) + a.nbytes())
          << first << what;
    }
  Array after = m->forward(in), after1 = m->forward(in1);
  for (auto [a, b] : {std::pair{after, before}, std::pair{after1, before1}}) {
    ASSERT_EQ(a.shape(), b.shape());
    const auto av = a.to_vector<float>(), bv = b.to_vector<float>();
    for (size_t i = 0; i < av.size(); ++i) ASSERT_EQ(av[i], bv[i]) << "logit " << i;
  }
}

TEST(QuantizedModelFused, StackedProjectionsGiveTheSameLogits) {
  for (Dtype t : {float32, bfloat16}) {
    expect_fused_equal("qwen3_q4_mlx", t);
    expect_fused_equal("llama_q8_mlx", t);
  }
}

}  // namespace
}  // namespace ingot::models
