// What kernels need to know about a CUDA-graph capture in progress (see graph.cpp).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "core/array.h"

namespace ingot::cu {

/// True while this thread records a graph on device d's stream.
bool capturing(Device d);
/// During a capture: gives `out` a block outside the graph's pool, copies `bytes` of host
/// memory into it at once (not recorded) and keeps `out` alive with the graph.
void upload_during_capture(Array& out, const void* src, size_t bytes);
/// During a capture on d whose recording stream is s: a second stream of d whose next work
/// starts after what s has recorded so far, and that nothing recorded on s afterwards waits
/// for (a branch of the graph; the capture joins it back just before it ends). nullptr when
/// this thread is not recording on d.
cudaStream_t fork_branch(Device d, cudaStream_t s);

}  // namespace ingot::cu
