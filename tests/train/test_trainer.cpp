// Data (JSONL checks with line numbers, tokenization and prompt masks, batches) and the trainer
// (loss falls, resume equals an uninterrupted run bit for bit, NaN stops, schedules, logs).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "scoped_env.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace ingot::train {
namespace {
using namespace test;
using json = nlohmann::json;

TEST(Data, MalformedLinesAreReportedWithFileAndLine) {
  TempDir d;
  const std::string path = d / "train.jsonl";
  write_file(path,
             "{\"text\": \"fine\"}\n"
             "{\"text\": \"broken\"\n"
             "\n"
             "{\"prompt\": \"p\"}\n"
             "{\"messages\": [{\"role\": \"user\"}]}\n"
             "{\"prompt\": \"p\", \"completion\": \"c\"}\n"
             "[1, 2]\n");
  try {
    read_jsonl(path);
    FAIL() << "expected a FormatError";
  } catch (const FormatError& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("4 malformed line(s)"), std::string::npos) << w;
    for (int line : {2, 4, 5, 7})
      EXPECT_NE(w.find(path + ":" + std::to_string(line) + ":"), std::string::npos) << line << w;
    EXPECT_EQ(w.find(path + ":1:"), std::string::npos) << w;
    EXPECT_EQ(w.find(path + ":6:"), std::string::npos) << w;
  }
  write_file(path,
             "{\"text\": \"a\"}\n\n{\"prompt\": \"p\", \"completion\": \"c\"}\n"
             "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"},"
             " {\"role\": \"assistant\", \"content\": \"yo\"}]}\n");
  auto r = read_jsonl(path);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[1].line, 3u);
  EXPECT_EQ(r[2].kind, Record::Kind::chat);
  EXPECT_THROW(read_jsonl(d / "absent.jsonl"), IoError);
}

TEST(Data, BatchesArePaddedMaskedAndDeterministic) {
  auto ex = toy_examples(7, 256);
  Batch b = make_batch(ex, {0, 1, 2}, 0);
  EXPECT_EQ(b.inputs.shape(), (Shape{3, 9}));  // longest is 10 tokens
  auto mask = b.mask.to_vector<float>();
  auto in = b.inputs.to_vector<int32_t>();
  auto tg = b.targets.to_vector<int32_t>();
  EXPECT_EQ(b.tokens, 5 + 7 + 9);
  for (int t = 0; t < 9; ++t) EXPECT_EQ(mask[t], t < 5 ? 1.0f : 0.0f);  // row 0: 6 tokens
  EXPECT_EQ(in[1], ex[0].ids[1]);
  EXPECT_EQ(tg[0], ex[0].ids[1]);
  auto e0 = epoch_batches(ex, 2, 9, 0), e0b = epoch_batches(ex, 2, 9, 0);
  auto e1 = epoch_batches(ex, 2, 9, 1);
  EXPECT_EQ(e0, e0b);
  ASSERT_EQ(e0.size(), 4u);
  std::vector<size_t> seen;
  for (auto& g : e1) seen.insert(seen.end(), g.begin(), g.end());
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<size_t>{0, 1, 2, 3, 4, 5, 6}));
  for (auto& g : e0)  // grouped by length
    for (size_t i : g)
      EXPECT_LE(
          std::abs(static_cast<int>(ex[i].ids.size()) - static_cast<int>(ex[g[0]].ids.size())), 2);
}

TEST(Trainer, ScheduleFollowsTransformersFormulas) {
  TrainOptions o{.iters = 110, .lr = 1e-3f, .warmup = 10, .schedule = "cosine"};
  EXPECT_FLOAT_EQ(learning_rate(o, 0), 0.0f);
  EXPECT_FLOAT_EQ(learning_rate(o, 5), 5e-4f);
  EXPECT_FLOAT_EQ(learning_rate(o, 10), 1e-3f);
  EXPECT_NEAR(learning_rate(o, 60), 5e-4f, 1e-9);  // halfway through the cosine
  EXPECT_NEAR(learning_rate(o, 110), 0.0f, 1e-9);
  o.schedule = "linear";
  EXPECT_NEAR(learning_rate(o, 35), 7.5e-4f, 1e-9);
  o.schedule = "constant";
  EXPECT_FLOAT_EQ(learning_rate(o, 100), 1e-3f);
  o.schedule = "nope";
  EXPECT_THROW(learning_rate(o, 1), InvalidArgument);
}

