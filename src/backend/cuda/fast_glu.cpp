// Glu and GluGrad on CUDA: the operands as rows of unit column stride, read in place (the column
// halves of a stacked gate|up product are rows 2I apart) or copied row-major when their axes do
// not allow it; Glu on the gated-rows kernel (matmul.cu, RmsNormGlu's), GluGrad on its own
// one-pass kernel (fast_glu.cu).
#include <memory>
#include <vector>

#include "backend/cuda/fast_glu_kernels.h"
#include "backend/cuda/matmul_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast_glu.h"

namespace ingot {
namespace {

using Keep = std::vector<std::unique_ptr<cu::Scratch>>;

struct Rows {
  const void* p;
  int64_t stride;  // elements between row starts
};

/// a (cols elements a row) as Rows: in place when its last axis has unit stride and its leading
/// axes merge into one stride, else a row-major copy kept alive by `keep`.
Rows rows_of(const Array& a, int64_t cols, cudaStream_t s, Keep& keep) {
  if (a.ndim() == 0) return {a.raw_ptr(), 1};
  if (cols <= 1 || a.strides().back() == 1) {
    const cu::Layout l = cu::row_layout(a);
    if (l.ndim == 0) return {a.raw_ptr(), cols};
    if (l.ndim == 1) return {a.raw_ptr(), l.strides[0]};
  }
  return {cu::row_major_ptr(a, s, keep), cols};
}

/// rows x cols of out, and the inputs as Rows (one flat row when all are contiguous).
struct Plan {
  std::vector<Rows> in;
  int64_t rows = 0, cols = 0;
};

Plan plan_of(const std::vector<Array>& inputs, const Array& out, cudaStream_t s, Keep& keep) {
  Plan p;
  p.cols = out.ndim() == 0 ? 1 : out.shape().back();
  p.rows = out.size() / p.cols;
  bool flat = true;
  for (const Array& a : inputs) {
    p.in.push_back(rows_of(a, p.cols, s, keep));
    flat = flat && p.in.back().stride == p.cols;
  }
  if (flat || p.rows == 1) {
    p.cols = out.size();
    p.rows = 1;
    for (Rows& r : p.in) r.stride = p.cols;
  }
  return p;
}

}  // namespace

void Glu::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Dtype t = out.dtype();
  if (!is_floating(t)) raise("[gated_activation] unsupported dtype {}", dtype_name(t));
  cu::alloc(out);
  if (out.size() == 0) return;
  const cudaStream_t s = cu::stream(stream());
  Keep keep;
  const Plan p = plan_of(inputs, out, s, keep);
  cu::launch_gated_rows(t, act_ + 1, p.in[0].p, p.in[0].stride, p.in[1].p, p.in[1].stride,
                        out.raw_ptr(), p.rows, p.cols, s);
}

void GluGrad::eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const Dtype t = outputs[0].dtype();
  if (!is_floating(t)) raise("[gated_activation] unsupported dtype {}", dtype_name(t));
  cu::alloc(outputs[0]);
  if (outputs[0].size() == 0) {
    cu::alloc(outputs[1]);
    return;
  }
  const cudaStream_t s = cu::stream(stream());
  Keep keep;
  const Plan p = plan_of(inputs, outputs[0], s, keep);  // before dh's buffer moves
  // du in dh's buffer when nothing else holds it (each output holds the inputs once).
  const Array& dh = inputs[2];
  if (dh.dtype() == t && dh.is_donatable(static_cast<long>(outputs.size())))
    outputs[1].move_shared_buffer(dh);
  else
    cu::alloc(outputs[1]);
  cu::launch_glu_grad(t, act_,
                      {.g = p.in[0].p,
                       .u = p.in[1].p,
                       .dh = p.in[2].p,
                       .sg = p.in[0].stride,
                       .su = p.in[1].stride,
                       .sd = p.in[2].stride,
                       .dg = outputs[0].raw_ptr(),
                       .du = outputs[1].raw_ptr(),
                       .rows = p.rows,
                       .k = p.cols},
                      s);
}

}  // namespace ingot
