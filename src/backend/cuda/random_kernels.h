// Launchers of the CUDA random kernels, declared for random.cpp without fmt or core/array.h so
// that nvcc reads them. Keys stay on the device: kernels read the two key words themselves.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/device/layout.h"
#include "core/dtype.h"

namespace ingot::cu {

/// Output of a random kernel: n row-major elements of `dtype` at out, drawn from the Threefry
/// word stream of the key {key[0], key[key_stride]} (a device uint32 array).
struct RandomOut {
  const uint32_t* key = nullptr;
  int64_t key_stride = 1;
  void* out = nullptr;
  Dtype dtype = Dtype::uint32;
  int64_t n = 0;
};

/// The key's first n words (uint32).
void launch_random_bits(const RandomOut& r, cudaStream_t s);

/// Uniform's parameters: [low, high) and the clamp [lo, hi] (values of the output dtype).
struct UniformRange {
  double low = 0, high = 1, lo = 0, hi = 1;
};
void launch_uniform(const RandomOut& r, const UniformRange& u, cudaStream_t s);
void launch_normal(const RandomOut& r, double loc, double scale, cudaStream_t s);
/// Integers in [low, high) of an integer dtype.
void launch_randint(const RandomOut& r, int64_t low, int64_t high, cudaStream_t s);
/// bool out: word / 2^32 < p, p read through p_layout (out's shape, broadcast strides).
void launch_bernoulli(const RandomOut& r, const void* p, Dtype p_type, const Layout& p_layout,
                      cudaStream_t s);
void launch_gumbel(const RandomOut& r, cudaStream_t s);

/// Gumbel-max over the middle axis of logits viewed as [outer, axis, inner] (row-major index
/// order; read through `layout`); out is uint32 [outer * inner].
struct CategoricalArgs {
  const void* logits = nullptr;
  Dtype dtype = Dtype::float32;
  Layout layout;
  bool contiguous = true;  // row-major: the layout is not needed
  int64_t outer = 1, axis = 1, inner = 1;
};
void launch_categorical(const RandomOut& r, const CategoricalArgs& c, cudaStream_t s);

}  // namespace ingot::cu
