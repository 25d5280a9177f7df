// compile: fused elementwise chains agree bitwise with the uncompiled graph, CSE, signature
// cache, shapeless mode, gradients through compiled functions, mixed graphs.
#include <cstring>

#include "test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

std::vector<Array> chain(const std::vector<Array>& in) {
  const Array& x = in[0];
  const Array& y = in[1];  // broadcast row
  Array t = x * 1.5f + y;
  t = tanh(t) - sigmoid(x);
  t = exp(t * 0.25f) / (abs(y) + 1.0f);
  t = maximum(t, sqrt(abs(x))) * sin(t);
  t = where(greater(t, 0.1f), t, -t * 2.0f);
  return {astype(t, bfloat16), t + 1.0f};
}

std::vector<uint32_t> bits(const Array& a) {
  auto f = astype(a, float32).to_vector<float>();
  std::vector<uint32_t> b(f.size());
  std::memcpy(b.data(), f.data(), f.size() * 4);
  return b;
}

}  // namespace

TEST(Compile, FusedChainBitwiseEqualAllLayouts) {
  for (Layout l : kAllLayouts)
    for (int64_t n : {1, 7, 33, 1000, 5000}) {
      auto xv = random_values(3 * n, float32, 1);
      auto yv = random_values(n, float32, 2);
      Array x = make_array(xv, {3, n}, float32, l);
      Array y = Array(yv, {n}, float32);
      auto f = compile(chain);
      auto want = chain({x, y});
      auto got = f({x, y});
      ASSERT_EQ(got.size(), 2u);
      EXPECT_EQ(got[0].dtype(), bfloat16);
      EXPECT_EQ(bits(got[0]), bits(want[0])) << layout_name(l) << " n=" << n;
      EXPECT_EQ(bits(got[1]), bits(want[1])) << layout_name(l) << " n=" << n;
      CompileStats st = compile_stats(f);
      EXPECT_GE(st.fused_kernels, 1);
      EXPECT_LT(st.final_nodes, st.after_cse);
    }
}

TEST(Compile, CommonSubexpressionsAndCache) {
  int traces = 0;
  auto f = compile([&](const std::vector<Array>& in) {
    ++traces;
    return std::vector<Array>{exp(in[0]) + exp(in[0]) * 2.0f};
  });
  Array a = random::normal({4, 5});
  auto r = f({a})[0];
  EXPECT_EQ(traces, 1);
  CompileStats st = compile_stats(f);
  EXPECT_EQ(st.after_cse, st.traced_nodes - 1);  // one exp merged
  expect_close(r.to_vector<double>(), (3.0f * exp(a)).to_vector<double>(), 1e-6, 0, "cse");
  f({random::normal({4, 5})});
  EXPECT_EQ(traces, 1);  // same signature: replayed
  f({random::normal({2, 5})});
  EXPECT_EQ(traces, 2);  // new shape: traced again
  EXPECT_EQ(compile_stats(f).cache_entries, 2);
  f({random::normal({4, 5}, bfloat16)});
  EXPECT_EQ(traces, 3);  // new dtype
}

TEST(Compile, ShapelessReusesTheTrace) {
  int traces = 0;
  auto f = compile(
      [&](const std::vector<Array>& in) {
        ++traces;
        return std::vector<Array>{silu(in[0]) * in[1] + 1.0f};
      },
      {.shapeless = true});
  for (int64_t n : {3, 17, 1025}) {
    Array a = random::normal({2, n}), b = random::normal({2, n});
    auto got = f({a, b})[0];
    EXPECT_EQ(got.shape(), (Shape{2, n}));
    EXPECT_EQ(bits(got), bits(silu(a) * b + 1.0f));
  }
  EXPECT_EQ(traces, 1);
  // A broadcast's target shape is fixed at trace time: other sizes give a clear error.
  auto g = compile([](const std::vector<Array>& in) { return std::vector<Array>{in[0] + in[1]}; },
                   {.shapeless = true});
  g({random::normal({2, 3}), random::normal({3})});
  expect_error<InvalidArgument>([&] { g({random::normal({2, 5}), random::normal({5})}); },
                                "[compile] shapeless replay: a broadcast traced to [2, 3]");
}

TEST(Compile, MixedGraphAndCapturedConstants) {
  Array w = random::normal({8, 8});
  auto fn = [&](const std::vector<Array>& in) {
    Array h = gelu(matmul(in[0], w) * 0.5f + 1.0f);
    return std::vector<Array>{softmax(h - max(h, {-1}, true), -1)};
  };
  auto f = compile(fn);
  Array x = random::normal({5, 8});
  EXPECT_EQ(bits(f({x})[0]), bits(fn({x})[0]));
}

TEST(Compile, GradientsThroughCompiledFunction) {
  auto fn = [](const std::vector<Array>& in) {
    return std::vector<Array>{sum(tanh(in[0] * in[1] + 0.5f) * exp(-in[0]))};
  };
  auto cf = compile(fn);
  Array a = random::normal({6, 3}), b = random::normal({3});
  auto g1 = value_and_grad(fn, {0, 1})({a, b});
  auto g2 = value_and_grad(cf, {0, 1})({a, b});
  for (int i = 0; i < 2; ++i)
    expect_close(g2.second[i].to_vector<double>(), g1.second[i].to_vector<double>(), 1e-6, 1e-7,
                 "grad " + std::to_string(i));
}

TEST(Compile, ErrorsAreClear) {
  auto f = compile([](const std::vector<Array>& in) {
    (void)in[0].item<float>();  // data-dependent: cannot be traced
    return in;
  });
  expect_error<InvalidArgument>([&] { f({Array(1.0f)}); }, "[eval] array has neither data");
  expect_error<InvalidArgument>([] { compile_stats([](const std::vector<Array>& x) { return x; }); },
                                "[compile] compile_stats needs a function returned by compile()");
}
