// The attention backward kernels (backend/cuda/fast_sdpa_bwd*.cu) timed on the training shapes
// of the published models (bf16, causal, batch 8 x 512): the mma.sync kernels (the default for
// unmasked D 64 / 128) against the wmma kernels (INGOT_SDPA_BWD_MMA=0) on the same inputs, with
// the largest difference of their outputs. Time is the median of 20 launches after 3 warm-ups;
// TFLOP/s counts FlashAttention's 2.5x the causal forward's 4 B H L S D / 2 FLOPs. Run on a GPU
// machine: build/bench/ingot_bench_sdpa_grad [shape] (one shape, once a path: for ncu).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/fast_sdpa_bwd_kernels.h"
#include "cuda_check.h"

using namespace ingot;

namespace {

struct Shape {
  const char* name;
  int B, H, Hkv, L, D, window;
};

struct Buf {
  void* p = nullptr;
  explicit Buf(size_t n) { CK(cudaMalloc(&p, n)); }
  ~Buf() { cudaFree(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

void fill(void* dst, size_t n, std::mt19937& g, float sd) {
  std::normal_distribution<float> nd(0.f, sd);
  std::vector<__nv_bfloat16> h(n);
  for (auto& x : h) x = __float2bfloat16(nd(g));
  CK(cudaMemcpy(dst, h.data(), n * 2, cudaMemcpyHostToDevice));
}

std::vector<float> read(const void* src, size_t n) {
  std::vector<__nv_bfloat16> h(n);
  CK(cudaMemcpy(h.data(), src, n * 2, cudaMemcpyDeviceToHost));
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = __bfloat162float(h[i]);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const char* only = argc > 1 ? argv[1] : nullptr;
  const Shape shapes[] = {
      {"llama-3.2-1b", 8, 32, 8, 512, 64, 0},
      {"qwen3-0.6b", 8, 16, 8, 512, 128, 0},
      {"gemma3-1b", 8, 4, 1, 512, 256, 512},
  };
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  std::printf(
      "| shape (bf16, causal, B x L) | mma ms | TFLOP/s | wmma ms | TFLOP/s | wmma / mma "
      "| max |mma - wmma| (dq, dk, dv) |\n|---|---|---|---|---|---|---|\n");
  for (const Shape& sh : shapes) {
    if (only && std::strcmp(only, sh.name) != 0) continue;
    const size_t nq = size_t(sh.B) * sh.H * sh.L * sh.D, nk = size_t(sh.B) * sh.Hkv * sh.L * sh.D;
    Buf q(nq * 2), k(nk * 2), v(nk * 2), o(nq * 2), go(nq * 2);
    Buf dq[2] = {Buf(nq * 2), Buf(nq * 2)}, dk[2] = {Buf(nk * 2), Buf(nk * 2)},
        dv[2] = {Buf(nk * 2), Buf(nk * 2)};
    Buf stats(size_t(2) * sh.B * sh.H * sh.L * sizeof(float));
    std::mt19937 g(11);
    fill(q.p, nq, g, 1.f);
    fill(k.p, nk, g, 1.f);
    fill(v.p, nk, g, 1.f);
    fill(o.p, nq, g, 0.5f);  // any out: delta = d_out . out enters both paths alike
    fill(go.p, nq, g, 1.f);
    cu::SdpaBwdArgs a;
    a.q = q.p, a.k = k.p, a.v = v.p, a.out = o.p, a.d_out = go.p;
    a.lse = static_cast<float*>(stats.p);
    a.delta = a.lse + size_t(sh.B) * sh.H * sh.L;
    a.dtype = Dtype::bfloat16;
    a.B = sh.B, a.H = sh.H, a.Hkv = sh.Hkv, a.L = sh.L, a.S = sh.L, a.D = sh.D;
    const int64_t hq[3] = {int64_t(sh.H) * sh.L * sh.D, int64_t(sh.L) * sh.D, sh.D};
    const int64_t hk[3] = {int64_t(sh.Hkv) * sh.L * sh.D, int64_t(sh.L) * sh.D, sh.D};
    for (int d = 0; d < 3; ++d)  // row-major
      a.q_st[d] = a.o_st[d] = a.g_st[d] = hq[d], a.k_st[d] = a.v_st[d] = hk[d];
    a.scale = 1.0f / std::sqrt(float(sh.D));
    a.causal = true;
    a.window = sh.window;
    double ms[2];
    for (int path = 0; path < 2; ++path) {  // 0: mma (default), 1: wmma
      setenv("INGOT_SDPA_BWD_MMA", path == 0 ? "1" : "0", 1);
      cu::SdpaBwdArgs x = a;
      x.dq = dq[path].p, x.dk = dk[path].p, x.dv = dv[path].p;
      if (only) {
        cu::launch_sdpa_bwd(x, s);
        CK(cudaStreamSynchronize(s));
        ms[path] = 0;
        continue;
      }
      ms[path] = median_ms([&] { cu::launch_sdpa_bwd(x, s); }, s, 20);
    }
    CK(cudaStreamSynchronize(s));
    float diff[3] = {0, 0, 0};
    const void* outs[3][2] = {{dq[0].p, dq[1].p}, {dk[0].p, dk[1].p}, {dv[0].p, dv[1].p}};
    for (int i = 0; i < 3; ++i) {
      const size_t n = i == 0 ? nq : nk;
      const std::vector<float> x = read(outs[i][0], n), y = read(outs[i][1], n);
      for (size_t e = 0; e < n; ++e) diff[i] = std::max(diff[i], std::fabs(x[e] - y[e]));
    }
    const double flop = 2.5 * 4.0 * sh.B * sh.H * double(sh.L) * sh.L * sh.D / 2;
    std::printf(
        "| %s %dx%d (H %d, Hkv %d, D %d) | %.3f | %.0f | %.3f | %.0f | %.2fx | %.3g, %.3g, "
        "%.3g |\n",
        sh.name, sh.B, sh.L, sh.H, sh.Hkv, sh.D, ms[0], ms[0] > 0 ? flop / ms[0] / 1e9 : 0.0, ms[1],
        ms[1] > 0 ? flop / ms[1] / 1e9 : 0.0, ms[0] > 0 ? ms[1] / ms[0] : 0.0, diff[0], diff[1],
        diff[2]);
  }
  CK(cudaStreamDestroy(s));
  return 0;
}
