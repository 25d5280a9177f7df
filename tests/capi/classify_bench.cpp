// The C++ side of the Go-vs-C++ classify benchmark (docs/capi.md): the same loop as
// bindings/go/examples/classify -repeat N, through llm::classify_texts in-process. Not a test;
// built on request (target capi_classify_bench).
//   capi_classify_bench MODEL_DIR REPEAT < texts.jsonl
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm/text/text.h"

namespace {

long rss_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR REPEAT < texts.jsonl\n", argv[0]);
    return 2;
  }
  try {
    std::vector<std::string> texts;
    for (std::string line; std::getline(std::cin, line);)
      if (!line.empty()) texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
    const int repeat = std::stoi(argv[2]);
    ingot::llm::TextModel tm = ingot::llm::load_text_model(argv[1], {.warn = false});
    const ingot::llm::TextClassifier c{"Sentence: {text}\nDomain:",
                                       {" science", " sports", " politics"}};
    ingot::llm::classify_texts(tm, c, texts, {.batch_size = 64});  // warm-up
    // Blocks of 50 calls: the best block's rate is robust to other load on the machine.
    using clock = std::chrono::steady_clock;
    std::vector<long> rss;
    double best = 0;
    const auto t0 = clock::now();
    auto block = clock::now();
    for (int i = 1; i <= repeat; ++i) {
      ingot::llm::classify_texts(tm, c, texts, {.batch_size = 64});
      if (i % 50 == 0) {
        const double s = std::chrono::duration<double>(clock::now() - block).count();
        best = std::max(best, 50.0 * static_cast<double>(texts.size()) / s);
        block = clock::now();
      }
      if (i == 10 || i % 250 == 0) rss.push_back(rss_kb());
    }
    const double sec = std::chrono::duration<double>(clock::now() - t0).count();
    std::printf(
        "c++: %d calls x %zu texts: mean %.0f prompts/s, best 50-call block %.0f prompts/s; RSS kB "
        "at call 10,250,500,...:",
        repeat, texts.size(), repeat * static_cast<double>(texts.size()) / sec, best);
    for (long r : rss) std::printf(" %ld", r);
    std::printf("\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
