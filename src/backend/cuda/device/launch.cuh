// Programmatic dependent launch (PDL, sm_90+): a kernel launched with launch_pdl may be
// scheduled while the previous kernel on its stream is still running, so its launch latency
// hides behind that kernel's tail instead of adding to every step of a chain of small kernels
// (a decode step is ~150-400 of them). The contract that keeps this correct: every kernel
// launched through launch_pdl calls pdl_prologue() before it touches global memory. It waits
// there until the previous grid has finished and its writes are visible, then lets the next
// kernel start launching. A kernel that does not follow the contract must use <<<>>>.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "backend/cuda/device/layout.h"

namespace ingot::cu {

/// Lets `kernel` take `bytes` of dynamic shared memory (the opt-in above the default 48 KB).
template <typename K>
void allow_dynamic_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    INGOT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
}

/// Wait for the grids this one depends on (a no-op when launched without PDL, or before sm_90),
/// then allow the next PDL kernel on the stream to begin launching.
__device__ __forceinline__ void pdl_prologue() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

/// Queues `bytes` (a multiple of 16, at a 16-byte aligned address) of global memory into L2
/// (sm_90+; a no-op before). A hint only: it changes no values, so it may be issued before
/// pdl_prologue() for data the previous kernel does not write (weights), overlapping their
/// read from HBM with that kernel's tail.
__device__ __forceinline__ void prefetch_l2(const void* p, int64_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const char* c = static_cast<const char*>(p);
  for (int64_t done = 0; done < bytes;) {
    const int64_t n = bytes - done < (int64_t{1} << 20) ? bytes - done : (int64_t{1} << 20);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(c + done),
                 "r"(static_cast<unsigned>(n))
                 : "memory");
    done += n;
  }
#endif
}

/// Launches `kernel` like <<<grid, block, smem, s>>>(args...), with programmatic stream
/// serialization when pdl_enabled(). `kernel` must begin with pdl_prologue().
template <typename... P, typename... A>
void launch_pdl(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                A&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  // The launch error (if any) stays the last error too, where check_launch finds it.
  (void)cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
}

}  // namespace ingot::cu
