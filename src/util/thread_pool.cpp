// Blocking thread pool behind parallel_for (see thread_pool.h).
//
// One parallel region at a time: the caller publishes a Job, wakes the workers (notify_all) and
// works on it itself. Chunks are claimed with an atomic counter, so the caller never waits for a
// lock to start or to take its next chunk; the caller blocks (condition variable) only at the
// end, for chunks still running on workers. A worker that wakes after every chunk was claimed
// finds nothing to do and does not delay the caller.
#include "util/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/env.h"

namespace ingot {
namespace {

thread_local bool t_in_parallel = false;

/// A spin-wait hint to the CPU (x86 `pause`: frees the core's resources for a sibling thread).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

std::atomic<int> g_threads_override{0};  // set_pool_threads' value, 0: the default

class Pool {
 public:
  explicit Pool(int n) {
    if (sched_getaffinity(0, sizeof allowed_, &allowed_) != 0) CPU_ZERO(&allowed_);
    grow(n);
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  /// Ensures at least n workers (only between parallel regions).
  void grow(int n) {
    std::lock_guard<std::mutex> run_lk(run_mu_);
    off_cpu_ = -1;  // new workers get their mask at the next region
    while (static_cast<int>(workers_.size()) < n) {
      const int i = static_cast<int>(workers_.size());
      tids_.push_back(0);
      workers_.emplace_back([this, i] {
        {
          std::lock_guard<std::mutex> lk(mu_);
          tids_[static_cast<size_t>(i)] = static_cast<pid_t>(syscall(SYS_gettid));
        }
        loop();
      });
    }
    // Polling only helps when every thread (the workers and the caller) has a CPU of its own;
    // otherwise it takes time from the caller or another worker.
    spin_ok_.store(static_cast<int>(workers_.size()) + 1 <= CPU_COUNT(&allowed_),
                   std::memory_order_relaxed);
  }

  /// Runs chunks [0, chunks) of [0, n) with at most `helpers` workers besides the caller.
  void run(int64_t n, int64_t chunks, int helpers,
           const std::function<void(int64_t, int64_t)>& fn) {
    std::unique_lock<std::mutex> run_lk(run_mu_);  // one parallel region at a time
    keep_off_caller_cpu();
    Job job;
    job.fn = &fn;
    job.n = n;
    job.chunks = chunks;
    job.slots = helpers;
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &job;
      ++generation_;
      published_.store(generation_, std::memory_order_release);
    }
    cv_.notify_all();
    work(job);
    {
      std::unique_lock<std::mutex> lk(mu_);
      job_ = nullptr;  // workers that wake from now on skip this job
      done_cv_.wait(lk, [&] {
        return job.finished.load(std::memory_order_acquire) == job.chunks && job.active == 0;
      });
    }
    if (job.error) std::rethrow_exception(job.error);
  }

 private:
  struct Job {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0, chunks = 0;
    std::atomic<int64_t> next{0}, finished{0};
    int slots = 0;             // workers that may still join (guarded by mu_)
    int active = 0;            // workers holding a pointer to this job (guarded by mu_)
    std::exception_ptr error;  // guarded by mu_
  };

  void work(Job& job) {
    t_in_parallel = true;
    for (;;) {
      const int64_t c = job.next.fetch_add(1, std::memory_order_relaxed);
      if (c >= job.chunks) break;
      const int64_t b = job.n * c / job.chunks, e = job.n * (c + 1) / job.chunks;
      try {
        (*job.fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!job.error) job.error = std::current_exception();
      }
      if (job.finished.fetch_add(1, std::memory_order_acq_rel) + 1 == job.chunks) {
        // Taking the lock orders this notify after the caller's predicate check.
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_all();
      }
    }
    t_in_parallel = false;
  }

