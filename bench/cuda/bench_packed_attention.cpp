// The packed attention kernels (backend/cuda/packed_attention.cu) timed on classify-shaped
// problems: random bf16 q|k|v rows of the published models' head layouts, 20 launches after 3
// warm-ups, the resident kernel (the default where P + the longest text fits in 128 keys)
// against the streaming one on the same inputs, with their largest output difference (zero on
// the 64-key problems, within a bf16 ulp elsewhere: a window shifts the tile grid, and a 16-row
// slab finds more tiles fully visible than a 64-row unit). Run on a GPU machine:
//   build/bench/ingot_bench_packed_attention [shape] [kernel]
// (one shape, and kernel 0 = streaming / 1 = the default, once each: for ncu, e.g.
//   ncu --set full -k regex:packed_attention ingot_bench_packed_attention "qwen3 512x64").
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/packed_attention_kernels.h"
#include "cuda_check.h"

using namespace ingot;

struct Shape {
  const char* name;
  int H, Hkv, D;
  bool norm, unit_offset;
  int window;
  int P;
  int N, lmin, lmax;
};

int main(int argc, char** argv) {
  const char* only = argc > 1 ? argv[1] : nullptr;  // run one shape (for ncu)
  const int only_kernel = argc > 2 ? std::atoi(argv[2]) : -1;
  std::vector<Shape> shapes = {
      {"qwen3 512x64", 16, 8, 128, true, false, 0, 0, 512, 64, 64},
      {"llama 512x64", 32, 8, 64, false, false, 0, 0, 512, 64, 64},
      {"gemma3 512x64", 4, 1, 256, true, true, 512, 0, 512, 64, 64},
      {"gemma3 P40+24", 4, 1, 256, true, true, 512, 40, 512, 24, 24},
      {"qwen3 mixed 8-64", 16, 8, 128, true, false, 0, 0, 512, 8, 64},
      {"qwen3 P40+1-88", 16, 8, 128, true, false, 0, 40, 512, 1, 88},
      {"gemma3 win16 1-64", 4, 1, 256, true, true, 16, 0, 300, 1, 64},
      {"llama P3 1-120", 32, 8, 64, false, false, 0, 3, 300, 1, 120},
  };
  int sm = 0;
  CK(cudaDeviceGetAttribute(&sm, cudaDevAttrMultiProcessorCount, 0));
  for (const Shape& sh : shapes) {
    if (only && std::strcmp(only, sh.name) != 0) continue;
    std::mt19937 g(7);
    std::uniform_int_distribution<int> ld(sh.lmin, sh.lmax);
    std::vector<int32_t> starts{0};
    int max_len = 0;
    for (int i = 0; i < sh.N; ++i) {
      int l = ld(g);
      max_len = std::max(max_len, l);
      starts.push_back(starts.back() + l);
    }
    const int64_t T = starts.back();
    const int64_t F = int64_t(sh.H + 2 * sh.Hkv) * sh.D;
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<__nv_bfloat16> qkv(T * F), pk(int64_t(sh.Hkv) * std::max(sh.P, 1) * sh.D),
        pv(pk.size()), qn(sh.D), kn(sh.D);
    for (auto& x : qkv) x = __float2bfloat16(nd(g));
    for (auto& x : pk) x = __float2bfloat16(nd(g));
    for (auto& x : pv) x = __float2bfloat16(nd(g));
    for (auto& x : qn) x = __float2bfloat16((sh.unit_offset ? 0.f : 1.f) + 0.1f * nd(g));
    for (auto& x : kn) x = __float2bfloat16((sh.unit_offset ? 0.f : 1.f) + 0.1f * nd(g));
    const int half = sh.D / 2;
    std::vector<float> cs(int64_t(max_len) * half), sn(cs.size());
    for (int p = 0; p < max_len; ++p)
      for (int i = 0; i < half; ++i) {
        const double f = std::pow(10000.0, -2.0 * i / sh.D);
        cs[p * half + i] = float(std::cos((sh.P + p) * f));
        sn[p * half + i] = float(std::sin((sh.P + p) * f));
      }
    auto up = [](const auto& v) {
      void* d = nullptr;
      CK(cudaMalloc(&d, std::max<size_t>(16, v.size() * sizeof(v[0]))));
      CK(cudaMemcpy(d, v.data(), v.size() * sizeof(v[0]), cudaMemcpyHostToDevice));
      return d;
    };
    cu::PackedAttentionArgs a;
    a.qkv = up(qkv);
    a.row_stride = F;
    a.starts = static_cast<const int32_t*>(up(starts));
    a.N = sh.N, a.H = sh.H, a.Hkv = sh.Hkv, a.D = sh.D;
    if (sh.norm) a.q_norm = up(qn), a.k_norm = up(kn);
    a.eps = 1e-6f;
    a.add_unit_offset = sh.unit_offset;
    a.weight_in_float32 = sh.unit_offset;
    a.cs = static_cast<const float*>(up(cs));
    a.sn = static_cast<const float*>(up(sn));
    a.P = sh.P;
    if (sh.P > 0) {
      a.prefix_k = up(pk), a.prefix_v = up(pv);
      a.pk_st[0] = a.pv_st[0] = int64_t(sh.P) * sh.D;
      a.pk_st[1] = a.pv_st[1] = sh.D;
    }
    a.scale = 1.0f / std::sqrt(float(sh.D));
    a.window = sh.window;
    a.max_len = max_len;
    const size_t obytes = size_t(T) * sh.H * sh.D * 2;
    void* outs[2];
    CK(cudaMalloc(&outs[0], obytes));
    CK(cudaMalloc(&outs[1], obytes));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float us[2] = {};
    for (int k = 0; k < 2; ++k) {
      if (only_kernel >= 0 && k != only_kernel) continue;
      a.kernel = k == 0 ? 1 : 0;  // k = 0: the streaming kernel, 1: the default (resident)

      a.out = outs[k];
      CK(cudaMemset(outs[k], 0, obytes));
      cu::launch_packed_attention(Dtype::bfloat16, a, sm, 0);
      CK(cudaDeviceSynchronize());
      if (only) continue;
      for (int w = 0; w < 3; ++w) cu::launch_packed_attention(Dtype::bfloat16, a, sm, 0);
      const int reps = 20;
      cudaEventRecord(e0);
      for (int w = 0; w < reps; ++w) cu::launch_packed_attention(Dtype::bfloat16, a, sm, 0);
      cudaEventRecord(e1);
      CK(cudaEventSynchronize(e1));
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      us[k] = ms * 1000 / reps;
    }
    if (only) continue;
    std::vector<__nv_bfloat16> o0(obytes / 2), o1(obytes / 2);
    CK(cudaMemcpy(o0.data(), outs[0], obytes, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o1.data(), outs[1], obytes, cudaMemcpyDeviceToHost));
    double md = 0, mx = 0;
    int64_t bad = 0, nan = 0;
    for (size_t i = 0; i < o0.size(); ++i) {
      const double x = __bfloat162float(o0[i]), y = __bfloat162float(o1[i]);
      if (!std::isfinite(x) || !std::isfinite(y)) ++nan;
      md = std::max(md, std::fabs(x - y));
      mx = std::max(mx, std::fabs(x));
      if (std::fabs(x - y) > 1.6e-2 * (1 + std::fabs(x))) ++bad;
    }
    const double mb = (double(T) * F * 2 + obytes) / 1e6;
    std::printf(
        "%-20s T=%6lld maxlen=%3d  streaming %8.1f us  resident %8.1f us  (%.2fx)  bytes %.0f MB "
        "-> %.0f GB/s | max|diff| %.3g (max|x| %.3g) bad %lld nonfinite %lld\n",
        sh.name, (long long)T, max_len, us[0], us[1], us[0] / us[1], mb, mb / us[1] * 1e3, md, mx,
        (long long)bad, (long long)nan);
    cudaFree(outs[0]);
    cudaFree(outs[1]);
  }
  return 0;
}
