// The int8-activation kernels of quantized_matmul (backend/cpu/quantized_gemv_int8.cpp; decode,
// and prefill where faster): each group of each row of x is rounded to int8 with its own step dx_g
// = max|x_g| / 127 (round to nearest: |x - dx_g * xq| <= dx_g / 2 per element), <q_g, xq_g> is
// formed exactly in int32 (AVX-512 VNNI vpdpbusd; AVX2 vpmaddubsw + vpmaddwd for 4-bit, vpmaddwd on
// widened bytes for 8-bit; plain integers on the portable kernel), and each group adds s_g * dx_g *
// <q_g, xq_g> in float32, while the bias term b_g * sum(x_g) uses the float32 sum of the
// unquantized x. The result therefore differs from the exact product by at most
//   sum_g |s_g| * dx_g / 2 * sum_t q_t   (plus float32 rounding)
// per output. The kernels are callable directly so tests can check every one of them.
#pragma once

#include <cstdint>

namespace ingot::cpu {

/// The int8 GEMV kernels (all compute the same integer sums).
enum class Int8Gemv : int { portable = 0, avx2 = 1, avx512vnni = 2 };

/// Element type of scales and biases.
enum class QScale : int { f32 = 0, bf16 = 1, f16 = 2 };

/// Whether this CPU can run `kern` (portable: always; avx2: AVX2+FMA+F16C; avx512vnni: the
/// AVX-512 level plus AVX512_VNNI).
bool int8_gemv_supported(Int8Gemv kern);

/// Whether the int8 kernels are switched on, and the one for the active level
/// (cpu::active_isa(), capped by INGOT_CPU_ISA): avx512vnni on the avx512 level of a CPU with
/// VNNI, avx2 on the avx2 and avx512 levels otherwise, portable on the portable level. On: as
/// set by set_int8_decode, else by default, unless INGOT_CPU_INT8=0 (float32 activations, MLX's
/// numerics; env::cpu_int8). quantized_matmul then runs `kern` only where it measured faster
/// than the float32 path of the level (int8_gemv_faster).
bool int8_gemv_active(Int8Gemv& kern);

/// Process-wide choice between the int8 kernels (true) and the float32 GEMV / GEMM of the active
/// level (false) for quantized_matmul, so tests and benchmarks can run both in one process; it
/// overrides INGOT_CPU_INT8, and reset_int8_decode() restores the default. Not meant to be changed
/// while quantized_matmul runs on other threads.
void set_int8_decode(bool on);
void reset_int8_decode();

/// set_int8_decode(on) for a scope, then reset_int8_decode() (tests, benchmarks).
struct ScopedInt8Decode {
  explicit ScopedInt8Decode(bool on) { set_int8_decode(on); }
  ~ScopedInt8Decode() { reset_int8_decode(); }
  ScopedInt8Decode(const ScopedInt8Decode&) = delete;
  ScopedInt8Decode& operator=(const ScopedInt8Decode&) = delete;
};

/// Whether quantized_matmul runs the int8 kernel `kern` (from int8_gemv_active) for m rows of x
/// and `bits`-bit weights: where it measured faster than the float32 path of the active level
/// (AMD EPYC Zen 5, 1 thread, Llama-3.2-1B shapes; the AVX2 kernel on the avx512 level standing
/// in for AVX-512 CPUs without VNNI), "decode" meaning m < 16 (the float32 GEMV; from 16 rows
/// the float32 GEMM):
///   avx512vnni: always (decode 2.3-5x, prefill 1.3-2.8x), except for prefill where the CPU
///     also has AVX512_BF16 and bf16_prefill_faster says the bf16 GEMM runs instead;
///   avx2 on the avx2 level: decode (4-bit 1.9-2.8x, 8-bit 1.3-1.7x) and 4-bit prefill
///     (1.1-1.5x; 8-bit prefill 0.76-0.99x stays float32);
///   avx2 on the avx512 level: decode only (4-bit 1.7-2.9x, 8-bit 1.1-1.3x; prefill 0.8-1.0x of
///     the AVX-512 GEMM);
///   portable: 8-bit decode only (10-18x: its integer loop vectorises with SSE2, the float32
///     GEMV's ordered sums do not; 4-bit decode 0.96-0.99x and prefill, against sgemm, stay
///     float32, so INGOT_CPU_ISA=portable keeps the float32 reference for those).
bool int8_gemv_faster(Int8Gemv kern, int64_t m, int bits);

/// Whether quantized_matmul's prefill runs the bf16 GEMM (backend/cpu/quantized.cpp) instead of
/// the int8 kernels, for m rows of x and `bits`-bit weights, when the int8 kernels are switched
/// on (int8_gemv_active; INGOT_CPU_INT8=0 keeps float32 everywhere): bf16_gemm_enabled()
/// (AVX512_BF16, the ISA cap allows avx512, INGOT_CPU_BF16_GEMM not "0") and m >= 32 (8-bit) or
/// m >= 48 (4-bit), where it measured faster than the VNNI kernel (AMD EPYC Zen 4, 1 thread,
/// Llama-3.2-1B shapes: 128 rows 1.1-1.4x; 32 rows 8-bit 1.05-1.3x, 4-bit 0.84-0.99x; 16 rows
/// 0.6-0.8x). x and the dequantized weights are rounded to bf16 (nearest even; w first to
/// float32 by one FMA) and multiplied with float32 sums, so each output differs from the
/// float64 product of bf16(x) and the dequantized weights w by at most
///   (2^-8 + 2^-23) * sum_t |bf16(x_t) * w_t|   (plus float32 rounding of the sums)
/// (a w below 2^-126 in magnitude becomes 0: vcvtne2ps2bf16 flushes it).
bool bf16_prefill_faster(int64_t m, int bits);

/// out [m, n] float32 = x [m, k] @ dequantize(w)^T by the int8 scheme above; w, scales and
/// biases in the MLX layout ([n, k * bits / 32] uint32, [n, k / group_size] of `st`). bits 4 or
/// 8, group_size 32, 64 or 128, k a multiple of group_size. Unsupported if the CPU cannot run
/// `kern`.
void quantized_gemv_int8(Int8Gemv kern, const float* x, int64_t m, int64_t k, const uint32_t* w,
                         const void* scales, const void* biases, QScale st, int64_t n,
                         int group_size, int bits, float* out);

}  // namespace ingot::cpu
