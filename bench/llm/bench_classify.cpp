// Bulk classification throughput on CPU (issue #6): llm::classify over N prompts of 64 tokens
// (16-token shared template + 46 text tokens + 2-token suffix) and 3 single-token labels, on
// synthetic Llama-shaped bf16 checkpoints, in sentences/s and achieved GFLOP/s next to the
// OpenBLAS sgemm rate measured in the same run.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/synthetic_checkpoint.h"
#include "llm/score.h"
#include "models/model.h"
#include "util/thread_pool.h"

namespace {

using namespace ingot;
using Ids = std::vector<int32_t>;
using bench::LlamaShape;

constexpr int64_t kLen = 64, kPrefix = 16, kSuffix = 2, kLabels = 3;

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// ---------------------------------------------------------------- workload

/// N prompts of kLen ids: a shared kPrefix-token template, pseudo-random text, a fixed
/// kSuffix-token suffix. Without `shared` every prompt starts with its own id (common prefix 0).
std::vector<Ids> make_prompts(int64_t n, int64_t vocab, bool shared) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> tok(100, static_cast<int32_t>(vocab) - 1);
  Ids templ(kPrefix), suffix(kSuffix);
  for (auto& t : templ) t = tok(rng);
  for (auto& t : suffix) t = tok(rng);
  std::vector<Ids> out;
  for (int64_t i = 0; i < n; ++i) {
    Ids p = templ;
    if (!shared) p[0] = static_cast<int32_t>(i % 100);  // distinct first ids, below tok's range
    for (int64_t j = 0; j < kLen - kPrefix - kSuffix; ++j) p.push_back(tok(rng));
    p.insert(p.end(), suffix.begin(), suffix.end());
    out.push_back(std::move(p));
  }
  return out;
}

/// Three labels with distinct first tokens (classify scores only those head rows).
std::vector<Ids> make_labels(int64_t vocab) {
  const auto v = static_cast<int32_t>(vocab);
  return {{v / 2 + 1}, {v / 2 + 7}, {v / 2 + 13}};
}

/// The prefix classify prefills once: longest prefix shared with prompt 0, at most len - 1.
int64_t shared_prefix(const std::vector<Ids>& prompts) {
  size_t p = prompts[0].size() - 1;
  for (const auto& b : prompts) {
    size_t k = 0;
    while (k < p && prompts[0][k] == b[k]) ++k;
    p = k;
  }
  return static_cast<int64_t>(p);
}

/// Tokens pushed through the decoder and the FLOPs spent on them:
///   2 * layer_matmul_params * tokens                    (q, k, v, o, gate, up, down)
/// + 4 * layers * heads * head_dim * sum over computed tokens of (position + 1)   (QK^T, PV;
///   causal, useful work only)
/// + 2 * hidden * labels * N                             (the labels' LM-head rows)
/// Norms, rotary, softmax, SiLU and the embedding gather are not counted.
struct Work {
  double tokens = 0, flops = 0;
};
Work work_of(const LlamaShape& s, int64_t n, int64_t prefix) {
  auto positions = [](int64_t a, int64_t b) {  // sum of (i + 1) for i in [a, b)
    return 0.5 * static_cast<double>(b * (b + 1) - a * (a + 1));
  };
  Work w;
  w.tokens = static_cast<double>(prefix + n * (kLen - prefix));
  const double attn = 4.0 * static_cast<double>(s.layers * s.heads * s.head_dim());
  w.flops = 2.0 * static_cast<double>(s.layer_matmul_params()) * w.tokens +
            attn * (positions(0, prefix) + static_cast<double>(n) * positions(prefix, kLen)) +
            2.0 * static_cast<double>(s.hidden * kLabels * n);
  return w;
}

/// Aborts unless every row holds kLabels finite probabilities summing to 1.
void check_probs(const std::vector<llm::LabelProbs>& out, size_t n) {
  bool ok = out.size() == n;
  for (size_t i = 0; ok && i < out.size(); ++i) {
    double s = 0;
    for (double p : out[i]) {
      ok = ok && std::isfinite(p) && p >= 0;
      s += p;
    }
    ok = ok && out[i].size() == static_cast<size_t>(kLabels) && std::abs(s - 1) < 1e-6;
    if (!ok) std::fprintf(stderr, "bench_classify: row %zu has invalid probabilities\n", i);
  }
  if (!ok) std::abort();
}

