// The derivatives of the GLU activations (silu, gelu, gelu_tanh) for ActivationGrad, shared by
// the CPU and CUDA kernels: the formulas of the activations' composed VJPs
// (core/primitives/elementwise.cpp), evaluated in one compute type A (float, or double for
// float64) instead of op by op in the input's dtype.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define INGOT_ACT_HD __host__ __device__ __forceinline__
#else
#define INGOT_ACT_HD inline
#endif

namespace ingot::actgrad {

template <typename A>
INGOT_ACT_HD A exp_(A x) {
#ifdef __CUDA_ARCH__
  return exp(x);
#else
  return std::exp(x);
#endif
}
template <typename A>
INGOT_ACT_HD A erf_(A x) {
#ifdef __CUDA_ARCH__
  return erf(x);
#else
  return std::erf(x);
#endif
}
template <typename A>
INGOT_ACT_HD A tanh_(A x) {
#ifdef __CUDA_ARCH__
  return tanh(x);
#else
  return std::tanh(x);
#endif
}

/// d act / dx at x; act 0 silu, 1 gelu (erf), 2 gelu_tanh (RmsNormGlu's coding).
template <typename A>
INGOT_ACT_HD A derivative(int act, A x) {
  if (act == 0) {  // s (1 + x (1 - s)), s = sigmoid(x)
    const A s = A(1) / (A(1) + exp_(-x));
    return s * (A(1) + x * (A(1) - s));
  }
  if (act == 1) {  // Phi(x) + x phi(x)
    const A cdf = A(0.5) * (A(1) + erf_(x * A(0.70710678118654752440)));
    const A pdf = A(0.39894228040143267794) * exp_(A(-0.5) * x * x);
    return cdf + x * pdf;
  }
  // 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 k x^2), t = tanh(c (x + k x^3))
  const A c = A(0.79788456080286535588), k = A(0.044715);
  const A x2 = x * x;
  const A t = tanh_(c * (x + k * x2 * x));
  return A(0.5) * (A(1) + t) + A(0.5) * x * ((A(1) - t * t) * (c * (A(1) + A(3) * k * x2)));
}

}  // namespace ingot::actgrad
