// Environment knobs, read in one place (DESIGN.md §1: util/ env knobs).
#pragma once

#include <optional>
#include <string>

namespace ingot::env {

/// Raw value of an environment variable, if set and non-empty.
std::optional<std::string> get(const char* name);
/// Integer value of an environment variable, or `fallback` when unset or unparsable.
long get_int(const char* name, long fallback);
/// A switch: "1" on, "0" off; unset, empty or any other value gives `fallback`. So a switch that
/// is on by default goes off only at "0" and an opt-in one comes on only at "1". Reads the
/// environment at every call (callers that read it once keep the result in a static).
bool flag(const char* name, bool fallback);

/// INGOT_NUM_THREADS, default: physical cores.
int num_threads();
/// INGOT_DEVICE ("cpu", "cuda", "cuda:N"), if set.
std::optional<std::string> device();
/// INGOT_CPU_ISA: cap the CPU kernels at "portable", "avx2" or "avx512" (for tests/benchmarks);
/// "avx512vnni" (from when it opted in to the int8-activation quantized kernels, now the
/// default) caps nothing.
std::optional<std::string> cpu_isa();
/// INGOT_CPU_INT8: whether quantized_matmul on the CPU runs the int8-activation kernels (x
/// rounded to int8 per group, as llama.cpp's q4_0 / q8_0 dot products do) where they measured
/// faster than the float32 path (AVX-512 VNNI; AVX2 decode and 4-bit prefill; 8-bit decode on
/// the portable level: cpu::int8_gemv_faster in backend/cpu/quantized_int8.h), and where the CPU
/// has AVX512_BF16 a bf16 GEMM for prefill (x and dequantized weights rounded to bf16,
/// cpu::bf16_prefill_faster). Default on; "0" selects float32 activations (MLX's numerics)
/// everywhere. Read at every call (docs/checkpoints.md).
bool cpu_int8();
/// INGOT_GGUF_NATIVE: whether Q8_0 / Q4_0 / Q4_K matrices of a GGUF file load as affine
/// quantized modules (8-/4-bit, group size 32) instead of being dequantized to the compute
/// dtype. Default on; "0" dequantizes (models/gguf_checkpoint.h).
bool gguf_native();

/// The multi-process group of this process (launched by `ingot launch` or by hand).
struct DistEnv {
  int rank = 0;                           ///< INGOT_RANK (default 0)
  int world_size = 1;                     ///< INGOT_WORLD_SIZE (default 1: no group)
  std::string master_addr = "127.0.0.1";  ///< INGOT_MASTER_ADDR: host of rank 0
  int master_port = 29500;                ///< INGOT_MASTER_PORT: where rank 0 listens
  double timeout_s = 300.0;               ///< INGOT_DIST_TIMEOUT: seconds before a wait fails
};
/// INGOT_RANK, INGOT_WORLD_SIZE, INGOT_MASTER_ADDR, INGOT_MASTER_PORT, INGOT_DIST_TIMEOUT.
DistEnv dist();

}  // namespace ingot::env
