// compile: a 10-op elementwise chain on 16M floats, fused vs not (bytes moved and time), and
// the cost of one transformer block's backward pass relative to its forward.
#include <benchmark/benchmark.h>

#include "core/ingot.h"

using namespace ingot;

namespace {

// Ten cheap ops, so the chain is bound by memory traffic rather than libm.
std::vector<Array> chain10(const std::vector<Array>& in) {
  Array t = in[0] * 1.5f;       // 1
  t = t + 0.25f;                // 2
  t = maximum(t, Array(-1.0f));  // 3
  t = t * in[0];                // 4
  t = t - 0.5f;                 // 5
  t = abs(t);                   // 6
  t = minimum(t, Array(3.0f));  // 7
  t = t * 0.5f;                 // 8
  t = t + in[0];                // 9
  return {square(t)};           // 10
}

constexpr int64_t kN = 16 << 20;

void BM_Chain10_Eager(benchmark::State& st) {
  Array x = random::uniform({kN});
  x.eval();
  for (auto _ : st) chain10({x})[0].eval();
  // Each op reads its inputs and writes its output (x is read again by ops 4 and 9).
  st.counters["bytes_per_elem"] = 4.0 * (10 * 2 + 2);
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(kN) * 4 * 22,
                                           benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Chain10_Eager)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Chain10_Compiled(benchmark::State& st) {
  Array x = random::uniform({kN});
  x.eval();
  auto f = compile(chain10);
  f({x})[0].eval();
  for (auto _ : st) f({x})[0].eval();
  st.counters["bytes_per_elem"] = 8.0;  // read x once, write the result once
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(kN) * 8,
                                           benchmark::Counter::kIsIterationInvariantRate);
  st.counters["fused_kernels"] = compile_stats(f).fused_kernels;
}
BENCHMARK(BM_Chain10_Compiled)->Unit(benchmark::kMillisecond)->UseRealTime();

// The memory floor of the fused pass: one elementwise op reading x and writing a new array.
void BM_Chain1_Eager(benchmark::State& st) {
  Array x = random::uniform({kN});
  x.eval();
  for (auto _ : st) (x * 1.5f).eval();
  st.counters["bytes_per_elem"] = 8.0;
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(kN) * 8,
                                           benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Chain1_Eager)->Unit(benchmark::kMillisecond)->UseRealTime();

// One pre-norm transformer block, E = 256, F = 688, 8 heads, L = 128, float32.
struct Block {
  Array wq, wk, wv, wo, wg, wu, wd, n1, n2;
  Block() {
    random::seed(1);
    auto w = [](int64_t o, int64_t i) { return random::normal({o, i}, float32, 0, 0.05); };
    wq = w(256, 256), wk = w(256, 256), wv = w(256, 256), wo = w(256, 256);
    wg = w(688, 256), wu = w(688, 256), wd = w(256, 688);
    n1 = ones({256}), n2 = ones({256});
    eval({wq, wk, wv, wo, wg, wu, wd, n1, n2});
  }
  static Array forward(const std::vector<Array>& p, const Array& x) {
    auto heads = [](const Array& t) { return transpose(reshape(t, {1, 128, 8, 32}), {0, 2, 1, 3}); };
    Array h = fast::rms_norm(x, p[7]);
    Array q = fast::rope(heads(matmul(h, transpose(p[0]))), 32);
    Array k = fast::rope(heads(matmul(h, transpose(p[1]))), 32);
    Array v = heads(matmul(h, transpose(p[2])));
    Array a = fast::scaled_dot_product_attention(q, k, v, {.scale = 0.17677f, .causal = true});
    a = reshape(transpose(a, {0, 2, 1, 3}), {1, 128, 256});
    Array y = x + matmul(a, transpose(p[3]));
    Array m = fast::rms_norm(y, p[8]);
    Array g = silu(matmul(m, transpose(p[4]))) * matmul(m, transpose(p[5]));
    return y + matmul(g, transpose(p[6]));
  }
  std::vector<Array> params() const { return {wq, wk, wv, wo, wg, wu, wd, n1, n2}; }
};

void BM_BlockForward(benchmark::State& st) {
  Block b;
  Array x = random::normal({1, 128, 256});
  x.eval();
  for (auto _ : st) sum(Block::forward(b.params(), x)).eval();
}
BENCHMARK(BM_BlockForward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_BlockForwardBackward(benchmark::State& st) {
  Block b;
  Array x = random::normal({1, 128, 256});
  x.eval();
  std::vector<int> argnums{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  auto vg = value_and_grad(
      [&](const std::vector<Array>& in) {
        std::vector<Array> p(in.begin(), in.begin() + 9);
        return std::vector<Array>{sum(Block::forward(p, in[9]))};
      },
      argnums);
  for (auto _ : st) {
    std::vector<Array> in = b.params();
    in.push_back(x);
    auto [v, g] = vg(in);
    g.push_back(v[0]);
    eval(g);
  }
}
BENCHMARK(BM_BlockForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

// Host cost per graph node: a chain of 1,000 ops on 16 floats (the kernels are trivial, so the
// time is building the nodes, the eval walk, allocation and dispatch), then the same chain
// under value_and_grad (forward, the VJP graph and its eval). A LoRA step on the GPU is ~6,000
// such nodes; this is the part of its time the host spends per node.
constexpr int kGraphOps = 1000;

Array tiny_chain(const Array& x) {
  Array t = x;
  for (int i = 0; i < kGraphOps / 4; ++i) t = exp(t * 0.5f) - 1.0f + x;
  return t;
}

void BM_GraphOverhead_Eval(benchmark::State& st) {
  Array x = random::uniform({16});
  x.eval();
  for (auto _ : st) tiny_chain(x).eval();
  st.counters["ns_per_node"] = benchmark::Counter(
      static_cast<double>(kGraphOps) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_GraphOverhead_Eval)->Unit(benchmark::kMicrosecond);

void BM_GraphOverhead_Grad(benchmark::State& st) {
  Array x = random::uniform({16});
  x.eval();
  auto vg = value_and_grad([](const std::vector<Array>& in) {
    return std::vector<Array>{sum(tiny_chain(in[0]))};
  });
  for (auto _ : st) {
    auto [v, g] = vg({x});
    eval({v[0], g[0]});
  }
  st.counters["fwd_ns_per_node"] = benchmark::Counter(
      static_cast<double>(kGraphOps) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_GraphOverhead_Grad)->Unit(benchmark::kMicrosecond);
