// Collectives across worker processes (dist_worker) on the CPU: sums against a float64
// reference, identical results on every rank, gathers, VJPs, a dead peer and mismatched calls
// giving clear errors (never a hang), a rendezvous that times out; single-rank groups are free.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/dist/ops.h"
#include "core/ops/ops.h"
#include "dist_spawn.h"
#include "dist_worker.h"
#include "util/error.h"

using namespace ingot;
namespace fs = std::filesystem;

namespace {

class Distributed : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ingot_dist_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// Runs the worker scenario on `size` ranks (or only `ranks`); skips when it cannot spawn.
  test::SpawnResult run(const std::string& scenario, int size, std::vector<int> ranks = {},
                        std::vector<std::string> env = {}) {
    env.push_back("INGOT_DEVICE=cpu");
    env.push_back("INGOT_NUM_THREADS=1");
    if (std::none_of(env.begin(), env.end(),
                     [](const std::string& e) { return e.rfind("INGOT_DIST_TIMEOUT=", 0) == 0; }))
      env.push_back("INGOT_DIST_TIMEOUT=60");
    return test::spawn_group(INGOT_DIST_WORKER, {scenario, dir_.string()}, size, test::free_port(),
                             env, ranks);
  }
  std::vector<double> values(int rank, const std::string& name) const {
    EXPECT_TRUE(fs::exists(dir_ / ("rank" + std::to_string(rank) + "_" + name + ".txt")))
        << "rank " << rank << " wrote no " << name;
    return test::rank_values(dir_, rank, name);
  }
  std::string text(int rank, const std::string& name) const {
    return test::rank_text(dir_, rank, name);
  }
  fs::path dir_;
};

#define SPAWN_OR_SKIP(res)                                                    \
  do {                                                                        \
    if (!(res).spawned) GTEST_SKIP() << "cannot spawn worker processes here"; \
    ASSERT_FALSE((res).timed_out) << "a worker hung";                         \
  } while (0)

/// The value dist_value(r, i) takes after rounding to dtype `t`.
double rounded(double v, Dtype t) {
  return Array(v, t).item<double>();
}

TEST_F(Distributed, SumMatchesFloat64ReferenceOnEveryRank) {
  for (int size : {2, 3}) {
    auto res = run("sum", size);
    SPAWN_OR_SKIP(res);
    for (int r = 0; r < size; ++r) ASSERT_EQ(res.exit_codes[r], 0) << "rank " << r;
    for (Dtype t : {float32, float64, bfloat16, float16, int32}) {
      const std::string name = "sum_" + std::string(dtype_name(t));
      const auto got = values(0, name);
      ASSERT_EQ(got.size(), 105u) << name;
      for (int r = 1; r < size; ++r) EXPECT_EQ(values(r, name), got) << name << " rank " << r;
      // Rounded inputs summed in float64; the result rounds once to t (bf16/f16 accumulate in
      // float32, so within one rounding of t; float32 within a few ulps of the exact sum).
      const double rel = t == bfloat16  ? 1.0 / 256
                         : t == float16 ? 1.0 / 2048
                         : t == float32 ? 1e-6
                                        : 1e-15;
      for (size_t i = 0; i < got.size(); ++i) {
        double ref = 0;
        for (int r = 0; r < size; ++r)
          ref += rounded(test::dist_value(r, static_cast<int64_t>(i)), t);
        if (t == int32)
          EXPECT_EQ(got[i], ref) << name << "[" << i << "]";
        else
          EXPECT_NEAR(got[i], ref, rel * std::max(1.0, std::abs(ref))) << name << "[" << i << "]";
      }
    }
    // A transposed [7, 5] view of [5, 7]: element (j, i) is input element i * 7 + j.
    const auto view = values(0, "sum_view");
    ASSERT_EQ(view.size(), 35u);
    for (int j = 0; j < 7; ++j)
      for (int i = 0; i < 5; ++i) {
        double ref = 0;
        for (int r = 0; r < size; ++r) ref += rounded(test::dist_value(r, i * 7 + j), float32);
        EXPECT_NEAR(view[static_cast<size_t>(j * 5 + i)], ref, 1e-6 * std::max(1.0, std::abs(ref)));
      }
  }
}

