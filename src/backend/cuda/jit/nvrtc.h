// Run-time compilation for compile's CUDA path: NVRTC turns generated source into a kernel,
// loaded with the driver API into the device's primary context (the runtime's) and cached for
// the process by key, so each fused program is compiled once per device.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

// Opaque CUDA handles (cuda.h: CUfunction = CUfunc_st*; cudaStream_t = CUstream_st*), so that
// this header needs no CUDA include.
struct CUfunc_st;
struct CUstream_st;

namespace ingot::cu {

/// Kernel `name` (an extern "C" __global__ function) of the source `make_source()` returns,
/// compiled for CUDA device `device` the first time `key` is seen on it. `key` must determine
/// the source. Thread-safe; a failed compilation throws DeviceError with NVRTC's log and is
/// retried by the next call.
CUfunc_st* jit_function(int device, const std::string& key,
                        const std::function<std::string()>& make_source, const char* name);

/// Launches `f` (from jit_function for `device`) as `grid` blocks of `block` threads on stream
/// `s`; `args` points at each kernel argument, as cuLaunchKernel's kernelParams. The launch
/// uses programmatic dependent launch where pdl_enabled(), so `f` must wait for the previous
/// kernel (griddepcontrol.wait) before it touches global memory.
void jit_launch(CUfunc_st* f, int device, unsigned grid, unsigned block, void** args,
                CUstream_st* s);

/// Number of kernels compiled and cached so far, over all devices (a cache hit leaves it
/// unchanged; nothing is evicted).
size_t jit_cache_size();

/// Device source with the element types (16-bit floats as bits), one functor per EwOp with the
/// CPU's semantics, AsType's conversion and strided offsets (jit/prelude.cpp); no headers.
const char* jit_ew_prelude();

}  // namespace ingot::cu
