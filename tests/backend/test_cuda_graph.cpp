// Device graphs (core/transforms/graph.h) on CUDA: a recorded computation replays with new input
// values, host constants used while recording keep their values, the graph's memory is never
// handed to other arrays, a host read inside a capture fails cleanly and the device carries on.
#include <gtest/gtest.h>

#include "core/allocator.h"
#include "core/transforms/graph.h"
#include "cuda_test_util.h"

namespace ingot::test {
namespace {

std::vector<float> host_f32(const Array& a) {
  return astype(a, float32).to_vector<float>();
}

TEST(CudaGraph, ReplaysWithNewInputsAndKeepsHostConstants) {
  INGOT_REQUIRE_CUDA();
  Array x = on_cuda(zeros({4, 8}, float32, cpu_device));
  Array w = on_cuda(Array(std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}, {8, 1}));
  eval({x, w});
  // x * 2.5 + 1 (host constants), a reduction and a matmul (cuBLASLt), in one graph.
  DeviceGraph g = DeviceGraph::capture(kCuda, [&] {
    Array y = x * Array(2.5f) + Array(1.0f);
    return std::vector<Array>{sum(y, 1), matmul(y, w)};
  });
  EXPECT_GT(g.pool_bytes(), 0u);
  for (int round = 0; round < 3; ++round) {
    std::vector<float> in(32);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 7) - 3.0f + round;
    write_from_host(x, in.data(), in.size() * sizeof(float));
    g.replay();
    const auto s = host_f32(g.outputs()[0]), mm = host_f32(g.outputs()[1]);
    for (int r = 0; r < 4; ++r) {
      double want_s = 0, want_m = 0;
      for (int c = 0; c < 8; ++c) {
        const double y = in[static_cast<size_t>(r * 8 + c)] * 2.5 + 1.0;
        want_s += y;
        want_m += y * (c + 1);
      }
      EXPECT_NEAR(s[static_cast<size_t>(r)], want_s, 1e-4) << "round " << round << " row " << r;
      EXPECT_NEAR(mm[static_cast<size_t>(r)], want_m, 1e-3) << "round " << round << " row " << r;
    }
  }
}

TEST(CudaGraph, ItsMemoryIsNeverGivenToOtherArrays) {
  INGOT_REQUIRE_CUDA();
  Array x = on_cuda(Array(std::vector<float>(1024, 1.0f), {1024}));
  eval({x});
  DeviceGraph g = DeviceGraph::capture(kCuda, [&] {
    Array t = exp(x) + x;  // an intermediate freed inside the capture
    return std::vector<Array>{t * Array(3.0f)};
  });
  // Arrays made after the capture, of the same sizes, must survive replays untouched.
  std::vector<Array> others;
  for (int i = 0; i < 8; ++i)
    others.push_back(on_cuda(full({1024}, Array(-7.0f), float32, cpu_device)));
  eval(others);
  for (int i = 0; i < 3; ++i) g.replay();
  for (const Array& o : others)
    for (float v : host_f32(o)) ASSERT_EQ(v, -7.0f);
  const float want = 3.0f * (std::exp(1.0f) + 1.0f);
  for (float v : host_f32(g.outputs()[0])) ASSERT_NEAR(v, want, 1e-5);
}

TEST(CudaGraph, HostReadInsideCaptureFailsAndTheDeviceCarriesOn) {
  INGOT_REQUIRE_CUDA();
  Array x = on_cuda(Array(std::vector<float>{1, 2, 3}, {3}));
  eval({x});
  EXPECT_THROW(DeviceGraph::capture(kCuda,
                                    [&] {
                                      Array y = x + Array(1.0f);
                                      (void)y.to_vector<float>();  // synchronises: not allowed
                                      return std::vector<Array>{y};
                                    }),
               Error);
  EXPECT_EQ(host_f32(x * Array(2.0f)), (std::vector<float>{2, 4, 6}));
}

TEST(CudaGraph, CpuDeviceIsUnsupported) {
  EXPECT_THROW(DeviceGraph::capture(cpu_device, [] { return std::vector<Array>{}; }), Unsupported);
}

}  // namespace
}  // namespace ingot::test
