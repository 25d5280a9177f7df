// Blocking thread pool behind parallel_for (see thread_pool.h).
#include "util/thread_pool.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "util/env.h"

namespace ingot {
namespace {

thread_local bool t_in_parallel = false;

class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 0; i < n; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void run(int64_t n, int64_t chunks, const std::function<void(int64_t, int64_t)>& fn) {
    std::unique_lock<std::mutex> run_lk(run_mu_);  // one parallel region at a time
    Job job{&fn, n, chunks};
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &job;
      ++generation_;
    }
    cv_.notify_all();
    work(job);
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return job.finished == job.chunks && job.active == 0; });
    job_ = nullptr;
    if (job.error) std::rethrow_exception(job.error);
  }

 private:
  struct Job {
    const std::function<void(int64_t, int64_t)>* fn;
    int64_t n, chunks;
    int64_t next = 0, finished = 0;
    int active = 0;  // workers holding a pointer to this job
    std::exception_ptr error;
  };

  void work(Job& job) {
    t_in_parallel = true;
    for (;;) {
      int64_t c;
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (job.next >= job.chunks) break;
        c = job.next++;
      }
      int64_t b = job.n * c / job.chunks, e = job.n * (c + 1) / job.chunks;
      try {
        (*job.fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!job.error) job.error = std::current_exception();
      }
      std::lock_guard<std::mutex> lk(mu_);
      if (++job.finished == job.chunks) done_cv_.notify_all();
    }
    t_in_parallel = false;
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      Job* job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || (job_ && generation_ != seen); });
        if (stop_) return;
        seen = generation_;
        job = job_;
        ++job->active;
      }
      work(*job);
      std::lock_guard<std::mutex> lk(mu_);
      if (--job->active == 0) done_cv_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  Job* job_ = nullptr;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

Pool& pool() {
  static Pool p(std::max(0, env::num_threads() - 1));
  return p;
}

}  // namespace

int pool_threads() {
  return env::num_threads();
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t chunks = std::min<int64_t>(pool_threads(), (n + grain - 1) / grain);
  if (chunks <= 1 || t_in_parallel) {
    fn(0, n);
    return;
  }
  pool().run(n, chunks, fn);
}

}  // namespace ingot
