// RmsNorm, RmsNormGrad and LayerNorm on CUDA: validate, give out storage (x's buffer when
// donatable, as the CPU backend does), describe the rows and launch the kernels of fast_norm.cu.
#include <memory>
#include <optional>
#include <vector>

#include "backend/cuda/fast_norm_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"

namespace ingot {
namespace {

void check_dtype(Dtype t, const char* op) {
  if (!is_floating(t)) raise("[{}] unsupported dtype {}", op, dtype_name(t));
}

/// Row description of x (out filled in later).
cu::NormArgs norm_args(const Array& x, float eps) {
  cu::NormArgs a;
  a.x = x.raw_ptr();
  a.rows = cu::row_layout(x);
  a.sx = x.strides().back();
  a.E = x.shape(-1);
  a.n_rows = a.E ? x.size() / a.E : 0;
  a.eps = eps;
  return a;
}

void set_param(const Array& p, const void*& ptr, Dtype& dtype, int64_t& stride) {
  ptr = p.raw_ptr();
  dtype = p.dtype();
  stride = p.strides()[0];
}

/// Storage for out: x's buffer when x is donatable (the kernels read each element before
/// writing it from the same thread), else fresh memory.
void alloc_out(const Array& x, Array& out) {
  if (x.is_donatable() && x.dtype() == out.dtype())
    out.move_shared_buffer(x);
  else
    cu::alloc(out);
}

}  // namespace

void RmsNorm::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  check_dtype(out.dtype(), "rms_norm");
  const Array& x = inputs[0];
  cu::NormArgs a = norm_args(x, eps_);
  if (has_weight_) set_param(inputs[1], a.weight, a.weight_dtype, a.weight_stride);
  a.add_unit_offset = add_unit_offset_;
  a.weight_in_float32 = weight_in_float32_;
  const cudaStream_t s = cu::stream(stream());
  // A residual that is not row-contiguous and 16-byte aligned is copied first, so the kernel
  // choice (and with it the order of the row sums) depends on x alone: the result is always
  // rms_norm's followed by the add, bit for bit.
  std::optional<cu::Scratch> res_copy;
  if (has_residual_) {
    const Array& r = inputs.back();
    a.residual = r.raw_ptr();
    a.res_rows = cu::row_layout(r);
    a.sres = r.strides().back();
    if (!r.flags().row_contiguous || reinterpret_cast<uintptr_t>(r.raw_ptr()) % 16 != 0) {
      res_copy.emplace(r.device(), r.nbytes());
      cu::copy_to_row_major_device(r, res_copy->ptr(), s);
      a.residual = res_copy->ptr();
      a.res_rows = cu::collapsed_layout(r.shape(), row_major_strides(r.shape()), r.ndim() - 1);
      a.sres = 1;
    }
  }
  alloc_out(x, out);
  if (a.n_rows == 0) return;
  a.out = out.raw_ptr();
  cu::launch_rms_norm(out.dtype(), a, s);
}

// x and g are read as row-contiguous [rows, E]: other layouts are copied first. out takes g's
// buffer when it may (each element is read before the same thread writes it).
void RmsNormGrad::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  check_dtype(out.dtype(), "rms_norm_grad");
  const Array& x = inputs[0];
  const Array& g = inputs.back();
  const cudaStream_t s = cu::stream(stream());
  cu::NormGradArgs a;
  a.E = x.shape(-1);
  a.n_rows = a.E ? x.size() / a.E : 0;
  a.eps = eps_;
  a.add_unit_offset = add_unit_offset_;
  if (has_weight_) set_param(inputs[1], a.weight, a.weight_dtype, a.weight_stride);
  std::vector<std::unique_ptr<cu::Scratch>> keep;
  a.x = cu::row_major_ptr(x, s, keep);
  a.g = cu::row_major_ptr(g, s, keep);
  alloc_out(g, out);
  if (a.n_rows == 0) return;
  a.out = out.raw_ptr();
  cu::launch_rms_norm_grad(out.dtype(), a, s);
}

void LayerNorm::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  check_dtype(out.dtype(), "layer_norm");
  const Array& x = inputs[0];
  cu::NormArgs a = norm_args(x, eps_);
  size_t next = 1;
  if (has_weight_) set_param(inputs[next++], a.weight, a.weight_dtype, a.weight_stride);
  if (has_bias_) set_param(inputs[next++], a.bias, a.bias_dtype, a.bias_stride);
  const cudaStream_t s = cu::stream(stream());
  alloc_out(x, out);
  if (a.n_rows == 0) return;
  a.out = out.raw_ptr();
  cu::launch_layer_norm(out.dtype(), a, s);
}

}  // namespace ingot
