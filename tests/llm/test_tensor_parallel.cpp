// Tensor parallelism on the CPU: the model fixtures sharded over two worker processes
// (tp_worker) give the logits of the unsharded model (a forward pass, decode steps through the
// sharded KV cache, the head's chosen rows) on every rank, identical bytes across ranks; head
// counts that do not divide are clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/ops/ops.h"
#include "dist_spawn.h"
#include "models/model.h"
#include "tp_ids.h"

using namespace ingot;
namespace fs = std::filesystem;

namespace {

const std::string kModels = std::string(INGOT_SOURCE_DIR) + "/tests/data/models/";

class TensorParallel : public ::testing::Test {
 public:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ingot_tp_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  test::SpawnResult run(const std::string& model, const std::string& dtype, int size) {
    return test::spawn_group(INGOT_TP_WORKER, {kModels + model, dir_.string(), dtype}, size,
                             test::free_port(),
                             {"INGOT_DEVICE=cpu", "INGOT_NUM_THREADS=1", "INGOT_DIST_TIMEOUT=120"});
  }
  std::vector<double> values(int rank, const std::string& name) const {
    return test::rank_values(dir_, rank, name);
  }
  std::string text(int rank, const std::string& name) const {
    return test::rank_text(dir_, rank, name);
  }
  fs::path dir_;
};

/// max |a - b| over equal-length vectors.
double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

void check_model(TensorParallel& t, const std::string& model, const std::string& dtype,
                 double tol) {
  SCOPED_TRACE(model + " " + dtype);
  auto res = t.run(model, dtype, 2);
  if (!res.spawned) GTEST_SKIP() << "cannot spawn worker processes here";
  ASSERT_FALSE(res.timed_out) << "a worker hung";
  ASSERT_EQ(res.exit_codes, (std::vector<int>{0, 0})) << t.text(0, "error") << t.text(1, "error");
  // The unsharded model, in this process.
  auto m = models::load_model(
      kModels + model, {.dtype = dtype_from_name(dtype), .warn = false, .device = cpu_device});
  const Array ids = test::tp_ids(m->vocab_size());
  const Array logits = m->forward(ids);  // [2, 7, V]
  const auto ref = logits.to_vector<double>();
  const auto ref_decode = slice_axis(logits, 1, 4, 7).to_vector<double>();
  const auto ref_rows =
      m->lm_head_rows(m->hidden(ids), Array({3, 1, 200}, int32)).to_vector<double>();
  for (const char* name : {"logits", "decode", "rows"}) {
    const auto r0 = t.values(0, name);
    EXPECT_EQ(t.values(1, name), r0) << name << ": the ranks differ";
    const auto& want = std::string(name) == "logits"   ? ref
                       : std::string(name) == "decode" ? ref_decode
                                                       : ref_rows;
    ASSERT_EQ(r0.size(), want.size()) << name;
    EXPECT_LE(max_diff(r0, want), tol) << name;
  }
}

TEST_F(TensorParallel, TwoRanksGiveTheUnshardedLogits) {
  // float32: only the order of the sums inside o_proj / down_proj differs (each rank sums its
  // half of the features, then the halves are added).
  check_model(*this, "llama_f32", "float32", 2e-5);        // untied: vocab-parallel head
  check_model(*this, "qwen3_bf16", "float32", 2e-5);       // q/k norms per head
  check_model(*this, "gemma3_f32", "float32", 2e-5);       // tied head, sliding windows
  check_model(*this, "llama_bf16_tied", "float32", 2e-5);  // Hkv = H
}

TEST_F(TensorParallel, Bfloat16WithinBfloat16Bounds) {
  // In bfloat16 each rank's half of o_proj / down_proj rounds before the halves are added, so
  // TP=2 differs from TP=1 by bfloat16 roundings. Bound: against the float32 model, TP=2's
  // error is at most twice TP=1's (both are bfloat16 computations of the same function).
  for (const char* model : {"qwen3_bf16", "llama_bf16_tied"}) {
    SCOPED_TRACE(model);
    auto res = run(model, "bfloat16", 2);
    if (!res.spawned) GTEST_SKIP() << "cannot spawn worker processes here";
    ASSERT_FALSE(res.timed_out);
    ASSERT_EQ(res.exit_codes, (std::vector<int>{0, 0})) << text(0, "error");
    auto logits = [&](Dtype t) {
      auto m =
          models::load_model(kModels + model, {.dtype = t, .warn = false, .device = cpu_device});
      return m->forward(test::tp_ids(m->vocab_size())).to_vector<double>();
    };
    const auto f32 = logits(float32), tp1 = logits(bfloat16), tp2 = values(0, "logits");
    EXPECT_EQ(values(1, "logits"), tp2);
    const double e1 = max_diff(tp1, f32), e2 = max_diff(tp2, f32);
    std::printf("%s bf16 error: TP=1 %g, TP=2 %g\n", model, e1, e2);
    EXPECT_GT(e1, 0);
    EXPECT_LE(e2, 2 * e1);
  }
}

TEST_F(TensorParallel, HeadsThatDoNotDivideAreAnError) {
  auto res = run("qwen3_f32_tied", "float32", 2);  // 5 query heads
  if (!res.spawned) GTEST_SKIP() << "cannot spawn worker processes here";
  ASSERT_FALSE(res.timed_out);
  EXPECT_EQ(res.exit_codes, (std::vector<int>{1, 1}));
  const std::string msg = text(0, "error");
  EXPECT_NE(msg.find("num_attention_heads = 5 is not divisible by the 2 ranks"), std::string::npos)
      << msg;
  res = run("llama_f32", "float32", 3);  // 6 query heads but 2 key/value heads
  ASSERT_FALSE(res.timed_out);
  EXPECT_EQ(res.exit_codes, (std::vector<int>{1, 1, 1}));
  EXPECT_NE(text(2, "error").find("num_key_value_heads = 2 is not divisible by the 3 ranks"),
            std::string::npos)
      << text(2, "error");
}

}  // namespace
