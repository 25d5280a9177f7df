// Process and machine memory figures from /proc (Linux), for metrics, budgets and tests.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ingot::util {

/// The process's resident set in bytes (/proc/self/statm; 0 where there is none).
size_t resident_bytes();

/// MemAvailable of /proc/meminfo in bytes (0 where there is none).
int64_t available_memory();

}  // namespace ingot::util
