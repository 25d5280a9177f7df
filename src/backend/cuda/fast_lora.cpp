// LoraBranch / LoraBranchGrad on CUDA: x, y and the cotangent read in place where their rows
// have unit column stride (a column block of a stacked projection included), the factors
// row-major float32, then the kernels of fast_lora.cu.
#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "backend/cuda/fast_lora_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast_lora.h"

namespace ingot {
namespace {

using Keep = std::vector<std::unique_ptr<cu::Scratch>>;

/// a's rows (all axes but the last merged) with their stride; a row-major copy when the
/// leading axes do not merge or the last axis is strided.
cu::LoraRows rows_of(const Array& a, cudaStream_t s, Keep& keep) {
  const int64_t cols = a.shape(-1);
  if (cols <= 1 || a.strides().back() == 1) {
    const cu::Layout l = cu::row_layout(a);
    if (l.ndim == 0) return {a.raw_ptr(), cols, a.dtype()};
    if (l.ndim == 1) return {a.raw_ptr(), l.strides[0], a.dtype()};
  }
  return {cu::row_major_ptr(a, s, keep), cols, a.dtype()};
}

const float* floats_of(const Array& a, cudaStream_t s, Keep& keep) {
  return static_cast<const float*>(cu::row_major_ptr(a, s, keep));
}

}  // namespace

void LoraBranch::eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const Array &y = inputs[0], &x = inputs[1], &a = inputs[2], &b = inputs[3];
  Array &out = outputs[0], &t = outputs[1];
  cu::alloc(out);
  cu::alloc(t);
  if (out.size() == 0 && t.size() == 0) return;
  const cudaStream_t s = cu::stream(stream());
  const int64_t n = y.shape(-1), k = x.shape(-1);
  const int64_t rows = k ? x.size() / k : (n ? y.size() / n : 0);
  const int r = static_cast<int>(a.shape(0));
  Keep keep;
  const cu::LoraRows yv = rows_of(y, s, keep), xv = rows_of(x, s, keep);
  const float *af = floats_of(a, s, keep), *bf = floats_of(b, s, keep);
  cu::Scratch part(out.device(),
                   static_cast<size_t>(std::max<int64_t>(cu::lora_project_scratch(rows, k, r), 1)) *
                       sizeof(float));
  // t = x a^T, kept as the second output for the backward.
  cu::launch_lora_project(xv, rows, k, af, 1, k, r, 1.0f, part.as<float>(), t.raw_ptr<float>(), s);
  if (out.size() > 0)
    cu::launch_lora_expand(yv, t.raw_ptr<float>(), rows, n, bf, 1, r, r, scale_, out.raw_ptr(),
                           out.dtype(), s);
}

void LoraBranchGrad::eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const Array &g = inputs[0], &x = inputs[1], &a = inputs[2], &b = inputs[3];
  for (Array& o : outputs) cu::alloc(o);
  const cudaStream_t s = cu::stream(stream());
  const int64_t n = g.shape(-1), k = x.shape(-1);
  const int64_t rows = n ? g.size() / n : (k ? x.size() / k : 0);
  const int r = static_cast<int>(a.shape(0));
  Keep keep;
  const cu::LoraRows gv = rows_of(g, s, keep), xv = rows_of(x, s, keep);
  const float *af = floats_of(a, s, keep), *bf = floats_of(b, s, keep);
  const int64_t need = std::max(
      {cu::lora_project_scratch(rows, k, r), cu::lora_project_scratch(rows, n, r),
       cu::lora_colsum_scratch(rows, k, r), cu::lora_colsum_scratch(rows, n, r), int64_t{1}});
  const Device dev = outputs[0].device();
  cu::Scratch part(dev, static_cast<size_t>(need) * sizeof(float));
  cu::Scratch dt(dev, static_cast<size_t>(std::max<int64_t>(rows * r, 1)) * sizeof(float));
  float* pf = part.as<float>();
  // t = x a^T: the forward's second output when given (the backward then does not read x to
  // recompute it), else recomputed.
  const float* tf = nullptr;
  std::optional<cu::Scratch> t;
  if (inputs.size() > 4) {
    tf = floats_of(inputs[4], s, keep);
  } else {
    t.emplace(dev, static_cast<size_t>(std::max<int64_t>(rows * r, 1)) * sizeof(float));
    cu::launch_lora_project(xv, rows, k, af, 1, k, r, 1.0f, pf, t->as<float>(), s);  // x a^T
    tf = t->as<float>();
  }
  cu::launch_lora_project(gv, rows, n, bf, r, 1, r, scale_, pf, dt.as<float>(), s);  // s g b
  cu::launch_lora_expand({}, dt.as<float>(), rows, k, af, k, 1, r, 1.0f, outputs[0].raw_ptr(),
                         outputs[0].dtype(), s);  // dx = dt a
  cu::launch_lora_colsum(xv, dt.as<float>(), rows, k, r, 1.0f, false, pf,
                         outputs[1].raw_ptr<float>(), s);  // da = dt^T x
  cu::launch_lora_colsum(gv, tf, rows, n, r, scale_, true, pf, outputs[2].raw_ptr<float>(),
                         s);  // db = s g^T t
}

}  // namespace ingot
