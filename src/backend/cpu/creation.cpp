// CPU evaluation of the creation primitives (Full, Arange, Linspace, Eye, Copy, Contiguous).
#include <cmath>
#include <cstring>

#include "backend/common/utils.h"
#include "backend/cpu/elementwise_kernels.h"
#include "backend/cpu/elementwise_ops.h"
#include "core/primitives/creation.h"

namespace ingot {
namespace {

void copy_into(const std::vector<Array>& inputs, Array& out, bool donate) {
  cpu::ew_eval(cpu::ew_kernel(EwOp::AsType, inputs[0].dtype(), out.dtype()), inputs, out, donate);
}

/// Writes f(i) (a double) converted to the output dtype for every element.
template <typename F>
void fill_from_double(Array& out, F&& f) {
  backend::alloc_cpu(out);
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = out.raw_ptr<T>();
    for (int64_t i = 0; i < out.size(); ++i) o[i] = cpu::convert<T>(f(i));
  });
}

}  // namespace

void Full::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  copy_into(inputs, out, true);
}

void Copy::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  copy_into(inputs, out, false);
}

void Contiguous::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  if (in.flags().row_contiguous && in.data_size() == in.size()) {
    out.copy_shared_buffer(in);
    return;
  }
  copy_into(inputs, out, false);
}

void Arange::eval_cpu(const std::vector<Array>&, Array& out) {
  const bool integral = std::floor(start_) == start_ && std::floor(step_) == step_ &&
                        std::fabs(start_) < 9.0e15 && std::fabs(step_) < 9.0e15;
  if (integral && !is_floating(out.dtype())) {
    // Exact integer arithmetic; wraps modulo 2^bits in narrow dtypes.
    const int64_t s0 = static_cast<int64_t>(start_), st = static_cast<int64_t>(step_);
    backend::alloc_cpu(out);
    dispatch_dtype(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      T* o = out.raw_ptr<T>();
      for (int64_t i = 0; i < out.size(); ++i)
        o[i] = cpu::convert<T>(static_cast<int64_t>(
            static_cast<uint64_t>(s0) + static_cast<uint64_t>(i) * static_cast<uint64_t>(st)));
    });
    return;
  }
  fill_from_double(out, [&](int64_t i) { return start_ + static_cast<double>(i) * step_; });
}

void Linspace::eval_cpu(const std::vector<Array>&, Array& out) {
  const int64_t n = out.size();
  const double delta = n > 1 ? (stop_ - start_) / static_cast<double>(n - 1) : 0.0;
  fill_from_double(out, [&](int64_t i) {
    return i == n - 1 && n > 1 ? stop_ : start_ + static_cast<double>(i) * delta;
  });
}

void Eye::eval_cpu(const std::vector<Array>&, Array& out) {
  backend::alloc_cpu(out);
  const int64_t rows = out.shape()[0], cols = out.shape()[1];
  std::memset(out.raw_ptr(), 0, out.nbytes());
  if (k_ >= cols || k_ <= -rows) return;
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = out.raw_ptr<T>();
    const T one = cpu::convert<T>(1);
    for (int64_t r = std::max<int64_t>(0, -k_); r < rows; ++r) {
      const int64_t c = r + k_;
      if (c >= cols) break;
      o[r * cols + c] = one;
    }
  });
}

}  // namespace ingot

namespace ingot {

// A GPU array copied to host memory (the GPU backend waits for its stream first).
void ToDevice::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  backend::alloc_cpu(out);
  read_row_major(inputs[0], out.raw_ptr());
}

}  // namespace ingot
