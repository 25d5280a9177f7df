// CUDA core behaviour: moving arrays between devices, host constants, device mixing errors,
// views, host reads of device arrays, the caching allocator's figures, limits and recovery.
#include <gtest/gtest.h>
#include <memory>

#include "backend/cuda_test_util.h"

namespace ingot::test {
namespace {

TEST(CudaCore, RoundTripKeepsValuesForEveryDtype) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {bool_, uint8, int8, int32, uint32, int64, float16, bfloat16, float32, float64}) {
    Array x =
        astype(random::normal({3, 5}, float32, 0.0, 1.0, random::key(7), cpu_device) * 10.0f, t);
    Array g = on_cuda(x);
    EXPECT_EQ(g.device(), kCuda);
    Array back = to_device(g, cpu_device);
    EXPECT_EQ(back.device(), cpu_device);
    EXPECT_EQ(back.to_vector<double>(), x.to_vector<double>()) << dtype_name(t);
    EXPECT_EQ(g.to_vector<double>(), x.to_vector<double>()) << dtype_name(t);
  }
}

TEST(CudaCore, ViewsReadBackRowMajor) {
  INGOT_REQUIRE_CUDA();
  Array x = arange(0, 24, 1, float32, cpu_device);
  Array g = on_cuda(reshape(x, {2, 3, 4}));
  Array t = transpose(g, {2, 0, 1});
  EXPECT_EQ(t.device(), kCuda);
  EXPECT_EQ(t.to_vector<float>(), transpose(reshape(x, {2, 3, 4}), {2, 0, 1}).to_vector<float>());
  Array s = slice(g, {0, 1, 1}, {2, 3, 4}, {1, 1, 2});
  EXPECT_EQ(s.to_vector<float>(),
            slice(reshape(x, {2, 3, 4}), {0, 1, 1}, {2, 3, 4}, {1, 1, 2}).to_vector<float>());
  // A reshape strides cannot express copies on the device.
  Array r = reshape(t, {4, 6});
  EXPECT_EQ(r.to_vector<float>(),
            reshape(transpose(reshape(x, {2, 3, 4}), {2, 0, 1}), {4, 6}).to_vector<float>());
  Array b = broadcast_to(on_cuda(Array({1.f, 2.f, 3.f})), {2, 3});
  EXPECT_EQ(b.to_vector<float>(), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  // data<T>() of a device view gives a host copy that stays valid with the array.
  const float* p = t.data<float>();
  EXPECT_EQ(p[1], 4.f);
}

TEST(CudaCore, PendingReadReadsViewsWithLaterWorkQueued) {
  INGOT_REQUIRE_CUDA();
  Array x = arange(0, 24, 1, float32, cpu_device);
  Array g = on_cuda(reshape(x, {2, 3, 4}));
  Array t = transpose(g, {2, 0, 1});  // a non-contiguous view: staged row-major on the device
  PendingRead r(t);
  // Work queued after the read (a matmul chain), then the read: equal to the CPU's values, and
  // the later work's result too (the two reads do not disturb each other).
  Array m = on_cuda(ones({512, 512}));
  for (int i = 0; i < 8; ++i) m = matmul(m, m) * (1.0f / 512.0f);
  eval({m});
  PendingRead rm(m);
  EXPECT_EQ(r.get<float>(), transpose(reshape(x, {2, 3, 4}), {2, 0, 1}).to_vector<float>());
  std::vector<float> mv = rm.get<float>();
  EXPECT_EQ(mv.size(), size_t(512 * 512));
  EXPECT_FLOAT_EQ(mv[0], 1.0f);
  EXPECT_FLOAT_EQ(mv.back(), 1.0f);
  // Many reads in flight at once, released in another order than made (pinned blocks reused).
  std::vector<std::unique_ptr<PendingRead>> reads;
  for (int i = 0; i < 20; ++i)
    reads.push_back(std::make_unique<PendingRead>(on_cuda(full({i + 1}, float(i)))));
  for (int i = 19; i >= 0; --i) {
    EXPECT_EQ(reads[static_cast<size_t>(i)]->get<float>(),
              std::vector<float>(static_cast<size_t>(i + 1), float(i)));
    reads.pop_back();
  }
}

TEST(CudaCore, HostConstantsMoveToTheOpsDevice) {
  INGOT_REQUIRE_CUDA();
  Array g = on_cuda(Array({1.f, 2.f, 3.f}));
  Array y = g * 2.0f + Array({10.f, 20.f, 30.f});
  EXPECT_EQ(y.device(), kCuda);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{12, 24, 36}));
}

TEST(CudaCore, MixingDevicesIsAClearError) {
  INGOT_REQUIRE_CUDA();
  Array c =
      random::normal({4}, float32, 0.0, 1.0, random::key(1), cpu_device);  // computed on the CPU
  Array g = on_cuda(Array({1.f, 2.f, 3.f, 4.f}));
  try {
    eval({add(g, c)});
    FAIL() << "expected an error";
  } catch (const InvalidArgument& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("cuda:0"), std::string::npos) << m;
    EXPECT_NE(m.find("cpu"), std::string::npos) << m;
  }
}

TEST(CudaCore, GradientFlowsBackAcrossDevices) {
  INGOT_REQUIRE_CUDA();
  Array x = Array({1.f, 2.f, 3.f});
  auto f = [](const std::vector<Array>& in) {
    Array g = to_device(in[0], kCuda);
    return std::vector<Array>{sum(to_device(g * g, cpu_device))};
  };
  auto [outs, grads] = vjp(f, {x}, {Array(1.0f)});
  EXPECT_EQ(grads[0].device(), cpu_device);
  EXPECT_EQ(grads[0].to_vector<float>(), (std::vector<float>{2, 4, 6}));
}

TEST(CudaCore, AllocatorFiguresLimitsAndRecovery) {
  INGOT_REQUIRE_CUDA();
  synchronize(kCuda);
  const size_t base = memory::active(kCuda);
  {
    Array a = on_cuda(zeros({1 << 20}, float32, cpu_device));
    eval({a});
    EXPECT_GE(memory::active(kCuda), base + (size_t(4) << 20));
    EXPECT_GE(memory::peak(kCuda), memory::active(kCuda));
  }
  EXPECT_EQ(memory::active(kCuda), base);
  EXPECT_GE(memory::cache(kCuda), size_t(4) << 20);  // the block went to the cache
  // A small limit: the allocation fails with OutOfMemory and the next one works.
  size_t old = memory::set_limit(base + (size_t(1) << 20), kCuda);
  EXPECT_THROW(eval({zeros({1 << 22}, float32, kCuda)}), OutOfMemory);
  memory::set_limit(old, kCuda);
  Array ok = on_cuda(full({1 << 20}, Array(2.0f), float32, cpu_device));
  EXPECT_EQ(ok.to_vector<float>()[12345], 2.0f);
  // More than the card has: the system refuses, OutOfMemory, and the process carries on.
  EXPECT_THROW(eval({zeros({int64_t(1) << 40}, uint8, kCuda)}), OutOfMemory);
  memory::clear_cache(kCuda);
  EXPECT_EQ(memory::cache(kCuda), 0u);
  EXPECT_EQ(ok.to_vector<float>()[0], 2.0f);
}

TEST(CudaCore, ZeroSizeArraysMove) {
  INGOT_REQUIRE_CUDA();
  Array z = on_cuda(zeros({0, 3}, float32, cpu_device));
  EXPECT_EQ(z.shape(), (Shape{0, 3}));
  EXPECT_TRUE(z.to_vector<float>().empty());
}

}  // namespace
}  // namespace ingot::test
