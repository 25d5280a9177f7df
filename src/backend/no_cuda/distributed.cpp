// eval_cuda stubs of the collectives for builds without CUDA (and so without NCCL).
#include "core/primitives/distributed.h"
#include "util/error.h"

namespace ingot {

void AllSum::eval_cuda(const std::vector<Array>&, Array&) {
  raise<Unsupported>("[all_sum] ingot was built without CUDA, so without NCCL: run on the CPU");
}

void AllGather::eval_cuda(const std::vector<Array>&, Array&) {
  raise<Unsupported>("[all_gather] ingot was built without CUDA, so without NCCL: run on the CPU");
}

}  // namespace ingot
