// parallel_for / parallel_for_dynamic: every index is visited exactly once, in chunks of the
// documented sizes, from at most pool_threads() threads; nested calls run serially; the first
// exception reaches the caller; set_pool_threads / ScopedPoolThreads change the thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "util/thread_pool.h"

namespace ingot {
namespace {

struct Calls {
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::set<std::thread::id> threads;
  void add(int64_t b, int64_t e) {
    std::lock_guard<std::mutex> lk(mu);
    ranges.push_back({b, e});
    threads.insert(std::this_thread::get_id());
  }
  /// The ranges sorted; asserts they tile [0, n) exactly.
  std::vector<std::pair<int64_t, int64_t>> tiling(int64_t n) {
    std::sort(ranges.begin(), ranges.end());
    int64_t at = 0;
    for (auto [b, e] : ranges) {
      EXPECT_EQ(b, at);
      EXPECT_LT(b, e);
      at = e;
    }
    EXPECT_EQ(at, n);
    return ranges;
  }
};

TEST(ThreadPool, DynamicChunksTileTheRange) {
  for (int threads : {1, 2, 3}) {
    ScopedPoolThreads pool(threads);
    EXPECT_EQ(pool_threads(), threads);
    for (auto [n, chunk] : {std::pair<int64_t, int64_t>{1000, 7},
                            {1000, 1000},
                            {1000, 1},
                            {5, 100},
                            {1, 1},
                            {1001, 250}}) {
      Calls c;
      std::vector<int> hits(static_cast<size_t>(n), 0);
      parallel_for_dynamic(n, chunk, [&](int64_t b, int64_t e) {
        c.add(b, e);
        for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
      });
      for (int h : hits) ASSERT_EQ(h, 1) << "n " << n << " chunk " << chunk;
      auto r = c.tiling(n);
      const int64_t chunks = (n + chunk - 1) / chunk;
      if (threads == 1 || chunks == 1) {
        ASSERT_EQ(r.size(), 1u);  // one call fn(0, n)
      } else {
        // ceil(n / chunk) near-equal chunks of at most `chunk` items.
        ASSERT_EQ(static_cast<int64_t>(r.size()), chunks) << n << " " << chunk;
        for (auto [b, e] : r) {
          EXPECT_LE(e - b, chunk);
          EXPECT_GE(e - b, n / chunks);
        }
      }
      EXPECT_LE(static_cast<int>(c.threads.size()), threads);
    }
  }
}

TEST(ThreadPool, BackToBackRegionsTileTheRange) {
  // Regions one right after another, as in decode: the workers are still polling for the next
  // region (INGOT_POOL_SPIN_US) or have just gone to sleep when it is published; each region
  // must still be tiled exactly once and return (no lost wake-up, no chunk run twice), with
  // short serial gaps of varying length between regions.
  for (int threads : {2, 3}) {
    ScopedPoolThreads pool(threads);
    std::vector<int> hits(64);
    for (int region = 0; region < 3000; ++region) {
      std::fill(hits.begin(), hits.end(), 0);
      parallel_for_dynamic(64, 4, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
      });
      for (int h : hits) ASSERT_EQ(h, 1) << "threads " << threads << " region " << region;
      volatile int gap = 0;  // a serial gap of 0 to ~100 us
      for (int i = 0; i < (region % 7) * 5000; ++i) gap = gap + 1;
    }
  }
}

TEST(ThreadPool, StaticSplitTilesTheRange) {
  for (int threads : {1, 2, 3}) {
    ScopedPoolThreads pool(threads);
    for (auto [n, grain] : {std::pair<int64_t, int64_t>{1000, 1}, {1000, 400}, {10, 100}}) {
      Calls c;
      parallel_for(n, grain, [&](int64_t b, int64_t e) { c.add(b, e); });
      auto r = c.tiling(n);
      const int64_t want = std::min<int64_t>(threads, (n + grain - 1) / grain);
      EXPECT_EQ(static_cast<int64_t>(r.size()), want) << n << " " << grain;
      EXPECT_LE(static_cast<int>(c.threads.size()), threads);
    }
  }
}

TEST(ThreadPool, EmptyRangeCallsNothing) {
  ScopedPoolThreads pool(2);
  int calls = 0;
  parallel_for_dynamic(0, 4, [&](int64_t, int64_t) { ++calls; });
  parallel_for(0, 4, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ThreadPool, NestedCallsRunSerially) {
  ScopedPoolThreads pool(2);
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> inner;
  parallel_for_dynamic(4, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      parallel_for_dynamic(100, 10, [&](int64_t ib, int64_t ie) {
        std::lock_guard<std::mutex> lk(mu);
        inner.push_back({ib, ie});
      });
  });
  ASSERT_EQ(inner.size(), 4u);  // each inner call is one fn(0, 100)
  for (auto [b, e] : inner)
    EXPECT_EQ(std::make_pair(b, e), std::make_pair(int64_t{0}, int64_t{100}));
}

TEST(ThreadPool, ExceptionReachesTheCaller) {
  for (int threads : {1, 2}) {
    ScopedPoolThreads pool(threads);
    EXPECT_THROW(parallel_for_dynamic(64, 4,
                                      [&](int64_t, int64_t e) {
                                        if (e > 32) throw std::runtime_error("chunk failed");
                                      }),
                 std::runtime_error);
    EXPECT_THROW(parallel_for(64, 1,
                              [&](int64_t b, int64_t) {
                                if (b == 0) throw std::runtime_error("chunk failed");
                              }),
                 std::runtime_error);
    // The pool still works afterwards.
    Calls c;
    parallel_for_dynamic(64, 4, [&](int64_t b, int64_t e) { c.add(b, e); });
    c.tiling(64);
  }
}

TEST(ThreadPool, ScopedThreadsRestoreTheCount) {
  const int before = pool_threads();
  {
    ScopedPoolThreads a(3);
    EXPECT_EQ(pool_threads(), 3);
    {
      ScopedPoolThreads b(1);
      EXPECT_EQ(pool_threads(), 1);
    }
    EXPECT_EQ(pool_threads(), 3);
  }
  EXPECT_EQ(pool_threads(), before);
}

}  // namespace
}  // namespace ingot
