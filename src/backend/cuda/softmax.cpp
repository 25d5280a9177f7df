// eval_cuda of Softmax (and log-softmax) and LogSumExp: plan rows over the reduced axes and
// launch the row kernels of softmax.cu.
#include <optional>

#include "backend/cuda/softmax_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/reduce.h"

namespace ingot {

namespace {

void run(cu::SoftmaxMode mode, const Array& in, const void* x, const cu::RowPlan& p, Array& out,
         Stream st) {
  cudaStream_t s = cu::stream(st);
  const int sms = cu::props(out.device().index).multiProcessorCount;
  const cu::SoftmaxConfig cfg = cu::softmax_config(p, in.dtype(), sms);
  std::optional<cu::Scratch> scratch;
  if (cfg.scratch_bytes > 0) scratch.emplace(out.device(), cfg.scratch_bytes);
  cu::launch_softmax(mode, x, in.dtype(), p, out.raw_ptr(), out.dtype(), cfg,
                     scratch ? scratch->ptr() : nullptr, s);
}

}  // namespace

void Softmax::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  if (out.size() == 0) return cu::alloc(out);
  const cu::RowPlan p = cu::plan_rows(in.shape(), in.strides(), axes_, true);
  // Every kernel reads an element before writing the output at the same position (and a row
  // only within its own block or thread), so a donated input is overwritten safely.
  const void* x = in.raw_ptr();
  if (in.is_donatable() && in.dtype() == out.dtype())
    out.move_shared_buffer(in);
  else
    cu::alloc(out);
  run(log_ ? cu::SoftmaxMode::log_softmax : cu::SoftmaxMode::softmax, in, x, p, out, stream());
}

void LogSumExp::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  cu::alloc(out);
  if (out.size() == 0) return;
  const cu::RowPlan p = cu::plan_rows(in.shape(), in.strides(), axes_, false);
  run(cu::SoftmaxMode::logsumexp, in, in.raw_ptr(), p, out, stream());
}

}  // namespace ingot
