// ActivationGrad on CUDA: x and g as contiguous element runs (other layouts copied first), out
// in g's buffer when it may take it, then one elementwise kernel (fast_activation.cu).
#include <memory>
#include <vector>

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
  std::vector<std::unique_ptr<cu::Scratch>> keep;
  const void* xp = cu::row_major_ptr(x, s, keep);
  const void* gp = cu::row_major_ptr(g, s, keep);
  // g's buffer when it is free (Array::is_donatable: row-contiguous, held only here).
  if (g.is_donatable() && g.dtype() == t)
    out.move_shared_buffer(g);
  else
    cu::alloc(out);
  cu::launch_activation_grad(t, act_, xp, gp, out.raw_ptr(), out.size(), s);
}

}  // namespace ingot
