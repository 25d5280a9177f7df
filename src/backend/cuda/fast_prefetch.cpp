// Prefetch on CUDA: x passed on; while a device graph records, the ranges go to a kernel on a
// branch of the graph (fast_prefetch.cu) that starts when x's producer has finished and that
// the recorded work after it does not wait for. Eager evaluation queues nothing: a hint that
// ran beside later work without a graph's join could outlive the arrays it names.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "backend/cuda/fast_prefetch_kernels.h"
#include "backend/cuda/graph.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"

namespace ingot {

void Prefetch::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  out.copy_shared_buffer(inputs[0]);
  const Device d = out.device();
  if (!cu::capturing(d)) return;
  cu::PrefetchList list;
  for (size_t i = 1; i < inputs.size(); ++i) {
    const Array& a = inputs[i];
    if (a.device() != d || !a.flags().row_contiguous) continue;
    const auto [offset, bytes] = ranges_[i - 1];
    const auto nb = static_cast<int64_t>(a.nbytes());
    // Whole 16-byte units inside [offset, offset + bytes) of the array's bytes.
    const auto base = reinterpret_cast<uintptr_t>(a.raw_ptr());
    const uintptr_t lo =
        (base + static_cast<uintptr_t>(std::min(offset, nb)) + 15) & ~uintptr_t{15};
    const uintptr_t hi =
        (base + static_cast<uintptr_t>(std::min(offset + bytes, nb))) & ~uintptr_t{15};
    if (hi <= lo) continue;
    const auto* p = reinterpret_cast<const char*>(lo);
    const auto n = static_cast<int64_t>(hi - lo);
    if (list.count > 0 && list.ptr[list.count - 1] + list.bytes[list.count - 1] == p) {
      list.bytes[list.count - 1] += n;  // adjacent (slices of one stacked weight)
    } else if (list.count < cu::PrefetchList::kMax) {
      list.ptr[list.count] = p;
      list.bytes[list.count] = n;
      ++list.count;
    }
  }
  if (list.count == 0) return;
  const int sms = cu::props(d.index).multiProcessorCount;
  // INGOT_DECODE_PREFETCH_CHAIN=1: in the main chain, a PDL link (measuring which costs less).
  static const bool chain = [] {
    const char* e = std::getenv("INGOT_DECODE_PREFETCH_CHAIN");
    return e && std::string(e) == "1";
  }();
  if (chain) {
    cu::launch_prefetch(list, sms, cu::stream(stream()), true);
    return;
  }
  cu::launch_prefetch(list, sms, cu::fork_branch(d, cu::stream(stream())), false);
}

}  // namespace ingot
