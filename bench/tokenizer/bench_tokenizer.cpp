// Encode throughput (MB/s, one thread) of the three pinned tokenizers on ~4 MB of the mixed
// corpus, built exactly as scripts/tokenizer_hf_goldens.py builds it for the HF comparison, plus
// pathological single words. Models: $INGOT_TOKENIZER_MODELS or the build tree's fetched copy.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "util/utf8.h"

namespace {

using ingot::tokenizer::Tokenizer;

std::string models_dir() {
  const char* e = std::getenv("INGOT_TOKENIZER_MODELS");
  return e ? e : INGOT_TOKENIZER_MODELS_DEFAULT;
}

std::string data_dir() {
  const char* e = std::getenv("INGOT_TOKENIZER_DATA");
  return e ? e : INGOT_TOKENIZER_DATA;
}

const Tokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[name];
  if (!t) t = std::make_unique<Tokenizer>(Tokenizer::from_dir(models_dir() + "/" + name));
  return *t;
}

// Short corpus cases joined by blank lines, repeated to just over 4 MiB.
const std::vector<std::string>& bench_docs() {
  static std::vector<std::string> docs = [] {
    std::ifstream f(data_dir() + "/corpus.jsonl");
    std::string line, doc;
    bool first = true;
    while (std::getline(f, line)) {
      auto j = nlohmann::json::parse(line);
      if (j.contains("bytes_hex")) continue;
      std::string text = j["text"];
      if (ingot::utf8::count(text) >= 3000) continue;
      if (!first) doc += "\n\n";
      first = false;
      doc += text;
    }
    size_t reps = (4u << 20) / doc.size() + 1;
    return std::vector<std::string>(reps, doc);
  }();
  return docs;
}

void BM_Encode(benchmark::State& state, const std::string& name) {
  const Tokenizer& tok = tokenizer(name);
  const auto& docs = bench_docs();
  size_t bytes = 0;
  for (auto& d : docs) bytes += d.size();
  size_t tokens = 0;
  for (auto _ : state) {
    tokens = 0;
    for (auto& d : docs) tokens += tok.encode(d, {.add_special_tokens = false}).size();
    benchmark::DoNotOptimize(tokens);
  }
  state.counters["MB/s"] = benchmark::Counter(static_cast<double>(bytes) * 1e-6,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["bytes"] = static_cast<double>(bytes);
}

void BM_EncodeLongWord(benchmark::State& state, const std::string& name, bool random) {
  const Tokenizer& tok = tokenizer(name);
  std::string word;
  std::mt19937 rng(1);
  for (int k = 0; k < 100000; ++k) word += random ? static_cast<char>('a' + rng() % 26) : 'a';
  for (auto _ : state) benchmark::DoNotOptimize(tok.encode(word).size());
  state.counters["MB/s"] = benchmark::Counter(static_cast<double>(word.size()) * 1e-6,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Decode(benchmark::State& state, const std::string& name) {
  const Tokenizer& tok = tokenizer(name);
  auto ids = tok.encode(bench_docs()[0], {.add_special_tokens = false});
  for (auto _ : state) benchmark::DoNotOptimize(tok.decode(ids).size());
  state.counters["MB/s"] = benchmark::Counter(static_cast<double>(bench_docs()[0].size()) * 1e-6,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Load(benchmark::State& state, const std::string& name) {
  for (auto _ : state) benchmark::DoNotOptimize(Tokenizer::from_dir(models_dir() + "/" + name));
}

}  // namespace

int main(int argc, char** argv) {
  for (std::string name : {"gemma3", "qwen3", "llama3_1"}) {
    benchmark::RegisterBenchmark(("encode_mixed_4MB/" + name).c_str(), BM_Encode, name)
        ->Unit(benchmark::kMillisecond)
        ->MinTime(2.0);
    benchmark::RegisterBenchmark(("encode_100k_a/" + name).c_str(), BM_EncodeLongWord, name, false)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("encode_100k_random/" + name).c_str(), BM_EncodeLongWord, name,
                                 true)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("decode/" + name).c_str(), BM_Decode, name)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("load/" + name).c_str(), BM_Load, name)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(2);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
