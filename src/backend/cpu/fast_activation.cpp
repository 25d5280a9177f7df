// CPU kernel of ActivationGrad: x and g widened to the compute type, g * act'(x) (the formulas
// of backend/common/activation_grad.h), rounded once to the output's dtype.
#include <type_traits>
#include <vector>

#include "backend/common/activation_grad.h"
#include "backend/common/utils.h"
#include "backend/cpu/strided_copy.h"
#include "core/primitives/fast.h"
#include "util/thread_pool.h"

namespace ingot {

using namespace backend;

namespace {

template <typename A>
void activation_grad_impl(int act, const Array& x, const Array& g, Array& out) {
  constexpr Dtype at = std::is_same_v<A, double> ? Dtype::float64 : Dtype::float32;
  const int64_t n = x.size();
  alloc_cpu(out);
  if (n == 0) return;
  std::vector<A> xv(static_cast<size_t>(n)), gv(static_cast<size_t>(n));
  copy_array(x, xv.data(), at);
  copy_array(g, gv.data(), at);
  parallel_for(n, 16384, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) gv[i] *= actgrad::derivative<A>(act, xv[i]);
  });
  const Strides rm = row_major_strides(out.shape());
  strided_copy(gv.data(), at, rm, out.raw_ptr(), out.dtype(), rm, out.shape());
}

}  // namespace

void ActivationGrad::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Dtype t = out.dtype();
  if (!is_floating(t)) raise("[activation_grad] unsupported dtype {}", dtype_name(t));
  if (t == Dtype::float64)
    activation_grad_impl<double>(act_, inputs[0], inputs[1], out);
  else
    activation_grad_impl<float>(act_, inputs[0], inputs[1], out);
}

}  // namespace ingot
