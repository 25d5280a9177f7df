// What .cu files may include from the host side (no fmt, no core/array.h, which nvcc's front
// end does not parse): launch checks and the by-value Layout of a strided operand.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ingot::cu {

/// Throws DeviceError "[cuda] <call> failed: <error> (file:line)".
[[noreturn]] void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line);

/// Checks a CUDA runtime call; a failure throws DeviceError naming the call.
#define INGOT_CUDA_CHECK(call)                                              \
  do {                                                                      \
    cudaError_t ingot_err_ = (call);                                        \
    if (ingot_err_ != cudaSuccess)                                          \
      ::ingot::cu::throw_cuda_error(ingot_err_, #call, __FILE__, __LINE__); \
  } while (0)

/// Checks that the last kernel launch was accepted; `kernel` names it in the error.
void check_launch(const char* kernel);

/// Whether launch_pdl (device/launch.cuh) launches with programmatic dependent launch on the
/// current device: compute capability 9.0 or newer, and INGOT_CUDA_PDL is not 0.
bool pdl_enabled();

/// Most dimensions a kernel indexes directly (after collapsing contiguous axes).
inline constexpr int kMaxDims = 10;

/// Shape and strides (in elements) of one strided operand, passed to kernels by value.
struct Layout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
};

/// Blocks for `n` threads-worth of work with `threads` per block, capped for grid-stride loops.
inline unsigned grid_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > (int64_t(1) << 20)) b = int64_t(1) << 20;
  return static_cast<unsigned>(b);
}

/// Copies `n` elements of `elem_size` bytes laid out as `src_layout` from `src` to row-major
/// `dst` on stream s (both device pointers).
void launch_copy_strided(const void* src, Layout src_layout, void* dst, int64_t n, int elem_size,
                         cudaStream_t s);

}  // namespace ingot::cu
