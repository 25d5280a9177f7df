// CUDA evaluation of the creation primitives (Full, Arange, Linspace, Eye, Copy, Contiguous)
// with the CPU's semantics: Full may donate its input's buffer, Contiguous shares a row
// contiguous input, Copy always writes a fresh buffer.
#include <cmath>

#include "backend/cuda/creation_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/creation.h"
#include "core/primitives/elementwise.h"

namespace ingot {
namespace {

/// Row-contiguous copy of `in` (any layout) into `out`: the donated input buffer when allowed,
/// else bytes copied on the device (a dtype change, which the ops never build, converts).
void copy_into(const std::vector<Array>& inputs, Array& out, Stream st, bool donate) {
  const Array& in = inputs[0];
  if (in.dtype() != out.dtype()) {
    AsType(st, out.dtype()).eval_cuda(inputs, out);
    return;
  }
  cudaStream_t s = cu::stream(st);
  if (donate && in.is_donatable()) {
    out.move_shared_buffer(in);
    return;
  }
  cu::alloc(out);
  cu::copy_to_row_major_device(in, out.raw_ptr(), s);
}

}  // namespace

void Full::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  copy_into(inputs, out, stream(), true);
}

void Copy::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  copy_into(inputs, out, stream(), false);
}

void Contiguous::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  if (in.flags().row_contiguous && in.data_size() == in.size()) {
    out.copy_shared_buffer(in);
    return;
  }
  copy_into(inputs, out, stream(), false);
}

void Arange::eval_cuda(const std::vector<Array>&, Array& out) {
  cudaStream_t s = cu::stream(stream());
  cu::alloc(out);
  // Same split as the CPU: exact integer arithmetic when it can be, else double.
  const bool integral = std::floor(start_) == start_ && std::floor(step_) == step_ &&
                        std::fabs(start_) < 9.0e15 && std::fabs(step_) < 9.0e15;
  cu::RangeFill f{.n = out.size(), .start = start_, .step = step_};
  if (integral && !is_floating(out.dtype())) {
    f.integral = true;
    f.start_i = static_cast<int64_t>(start_);
    f.step_i = static_cast<int64_t>(step_);
  }
  cu::launch_range_fill(out.dtype(), out.raw_ptr(), f, s);
}

void Linspace::eval_cuda(const std::vector<Array>&, Array& out) {
  cudaStream_t s = cu::stream(stream());
  cu::alloc(out);
  const int64_t n = out.size();
  const double delta = n > 1 ? (stop_ - start_) / static_cast<double>(n - 1) : 0.0;
  cu::launch_range_fill(out.dtype(), out.raw_ptr(),
                        {.n = n,
                         .start = start_,
                         .step = delta,
                         .exact_index = n > 1 ? n - 1 : -1,
                         .exact_value = stop_},
                        s);
}

void Eye::eval_cuda(const std::vector<Array>&, Array& out) {
  cudaStream_t s = cu::stream(stream());
  cu::alloc(out);
  cu::launch_eye(out.dtype(), out.raw_ptr(),
                 {.rows = out.shape()[0], .cols = out.shape()[1], .k = k_}, s);
}

}  // namespace ingot
