// What kernels need to know about a CUDA-graph capture in progress (see graph.cpp).
#pragma once

#include <cstddef>

#include "core/array.h"

namespace ingot::cu {

/// True while this thread records a graph on device d's stream.
bool capturing(Device d);
/// During a capture: gives `out` a block outside the graph's pool, copies `bytes` of host
/// memory into it at once (not recorded) and keeps `out` alive with the graph.
void upload_during_capture(Array& out, const void* src, size_t bytes);

}  // namespace ingot::cu