TEST(Trainer, LossFallsOnATinyDataset) {
  auto m = load("llama_f32");
  LoraAdapter a =
      LoraAdapter::init(*m, LoraConfig{.rank = 8, .alpha = 16.0f, .targets = {"all-linear"}}, 0);
  TempDir d;
  TrainOptions o{.iters = 30,
                 .batch_size = 4,
                 .lr = 1e-2f,
                 .warmup = 2,
                 .max_grad_norm = 1.0f,
                 .eval_every = 10,
                 .out_dir = d.path,
                 .log_every = 0};
  auto ex = toy_examples(8, m->vocab_size());
  Trainer t(*m, a, ex, toy_examples(4, m->vocab_size()), o);
  const float v0 = t.evaluate();
  auto stats = t.run();
  ASSERT_EQ(stats.size(), 30u);
  EXPECT_LT(stats.back().loss, 0.5f * stats.front().loss)
      << stats.front().loss << " -> " << stats.back().loss;
  const float v1 = t.evaluate();
  EXPECT_LT(v1, 0.5f * v0);
  // The adapter and the loss log were written; the base model is unchanged.
  EXPECT_TRUE(std::filesystem::exists(d / "adapter_model.safetensors"));
  std::ifstream log(d / "loss.jsonl");
  int steps = 0, evals = 0;
  for (std::string line; std::getline(log, line);) {
    json j = json::parse(line);
    if (j.contains("val_loss"))
      ++evals;
    else
      ++steps;
  }
  EXPECT_EQ(steps, 30);
  EXPECT_EQ(evals, 3);
  auto fresh = load("llama_f32");
  for (auto& [n, w] : base_weights(*fresh, a))
    EXPECT_EQ(max_abs_diff(w, m->parameters().at(n)), 0.0) << n;
}

/// Toy classification: two context ids from [40, 46) and a cue id in [10, 30), then one label token
/// (kLabelA for cues below 20, else kLabelB); only the label is in the loss. Held-out examples
/// share the cues and context ids (the embeddings are frozen and random), not their combinations.
constexpr int32_t kLabelA = 200, kLabelB = 201;
std::vector<Example> toy_classification(size_t n, uint32_t seed) {
  std::vector<Example> out;
  uint32_t s = seed;
  auto next = [&] {
    s = s * 1664525u + 1013904223u;
    return static_cast<int32_t>(3 + (s >> 8) % 190u);
  };
  for (size_t i = 0; i < n; ++i) {
    Example e;
    for (int k = 0; k < 2; ++k) e.ids.push_back(40 + next() % 6);
    e.ids.push_back(10 + next() % 20);
    e.ids.push_back(e.ids.back() < 20 ? kLabelA : kLabelB);
    e.loss_mask.assign(e.ids.size(), 0);
    e.loss_mask.back() = 1;
    out.push_back(e);
  }
  return out;
}

double accuracy(models::Model& m, const std::vector<Example>& ex) {
  int right = 0;
  for (const auto& e : ex) {
    std::vector<int32_t> prompt(e.ids.begin(), e.ids.end() - 1);
    Array logits = m.forward(Array(prompt, {1, static_cast<int64_t>(prompt.size())}, int32));
    auto v = logits.to_vector<float>();
    const size_t last = (prompt.size() - 1) * static_cast<size_t>(m.vocab_size());
    const int32_t guess = v[last + kLabelA] >= v[last + kLabelB] ? kLabelA : kLabelB;
    right += guess == e.ids.back() ? 1 : 0;
  }
  return static_cast<double>(right) / static_cast<double>(ex.size());
}

TEST(Trainer, HeldOutClassificationAccuracyRises) {
  auto m = load("llama_f32");
  auto train_set = toy_classification(256, 1), held_out = toy_classification(40, 99);
  const double before = accuracy(*m, held_out);
  LoraAdapter a =
      LoraAdapter::init(*m, LoraConfig{.rank = 8, .alpha = 16.0f, .targets = {"all-linear"}}, 0);
  TrainOptions o{.iters = 60, .batch_size = 32, .lr = 5e-3f, .warmup = 5, .log_every = 0};
  Trainer t(*m, a, train_set, {}, o);
  t.run();
  apply_adapter(*m, a);
  const double after = accuracy(*m, held_out);
  EXPECT_GE(after, 0.85) << "before " << before;
  EXPECT_GT(after, before + 0.2);
}

