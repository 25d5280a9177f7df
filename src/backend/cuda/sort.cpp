// eval_cuda of Sort, ArgSort, Partition, ArgPartition and TopK: describe the rows along the
// axis and launch sort.cu (partitions are full sorts, which satisfy the partition contract).
#include <cstdint>
#include <optional>

#include "backend/cuda/reduce_kernels.h"
#include "backend/cuda/sort_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/reduce.h"

namespace ingot {

namespace {

void run_sort(const Array& in, Array& out, int axis, cu::SortJob job, int64_t m, Stream st) {
  cu::alloc(out);
  if (out.size() == 0) return;
  if (in.shape()[axis] > static_cast<int64_t>(UINT32_MAX))
    raise("[sort] axis {} of shape {} is too long for uint32 indices", axis, shape_str(in.shape()));
  cudaStream_t s = cu::stream(st);
  const cu::RowPlan rp = cu::plan_rows(in.shape(), in.strides(), {axis}, false);
  cu::SortPlan p;
  p.kept = rp.kept[0];
  p.rows = rp.n_out;
  p.n = in.shape()[axis];
  p.sx = rp.red[0].strides[0];
  p.m = m;
  for (int d = axis + 1; d < in.ndim(); ++d) p.inner *= in.shape()[d];
  const size_t bytes = cu::sort_scratch_bytes(job, in.dtype(), p);
  std::optional<cu::Scratch> scratch;
  if (bytes > 0) scratch.emplace(out.device(), bytes);
  cu::launch_sort(job, in.raw_ptr(), in.dtype(), p, out.raw_ptr(),
                  scratch ? scratch->ptr() : nullptr, bytes, s);
}

}  // namespace

void Sort::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  run_sort(in, out, axis_, cu::SortJob::sort, in.shape()[axis_], stream());
}
void ArgSort::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  run_sort(in, out, axis_, cu::SortJob::argsort, in.shape()[axis_], stream());
}
void Partition::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  run_sort(in, out, axis_, cu::SortJob::sort, in.shape()[axis_], stream());
}
void ArgPartition::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  run_sort(in, out, axis_, cu::SortJob::argsort, in.shape()[axis_], stream());
}
void TopK::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  run_sort(inputs[0], out, axis_, indices_ ? cu::SortJob::topk_indices : cu::SortJob::topk, k_,
           stream());
}

}  // namespace ingot
