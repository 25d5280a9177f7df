// A fixed pool of worker threads for CPU kernels. Workers sleep on a condition variable, so an
// idle pool costs nothing and never competes with OpenBLAS or a second process; after a parallel
// region a worker first polls for the next one for a bounded time (INGOT_POOL_SPIN_US, default
// 100 us, 0: never; only when each thread has a CPU of its own; a pause loop, then the
// condition variable) because waking a sleeping worker takes 20-25 us on a VM and decode runs
// ~100 regions per token with short serial work between them (Qwen3-0.6B 4-bit, 2 threads,
// Zen 4 VM: 38 -> 44-52 tok/s). No unbounded spinning.
// Workers are kept off the CPU the calling thread runs on (INGOT_POOL_AFFINITY=0 turns this
// off): some VM schedulers wake a thread on the waker's vCPU while another one idles, and the
// two threads then take turns on one core.
#pragma once

#include <cstdint>
#include <functional>

namespace ingot {

/// Runs fn(begin, end) over [0, n) split into at most num_threads() chunks of at least `grain`
/// items; the caller's thread takes one chunk. Nested calls run serially. Exceptions thrown by
/// fn are rethrown in the caller (the first one wins).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

/// Runs fn(begin, end) over [0, n) cut into ceil(n / chunk) near-equal chunks of at most
/// `chunk` items, handed out in order to whichever thread asks next: the caller starts on the
/// first chunk at once and the workers take the following ones as they wake. A worker that
/// wakes late (an idle vCPU of a VM can take tens of microseconds) then does less of the work
/// instead of holding up the caller, which parallel_for's one chunk per thread makes it do; the
/// price is one fn call per chunk, so chunks should be a few microseconds of work or more. For
/// loops whose result does not depend on where they are cut (e.g. independent output columns).
/// With one thread, one chunk, or inside another parallel region it calls fn(0, n) once.
/// Exceptions as parallel_for.
void parallel_for_dynamic(int64_t n, int64_t chunk,
                          const std::function<void(int64_t, int64_t)>& fn);

/// Threads the pool uses: set_pool_threads' value, else INGOT_NUM_THREADS, else physical cores.
int pool_threads();

/// Sets the thread count of later parallel regions for the whole process (n <= 0 restores the
/// default), growing the pool when n exceeds its workers; for tests and benchmarks that compare
/// thread counts in one process. Not to be called while a parallel region runs. OpenBLAS keeps
/// the count it was given first.
void set_pool_threads(int n);

/// set_pool_threads(n) for a scope, then the previous count.
class ScopedPoolThreads {
 public:
  explicit ScopedPoolThreads(int n);
  ~ScopedPoolThreads();
  ScopedPoolThreads(const ScopedPoolThreads&) = delete;
  ScopedPoolThreads& operator=(const ScopedPoolThreads&) = delete;

 private:
  int prev_;
};

}  // namespace ingot
