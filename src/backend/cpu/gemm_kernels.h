// SIMD kernels behind matmul for 16-bit and float32 weights (GEMV rows/columns, 16-bit to
// float32 conversion), one table per ISA, picked at run time by cpuid capped by INGOT_CPU_ISA.
#pragma once

#include <cstdint>

namespace ingot::cpu {

/// Instruction-set levels of the hand-written kernels, in increasing order.
enum class Isa : int { portable = 0, avx2 = 1, avx512 = 2 };

/// Best level this CPU supports (avx2 needs AVX2+FMA+F16C; avx512 needs F+BW+VL).
Isa hardware_isa();
/// hardware_isa() capped by INGOT_CPU_ISA ("portable", "avx2", "avx512"); read on each call so
/// tests can switch paths.
Isa active_isa();
/// "portable", "avx2", "avx512".
const char* isa_name(Isa isa);

/// Element type of a GEMV weight matrix.
enum class WKind : int { f32 = 0, bf16 = 1, f16 = 2 };

/// y[j] = sum_k x[k] * w[j * ld + k] for j in [0, n): weight rows are contiguous over k (the
/// [N, K] PyTorch Linear layout, i.e. x @ W^T).
using GemvRowsFn = void (*)(const void* w, int64_t ld, const float* x, int64_t k, float* y,
                            int64_t n);
/// y[j] = sum_k x[k] * w[k * ld + j] for j in [0, n): weight rows are contiguous over n
/// ([K, N] row-major).
using GemvColsFn = void (*)(const void* w, int64_t ld, const float* x, int64_t k, float* y,
                            int64_t n);
/// y[r * ldy + j] = sum_i x[r * k + i] * w[j * ld + i] for r < m (1..kBf16DotMaxRows) and
/// j < n: bf16 weight rows (bit patterns) times m bf16 rows of x, float32 accumulation
/// (vdpbf16ps: each product is exact, the sums are float32). The weight rows are read in one
/// sequential stream per pass, each pass serving up to 4 rows of x (so m > 4 re-reads w: hand
/// over blocks that fit in L2).
using GemvBf16DotFn = void (*)(const uint16_t* w, int64_t ld, const uint16_t* x, int64_t m,
                               int64_t k, float* y, int64_t ldy, int64_t n);
inline constexpr int64_t kBf16DotMaxRows = 8;
/// dst[i] = float(src[i]) for n contiguous 16-bit values.
using ToF32Fn = void (*)(const uint16_t* src, float* dst, int64_t n);

/// The kernels of one ISA level, indexed by WKind.
struct GemmKernels {
  GemvRowsFn rows[3];
  GemvColsFn cols[3];
  ToF32Fn bf16_to_f32;
  ToF32Fn f16_to_f32;
  /// True when rows[bf16] uses AVX512_BF16 dot products (x is then rounded to bf16, which is
  /// exact when x came from a bf16 array).
  bool bf16_dot = false;
  /// The AVX512_BF16 GEMV on bf16 x (null unless bf16_dot): matmul's bf16 decode path.
  GemvBf16DotFn rows_bf16_dot = nullptr;
};

/// Kernel tables; avx2()/avx512() must only be called when the CPU supports that level.
const GemmKernels& kernels_portable();
const GemmKernels& kernels_avx2();
const GemmKernels& kernels_avx512();
/// The table for active_isa().
const GemmKernels& active_kernels();

}  // namespace ingot::cpu