TEST(Trainer, ResumeEqualsAnUninterruptedRun) {
  auto ex = toy_examples(6, 256);
  TempDir d;
  TrainOptions o{.iters = 6,
                 .batch_size = 2,
                 .grad_accum = 2,
                 .lr = 5e-3f,
                 .warmup = 2,
                 .seed = 4,
                 .save_every = 3,
                 .out_dir = d.path,
                 .log_every = 0};
  LoraConfig c{.rank = 4, .alpha = 8.0f, .targets = {"q_proj", "v_proj", "down_proj"}};
  auto m1 = load("llama_f32");
  LoraAdapter a1 = LoraAdapter::init(*m1, c, 9);
  Trainer t1(*m1, a1, ex, {}, o);
  auto full = t1.run();
  ASSERT_TRUE(std::filesystem::exists(d / "checkpoint-3/optimizer.safetensors"));

  auto m2 = load("llama_f32");
  LoraAdapter a2 = LoraAdapter::init(*m2, c, 123);  // other values: all come from the checkpoint
  TrainOptions o2 = o;
  o2.out_dir = "";
  Trainer t2(*m2, a2, ex, {}, o2);
  t2.resume(d / "checkpoint-3");
  EXPECT_EQ(t2.step_count(), 3);
  EXPECT_EQ(t2.data_position(), 6);
  auto rest = t2.run();
  ASSERT_EQ(rest.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(rest[i].step, full[3 + i].step);
    EXPECT_EQ(rest[i].loss, full[3 + i].loss) << i;  // bit for bit
  }
  for (auto& [n, v] : a1.params()) EXPECT_EQ(max_abs_diff(v, a2.params().at(n)), 0.0) << n;
  // A checkpoint of other data is refused.
  Trainer t3(*m2, a2, toy_examples(5, 256), {}, o2);
  EXPECT_THROW(t3.resume(d / "checkpoint-3"), FormatError);
}

TEST(Trainer, NanLossStopsNamingTheStep) {
  auto m = load("llama_f32");
  LoraAdapter a = LoraAdapter::init(*m, LoraConfig{.rank = 2, .alpha = 2.0f}, 0);
  Trainer t(*m, a, toy_examples(4, m->vocab_size()), {},
            {.iters = 5, .batch_size = 2, .log_every = 0});
  t.step();
  ParamMap p = a.params();
  auto& b = p.at("model.layers.1.self_attn.v_proj.lora_B.weight");
  b = full(b.shape(), Array(NAN), float32);
  a.set_params(p);
  try {
    t.step();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN at step 2"), std::string::npos) << e.what();
  }
  EXPECT_EQ(t.step_count(), 1);
}

TEST(Trainer, LookaheadGivesTheStepsOfBuildingEachStepWhenItRuns) {
  // Every step but the last builds the next step's first micro-batch before reading its own
  // loss (INGOT_TRAIN_LOOKAHEAD, on by default for LoRA). Same losses, gradient norms, data
  // positions and adapter as building each step when it runs, bit for bit: with gradient
  // accumulation, clipping, dropout, a validation pass and a checkpoint between steps, and
  // with the adapter changed from outside between two steps (the built-ahead step is dropped).
  auto m = load("llama_f32");
  auto ex = toy_examples(6, 256);
  LoraConfig c{.rank = 4, .alpha = 8.0f, .dropout = 0.1f, .targets = {"q_proj", "down_proj"}};
  auto run = [&](const char* lookahead) {
    const ingot::test::ScopedEnv env("INGOT_TRAIN_LOOKAHEAD", lookahead);
    TempDir d;
    LoraAdapter a = LoraAdapter::init(*m, c, 5);
    Trainer t(*m, a, ex, toy_examples(2, 256),
              {.iters = 5,
               .batch_size = 2,
               .grad_accum = 2,
               .lr = 5e-3f,
               .max_grad_norm = 0.5f,
               .seed = 2,
               .eval_every = 2,
               .save_every = 2,
               .out_dir = d.path,
               .log_every = 0});
    std::vector<StepStats> st;
    std::vector<int64_t> pos;
    for (int i = 0; i < 5; ++i) {
      if (i == 3) {  // from outside: b of one module scaled
        ParamMap p = a.params();
        auto& b = p.at("model.layers.1.mlp.down_proj.lora_B.weight");
        b = b * Array(1.5f);
        a.set_params(p);
      }
      st.push_back(t.step());
      pos.push_back(t.data_position());
      if (i == 1) {
        EXPECT_TRUE(std::isfinite(t.evaluate()));
        t.save_checkpoint((std::filesystem::path(d.path) / "ck").string());
      }
    }
    // Steps 2, 3 and 5 took theirs (step 4's was dropped after the change from outside).
    EXPECT_EQ(t.steps_built_ahead(), std::string_view(lookahead) == "1" ? 3 : 0);
    return std::make_tuple(st, pos, a.params());
  };
  auto [s1, p1, a1] = run("1");
  auto [s0, p0, a0] = run("0");
  ASSERT_EQ(s1.size(), s0.size());
  for (size_t i = 0; i < s1.size(); ++i) {
    EXPECT_EQ(s1[i].loss, s0[i].loss) << i;
    EXPECT_EQ(s1[i].grad_norm, s0[i].grad_norm) << i;
    EXPECT_EQ(s1[i].tokens, s0[i].tokens) << i;
    EXPECT_EQ(p1[i], p0[i]) << i;
  }
  EXPECT_GT(s1[0].grad_norm, 0.0f);
  for (auto& [n, v] : a1) EXPECT_EQ(max_abs_diff(v, a0.at(n)), 0.0) << n;
}

