// CPU kernels of AdamStep and SumSquares (fast::adam_step, fast::sum_squares). Each value is
// widened to float32, every operation rounds on its own (no contraction into an FMA: the
// separate ops of fast::ref::adam_step round each product and sum), and the new parameter
// rounds to its dtype as astype does.
#include <cmath>
#include <vector>

#include "backend/common/utils.h"
#include "backend/cpu/strided_copy.h"
#include "core/half.h"
#include "core/primitives/fast.h"
#include "util/thread_pool.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace ingot {

using namespace backend;

namespace {

/// x rounded to dtype t's precision (float32, bfloat16 or float16) and widened back.
float round_to(Dtype t, float x) {
  if (t == bfloat16) return static_cast<float>(bfloat16_t(x));
  if (t == float16) return static_cast<float>(float16_t(x));
  return x;
}

/// Writes float values into out (row-contiguous storage of out's dtype).
void store(const std::vector<float>& v, Array& out) {
  const int64_t n = out.size();
  if (out.dtype() == float32) {
    std::copy(v.begin(), v.end(), out.raw_ptr<float>());
  } else if (out.dtype() == bfloat16) {
    auto* o = out.raw_ptr<bfloat16_t>();
    for (int64_t i = 0; i < n; ++i) o[i] = bfloat16_t(v[static_cast<size_t>(i)]);
  } else {
    auto* o = out.raw_ptr<float16_t>();
    for (int64_t i = 0; i < n; ++i) o[i] = float16_t(v[static_cast<size_t>(i)]);
  }
}

}  // namespace

void AdamStep::eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const size_t n = static_cast<size_t>(n_);
  const float scale = has_scale_ ? floats_of(inputs.back())[0] : 1.0f;
  // One parameter per task: the tensors are independent.
  parallel_for(n_, 1, [&](int64_t begin, int64_t end) {
    for (auto i = static_cast<size_t>(begin); i < static_cast<size_t>(end); ++i) {
      const Array& g_in = inputs[n + i];
      std::vector<float> p = floats_of(inputs[i]), g = floats_of(g_in);
      std::vector<float> m = floats_of(inputs[2 * n + i]), v = floats_of(inputs[3 * n + i]);
      const Dtype gt = g_in.dtype();
      for (size_t j = 0; j < p.size(); ++j) {
        float gj = g[j];
        if (has_scale_) gj = round_to(gt, gj * scale);
        float pj = p[j];
        if (decoupled_) {
          pj = pj * decay_;
        } else if (weight_decay_ != 0.0f) {
          const float wp = weight_decay_ * pj;
          gj = gj + wp;
        }
        const float m1 = beta1_ * m[j], m2 = one_minus_beta1_ * gj;
        m[j] = m1 + m2;
        const float sq = gj * gj;
        const float v1 = beta2_ * v[j], v2 = one_minus_beta2_ * sq;
        v[j] = v1 + v2;
        const float num = m[j] / c1_;
        const float den = std::sqrt(v[j] / c2_) + eps_;
        const float step = lr_ * (num / den);
        p[j] = pj - step;
      }
      for (Array* o : {&outputs[i], &outputs[n + i], &outputs[2 * n + i]}) alloc_cpu(*o);
      store(p, outputs[i]);
      store(m, outputs[n + i]);
      store(v, outputs[2 * n + i]);
    }
  });
}

void SumSquares::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  // Each input's squares summed in float64 in order, the inputs' sums added in order, then
  // rounded to float32 once.
  std::vector<double> sums(inputs.size(), 0.0);
  parallel_for(static_cast<int64_t>(inputs.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      double s = 0.0;
      for (float x : floats_of(inputs[static_cast<size_t>(i)]))
        s += static_cast<double>(x) * static_cast<double>(x);
      sums[static_cast<size_t>(i)] = s;
    }
  });
  double total = 0.0;
  for (double s : sums) total += s;
  alloc_cpu(out);
  *out.raw_ptr<float>() = static_cast<float>(total);
}

}  // namespace ingot
