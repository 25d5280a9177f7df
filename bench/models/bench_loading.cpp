// Time-to-ready of a 1B-parameter bf16 checkpoint (Llama-3.2-1B shapes, ~2.5 GB, written once to
// $INGOT_BENCH_DIR or /tmp/ingot_bench_1b): open + parse + create every lazy array, against a
// peer that read()s the whole file into memory; plus the cost of first touching every page
// (page cache warm, and cold after evicting the file with posix_fadvise).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/synthetic_checkpoint.h"
#include "models/checkpoint.h"
#include "util/mmap.h"

namespace {

namespace fs = std::filesystem;
using namespace ingot;

/// The synthetic Llama-3.2-1B-shaped checkpoint (written on first use).
const std::string& ensure_checkpoint() {
  static const std::string dir = bench::write_llama_checkpoint(
      bench::bench_dir("INGOT_BENCH_DIR", "/tmp/ingot_bench_1b"), bench::kLlama1B);
  return dir;
}

/// Drops the file's pages from the page cache (clean pages; no root needed).
void evict(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// open + config + header validation + one lazy (zero-copy) array per tensor.
void BM_TimeToReady(benchmark::State& state) {
  const std::string& dir = ensure_checkpoint();
  int64_t params = 0;
  for (auto _ : state) {
    auto c = models::Checkpoint::open(dir, {.warn = false});
    std::vector<Array> arrays;
    for (const auto& n : c.names()) arrays.push_back(c.load(n));
    params = c.parameter_count();
    benchmark::DoNotOptimize(arrays.data());
  }
  state.counters["params"] = static_cast<double>(params);
}
BENCHMARK(BM_TimeToReady)->Unit(benchmark::kMillisecond)->UseRealTime();

// Peer: read() the whole weights file into memory (what a non-mmap loader must do), page cache
// warm.
void BM_PeerReadWholeFile(benchmark::State& state) {
  std::string path = ensure_checkpoint() + "/model.safetensors";
  size_t size = fs::file_size(path);
  std::vector<char> buf(size);
  for (auto _ : state) {
    int fd = ::open(path.c_str(), O_RDONLY);
    size_t done = 0;
    while (done < size) {
      ssize_t r = ::read(fd, buf.data() + done, size - done);
      if (r <= 0) break;
      done += static_cast<size_t>(r);
    }
    ::close(fd);
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}
BENCHMARK(BM_PeerReadWholeFile)->Unit(benchmark::kMillisecond)->UseRealTime();

// First touch of every page of a fresh mapping: arg 0 = page cache warm, 1 = cold (evicted).
void BM_TouchAllPages(benchmark::State& state) {
  std::string path = ensure_checkpoint() + "/model.safetensors";
  const bool cold = state.range(0) == 1;
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      evict(path);
      state.ResumeTiming();
    }
    auto m = MappedFile::open(path);
    benchmark::DoNotOptimize(m->touch_all_pages());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * fs::file_size(path)));
}
BENCHMARK(BM_TouchAllPages)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