TEST_F(Distributed, GatherConcatenatesInRankOrder) {
  const int size = 3;
  auto res = run("gather", size);
  SPAWN_OR_SKIP(res);
  for (int r = 0; r < size; ++r) ASSERT_EQ(res.exit_codes[r], 0) << "rank " << r;
  auto in = [](int r, int64_t i, Dtype t) { return rounded(test::dist_value(r, i), t); };
  std::vector<double> g0, g1, glast;
  for (int r = 0; r < size; ++r)  // axis 0 of [2, 3]: rank blocks one after the other
    for (int i = 0; i < 6; ++i) g0.push_back(in(r, i, float32));
  for (int row = 0; row < 2; ++row)  // axis 1: each row holds every rank's row in turn
    for (int r = 0; r < size; ++r)
      for (int c = 0; c < 3; ++c) g1.push_back(in(r, row * 3 + c, float32));
  for (int row = 0; row < 6; ++row)  // last axis of [2, 3, 2]
    for (int r = 0; r < size; ++r)
      for (int c = 0; c < 2; ++c) glast.push_back(in(r, row * 2 + c, bfloat16));
  for (int r = 0; r < size; ++r) {
    EXPECT_EQ(values(r, "gather0"), g0) << "rank " << r;
    EXPECT_EQ(values(r, "gather1"), g1) << "rank " << r;
    EXPECT_EQ(values(r, "gather_last"), glast) << "rank " << r;
  }
}

TEST_F(Distributed, VjpsUnderReplicatedCotangents) {
  const int size = 2;
  auto res = run("grad", size);
  SPAWN_OR_SKIP(res);
  for (int r = 0; r < size; ++r) {
    ASSERT_EQ(res.exit_codes[r], 0) << "rank " << r;
    // d/dx sum(all_gather(x) * w) = rank r's slice of w; d/dx sum(all_sum(x) * w4) = w4.
    EXPECT_EQ(values(r, "grad_gather"),
              (std::vector<double>{4.0 * r + 1, 4.0 * r + 2, 4.0 * r + 3, 4.0 * r + 4}));
    EXPECT_EQ(values(r, "grad_sum"), (std::vector<double>{0.5, -1.0, 2.0, 3.0}));
  }
}

TEST_F(Distributed, DeadPeerGivesAnErrorNotAHang) {
  auto res = run("die", 2);
  SPAWN_OR_SKIP(res);
  EXPECT_EQ(res.exit_codes[1], 3);
  ASSERT_EQ(res.exit_codes[0], 0) << "rank 0 did not see an IoError";
  const std::string msg = text(0, "error");
  EXPECT_NE(msg.find("rank 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did it exit?"), std::string::npos) << msg;
}

TEST_F(Distributed, MismatchedShapesAreReported) {
  auto res = run("mismatch", 2);
  SPAWN_OR_SKIP(res);
  ASSERT_EQ(res.exit_codes[0], 0);
  ASSERT_EQ(res.exit_codes[1], 0);
  const std::string msg = text(0, "error");
  EXPECT_NE(msg.find("rank 1 sent 12 bytes where rank 0 expected 8"), std::string::npos) << msg;
  EXPECT_NE(text(1, "error").find("rank 0"), std::string::npos) << text(1, "error");
}

TEST_F(Distributed, RendezvousTimesOutWithoutRankZero) {
  auto res = run("sum", 2, {1}, {"INGOT_DIST_TIMEOUT=1"});
  SPAWN_OR_SKIP(res);
  ASSERT_EQ(res.exit_codes[0], 7);
  const std::string msg = text(1, "error");
  EXPECT_NE(msg.find("could not reach rank 0 at 127.0.0.1:"), std::string::npos) << msg;
}

TEST(DistributedSingle, SingleRankCollectivesReturnTheirInput) {
  auto g = std::make_shared<dist::Group>(dist::GroupOptions{});
  const Array x({1.f, 2.f, 3.f});
  EXPECT_EQ(dist::all_sum(x, g).id(), x.id());
  EXPECT_EQ(dist::all_gather(x, 0, g).id(), x.id());
  EXPECT_THROW(g->network(), InvalidArgument);
  EXPECT_THROW(dist::all_sum(Array({true, false}, {2}, bool_), g), InvalidArgument);
  EXPECT_THROW(dist::all_gather(Array(1.f), 0, g), InvalidArgument);
}

TEST(DistributedSingle, BadGroupOptionsAreRejected) {
  EXPECT_THROW(dist::Group(dist::GroupOptions{.rank = 2, .size = 2}), InvalidArgument);
  EXPECT_THROW(dist::Group(dist::GroupOptions{.rank = 0, .size = 0}), InvalidArgument);
  EXPECT_THROW(dist::Group(dist::GroupOptions{.rank = 0, .size = 2, .master_port = 70000}),
               InvalidArgument);
}

}  // namespace
