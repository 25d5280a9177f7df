// eval_cuda of the copying shape primitives (slice_update, concatenate, pad): geometry on the
// host, copies on the primitive's stream. slice_update donates its input buffer like the CPU.
#include <string>

#include "backend/common/utils.h"
#include "backend/cuda/shape_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/shape.h"

namespace ingot {

namespace {

/// The copy of `shape` elements from (src, src_strides) to (dst, dst_strides), axes merged
/// where both sides are contiguous.
cu::StridedCopy make_copy(const void* src, Dtype src_type, const Strides& src_strides, void* dst,
                          Dtype dst_type, const Strides& dst_strides, const Shape& shape,
                          const char* op) {
  auto [sh, st] = backend::collapse_contiguous_dims(shape, {src_strides, dst_strides});
  if (sh.size() > static_cast<size_t>(cu::kMaxDims))
    raise<Unsupported>("[{}] cuda: {} non-mergeable axes (shape {}) exceed the limit of {}", op,
                       sh.size(), shape_str(shape), cu::kMaxDims);
  cu::StridedCopy c;
  c.src = src;
  c.src_type = src_type;
  c.dst = dst;
  c.dst_type = dst_type;
  c.ndim = static_cast<int>(sh.size());
  for (int d = 0; d < c.ndim; ++d) {
    c.shape[d] = sh[d];
    c.src_strides[d] = st[0][d];
    c.dst_strides[d] = st[1][d];
  }
  return c;
}

char* byte_ptr(const Array& a, int64_t elem_offset) {
  return static_cast<char*>(a.raw_ptr()) + elem_offset * static_cast<int64_t>(a.itemsize());
}

}  // namespace

void SliceUpdate::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& a = inputs[0];
  const Array& u = inputs[1];
  cudaStream_t s = cu::stream(stream());
  cu::copy_or_donate(a, out, s);
  const SliceSpec sp = normalize_slice(a.shape(), start_, stop_, strides_);
  if (shape_size(sp.count) == 0) return;
  const Strides& ost = out.strides();
  int64_t off = 0;
  Strides dst(ost.size());
  for (size_t d = 0; d < ost.size(); ++d) {
    off += sp.start[d] * ost[d];
    dst[d] = sp.step[d] * ost[d];
  }
  cu::launch_strided_copy(make_copy(u.raw_ptr(), u.dtype(), backend::broadcast_strides(u, sp.count),
                                    byte_ptr(out, off), out.dtype(), dst, sp.count, "slice_update"),
                          s);
}

void Concatenate::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  cudaStream_t s = cu::stream(stream());
  cu::alloc(out);
  if (out.size() == 0) return;
  int64_t off = 0;
  for (const Array& x : inputs) {
    if (x.size() > 0)
      cu::launch_strided_copy(
          make_copy(x.raw_ptr(), x.dtype(), x.strides(), byte_ptr(out, off * out.strides()[axis_]),
                    out.dtype(), out.strides(), x.shape(), "concatenate"),
          s);
    off += x.shape()[axis_];
  }
}

void Pad::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& a = inputs[0];
  const Array& v = inputs[1];
  cudaStream_t s = cu::stream(stream());
  cu::alloc(out);
  if (out.size() == 0) return;
  if (out.ndim() > cu::kMaxDims)
    raise<Unsupported>("[pad] cuda: {} axes (shape {}) exceed the limit of {}", out.ndim(),
                       shape_str(out.shape()), cu::kMaxDims);
  if (a.dtype() != out.dtype() || v.dtype() != out.dtype())
    raise("[pad] cuda: a ({}), value ({}) and output ({}) need one dtype", dtype_name(a.dtype()),
          dtype_name(v.dtype()), dtype_name(out.dtype()));
  cu::PadCopy p;
  p.a = a.raw_ptr();
  p.value = v.raw_ptr();
  p.out = out.raw_ptr();
  p.elem_size = static_cast<int>(out.itemsize());
  p.ndim = out.ndim();
  for (int d = 0; d < p.ndim; ++d) {
    p.out_shape[d] = out.shape()[d];
    p.low[d] = low_[d];
    p.in_shape[d] = a.shape()[d];
    p.in_strides[d] = a.strides()[d];
  }
  cu::launch_pad(p, s);
}

}  // namespace ingot
