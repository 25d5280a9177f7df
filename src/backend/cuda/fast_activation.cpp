// ActivationGrad on CUDA: x and g as contiguous element runs (other layouts copied first), out
// in g's buffer when it may take it, then one elementwise kernel (fast_activation.cu).
#include <optional>

#include "backend/cuda/fast_activation_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"

namespace ingot {

void ActivationGrad::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Dtype t = out.dtype();
  if (!is_floating(t)) raise("[activation_grad] unsupported dtype {}", dtype_name(t));
  const Array& x = inputs[0];
  const Array& g = inputs[1];
  const cudaStream_t s = cu::stream(stream());
  std::optional<cu::Scratch> x_copy, g_copy;
  auto contiguous = [&](const Array& v, std::optional<cu::Scratch>& copy) -> const void* {
    if (v.flags().row_contiguous || v.size() == 0) return v.raw_ptr();
    copy.emplace(v.device(), v.nbytes());
    cu::copy_to_row_major_device(v, copy->ptr(), s);
    return copy->ptr();
  };
  const void* xp = contiguous(x, x_copy);
  const void* gp = contiguous(g, g_copy);
  if (g.is_donatable() && g.dtype() == t && g.flags().row_contiguous)
    out.move_shared_buffer(g);
  else
    cu::alloc(out);
  cu::launch_activation_grad(t, act_, xp, gp, out.raw_ptr(), out.size(), s);
}

}  // namespace ingot
