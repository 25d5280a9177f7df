// The LoRA project and colsum kernels (backend/cuda/fast_lora.cu: out = v p and out = w^T v,
// v [M, C] bf16, p [C, r] and w [M, r] float32) timed on training shapes: the SIMT kernels
// against the tensor-core ones (INGOT_LORA_PROJECT_MMA=1, INGOT_LORA_COLSUM_MMA=1) on the same
// inputs, with their largest difference relative to the largest output. Time is the median of
// 20 launches (the kernel and its split sums) after 3 warm-ups; GB/s counts v's bytes. Run on a
// GPU machine: build/bench/ingot_bench_lora_project
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "backend/cuda/fast_lora_kernels.h"
#include "cuda_check.h"

using namespace ingot;

int main() {
  struct Shape {
    int64_t rows, cols;
    int r;
    bool ranks_contiguous;  // p = b [C, r] (g b) rather than a^T (a [r, C]: x a^T)
  };
  const Shape shapes[] = {{4096, 2048, 16, false},
                          {4096, 8192, 16, false},
                          {4096, 512, 16, true},
                          {4096, 8192, 16, true},
                          {4096, 2048, 8, false}};
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  std::printf(
      "| v (bf16) | r | p | SIMT us | GB/s | mma us | GB/s | SIMT / mma | max rel diff |\n"
      "|---|---|---|---|---|---|---|---|---|\n");
  for (const Shape& sh : shapes) {
    std::mt19937 g(5);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<__nv_bfloat16> hv(size_t(sh.rows) * sh.cols);
    for (auto& x : hv) x = __float2bfloat16(nd(g));
    std::vector<float> hp(size_t(sh.cols) * sh.r);
    for (auto& x : hp) x = 0.02f * nd(g);
    void *v, *p, *scratch, *out[2];
    CK(cudaMalloc(&v, hv.size() * 2));
    CK(cudaMalloc(&p, hp.size() * 4));
    CK(cudaMemcpy(v, hv.data(), hv.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(p, hp.data(), hp.size() * 4, cudaMemcpyHostToDevice));
    const int64_t scr = std::max<int64_t>(cu::lora_project_scratch(sh.rows, sh.cols, sh.r), 1);
    CK(cudaMalloc(&scratch, scr * 4));
    for (auto& o : out) CK(cudaMalloc(&o, size_t(sh.rows) * sh.r * 4));
    const cu::LoraRows rows{v, sh.cols, Dtype::bfloat16};
    const int64_t ps = sh.ranks_contiguous ? sh.r : 1, js = sh.ranks_contiguous ? 1 : sh.cols;
    double us[2];
    for (int path = 0; path < 2; ++path) {
      setenv("INGOT_LORA_PROJECT_MMA", path ? "1" : "0", 1);
      auto launch = [&] {
        cu::launch_lora_project(rows, sh.rows, sh.cols, static_cast<const float*>(p), ps, js, sh.r,
                                1.0f, static_cast<float*>(scratch), static_cast<float*>(out[path]),
                                s);
      };
      us[path] = 1000.0 * median_ms(launch, s, 20);
    }
    std::vector<float> a(size_t(sh.rows) * sh.r), b(a.size());
    CK(cudaMemcpy(a.data(), out[0], a.size() * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b.data(), out[1], b.size() * 4, cudaMemcpyDeviceToHost));
    double worst = 0, scale = 0;
    for (size_t i = 0; i < a.size(); ++i) scale = std::max(scale, double(std::fabs(a[i])));
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
    const double bytes = double(sh.rows) * sh.cols * 2;
    std::printf("| %lld x %lld | %d | %s | %.1f | %.0f | %.1f | %.0f | %.2fx | %.2g |\n",
                static_cast<long long>(sh.rows), static_cast<long long>(sh.cols), sh.r,
                sh.ranks_contiguous ? "b [C, r]" : "a^T", us[0], bytes / us[0] / 1e3, us[1],
                bytes / us[1] / 1e3, us[0] / us[1], scale > 0 ? worst / scale : 0.0);
    CK(cudaFree(v));
    CK(cudaFree(p));
    CK(cudaFree(scratch));
    for (auto& o : out) CK(cudaFree(o));
  }
  std::printf(
      "\n| colsum v (bf16) | r | SIMT us | GB/s | mma us | GB/s | SIMT / mma | max rel diff |\n"
      "|---|---|---|---|---|---|---|---|\n");
  const Shape sums[] = {{4096, 2048, 16, false},
                        {4096, 8192, 16, false},
                        {4096, 512, 16, false},
                        {4096, 2048, 8, false}};
  for (const Shape& sh : sums) {
    std::mt19937 g(6);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<__nv_bfloat16> hv(size_t(sh.rows) * sh.cols);
    for (auto& x : hv) x = __float2bfloat16(nd(g));
    std::vector<float> hw(size_t(sh.rows) * sh.r);
    for (auto& x : hw) x = 0.02f * nd(g);
    void *v, *w, *scratch, *out[2];
    CK(cudaMalloc(&v, hv.size() * 2));
    CK(cudaMalloc(&w, hw.size() * 4));
    CK(cudaMemcpy(v, hv.data(), hv.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(w, hw.data(), hw.size() * 4, cudaMemcpyHostToDevice));
    const int64_t scr = std::max<int64_t>(cu::lora_colsum_scratch(sh.rows, sh.cols, sh.r), 1);
    CK(cudaMalloc(&scratch, scr * 4));
    for (auto& o : out) CK(cudaMalloc(&o, size_t(sh.cols) * sh.r * 4));
    const cu::LoraRows rows{v, sh.cols, Dtype::bfloat16};
    double us[2];
    for (int path = 0; path < 2; ++path) {
      setenv("INGOT_LORA_COLSUM_MMA", path ? "1" : "0", 1);
      auto launch = [&] {
        cu::launch_lora_colsum(rows, static_cast<const float*>(w), sh.rows, sh.cols, sh.r, 1.0f,
                               false, static_cast<float*>(scratch), static_cast<float*>(out[path]),
                               s);
      };
      us[path] = 1000.0 * median_ms(launch, s, 20);
    }
    std::vector<float> a(size_t(sh.cols) * sh.r), b(a.size());
    CK(cudaMemcpy(a.data(), out[0], a.size() * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b.data(), out[1], b.size() * 4, cudaMemcpyDeviceToHost));
    double worst = 0, scale = 0;
    for (size_t i = 0; i < a.size(); ++i) scale = std::max(scale, double(std::fabs(a[i])));
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
    const double bytes = double(sh.rows) * sh.cols * 2;
    std::printf("| %lld x %lld | %d | %.1f | %.0f | %.1f | %.0f | %.2fx | %.2g |\n",
                static_cast<long long>(sh.rows), static_cast<long long>(sh.cols), sh.r, us[0],
                bytes / us[0] / 1e3, us[1], bytes / us[1] / 1e3, us[0] / us[1],
                scale > 0 ? worst / scale : 0.0);
    CK(cudaFree(v));
    CK(cudaFree(w));
    CK(cudaFree(scratch));
    for (auto& o : out) CK(cudaFree(o));
  }
  CK(cudaStreamDestroy(s));
  return 0;
}
