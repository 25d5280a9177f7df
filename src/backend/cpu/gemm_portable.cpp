// Portable (plain C++) GEMV/conversion kernels and the run-time ISA dispatch.
#include <cpuid.h>
#include <string>

#include "backend/cpu/gemm_kernels.h"
#include "core/half.h"
#include "util/env.h"

namespace ingot::cpu {
namespace {

inline float load(const float* p) {
  return *p;
}
inline float load(const bfloat16_t* p) {
  return bits_f32(static_cast<uint32_t>(p->bits) << 16);
}
inline float load(const float16_t* p) {
  return float16_t::to_float(p->bits);
}

template <typename W>
void rows_portable(const void* wv, int64_t ld, const float* x, int64_t k, float* y, int64_t n) {
  const W* w = static_cast<const W*>(wv);
  for (int64_t j = 0; j < n; ++j) {
    const W* row = w + j * ld;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
      for (int u = 0; u < 8; ++u) acc[u] += load(row + i + u) * x[i + u];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < k; ++i) s += load(row + i) * x[i];
    y[j] = s;
  }
}

template <typename W>
void cols_portable(const void* wv, int64_t ld, const float* x, int64_t k, float* y, int64_t n) {
  const W* w = static_cast<const W*>(wv);
  for (int64_t j = 0; j < n; ++j) y[j] = 0.0f;
  for (int64_t i = 0; i < k; ++i) {
    const W* row = w + i * ld;
    const float xi = x[i];
    for (int64_t j = 0; j < n; ++j) y[j] += xi * load(row + j);
  }
}

void bf16_to_f32_portable(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bits_f32(static_cast<uint32_t>(src[i]) << 16);
}
void f16_to_f32_portable(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = float16_t::to_float(src[i]);
}

}  // namespace

const GemmKernels& kernels_portable() {
  static const GemmKernels k{
      {rows_portable<float>, rows_portable<bfloat16_t>, rows_portable<float16_t>},
      {cols_portable<float>, cols_portable<bfloat16_t>, cols_portable<float16_t>},
      bf16_to_f32_portable,
      f16_to_f32_portable,
      false};
  return k;
}

// F16C via cpuid leaf 1 (ECX bit 29): clang 14 rejects __builtin_cpu_supports with "f16c".
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c >> 29) & 1u;
}

Isa hardware_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") &&
        has_f16c())
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        has_f16c())
      return Isa::avx2;
    return Isa::portable;
  }();
  return isa;
}

Isa active_isa() {
  Isa hw = hardware_isa();
  auto cap = env::cpu_isa();
  if (!cap) return hw;
  Isa c = hw;
  if (*cap == "portable")
    c = Isa::portable;
  else if (*cap == "avx2")
    c = Isa::avx2;
  else if (*cap == "avx512")
    c = Isa::avx512;
  return static_cast<int>(c) < static_cast<int>(hw) ? c : hw;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    default:
      return "portable";
  }
}

const GemmKernels& active_kernels() {
  switch (active_isa()) {
    case Isa::avx512:
      return kernels_avx512();
    case Isa::avx2:
      return kernels_avx2();
    default:
      return kernels_portable();
  }
}

}  // namespace ingot::cpu
