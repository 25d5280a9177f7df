#include "util/proc.h"

#include <unistd.h>

#include <cstdio>

namespace ingot::util {

size_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long pages = 0, rss = 0;
  const int got = std::fscanf(f, "%lu %lu", &pages, &rss);
  std::fclose(f);
  return got == 2 ? rss * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

int64_t available_memory() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  int64_t kib = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %ld kB", &kib) == 1) break;
  std::fclose(f);
  return kib * 1024;
}

}  // namespace ingot::util
