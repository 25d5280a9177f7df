// Environment knobs, read in one place (DESIGN.md §1: util/ env knobs).
#pragma once

#include <optional>
#include <string>

namespace ingot::env {

/// Raw value of an environment variable, if set and non-empty.
std::optional<std::string> get(const char* name);
/// Integer value of an environment variable, or `fallback` when unset or unparsable.
long get_int(const char* name, long fallback);

/// INGOT_NUM_THREADS, default: physical cores.
int num_threads();
/// INGOT_DEVICE ("cpu", "cuda", "cuda:N"), if set.
std::optional<std::string> device();
/// INGOT_CPU_ISA: cap the CPU kernels at "portable", "avx2" or "avx512" (for tests/benchmarks);
/// "avx512vnni" also opts in to the int8-activation quantized kernels (VNNI where the CPU has
/// it, AVX2 otherwise; docs/checkpoints.md).
std::optional<std::string> cpu_isa();

}  // namespace ingot::env