TEST(Trainer, NanLossWithLookaheadPutsBackTheStepsState) {
  // The loss is read after the update was queued: a non-finite one puts back the adapter, the
  // optimizer state and the data position from before the step.
  const ingot::test::ScopedEnv env("INGOT_TRAIN_LOOKAHEAD", "1");
  auto m = load("llama_f32");
  LoraAdapter a = LoraAdapter::init(*m, LoraConfig{.rank = 2, .alpha = 2.0f}, 0);
  Trainer t(*m, a, toy_examples(4, m->vocab_size()), {},
            {.iters = 5, .batch_size = 2, .log_every = 0});
  t.step();
  ParamMap p = a.params();
  auto& b = p.at("model.layers.1.self_attn.v_proj.lora_B.weight");
  b = full(b.shape(), Array(NAN), float32);
  a.set_params(p);
  TempDir d;
  t.save_checkpoint((std::filesystem::path(d.path) / "before").string());
  const int64_t position = t.data_position();
  EXPECT_THROW(t.step(), Error);
  EXPECT_EQ(t.step_count(), 1);
  EXPECT_EQ(t.data_position(), position);
  for (auto& [n, v] : a.params()) EXPECT_TRUE(v.same_node(p.at(n))) << n;
  // The optimizer state is the one saved before the step, bit for bit.
  t.save_checkpoint((std::filesystem::path(d.path) / "after").string());
  const auto before =
      load_safetensors((std::filesystem::path(d.path) / "before/optimizer.safetensors").string());
  const auto after =
      load_safetensors((std::filesystem::path(d.path) / "after/optimizer.safetensors").string());
  ASSERT_EQ(before.size(), after.size());
  for (auto& [n, v] : before) EXPECT_EQ(max_abs_diff(v, after.at(n)), 0.0) << n;
}

TEST(Trainer, RejectsBadOptions) {
  auto m = load("llama_f32");
  LoraAdapter a = LoraAdapter::init(*m, LoraConfig{.rank = 2, .alpha = 2.0f}, 0);
  auto ex = toy_examples(2, 256);
  EXPECT_THROW(Trainer(*m, a, {}, {}, {}), InvalidArgument);
  EXPECT_THROW(Trainer(*m, a, ex, {}, {.iters = 0}), InvalidArgument);
  EXPECT_THROW(Trainer(*m, a, ex, {}, {.grad_accum = 0}), InvalidArgument);
  EXPECT_THROW(Trainer(*m, a, ex, {}, {.schedule = "step"}), InvalidArgument);
}

TEST(Trainer, LoraDropoutMasksFollowTheDataPosition) {
  auto m = load("llama_f32");
  auto ex = toy_examples(8, 256);
  auto run = [&](float dropout, int64_t iters) {
    LoraAdapter a =
        LoraAdapter::init(*m, LoraConfig{.rank = 2, .alpha = 4.0f, .dropout = dropout}, 3);
    Trainer t(*m, a, ex, {}, {.iters = iters, .batch_size = 2, .lr = 1e-2f, .log_every = 0});
    for (int64_t i = 0; i < iters; ++i) t.step();
    return a.params();
  };
  const ParamMap d1 = run(0.3f, 3), d2 = run(0.3f, 3), plain = run(0.0f, 3);
  double same = 0, differ = 0;
  for (auto& [n, v] : d1) {
    same = std::max(same, max_abs_diff(v, d2.at(n)));
    differ = std::max(differ, max_abs_diff(v, plain.at(n)));
  }
  EXPECT_EQ(same, 0.0);     // the same masks in two runs
  EXPECT_GT(differ, 1e-6);  // dropout changed the training
  // The model is back in eval mode with no branches left after training.
  EXPECT_FALSE(m->training());
}

}  // namespace
}  // namespace ingot::train
