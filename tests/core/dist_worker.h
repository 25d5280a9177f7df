// Values shared by the collectives test and its worker processes.
#pragma once

#include <cmath>
#include <cstdint>

namespace ingot::test {

/// Element i of rank r's input: distinct per rank, with fractions that need rounding in 16 bits.
inline double dist_value(int r, int64_t i) {
  return std::sin(0.1 * static_cast<double>(i) + r) * (r + 1) * 3.0;
}

}  // namespace ingot::test