// ---------------------------------------------------------------- models

struct ModelSpec {
  const char* name;
  LlamaShape shape;
  const char* env;
  const char* dir;
};
const ModelSpec kSmall{"llama_0.1B", bench::kLlamaSmall, "INGOT_BENCH_SMALL_DIR",
                       "/tmp/ingot_bench_0p1b"};
const ModelSpec kOneB{"llama_1B", bench::kLlama1B, "INGOT_BENCH_DIR", "/tmp/ingot_bench_1b"};

/// Loads (writing the checkpoint first if needed) and caches a model per (spec, dtype).
const models::Model& get_model(const ModelSpec& spec, Dtype dtype) {
  static std::map<std::string, std::shared_ptr<models::Model>> cache;
  const std::string key = fmt::format("{}/{}", spec.name, dtype_name(dtype));
  auto it = cache.find(key);
  if (it == cache.end()) {
    cache.clear();  // one model resident at a time
    const std::string dir =
        bench::write_llama_checkpoint(bench::bench_dir(spec.env, spec.dir), spec.shape);
    it = cache.emplace(key, models::load_model(dir, {.dtype = dtype, .warn = false})).first;
  }
  return *it->second;
}

// ---------------------------------------------------------------- benchmarks

constexpr int kSgemmN = 2048;

