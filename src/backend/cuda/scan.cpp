// eval_cuda of Scan (cumulative sum / product along one axis): plan the rows along the axis
// and launch the scan kernels of scan.cu.
#include <optional>

#include "backend/cuda/scan_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/reduce.h"

namespace ingot {

void Scan::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  cu::alloc(out);
  if (out.size() == 0) return;
  cudaStream_t s = cu::stream(stream());
  const cu::RowPlan p = cu::plan_rows(in.shape(), in.strides(), {axis_}, true);
  const int sms = cu::props(out.device().index).multiProcessorCount;
  const cu::ScanConfig cfg = cu::scan_config(p, sms);
  std::optional<cu::Scratch> scratch;
  if (cfg.scratch_bytes > 0) scratch.emplace(out.device(), cfg.scratch_bytes);
  cu::launch_scan(type_ == Type::prod, reverse_, inclusive_, in.raw_ptr(), in.dtype(), p,
                  out.raw_ptr(), out.dtype(), cfg, scratch ? scratch->ptr() : nullptr, s);
}

}  // namespace ingot
