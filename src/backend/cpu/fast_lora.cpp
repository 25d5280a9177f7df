// CPU kernels of LoraBranch and LoraBranchGrad (fast::lora_branch): the operands widened to
// float32 once, the five skinny products through the BLAS (cblas_sgemm, as the composition's
// products run), the output rounded once. nn runs the composition on the CPU unless
// INGOT_FUSED_LORA=1.
#include <cblas.h>

#include <algorithm>
#include <utility>
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

/// c [m, n] (row-major) = alpha * op(a) op(b) + beta * c through the BLAS (a and b row-major with
/// leading dimensions lda and ldb, transposed when ta / tb); nothing to multiply when a
/// dimension is 0 (beta 0 leaves c's zeros).
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c) {
  if (m == 0 || n == 0 || k == 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(n));
}

/// The [cols, r] factor f (element (c, j) at f[c * cs + j * js]) as a BLAS operand: the flag
/// to transpose and the leading dimension when it is a row-major [r, cols] or [cols, r] matrix
/// as stored; else packed into `packed` as [cols, r].
const float* factor(const std::vector<float>& f, int64_t cols, int64_t r, int64_t cs, int64_t js,
                    std::vector<float>& packed, bool& trans, int64_t& ld) {
  if (cs == 1 && js >= std::max<int64_t>(cols, 1)) {  // [r, cols]
    trans = true;
    ld = js;
    return f.data();
  }
  if (js == 1 && cs >= std::max<int64_t>(r, 1)) {  // [cols, r]
    trans = false;
    ld = cs;
    return f.data();
  }
  packed.resize(static_cast<size_t>(cols * r));
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t j = 0; j < r; ++j)
      packed[static_cast<size_t>(c * r + j)] = f[static_cast<size_t>(c * cs + j * js)];
  trans = false;
  ld = r;
  return packed.data();
}

/// out[m, j] = alpha * sum_c v[m, c] * p[c * ps + j * js] for m < rows, j < r.
std::vector<float> project_rows(const std::vector<float>& v, int64_t rows, int64_t cols,
                                const std::vector<float>& p, int64_t ps, int64_t js, int64_t r,
                                float alpha) {
  std::vector<float> out(static_cast<size_t>(rows * r)), packed;
  bool trans = false;
  int64_t ld = 0;
  const float* f = factor(p, cols, r, ps, js, packed, trans, ld);
  // [rows, cols] x [cols, r]: f as stored ([cols, r]) or transposed ([r, cols]).
  gemm(false, trans, rows, r, cols, alpha, v.data(), cols, f, ld, 0.0f, out.data());
  return out;
}

/// out[m, c] = base[m, c] + alpha * sum_j w[m * r + j] * q[j * qj + c * qn], written over base
/// (empty for 0).
std::vector<float> expand_rows(std::vector<float> base, const std::vector<float>& w, int64_t rows,
                               int64_t cols, const std::vector<float>& q, int64_t qj, int64_t qn,
                               int64_t r, float alpha) {
  const bool has_base = !base.empty();
  std::vector<float> out =
      has_base ? std::move(base) : std::vector<float>(static_cast<size_t>(rows * cols));
  std::vector<float> packed;
  bool trans = false;
  int64_t ld = 0;
  const float* f = factor(q, cols, r, qn, qj, packed, trans, ld);
  // [rows, r] x [r, cols]: the factor's [cols, r] form transposed, or its [r, cols] form.
  gemm(false, !trans, rows, cols, r, alpha, w.data(), r, f, ld, has_base ? 1.0f : 0.0f, out.data());
  return out;
}

/// alpha * sum over m of w[m * r + j] * v[m, c], at [j, c] or (transposed) [c, j].
std::vector<float> colsum(const std::vector<float>& v, const std::vector<float>& w, int64_t rows,
                          int64_t cols, int64_t r, float alpha, bool transposed) {
  std::vector<float> out(static_cast<size_t>(r * cols));
  if (transposed)
    gemm(true, false, cols, r, rows, alpha, v.data(), cols, w.data(), r, 0.0f, out.data());
  else
    gemm(true, false, r, cols, rows, alpha, w.data(), r, v.data(), cols, 0.0f, out.data());
  return out;
}

}  // namespace

void LoraBranch::eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const Array &y_in = inputs[0], &x_in = inputs[1], &a_in = inputs[2], &b_in = inputs[3];
  const int64_t n = y_in.shape(-1), k = x_in.shape(-1), r = a_in.shape(0);
  const int64_t rows = k ? x_in.size() / k : (n ? y_in.size() / n : 0);
  std::vector<float> y = floats_of(y_in);
  const std::vector<float> x = floats_of(x_in);
  const std::vector<float> a = floats_of(a_in), b = floats_of(b_in);
  const std::vector<float> t = project_rows(x, rows, k, a, 1, k, r, 1.0f);  // x a^T
  store_floats(expand_rows(std::move(y), t, rows, n, b, 1, r, r, scale_),
               outputs[0]);  // y + s t b^T
  store_floats(t, outputs[1]);
}

void LoraBranchGrad::eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const Array &g_in = inputs[0], &x_in = inputs[1], &a_in = inputs[2], &b_in = inputs[3];
  const int64_t n = g_in.shape(-1), k = x_in.shape(-1), r = a_in.shape(0);
  const int64_t rows = n ? g_in.size() / n : (k ? x_in.size() / k : 0);
  const std::vector<float> g = floats_of(g_in), x = floats_of(x_in);
  const std::vector<float> a = floats_of(a_in), b = floats_of(b_in);
  const std::vector<float> t = inputs.size() > 4 ? floats_of(inputs[4])  // x a^T (kept)
                                                 : project_rows(x, rows, k, a, 1, k, r, 1.0f);
  const std::vector<float> dt = project_rows(g, rows, n, b, r, 1, r, scale_);  // s g b
  store_floats(expand_rows({}, dt, rows, k, a, k, 1, r, 1.0f), outputs[0]);    // dt a
  store_floats(colsum(x, dt, rows, k, r, 1.0f, false), outputs[1]);            // dt^T x
  store_floats(colsum(g, t, rows, n, r, scale_, true), outputs[2]);            // s g^T t
}

}  // namespace ingot