/// n x n float32 operands for the sgemm floor.
struct SgemmOperands {
  int n;
  std::vector<float> a, b, c;
  explicit SgemmOperands(int n_)
      : n(n_), a(static_cast<size_t>(n_) * n_), b(a.size()), c(a.size()) {
    for (size_t i = 0; i < a.size(); ++i) {
      a[i] = static_cast<float>(i % 17) * 0.01f;
      b[i] = static_cast<float>(i % 13) * 0.02f;
    }
  }
  /// One cblas_sgemm on all pool threads; returns its wall seconds.
  double run() {
    openblas_set_num_threads(pool_threads());
    auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  double flops() const { return 2.0 * n * n * n; }
};

/// OpenBLAS sgemm GFLOP/s over ~`min_secs` of back-to-back 2048^3 products (after one warm-up).
double sgemm_gflops(double min_secs) {
  static SgemmOperands op(kSgemmN);
  op.run();
  double secs = 0;
  int64_t iters = 0;
  while (secs < min_secs) {
    secs += op.run();
    ++iters;
  }
  return op.flops() * static_cast<double>(iters) / secs / 1e9;
}

/// Process CPU seconds (all threads).
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// OpenBLAS sgemm on 2048 x 2048 float32 matrices, all pool threads: the CPU floor.
void BM_SgemmFloor(benchmark::State& state) {
  SgemmOperands op(kSgemmN);
  op.run();
  for (auto _ : state) op.run();
  state.counters["GFLOP/s"] =
      benchmark::Counter(op.flops() / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

struct ClassifyCase {
  const ModelSpec* model;
  Dtype dtype;
  int64_t n;
  int64_t batch;
  bool shared;
};

void BM_Classify(benchmark::State& state, ClassifyCase c) {
  const models::Model& m = get_model(*c.model, c.dtype);
  const LlamaShape& s = c.model->shape;
  const auto prompts = make_prompts(c.n, s.vocab, c.shared);
  const auto labels = make_labels(s.vocab);
  const llm::ClassifyOptions opt{.batch_size = c.batch, .group_size = 4096, .on_progress = {}};
  {  // warm-up: two short prompts touch every weight page and start the pool
    std::vector<Ids> warm{Ids(prompts[0].begin(), prompts[0].begin() + kPrefix + 4),
                          Ids(prompts[1].begin(), prompts[1].begin() + kPrefix + 4)};
    check_probs(llm::classify(m, warm, labels, opt), warm.size());
  }
  const int64_t prefix = shared_prefix(prompts);
  const Work w = work_of(s, c.n, prefix);
  // The sgemm floor right before the case, so both see the same load on the shared machine.
  const double floor = sgemm_gflops(1.0);
  double secs = 0, cpu = 0;
  int64_t iters = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    const double c0 = process_cpu_seconds();
    auto out = llm::classify(m, prompts, labels, opt);
    cpu += process_cpu_seconds() - c0;
    secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++iters;
    state.PauseTiming();
    check_probs(out, prompts.size());
    state.ResumeTiming();
  }
  using C = benchmark::Counter;
  state.counters["sent/s"] = C(static_cast<double>(c.n), C::kIsIterationInvariantRate);
  state.counters["tok/s"] = C(w.tokens, C::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] = C(w.flops / 1e9, C::kIsIterationInvariantRate);
  state.counters["sgemm_GF/s"] = floor;
  state.counters["of_sgemm"] = w.flops * static_cast<double>(iters) / secs / 1e9 / floor;
  // Process CPU seconds per wall second: 2 = both cores ours (OpenBLAS's waiting threads yield
  // in a loop, so this also counts their spinning); well below = other processes took cores.
  state.counters["cpu_util"] = cpu / secs;
  // Load-independent-ish rate: FLOPs per process CPU second (sgemm alone reaches ~90 per core).
  state.counters["GF/cpu_s"] = w.flops * static_cast<double>(iters) / cpu / 1e9;
  state.counters["prefix"] = static_cast<double>(prefix);
}

void register_classify(const ModelSpec& model, Dtype dtype, int64_t n, int64_t batch, bool shared) {
  const std::string name = fmt::format("BM_Classify/{}/{}/{}/n:{}/batch:{}", model.name,
                                       dtype_name(dtype), shared ? "shared" : "noshare", n, batch);
  benchmark::RegisterBenchmark(name.c_str(), BM_Classify,
                               ClassifyCase{&model, dtype, n, batch, shared})
      ->Unit(benchmark::kSecond)
      ->UseRealTime()
      ->Iterations(1);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("ingot_threads", std::to_string(pool_threads()));
  benchmark::AddCustomContext("loadavg_start", loadavg());
  benchmark::AddCustomContext(
      "workload", fmt::format("{} tokens/prompt = {} template + {} text + {} suffix; {} labels",
                              kLen, kPrefix, kLen - kPrefix - kSuffix, kSuffix, kLabels));
  for (const ModelSpec* spec : {&kSmall, &kOneB}) {
    const LlamaShape& s = spec->shape;
    benchmark::AddCustomContext(
        spec->name,
        fmt::format("hidden {} inter {} layers {} heads {}/{} vocab {} tied; {:.3f}B params, "
                    "{:.1f}M in layer matmuls",
                    s.hidden, s.inter, s.layers, s.heads, s.kv_heads, s.vocab,
                    static_cast<double>(s.total_params()) / 1e9,
                    static_cast<double>(s.layer_matmul_params()) / 1e6));
  }
  benchmark::RegisterBenchmark("BM_SgemmFloor", BM_SgemmFloor)
      ->Arg(2048)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->MinTime(1.0);
  // Sentences per case: 512 on the 0.1B model, 32 on the 1B one (one batch of 32; 512 would
  // take ~7 minutes there on 2 idle cores); INGOT_BENCH_SENTENCES overrides both (quick checks).
  const int64_t n_env = std::atoll(bench::bench_dir("INGOT_BENCH_SENTENCES", "0").c_str());
  const int64_t n_small = n_env > 0 ? n_env : 512, n_1b = n_env > 0 ? n_env : 32;
  for (int64_t batch : {32, 64, 128})
    register_classify(kSmall, ingot::bfloat16, n_small, batch, true);
  register_classify(kSmall, ingot::bfloat16, n_small, 64, false);
  register_classify(kSmall, ingot::float32, n_small, 64, true);
  register_classify(kOneB, ingot::bfloat16, n_1b, 32, true);
  benchmark::RunSpecifiedBenchmarks();
  std::fprintf(stderr, "loadavg at end: %s\n", loadavg().c_str());
  benchmark::Shutdown();
  return 0;
}
