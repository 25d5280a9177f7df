// Device graphs (core/transforms/graph.h) on CUDA: a recorded computation replays with new input
// values, host constants used while recording keep their values, the graph's memory is never
// handed to other arrays, a host read inside a capture fails cleanly and the device carries on.
#include <gtest/gtest.h>

#include "core/allocator.h"
#include "core/fast/fast.h"
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

TEST(CudaGraph, PrefetchBranchesChangeNoValues) {
  INGOT_REQUIRE_CUDA();
  // Weights of 2.5 MB (many 128 KB pieces over several blocks), a slice of a stack, ranges
  // that overlap, reach past the end or are empty; hints at the start, in the middle and as
  // the last node (the branch joined back when nothing follows it).
  Array x = on_cuda(normal_host({4, 640}, bfloat16, 1));
  Array w = on_cuda(normal_host({2048, 640}, bfloat16, 2, 0.05));
  Array stack = on_cuda(normal_host({3, 640, 64}, bfloat16, 3, 0.05));
  Array part = slice(stack, {1, 0, 0}, {2, 640, 64});
  eval({x, w, stack, part});
  const auto body = [&] {
    Array h = fast::prefetch(x, {{w, 0, 1 << 20}, {w, 1 << 20, 64 << 20}, {part, 0, 4096}});
    Array y = matmul(h, transpose(w));  // [4, 2048]
    y = fast::prefetch(y, {{stack, 100, 300000}, {w, 5, 17}});
    Array z = matmul(reshape(slice(y, {0, 0}, {4, 640}), {4, 640}), reshape(part, {640, 64}));
    return std::vector<Array>{z, fast::prefetch(y, {{w, 0, 32}})};
  };
  DeviceGraph g = DeviceGraph::capture(kCuda, body);
  for (int round = 0; round < 3; ++round) {
    Array in = normal_host({4, 640}, bfloat16, 10 + round);
    write_from_host(x, in.to_vector<bfloat16_t>().data(), x.nbytes());
    g.replay();
    const std::vector<Array> want = body();  // eagerly: the hints do nothing there
    eval(want);
    EXPECT_EQ(host_f32(g.outputs()[0]), host_f32(want[0])) << "round " << round;
    EXPECT_EQ(host_f32(g.outputs()[1]), host_f32(want[1])) << "round " << round;
  }
  // A capture that fails after forking a branch leaves the device and the next capture fine.
  EXPECT_THROW(DeviceGraph::capture(kCuda,
                                    [&] {
                                      Array h = fast::prefetch(x, {{w, 0, 1 << 20}});
                                      (void)(h + h).to_vector<bfloat16_t>();
                                      return std::vector<Array>{h};
                                    }),
               Error);
  DeviceGraph again = DeviceGraph::capture(kCuda, body);
  again.replay();
  EXPECT_EQ(host_f32(again.outputs()[0]), host_f32(g.outputs()[0]));
}

TEST(CudaGraph, CpuDeviceIsUnsupported) {
  EXPECT_THROW(DeviceGraph::capture(cpu_device, [] { return std::vector<Array>{}; }), Unsupported);
}

}  // namespace
}  // namespace ingot::test
