// Rope on CUDA: validate, give out storage (x's buffer when donatable, as the CPU backend
// does), compute the inverse frequencies on the host exactly as the CPU does and launch the
// kernel of fast_rope.cu. Offsets and custom frequencies are read on the device.
#include <cmath>

#include "backend/cuda/fast_rope_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"

namespace ingot {
namespace {}  // namespace

void Rope::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  if (!is_floating(out.dtype())) raise("[rope] unsupported dtype {}", dtype_name(out.dtype()));
  const Array& x = inputs[0];
  cu::RopeArgs a;
  a.x = x.raw_ptr();
  a.rows = cu::row_layout(x);
  a.sx = x.strides().back();
  a.D = x.shape(-1);
  a.L = x.shape(-2);
  a.n_rows = a.D ? x.size() / a.D : 0;
  a.dims = dims_;
  a.traditional = traditional_;
  a.base = base_;
  a.scale = scale_;
  a.offset = offset_;
  if (has_offsets_) {
    const Array& o = inputs[1];
    a.offsets = o.raw_ptr();
    a.offsets_dtype = o.dtype();
    a.offsets_stride = o.ndim() ? o.strides()[0] : 0;
    a.nb = o.size();
  }
  a.rows_per_b = a.nb > 1 ? a.n_rows / a.nb : a.n_rows;
  cu::RopeInvFreqs inv;
  const int half = dims_ / 2;
  if (has_freqs_) {
    const Array& f = inputs.back();
    a.freqs = f.raw_ptr();
    a.freqs_dtype = f.dtype();
    a.freqs_stride = f.strides()[0];
  } else if (half <= cu::kRopeMaxInvFreqs) {
    inv.n = half;
    for (int i = 0; i < half; ++i)  // the CPU backend's expression (powf), for bitwise parity
      inv.v[i] = 1.0f / std::pow(base_, static_cast<float>(2 * i) / static_cast<float>(dims_));
  }
  const cudaStream_t s = cu::stream(stream());
  // Each element is read before it is written, by the same thread: x's buffer can be reused.
  if (x.is_donatable() && x.dtype() == out.dtype())
    out.move_shared_buffer(x);
  else
    cu::alloc(out);
  if (a.n_rows == 0) return;
  a.out = out.raw_ptr();
  cu::launch_rope(out.dtype(), a, inv, s);
}

}  // namespace ingot
