// Time-to-ready of a 1B-parameter bf16 checkpoint (Llama-3.2-1B shapes, ~2.5 GB, written once to
// $INGOT_BENCH_DIR or /tmp/ingot_bench_1b): open + parse + create every lazy array, against a
// peer that read()s the whole file into memory; plus the cost of first touching every page
// (page cache warm, and cold after evicting the file with posix_fadvise).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "models/checkpoint.h"
#include "util/mmap.h"

namespace {

namespace fs = std::filesystem;
using namespace ingot;

constexpr int64_t kHidden = 2048, kInter = 8192, kLayers = 16, kVocab = 128256, kKv = 512;

std::string bench_dir() {
  const char* d = std::getenv("INGOT_BENCH_DIR");
  return d ? d : "/tmp/ingot_bench_1b";
}

/// Writes config.json + model.safetensors (bf16, deterministic filler) unless present.
const std::string& ensure_checkpoint() {
  static const std::string dir = [] {
    std::string d = bench_dir();
    std::string st = d + "/model.safetensors";
    if (fs::exists(st) && fs::exists(d + "/config.json")) return d;
    fs::create_directories(d);
    std::ofstream(d + "/config.json") << fmt::format(
        R"({{"model_type": "llama", "hidden_size": {}, "intermediate_size": {},
  "num_hidden_layers": {}, "num_attention_heads": 32, "num_key_value_heads": 8,
  "vocab_size": {}, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "rope_theta": 500000.0}})",
        kHidden, kInter, kLayers, kVocab);
    std::vector<std::pair<std::string, Shape>> ts = {
        {"model.embed_tokens.weight", {kVocab, kHidden}}, {"model.norm.weight", {kHidden}}};
    for (int64_t l = 0; l < kLayers; ++l) {
      std::string p = fmt::format("model.layers.{}.", l);
      ts.push_back({p + "input_layernorm.weight", {kHidden}});
      ts.push_back({p + "post_attention_layernorm.weight", {kHidden}});
      ts.push_back({p + "self_attn.q_proj.weight", {kHidden, kHidden}});
      ts.push_back({p + "self_attn.k_proj.weight", {kKv, kHidden}});
      ts.push_back({p + "self_attn.v_proj.weight", {kKv, kHidden}});
      ts.push_back({p + "self_attn.o_proj.weight", {kHidden, kHidden}});
      ts.push_back({p + "mlp.gate_proj.weight", {kInter, kHidden}});
      ts.push_back({p + "mlp.up_proj.weight", {kInter, kHidden}});
      ts.push_back({p + "mlp.down_proj.weight", {kHidden, kInter}});
    }
    std::string h = "{";
    uint64_t pos = 0;
    for (auto& [name, shape] : ts) {
      uint64_t n = static_cast<uint64_t>(shape_size(shape)) * 2;
      h += fmt::format("{}\"{}\":{{\"dtype\":\"BF16\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                       h.size() > 1 ? "," : "", name, fmt::join(shape, ","), pos, pos + n);
      pos += n;
    }
    h += "}";
    while (h.size() % 8) h += ' ';
    std::string tmp = st + ".partial";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    uint64_t len = h.size();
    std::fwrite(&len, 8, 1, f);
    std::fwrite(h.data(), 1, h.size(), f);
    std::vector<uint16_t> chunk(1 << 22);  // 8 MB of small bf16 values
    for (size_t i = 0; i < chunk.size(); ++i)
      chunk[i] = static_cast<uint16_t>(0x3c00 + (i * 7919) % 512);
    for (uint64_t done = 0; done < pos;) {
      uint64_t n = std::min<uint64_t>(pos - done, chunk.size() * 2);
      std::fwrite(chunk.data(), 1, n, f);
      done += n;
    }
    std::fclose(f);
    fs::rename(tmp, st);
    return d;
  }();
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
