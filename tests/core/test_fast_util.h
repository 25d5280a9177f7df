// Helpers of the fast-op tests: VJP checks against central finite differences in float64.
#pragma once

#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "core/primitive.h"
#include "test_util.h"

namespace ingot::test {

/// Caps the CPU kernels' instruction set (INGOT_CPU_ISA) for the scope of a test.
class ScopedIsa {
 public:
  explicit ScopedIsa(const char* isa) {
    if (const char* old = std::getenv("INGOT_CPU_ISA")) old_ = old;
    setenv("INGOT_CPU_ISA", isa, 1);
  }
  ~ScopedIsa() {
    if (old_.empty())
      unsetenv("INGOT_CPU_ISA");
    else
      setenv("INGOT_CPU_ISA", old_.c_str(), 1);
  }
  ScopedIsa(const ScopedIsa&) = delete;
  ScopedIsa& operator=(const ScopedIsa&) = delete;

 private:
  std::string old_;
};

// Central finite differences of sum(f(inputs) * g) w.r.t. input `which` (float64).
inline std::vector<double> finite_diff(const std::function<Array(std::vector<Array>)>& f,
                                       std::vector<std::vector<double>> vals,
                                       const std::vector<Shape>& shapes,
                                       const std::vector<double>& g, size_t which) {
  const double h = 1e-6;
  std::vector<double> grad(vals[which].size());
  auto eval_at = [&] {
    std::vector<Array> in;
    for (size_t i = 0; i < vals.size(); ++i) in.emplace_back(vals[i], shapes[i], float64);
    auto y = values_of(f(in));
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += y[i] * g[i];
    return s;
  };
  for (size_t i = 0; i < grad.size(); ++i) {
    double x0 = vals[which][i];
    vals[which][i] = x0 + h;
    double up = eval_at();
    vals[which][i] = x0 - h;
    double dn = eval_at();
    vals[which][i] = x0;
    grad[i] = (up - dn) / (2 * h);
  }
  return grad;
}

// Checks the primitive's vjp for every input against finite differences.
inline void check_vjp(const std::function<Array(std::vector<Array>)>& f,
                      const std::vector<std::vector<double>>& vals,
                      const std::vector<Shape>& shapes, const std::string& what) {
  std::vector<Array> in;
  std::vector<int> argnums;
  for (size_t i = 0; i < vals.size(); ++i) {
    in.emplace_back(vals[i], shapes[i], float64);
    argnums.push_back(static_cast<int>(i));
  }
  Array y = f(in);
  auto g = random_values(y.size(), float64, 77);
  Array ga(g, y.shape(), float64);
  auto grads = y.primitive().vjp(y.inputs(), {ga}, argnums, {y});
  for (size_t i = 0; i < vals.size(); ++i)
    expect_close(values_of(grads[i]), finite_diff(f, vals, shapes, g, i), 1e-5, 1e-6,
                 what + " input " + std::to_string(i));
}

}  // namespace ingot::test
