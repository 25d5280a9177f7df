// Model placement: load_model puts the weights on LoadModelOptions::device (default: the
// default device) and records the load time; a CUDA model gives the CPU model's logits (fast
// and eager attention, masks, cached decoding), whatever the default device is. GPU cases skip
// without a CUDA device.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/ingot.h"
#include "models/model.h"
#include "models/parity_util.h"
#include "util/error.h"

namespace ingot::models {
namespace {

const Device kCuda0{Device::Type::cuda, 0};

#define REQUIRE_CUDA()                                                                      \
  do {                                                                                      \
    if (gpu::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU placement untested"; \
  } while (0)

/// A plain growing cache (concatenation along S), to decode without the llm layer.
class ConcatCache : public nn::KVCache {
 public:
  std::pair<Array, Array> update_and_fetch(const Array& k, const Array& v) override {
    k_ = k_.valid() ? concatenate({k_, k}, 2) : k;
    v_ = v_.valid() ? concatenate({v_, v}, 2) : v;
    offset_ += k.shape(2);
    return {k_, v_};
  }
  int64_t offset() const override { return offset_; }

 private:
  Array k_, v_;
  int64_t offset_ = 0;
};

/// max |a - b| / max |b| over host copies (a and b may live on different devices).
double max_rel(const Array& a, const Array& b) {
  std::vector<float> x = astype(a, float32).to_vector<float>();
  std::vector<float> y = astype(b, float32).to_vector<float>();
  EXPECT_EQ(x.size(), y.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    num = std::max(num, static_cast<double>(std::abs(x[i] - y[i])));
    den = std::max(den, static_cast<double>(std::abs(y[i])));
  }
  return std::isfinite(num) ? num / den : INFINITY;
}

std::vector<int32_t> seq_ids(const std::string& fx, int i) {
  return load_reference(fx)["sequences"][i]["ids"].get<std::vector<int32_t>>();
}

void expect_params_on(const Model& m, Device d, Dtype t) {
  for (const auto& [name, p] : m.parameters()) {
    EXPECT_EQ(p.device(), d) << name;
    EXPECT_EQ(p.dtype(), t) << name;
  }
}

TEST(ModelDevice, DefaultDeviceAndLoadTime) {
  auto m = load_model(fixture_dir("llama_f32"), {.warn = false});
  EXPECT_EQ(m->device(), default_device());
  expect_params_on(*m, default_device(), float32);
  EXPECT_GT(m->load_seconds(), 0.0);
  EXPECT_LT(m->load_seconds(), 60.0);
}

TEST(ModelDevice, ExplicitCpuWhateverTheDefault) {
  // With INGOT_DEVICE=cuda the default is the GPU: a CPU model must still make everything it
  // needs (masks, positions, caches) on the CPU.
  auto m = load_model(fixture_dir("gemma3_f32"),
                      {.dtype = bfloat16, .warn = false, .device = cpu_device});
  EXPECT_EQ(m->device(), cpu_device);
  expect_params_on(*m, cpu_device, bfloat16);
  auto ids = seq_ids("gemma3_f32", 2);
  Array logits = m->forward(ids_array(ids));
  EXPECT_EQ(logits.device(), cpu_device);
  EXPECT_EQ(logits.dtype(), float32);
  auto eager = load_model(
      fixture_dir("gemma3_f32"),
      {.dtype = bfloat16, .warn = false, .attention = AttentionImpl::eager, .device = cpu_device});
  Array e = eager->forward(ids_array(ids));
  EXPECT_EQ(e.device(), cpu_device);
  EXPECT_LT(max_rel(e, logits), 5e-2);
}

TEST(ModelDevice, UnavailableGpuIsAClearError) {
  const int n = gpu::device_count();
  const Device missing{Device::Type::cuda, n};
  try {
    load_model(fixture_dir("llama_f32"), {.warn = false, .device = missing});
    ADD_FAILURE() << "loaded onto " << missing.str();
  } catch (const InvalidArgument& e) {
    const std::string want =
        fmt::format("[device] cuda:{} requested but {} CUDA device(s) are available", n, n);
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

class CudaVsCpu : public testing::TestWithParam<std::tuple<std::string, AttentionImpl>> {};

TEST_P(CudaVsCpu, Float32LogitsAgree) {
  REQUIRE_CUDA();
  const auto& [fx, impl] = GetParam();
  const std::string dir = fixture_dir(fx);
  auto cpu =
      load_model(dir, {.dtype = float32, .warn = false, .attention = impl, .device = cpu_device});
  auto gpu =
      load_model(dir, {.dtype = float32, .warn = false, .attention = impl, .device = kCuda0});
  EXPECT_EQ(gpu->device(), kCuda0);
  expect_params_on(*gpu, kCuda0, float32);
  EXPECT_GT(gpu->load_seconds(), 0.0);
  for (int i : {0, 2}) {
    Array ids = ids_array(seq_ids(fx, i));
    Array got = gpu->forward(ids);
    EXPECT_EQ(got.device(), kCuda0);
    EXPECT_LT(max_rel(got, cpu->forward(ids)), 1e-4) << fx << " sequence " << i;
  }
  // Cached decoding (masks and positions made by the model on its device).
  auto ids = seq_ids(fx, 2);
  ids.resize(10);
  Array full = cpu->forward(ids_array(ids));
  std::vector<ConcatCache> caches(static_cast<size_t>(gpu->num_layers()));
  ForwardOptions opt;
  for (auto& c : caches) opt.caches.push_back(&c);
  gpu->forward(ids_array(std::vector<int32_t>(ids.begin(), ids.begin() + 4)), opt);
  const int64_t v = full.shape(2);
  for (int t = 4; t < static_cast<int>(ids.size()); ++t) {
    Array step = gpu->forward(ids_array({ids[static_cast<size_t>(t)]}), opt);
    EXPECT_LT(max_rel(step, slice(full, {0, t, 0}, {1, t + 1, v})), 1e-4) << fx << " step " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, CudaVsCpu,
    testing::Combine(testing::Values("llama_f32", "qwen3_f32_tied", "gemma3_f32", "gemma3_mm_f32"),
                     testing::Values(AttentionImpl::fast, AttentionImpl::eager)),
    [](const auto& info) {
      return std::get<0>(info.param) +
             (std::get<1>(info.param) == AttentionImpl::fast ? "_fast" : "_eager");
    });

TEST(ModelDevice, CudaLeftPaddedBatchWithHostMask) {
  // A mask and per-row offsets given as host values, then as arrays computed on the CPU (the
  // model moves them); sliding layers AND the mask with their band.
  REQUIRE_CUDA();
  auto cpu = load_model(fixture_dir("gemma3_f32"), {.warn = false, .device = cpu_device});
  auto gpu = load_model(fixture_dir("gemma3_f32"), {.warn = false, .device = kCuda0});
  const int64_t l = 8, pad = 2;
  std::vector<int32_t> ids = {0, 0, 5, 9, 33, 70, 2, 8, 11, 12, 13, 14, 15, 16, 17, 18};
  std::vector<uint8_t> keep(2 * l * l, 0);
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t i = 0; i < l; ++i)
      for (int64_t j = 0; j <= i; ++j) keep[(r * l + i) * l + j] = r == 1 || j >= pad;
  auto opts = [&] {
    return ForwardOptions{
        .offsets = Array(std::vector<int32_t>{static_cast<int32_t>(-pad), 0}, {2}),
        .mask = Array(keep, {2, 1, l, l}, bool_)};
  };
  Array x(ids, {2, l}, int32);
  Array want = cpu->forward(x, opts());
  EXPECT_LT(max_rel(gpu->forward(x, opts()), want), 1e-4);
  ForwardOptions on_cpu = opts();
  on_cpu.offsets = copy(*on_cpu.offsets, cpu_device);  // computed arrays, not host values
  on_cpu.mask = copy(*on_cpu.mask, cpu_device);
  EXPECT_FALSE(on_cpu.mask->is_host_constant());
  EXPECT_EQ(on_cpu.mask->device(), cpu_device);
  EXPECT_LT(max_rel(gpu->forward(copy(x, cpu_device), on_cpu), want), 1e-4);
}

TEST(ModelDevice, CudaCastsStoredWeightsOnTheDevice) {
  // A bfloat16 checkpoint loaded as float32, and a float32 one as bfloat16.
  REQUIRE_CUDA();
  auto up =
      load_model(fixture_dir("qwen3_bf16"), {.dtype = float32, .warn = false, .device = kCuda0});
  expect_params_on(*up, kCuda0, float32);
  auto up_cpu = load_model(fixture_dir("qwen3_bf16"),
                           {.dtype = float32, .warn = false, .device = cpu_device});
  Array ids = ids_array(seq_ids("qwen3_bf16", 1));
  EXPECT_LT(max_rel(up->forward(ids), up_cpu->forward(ids)), 1e-4);
  auto down =
      load_model(fixture_dir("llama_f32"), {.dtype = bfloat16, .warn = false, .device = kCuda0});
  expect_params_on(*down, kCuda0, bfloat16);
  auto down_cpu = load_model(fixture_dir("llama_f32"),
                             {.dtype = bfloat16, .warn = false, .device = cpu_device});
  // Same rounded weights; bf16 activations may round differently on the two backends.
  const auto& pg = down->parameters();
  const auto& pc = down_cpu->parameters();
  for (const auto& [name, p] : pc) EXPECT_EQ(max_rel(pg.at(name), p), 0.0) << name;
  Array ids2 = ids_array(seq_ids("llama_f32", 1));
  EXPECT_LT(max_rel(down->forward(ids2), down_cpu->forward(ids2)), 5e-2);
}

}  // namespace
}  // namespace ingot::models
