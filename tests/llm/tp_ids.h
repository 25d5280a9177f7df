// Token ids shared by the tensor-parallel test and its workers.
#pragma once

#include <vector>

#include "core/array.h"

namespace ingot::test {

/// [2, 7] int32 ids below `vocab`.
inline Array tp_ids(int64_t vocab) {
  std::vector<int32_t> v;
  for (int r = 0; r < 2; ++r)
    for (int i = 0; i < 7; ++i) v.push_back(static_cast<int32_t>((i * 37 + r * 11 + 3) % vocab));
  return Array(v, {2, 7}, int32);
}

}  // namespace ingot::test
