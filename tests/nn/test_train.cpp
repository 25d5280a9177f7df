// End-to-end training: a tiny MLP and a tiny 2-layer transformer learn synthetic tasks with
// AdamW; the loss falls by a large factor within a bounded number of steps, deterministically.
#include "core/test_util.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/losses.h"
#include "nn/optimizers.h"

using namespace ingot;
using namespace ingot::test;
using namespace ingot::nn;

namespace {

class Mlp : public Module {
 public:
  Mlp() {
    l1 = register_module("l1", std::make_shared<Linear>(2, 32));
    l2 = register_module("l2", std::make_shared<Linear>(32, 1));
  }
  Array operator()(const Array& x) const { return (*l2)(tanh((*l1)(x))); }
  std::shared_ptr<Linear> l1, l2;
};

std::vector<float> train_mlp(uint64_t seed) {
  random::seed(seed);
  Mlp m;
  Array x = random::uniform({128, 2}, float32, -1, 1);
  Array y = sin(3.0f * slice_axis(x, 1, 0, 1)) * cos(2.0f * slice_axis(x, 1, 1, 2));
  AdamW opt(constant_schedule(0.02f), {.weight_decay = 0.0f});
  std::vector<float> losses;
  for (int step = 0; step < 300; ++step) {
    auto [loss, grads] = value_and_grad(m, [&] { return mse(m(x), y); });
    opt.update(m, grads);
    losses.push_back(loss.item<float>());
  }
  return losses;
}

class TinyTransformer : public Module {
 public:
  TinyTransformer(int vocab, int dims) {
    emb = register_module("embed_tokens", std::make_shared<Embedding>(vocab, dims));
    auto layers = register_module("layers", std::make_shared<ModuleList<Module>>());
    for (int i = 0; i < 2; ++i) {
      auto blk = std::make_shared<Layer>(dims);
      blocks.push_back(blk);
      layers->push_back(blk);
    }
    norm = register_module("norm", std::make_shared<RMSNorm>(dims));
  }
  struct Layer : Module {
    explicit Layer(int d) {
      ln1 = register_module("input_layernorm", std::make_shared<RMSNorm>(d));
      attn = register_module("self_attn", std::make_shared<Attention>(AttentionConfig{
                                              .dims = d, .n_heads = 4, .n_kv_heads = 2,
                                              .head_dim = d / 4}));
      ln2 = register_module("post_attention_layernorm", std::make_shared<RMSNorm>(d));
      mlp = register_module("mlp", std::make_shared<GatedMLP>(d, 2 * d));
    }
    Array operator()(const Array& x) const {
      Array h = x + (*attn)((*ln1)(x));
      return h + (*mlp)((*ln2)(h));
    }
    std::shared_ptr<RMSNorm> ln1, ln2;
    std::shared_ptr<Attention> attn;
    std::shared_ptr<GatedMLP> mlp;
  };
  Array operator()(const Array& ids) const {
    Array h = (*emb)(ids);
    for (auto& b : blocks) h = (*b)(h);
    return emb->as_linear((*norm)(h));
  }
  std::shared_ptr<Embedding> emb;
  std::vector<std::shared_ptr<Layer>> blocks;
  std::shared_ptr<RMSNorm> norm;
};

// Task: copy the sequence shifted by one (predict token t from token t-1 via attention).
std::vector<float> train_transformer(uint64_t seed) {
  random::seed(seed);
  const int vocab = 16, len = 12, batch = 16;
  TinyTransformer m(vocab, 32);
  AdamW opt(join_schedules({linear_schedule(0, 1e-2f, 20), cosine_decay(1e-2f, 180, 1e-3f)}, {20}),
            {.weight_decay = 0.0f});
  Array data = random::randint(0, vocab, {batch, len + 1}, int32, random::key(seed + 1));
  Array inputs = slice_axis(data, 1, 1, len + 1);
  // The target at position t is the input at t-1; position 0 has none and is ignored.
  Array ignore = concatenate({full({batch, 1}, Array(-100), int32), slice_axis(inputs, 1, 0, len - 1)}, 1);
  std::vector<float> losses;
  for (int step = 0; step < 200; ++step) {
    auto [loss, grads] = value_and_grad(m, [&] { return cross_entropy(m(inputs), ignore); });
    auto [clipped, norm] = clip_grad_norm(grads, 1.0f);
    opt.update(m, clipped);
    losses.push_back(loss.item<float>());
  }
  return losses;
}

}  // namespace

TEST(Train, MlpLossFallsDeterministically) {
  auto a = train_mlp(1);
  EXPECT_LT(a.back(), a.front() / 20) << "first " << a.front() << " last " << a.back();
  auto b = train_mlp(1);
  EXPECT_EQ(a, b);  // same seed, same numbers
}

TEST(Train, TinyTransformerLearnsShiftedCopy) {
  auto a = train_transformer(2);
  EXPECT_LT(a.back(), a.front() / 10) << "first " << a.front() << " last " << a.back();
  auto b = train_transformer(2);
  EXPECT_EQ(a, b);
}
