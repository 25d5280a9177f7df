// Helpers of the CUDA tests: skip cleanly without a GPU, move arrays to the GPU, and compare
// a CUDA result with the CPU backend's.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/ingot.h"

namespace ingot::test {

inline const Device kCuda{Device::Type::cuda, 0};

/// The CPU is these tests' default device, whatever the machine: references built from host
/// values or creation ops run on the CPU backend, and only arrays moved with on_cuda() (and what
/// is computed from them) run on the GPU.
inline const bool kCpuIsDefault = [] {
  set_default_device(cpu_device);
  return true;
}();

/// True when a CUDA device is usable (a CUDA build with a driver and a GPU).
inline bool have_cuda() {
  return gpu::device_count() > 0;
}

/// Skips the test with a message when no CUDA device is present (CI has none).
#define INGOT_REQUIRE_CUDA()                                                             \
  do {                                                                                   \
    if (!::ingot::test::have_cuda())                                                     \
      GTEST_SKIP() << "no CUDA device (no driver/GPU or a build without CUDA): skipped"; \
  } while (0)

/// A host array of N(mean, scale^2) values in dtype t (reproducible per seed).
inline Array normal_host(const Shape& shape, Dtype t, uint32_t seed, double scale = 1.0,
                         double mean = 0.0) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(mean, scale);
  std::vector<double> v(static_cast<size_t>(shape_size(shape)));
  for (auto& x : v) x = nd(g);
  return Array(v, shape, t);
}

/// `a` copied to cuda:0.
inline Array on_cuda(const Array& a) {
  return to_device(a, kCuda);
}

/// Largest |x - y| / (atol + rtol * |y|) over all elements (NaN matches NaN, inf matches
/// the same inf); <= 1 means every element is within tolerance.
inline double worst_ratio(const std::vector<double>& x, const std::vector<double>& y, double atol,
                          double rtol) {
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i])) {
      if (std::isnan(x[i]) != std::isnan(y[i])) return INFINITY;
      continue;
    }
    if (std::isinf(x[i]) || std::isinf(y[i])) {
      if (x[i] != y[i]) return INFINITY;
      continue;
    }
    worst = std::max(worst, std::fabs(x[i] - y[i]) / (atol + rtol * std::fabs(y[i])));
  }
  return worst;
}

/// Expects the CUDA array `got` to equal the CPU array `want` (same shape and dtype; values
/// within atol + rtol * |want|; exact when both tolerances are 0). `what` names the case.
inline void expect_close(const Array& got, const Array& want, double atol, double rtol,
                         const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  EXPECT_EQ(got.device(), kCuda) << what;
  auto g = got.to_vector<double>();
  auto w = want.to_vector<double>();
  ASSERT_EQ(g.size(), w.size()) << what;
  if (atol == 0 && rtol == 0) {
    for (size_t i = 0; i < g.size(); ++i) {
      if (std::isnan(g[i]) && std::isnan(w[i])) continue;
      ASSERT_EQ(g[i], w[i]) << what << " at flat index " << i;
    }
    return;
  }
  double r = worst_ratio(g, w, atol, rtol);
  EXPECT_LE(r, 1.0) << what << ": worst error ratio " << r;
}

/// Tolerance of a dtype for results that round once in that dtype (rtol) after float math.
inline double dtype_rtol(Dtype t) {
  switch (t) {
    case Dtype::bfloat16:
      return 1.0 / 128;
    case Dtype::float16:
      return 1.0 / 1024;
    case Dtype::float32:
      return 1e-5;
    default:
      return 0;
  }
}

}  // namespace ingot::test
