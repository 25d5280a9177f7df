// The NCCL collectives: one rank on one GPU (the communicator forms, all_reduce / all_gather
// run and return the input), and two ranks on two GPUs against the CPU collectives' float64
// reference. Skip with a message where there is no GPU, or fewer than two.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "../core/dist_worker.h"
#include "core/dist/ops.h"
#include "core/primitives/distributed.h"
#include "cuda_test_util.h"
#include "dist_spawn.h"

using namespace ingot;
namespace fs = std::filesystem;

namespace {

Array values_array(int r, const Shape& shape, Dtype t) {
  std::vector<double> v(static_cast<size_t>(shape_size(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = test::dist_value(r, static_cast<int64_t>(i));
  return Array(v, shape, t);
}

TEST(CudaDistributed, OneRankNcclReturnsTheInput) {
  INGOT_REQUIRE_CUDA();
  // A single-rank group's ops return their input, so the nodes are built by hand here to run
  // ncclCommInitRank, ncclAllReduce and ncclAllGather (with the strided placement of axis 1).
  auto g = std::make_shared<dist::Group>(dist::GroupOptions{});
  const Stream s = default_stream(test::kCuda);
  for (Dtype t : {float32, bfloat16, float16}) {
    const Array x = test::on_cuda(values_array(0, {3, 4}, t));
    Array sum(x.shape(), t, std::make_shared<AllSum>(s, g), {x});
    Array gathered(x.shape(), t, std::make_shared<AllGather>(s, g, 1), {x});
    const auto want = x.to_vector<double>();
    EXPECT_EQ(sum.to_vector<double>(), want) << dtype_name(t);
    EXPECT_EQ(gathered.to_vector<double>(), want) << dtype_name(t);
  }
}

TEST(CudaDistributed, TwoRanksOnTwoGpusMatchTheReference) {
  INGOT_REQUIRE_CUDA();
  if (gpu::device_count() < 2)
    GTEST_SKIP() << "needs two GPUs (found " << gpu::device_count() << "): skipped";
  const fs::path dir = fs::temp_directory_path() / ("ingot_nccl_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto res = test::spawn_group(INGOT_DIST_WORKER, {"cuda", dir.string()}, 2, test::free_port(),
                               {"INGOT_DIST_TIMEOUT=120"});
  if (!res.spawned) GTEST_SKIP() << "cannot spawn worker processes here";
  ASSERT_FALSE(res.timed_out);
  ASSERT_EQ(res.exit_codes, (std::vector<int>{0, 0}));
  auto read = [&](int r, const std::string& name) {
    std::ifstream f(dir / ("rank" + std::to_string(r) + "_" + name + ".txt"));
    std::vector<double> v;
    double x;
    while (f >> x) v.push_back(x);
    return v;
  };
  for (Dtype t : {float32, bfloat16}) {
    const std::string name = "cuda_sum_" + std::string(dtype_name(t));
    const auto got = read(0, name);
    ASSERT_EQ(got.size(), 105u);
    EXPECT_EQ(read(1, name), got) << name << ": ranks differ";
    const double rel = t == bfloat16 ? 1.0 / 256 : 1e-6;
    for (size_t i = 0; i < got.size(); ++i) {
      double ref = 0;
      for (int r = 0; r < 2; ++r)
        ref += Array(test::dist_value(r, static_cast<int64_t>(i)), t).item<double>();
      EXPECT_NEAR(got[i], ref, rel * std::max(1.0, std::abs(ref))) << name << "[" << i << "]";
    }
  }
  std::vector<double> g1;
  for (int row = 0; row < 2; ++row)
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 3; ++c)
        g1.push_back(Array(test::dist_value(r, row * 3 + c), float32).item<double>());
  EXPECT_EQ(read(0, "cuda_gather1"), g1);
  EXPECT_EQ(read(1, "cuda_gather1"), g1);
  fs::remove_all(dir);
}

}  // namespace
