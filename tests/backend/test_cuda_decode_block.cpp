// fast::decode_block on CUDA (the persistent decoder-block kernel, decode_block.cu) against the
// composition of the separate ops (fast::ref::decode_block) on CUDA and on the CPU: the cache
// writes equal rope_kv_update's bit for bit; the block's output agrees within bf16/f16 rounding
// (the attention splits sum in another order than the decode attention kernel, so a head's
// output can round one ulp apart, and the products after it move by about that much).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda_test_util.h"
#include "core/fast/fast.h"
#include "core/transforms/graph.h"

namespace ingot::test {
namespace {

struct Case {
  int64_t E, H, Hkv, D, I, C, col;
  bool qk_norm = true;
  Dtype t = bfloat16;
  fast::GatedActivation act = fast::GatedActivation::silu;
  bool traditional = false;
  bool freqs = true;
  std::string name;
};

struct Inputs {
  Array x, in_norm, w_qkv, q_norm, k_norm, w_o, post_norm, w_gu, w_down, keys, values, column,
      positions, freqs, mask;
};

Inputs make_inputs(const Case& c, uint32_t seed) {
  const Dtype t = c.t;
  const double se = 1.0 / std::sqrt(double(c.E)), sh = 1.0 / std::sqrt(double(c.H * c.D)),
               si = 1.0 / std::sqrt(double(c.I));
  Inputs in;
  in.x = normal_host({1, 1, c.E}, t, seed);
  in.in_norm = normal_host({c.E}, t, seed + 1, 0.1, 1.0);
  in.w_qkv = normal_host({(c.H + 2 * c.Hkv) * c.D, c.E}, t, seed + 2, se);
  in.q_norm = normal_host({c.D}, t, seed + 3, 0.1, 1.0);
  in.k_norm = normal_host({c.D}, t, seed + 4, 0.1, 1.0);
  in.w_o = normal_host({c.E, c.H * c.D}, t, seed + 5, sh);
  in.post_norm = normal_host({c.E}, t, seed + 6, 0.1, 1.0);
  in.w_gu = normal_host({2 * c.I, c.E}, t, seed + 7, se);
  in.w_down = normal_host({c.E, c.I}, t, seed + 8, si);
  in.keys = normal_host({1, c.Hkv, c.C, c.D}, t, seed + 9);
  in.values = normal_host({1, c.Hkv, c.C, c.D}, t, seed + 10);
  in.column = Array(std::vector<int32_t>{static_cast<int32_t>(c.col)}, {1}, int32);
  in.positions = Array(std::vector<int32_t>{static_cast<int32_t>(c.col + 3)}, {1}, int32);
  std::vector<float> f(static_cast<size_t>(c.D / 2));
  for (size_t i = 0; i < f.size(); ++i)
    f[i] = 0.9f / std::pow(5000.0f, 2.0f * float(i) / float(c.D));
  in.freqs = Array(f, {c.D / 2}, float32);
  // Columns up to col are kept, except two (padding-like holes) when there are enough.
  std::vector<bool> keep(static_cast<size_t>(c.C));
  for (int64_t j = 0; j < c.C; ++j) keep[j] = j <= c.col && !(c.col > 6 && (j == 2 || j == 5));
  in.mask = Array(keep, {1, 1, 1, c.C});
  return in;
}

Inputs to_cuda(const Inputs& h) {
  Inputs d;
  for (auto [dst, src] : {std::pair{&d.x, &h.x},
                          {&d.in_norm, &h.in_norm},
                          {&d.w_qkv, &h.w_qkv},
                          {&d.q_norm, &h.q_norm},
                          {&d.k_norm, &h.k_norm},
                          {&d.w_o, &h.w_o},
                          {&d.post_norm, &h.post_norm},
                          {&d.w_gu, &h.w_gu},
                          {&d.w_down, &h.w_down},
                          {&d.keys, &h.keys},
                          {&d.values, &h.values},
                          {&d.column, &h.column},
                          {&d.positions, &h.positions},
                          {&d.freqs, &h.freqs},
                          {&d.mask, &h.mask}}) {
    *dst = on_cuda(*src);
  }
  std::vector<Array> all{d.x,      d.in_norm,   d.w_qkv,     d.q_norm, d.k_norm,
                         d.w_o,    d.post_norm, d.w_gu,      d.w_down, d.keys,
                         d.values, d.column,    d.positions, d.freqs,  d.mask};
  eval(all);
  return d;
}

fast::DecodeBlockOptions options(const Case& c, const Inputs& in) {
  fast::DecodeBlockOptions o;
  o.n_heads = static_cast<int>(c.H);
  o.n_kv_heads = static_cast<int>(c.Hkv);
  o.norm = {.eps = 1e-6f, .add_unit_offset = false, .weight_in_float32 = false};
  o.qk_norm = {.eps = 1e-6f, .add_unit_offset = false, .weight_in_float32 = false};
  o.rope.traditional = c.traditional;
  o.rope.base = 10000.0f;
  o.rope.offsets = in.positions;
  if (c.freqs) o.rope.freqs = in.freqs;
  o.scale = 1.0f / std::sqrt(static_cast<float>(c.D));
  o.act = c.act;
  return o;
}

template <typename F>
std::vector<Array> run(const Case& c, const Inputs& in, F&& fn) {
  std::optional<Array> qn, kn;
  if (c.qk_norm) {
    qn = in.q_norm;
    kn = in.k_norm;
  }
  std::vector<Array> r =
      fn(in.x, in.in_norm, in.w_qkv, qn, kn, in.w_o, in.post_norm, in.w_gu, in.w_down, in.keys,
         in.values, in.column, in.mask, options(c, in), StreamOrDevice{});
  eval(r);
  return r;
}

void check_case(const Case& c) {
  SCOPED_TRACE(c.name);
  const Inputs host = make_inputs(c, 7);
  const Inputs dev = to_cuda(host);
  auto fused = [](auto&&... a) { return fast::decode_block(a...); };
  auto composed = [](auto&&... a) { return fast::ref::decode_block(a...); };
  const std::vector<Array> got = run(c, dev, fused);
  const std::vector<Array> want = run(c, dev, composed);
  const std::vector<Array> cpu = run(c, host, fused);
  ASSERT_EQ(got.size(), 3u);
  // The new key and value columns: rope_kv_update's values exactly; the other columns as given.
  expect_close(got[1], want[1], 0, 0, c.name + " keys");
  expect_close(got[2], want[2], 0, 0, c.name + " values");
  const double tol = c.t == bfloat16 ? 1.6e-2 : 2e-3;
  expect_close(got[0], want[0], tol, tol, c.name + " out vs the CUDA composition");
  expect_close(got[0], cpu[0], tol, tol, c.name + " out vs the CPU");
  expect_close(got[1], cpu[1], tol, tol, c.name + " keys vs the CPU");
  // The block changed x (a test whose output were x would pass nothing above by accident).
  const auto xo = astype(got[0], float32).to_vector<float>();
  const auto xi = astype(dev.x, float32).to_vector<float>();
  double moved = 0;
  for (size_t i = 0; i < xo.size(); ++i) moved = std::max<double>(moved, std::fabs(xo[i] - xi[i]));
  EXPECT_GT(moved, 0.05);
}

TEST(CudaDecodeBlock, SmallShapesMatchTheComposition) {
  INGOT_REQUIRE_CUDA();
  check_case({.E = 256, .H = 4, .Hkv = 2, .D = 64, .I = 512, .C = 40, .col = 17, .name = "d64"});
  check_case({.E = 256,
              .H = 4,
              .Hkv = 2,
              .D = 64,
              .I = 512,
              .C = 40,
              .col = 17,
              .qk_norm = false,
              .name = "d64 no qk norm"});
  check_case({.E = 512,
              .H = 8,
              .Hkv = 2,
              .D = 128,
              .I = 384,
              .C = 64,
              .col = 0,
              .act = fast::GatedActivation::gelu_tanh,
              .name = "d128 first column, gelu_tanh"});
  check_case({.E = 512,
              .H = 4,
              .Hkv = 4,
              .D = 128,
              .I = 256,
              .C = 33,
              .col = 32,
              .traditional = true,
              .freqs = false,
              .name = "d128 MHA, traditional rope, no freqs, last column"});
  check_case({.E = 512,
              .H = 2,
              .Hkv = 1,
              .D = 256,
              .I = 256,
              .C = 20,
              .col = 9,
              .t = float16,
              .name = "d256 f16"});
}

TEST(CudaDecodeBlock, PublishedShapesMatchTheComposition) {
  INGOT_REQUIRE_CUDA();
  // Qwen3-0.6B and Llama-3.2-1B blocks with a few hundred cached columns (the key splits and
  // their combine).
  check_case({.E = 1024,
              .H = 16,
              .Hkv = 8,
              .D = 128,
              .I = 3072,
              .C = 384,
              .col = 300,
              .name = "qwen3-0.6b"});
  check_case({.E = 2048,
              .H = 32,
              .Hkv = 8,
              .D = 64,
              .I = 8192,
              .C = 384,
              .col = 250,
              .qk_norm = false,
              .name = "llama-3.2-1b"});
}

TEST(CudaDecodeBlock, ReplaysInADeviceGraphWithNewColumns) {
  INGOT_REQUIRE_CUDA();
  const Case c{.E = 512, .H = 8, .Hkv = 4, .D = 64, .I = 384, .C = 48, .col = 10, .name = "graph"};
  const Inputs host = make_inputs(c, 11);
  Inputs dev = to_cuda(host);
  std::optional<Array> qn = dev.q_norm, kn = dev.k_norm;
  Array keys = dev.keys, values = dev.values;
  DeviceGraph g = DeviceGraph::capture(kCuda, [&] {
    std::vector<Array> r =
        fast::decode_block(dev.x, dev.in_norm, dev.w_qkv, qn, kn, dev.w_o, dev.post_norm, dev.w_gu,
                           dev.w_down, keys, values, dev.column, dev.mask, options(c, dev));
    return r;
  });
  for (int32_t col : {10, 11, 30}) {
    const int32_t pos = col + 3;
    write_from_host(dev.column, &col, sizeof(col));
    write_from_host(dev.positions, &pos, sizeof(pos));
    g.replay();
    const std::vector<Array>& out = g.outputs();
    Case cc = c;
    cc.col = col;
    Inputs h2 = host;
    h2.column = Array(std::vector<int32_t>{col}, {1}, int32);
    h2.positions = Array(std::vector<int32_t>{pos}, {1}, int32);
    // The graph's caches hold the columns written by the earlier replays; the reference takes
    // the same cache contents.
    h2.keys = to_device(out[1], cpu_device);
    h2.values = to_device(out[2], cpu_device);
    const std::vector<Array> want =
        run(cc, h2, [](auto&&... a) { return fast::decode_block(a...); });
    expect_close(out[0], want[0], 1.6e-2, 1.6e-2, "graph out, column " + std::to_string(col));
  }
}

TEST(CudaDecodeBlock, ColumnOutsideTheCacheRaisesAtTheNextRead) {
  INGOT_REQUIRE_CUDA();
  const Case c{.E = 256, .H = 4, .Hkv = 2, .D = 64, .I = 256, .C = 16, .col = 3, .name = "bad"};
  Inputs dev = to_cuda(make_inputs(c, 3));
  dev.column = on_cuda(Array(std::vector<int32_t>{16}, {1}, int32));
  std::optional<Array> qn = dev.q_norm, kn = dev.k_norm;
  const std::vector<Array> out =
      fast::decode_block(dev.x, dev.in_norm, dev.w_qkv, qn, kn, dev.w_o, dev.post_norm, dev.w_gu,
                         dev.w_down, dev.keys, dev.values, dev.column, dev.mask, options(c, dev));
  try {
    out[0].to_vector<double>();
    ADD_FAILURE() << "no error for column 16 of 16";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()),
              "[put_along_axis] index 16 is out of range for axis 2 of size 16");
  }
  // The device works as before afterwards.
  const std::vector<Array> ok =
      run(c, to_cuda(make_inputs(c, 3)), [](auto&&... a) { return fast::decode_block(a...); });
  EXPECT_EQ(ok[0].shape(), (Shape{1, 1, 256}));
}

}  // namespace
}  // namespace ingot::test
