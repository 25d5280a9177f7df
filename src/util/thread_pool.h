// A fixed pool of worker threads for CPU kernels. Workers sleep on a condition variable (never
// spin), so an idle pool costs nothing and never competes with OpenBLAS or a second process.
#pragma once

#include <cstdint>
#include <functional>

namespace ingot {

/// Runs fn(begin, end) over [0, n) split into at most num_threads() chunks of at least `grain`
/// items; the caller's thread takes one chunk. Nested calls run serially. Exceptions thrown by
/// fn are rethrown in the caller (the first one wins).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

/// Threads the pool uses (INGOT_NUM_THREADS or physical cores).
int pool_threads();

}  // namespace ingot
