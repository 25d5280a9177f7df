// Environment knobs (see env.h).
#include "util/env.h"

#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

namespace ingot::env {

std::optional<std::string> get(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

long get_int(const char* name, long fallback) {
  auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  long r = std::strtol(v->c_str(), &end, 10);
  return (end && *end == 0) ? r : fallback;
}

bool flag(const char* name, bool fallback) {
  const auto v = get(name);
  if (v == "1") return true;
  if (v == "0") return false;
  return fallback;
}

static int physical_cores() {
  // Count distinct (physical id, core id) pairs; fall back to hardware_concurrency.
  std::ifstream f("/proc/cpuinfo");
  std::set<std::pair<int, int>> cores;
  std::string line;
  int phys = 0;
  while (std::getline(f, line)) {
    if (line.rfind("physical id", 0) == 0) phys = std::atoi(line.c_str() + line.find(':') + 1);
    if (line.rfind("core id", 0) == 0)
      cores.insert({phys, std::atoi(line.c_str() + line.find(':') + 1)});
  }
  int hc = static_cast<int>(std::thread::hardware_concurrency());
  if (cores.empty()) return hc > 0 ? hc : 1;
  return static_cast<int>(cores.size());
}

int num_threads() {
  static const int n = [] {
    long v = get_int("INGOT_NUM_THREADS", 0);
    return v > 0 ? static_cast<int>(v) : physical_cores();
  }();
  return n;
}

std::optional<std::string> device() {
  return get("INGOT_DEVICE");
}
std::optional<std::string> cpu_isa() {
  return get("INGOT_CPU_ISA");
}
bool cpu_int8() {
  return get_int("INGOT_CPU_INT8", 1) != 0;
}

bool gguf_native() {
  return get_int("INGOT_GGUF_NATIVE", 1) != 0;
}

DistEnv dist() {
  DistEnv d;
  d.rank = static_cast<int>(get_int("INGOT_RANK", 0));
  d.world_size = static_cast<int>(get_int("INGOT_WORLD_SIZE", 1));
  if (auto a = get("INGOT_MASTER_ADDR")) d.master_addr = *a;
  d.master_port = static_cast<int>(get_int("INGOT_MASTER_PORT", 29500));
  if (auto t = get("INGOT_DIST_TIMEOUT")) {
    char* end = nullptr;
    const double v = std::strtod(t->c_str(), &end);
    if (end && *end == 0 && v > 0) d.timeout_s = v;
  }
  return d;
}

}  // namespace ingot::env