  /// Keeps the workers off the CPU the caller runs on (INGOT_POOL_AFFINITY, default on): the
  /// scheduler of some VMs wakes a thread on the waker's vCPU even with another one idle, so
  /// the worker either waits for the caller to block or preempts it, and two threads do one
  /// thread's work. Each worker may run on every allowed CPU but the caller's; the masks are set
  /// again only when the caller is found on another CPU (one sched_getcpu per region).
  void keep_off_caller_cpu() {
    if (!affinity_ || workers_.empty() || CPU_COUNT(&allowed_) < 2) return;
    const int cpu = sched_getcpu();
    if (cpu < 0 || cpu == off_cpu_) return;
    cpu_set_t mask = allowed_;
    if (cpu < CPU_SETSIZE) CPU_CLR(cpu, &mask);
    bool all = true;
    std::lock_guard<std::mutex> lk(mu_);
    for (pid_t tid : tids_)
      if (tid > 0)
        sched_setaffinity(tid, sizeof mask, &mask);  // a hint: failure is harmless
      else
        all = false;  // not started yet: try again next region
    if (all) off_cpu_ = cpu;
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      Job* job;
      // The next region usually comes within microseconds (decode).
      if (spin_us_ > 0 && spin_ok_.load(std::memory_order_relaxed)) {
        const auto t0 = std::chrono::steady_clock::now();
        while (published_.load(std::memory_order_acquire) == seen &&
               std::chrono::steady_clock::now() - t0 < std::chrono::microseconds(spin_us_))
          cpu_relax();
      }
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || (job_ && generation_ != seen); });
        if (stop_) return;
        seen = generation_;
        job = job_;
        if (job->slots == 0) continue;
        --job->slots;
        ++job->active;
      }
      work(*job);
      std::lock_guard<std::mutex> lk(mu_);
      if (--job->active == 0) done_cv_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::vector<pid_t> tids_;  // kernel thread ids of the workers (0 until started; mu_)
  cpu_set_t allowed_;        // the process's CPUs when the pool was made
  const bool affinity_ = env::get_int("INGOT_POOL_AFFINITY", 1) != 0;
  // Bounded poll before sleeping (thread_pool.h); at most 10 ms.
  const int spin_us_ =
      static_cast<int>(std::clamp<long>(env::get_int("INGOT_POOL_SPIN_US", 100), 0, 10000));
  std::atomic<uint64_t> published_{0};  // generation_, readable without mu_ (polling)
  std::atomic<bool> spin_ok_{false};    // no more threads than allowed CPUs
  int off_cpu_ = -1;                    // the CPU the workers are kept off (run_mu_)
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  Job* job_ = nullptr;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

Pool& pool() {
  static Pool p(std::max(0, pool_threads() - 1));
  return p;
}

}  // namespace

int pool_threads() {
  const int o = g_threads_override.load(std::memory_order_relaxed);
  return o > 0 ? o : env::num_threads();
}

void set_pool_threads(int n) {
  g_threads_override.store(std::max(n, 0), std::memory_order_relaxed);
  pool().grow(pool_threads() - 1);
}

ScopedPoolThreads::ScopedPoolThreads(int n)
    : prev_(g_threads_override.load(std::memory_order_relaxed)) {
  set_pool_threads(n);
}
ScopedPoolThreads::~ScopedPoolThreads() {
  set_pool_threads(prev_);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = pool_threads();
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / grain);
  if (chunks <= 1 || t_in_parallel) {
    fn(0, n);
    return;
  }
  pool().run(n, chunks, static_cast<int>(chunks) - 1, fn);
}

void parallel_for_dynamic(int64_t n, int64_t chunk,
                          const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  const int threads = pool_threads();
  const int64_t chunks = (n + chunk - 1) / chunk;
  if (threads <= 1 || chunks <= 1 || t_in_parallel) {
    fn(0, n);
    return;
  }
  pool().run(n, chunks, static_cast<int>(std::min<int64_t>(threads - 1, chunks - 1)), fn);
}

}  // namespace ingot
