// eval_cuda of CrossEntropy and CrossEntropyGrad: plan the logits' rows over the last axis and
// launch the row kernels of cross_entropy.cu. Targets are never read on the host: an
// out-of-range one is recorded and raised at the next synchronisation (as indexing does).
#include "backend/cuda/cross_entropy_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/reduce.h"

namespace ingot {

namespace {

cu::CeRows ce_rows(const Array& x, const Array& targets, const Array* g, Device d) {
  cu::CeRows r;
  r.targets = targets.raw_ptr();
  r.targets64 = targets.dtype() == int64;
  r.targets_layout = cu::collapsed_layout(targets.shape(), targets.strides(), targets.ndim());
  if (g) {
    r.g = g->raw_ptr();
    r.g_layout = cu::collapsed_layout(g->shape(), g->strides(), g->ndim());
  }
  r.site = cu::fault_site(d, cu::kCrossEntropy, x.ndim() - 1);
  return r;
}

void check_targets(const Array& targets, const char* op) {
  if (targets.dtype() != int32 && targets.dtype() != int64)
    raise("[{}] targets must be int32 or int64 here, got {}", op, dtype_name(targets.dtype()));
}

}  // namespace

void CrossEntropy::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& x = inputs[0];
  check_targets(inputs[1], "cross_entropy");
  cu::alloc(out);
  if (out.size() == 0) return;
  const cu::RowPlan p = cu::plan_rows(x.shape(), x.strides(), {x.ndim() - 1}, false);
  cu::launch_cross_entropy(false, x.raw_ptr(), x.dtype(), p,
                           ce_rows(x, inputs[1], nullptr, out.device()), out.raw_ptr(), out.dtype(),
                           cu::stream(stream()));
}

void CrossEntropyGrad::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& x = inputs[0];
  check_targets(inputs[1], "cross_entropy");
  const Dtype gt = x.dtype() == float64 ? float64 : float32;
  if (inputs[2].dtype() != gt)
    raise("[cross_entropy] the loss cotangent must be {}, got {}", dtype_name(gt),
          dtype_name(inputs[2].dtype()));
  if (out.size() == 0) return cu::alloc(out);
  const cu::RowPlan p = cu::plan_rows(x.shape(), x.strides(), {x.ndim() - 1}, true);
  // Each element is read before its output position is written, by the same thread, after the
  // row's (max, sum) were merged: a donated logits buffer is overwritten safely (as Softmax).
  const void* xp = x.raw_ptr();
  if (x.is_donatable() && x.dtype() == out.dtype())
    out.move_shared_buffer(x);
  else
    cu::alloc(out);
  cu::launch_cross_entropy(true, xp, x.dtype(), p, ce_rows(x, inputs[1], &inputs[2], out.device()),
                           out.raw_ptr(), out.dtype(), cu::stream(stream()));
}

}  // namespace ingot
