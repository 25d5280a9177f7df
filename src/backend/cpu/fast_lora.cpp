// CPU kernels of LoraBranch and LoraBranchGrad (fast::lora_branch): plain float32 loops, rows
// split over the pool. nn runs the composition on the CPU by default (its products use the
// BLAS); these kernels keep the primitive usable, and testable against it, on every device.
#include <algorithm>
#include <vector>

#include "backend/common/utils.h"
#include "backend/cpu/strided_copy.h"
#include "core/primitives/fast_lora.h"
#include "util/thread_pool.h"

namespace ingot {

using namespace backend;

namespace {

/// out (fresh row-major storage) = v converted to out's dtype.
void store_floats(const std::vector<float>& v, Array& out) {
  alloc_cpu(out);
  if (out.size() == 0) return;
  strided_copy(v.data(), float32, row_major_strides(out.shape()), out.raw_ptr(), out.dtype(),
               row_major_strides(out.shape()), out.shape());
}

/// out[m, j] = alpha * sum_c v[m, c] * p[c * ps + j * js] for m < rows, j < r (float32 sums in
/// order of c).
std::vector<float> project_rows(const std::vector<float>& v, int64_t rows, int64_t cols,
                                const std::vector<float>& p, int64_t ps, int64_t js, int64_t r,
                                float alpha) {
  std::vector<float> out(static_cast<size_t>(rows * r));
  parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<size_t>(r));
    for (int64_t m = begin; m < end; ++m) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      const float* vm = v.data() + m * cols;
      for (int64_t c = 0; c < cols; ++c)
        for (int64_t j = 0; j < r; ++j)
          acc[static_cast<size_t>(j)] += vm[c] * p[static_cast<size_t>(c * ps + j * js)];
      for (int64_t j = 0; j < r; ++j)
        out[static_cast<size_t>(m * r + j)] = alpha * acc[static_cast<size_t>(j)];
    }
  });
  return out;
}

/// out[m, c] = base[m, c] + alpha * sum_j w[m * r + j] * q[j * qj + c * qn] (base: null for 0).
std::vector<float> expand_rows(const std::vector<float>* base, const std::vector<float>& w,
                               int64_t rows, int64_t cols, const std::vector<float>& q, int64_t qj,
                               int64_t qn, int64_t r, float alpha) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m)
      for (int64_t c = 0; c < cols; ++c) {
        float s = 0.0f;
        for (int64_t j = 0; j < r; ++j)
          s += w[static_cast<size_t>(m * r + j)] * q[static_cast<size_t>(j * qj + c * qn)];
        const size_t o = static_cast<size_t>(m * cols + c);
        out[o] = base ? (*base)[o] + alpha * s : alpha * s;
      }
  });
  return out;
}

/// alpha * sum over m of w[m * r + j] * v[m, c], at [j, c] or (transposed) [c, j]; the sums in
/// order of m.
std::vector<float> colsum(const std::vector<float>& v, const std::vector<float>& w, int64_t rows,
                          int64_t cols, int64_t r, float alpha, bool transposed) {
  std::vector<float> out(static_cast<size_t>(r * cols));
  parallel_for(cols, 64, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      for (int64_t j = 0; j < r; ++j) {
        float s = 0.0f;
        for (int64_t m = 0; m < rows; ++m)
          s += w[static_cast<size_t>(m * r + j)] * v[static_cast<size_t>(m * cols + c)];
        out[static_cast<size_t>(transposed ? c * r + j : j * cols + c)] = alpha * s;
      }
  });
  return out;
}

}  // namespace

void LoraBranch::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array &y_in = inputs[0], &x_in = inputs[1], &a_in = inputs[2], &b_in = inputs[3];
  const int64_t n = y_in.shape(-1), k = x_in.shape(-1), r = a_in.shape(0);
  const int64_t rows = n ? y_in.size() / n : 0;
  const std::vector<float> y = floats_of(y_in), x = floats_of(x_in);
  const std::vector<float> a = floats_of(a_in), b = floats_of(b_in);
  const std::vector<float> t = project_rows(x, rows, k, a, 1, k, r, 1.0f);  // x a^T
  store_floats(expand_rows(&y, t, rows, n, b, 1, r, r, scale_), out);       // y + s t b^T
}

void LoraBranchGrad::eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const Array &g_in = inputs[0], &x_in = inputs[1], &a_in = inputs[2], &b_in = inputs[3];
  const int64_t n = g_in.shape(-1), k = x_in.shape(-1), r = a_in.shape(0);
  const int64_t rows = n ? g_in.size() / n : (k ? x_in.size() / k : 0);
  const std::vector<float> g = floats_of(g_in), x = floats_of(x_in);
  const std::vector<float> a = floats_of(a_in), b = floats_of(b_in);
  const std::vector<float> t = project_rows(x, rows, k, a, 1, k, r, 1.0f);        // x a^T
  const std::vector<float> dt = project_rows(g, rows, n, b, r, 1, r, scale_);     // s g b
  store_floats(expand_rows(nullptr, dt, rows, k, a, k, 1, r, 1.0f), outputs[0]);  // dt a
  store_floats(colsum(x, dt, rows, k, r, 1.0f, false), outputs[1]);               // dt^T x
  store_floats(colsum(g, t, rows, n, r, scale_, true), outputs[2]);               // s g^T t
}

}  // namespace ingot
