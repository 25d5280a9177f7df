// fast::prefetch (see fast.h): argument checks and the primitive's derivatives. The hint itself
// is the CUDA backend's (backend/cuda/fast_prefetch.cpp); the CPU passes x on.
#include <utility>

#include "core/fast/fast.h"
#include "core/ops/ops.h"
#include "core/primitives/fast.h"

namespace ingot {

std::vector<Array> Prefetch::vjp(const std::vector<Array>& primals,
                                 const std::vector<Array>& cotangents,
                                 const std::vector<int>& argnums, const std::vector<Array>&) {
  std::vector<Array> r;
  for (int a : argnums) r.push_back(a == 0 ? cotangents[0] : zeros_like(primals[a]));
  return r;
}

std::vector<Array> Prefetch::jvp(const std::vector<Array>& primals,
                                 const std::vector<Array>& tangents,
                                 const std::vector<int>& argnums) {
  // The output is x itself: only x's tangent moves it.
  Array t = zeros_like(primals[0]);
  for (size_t i = 0; i < argnums.size(); ++i)
    if (argnums[i] == 0) t = tangents[i];
  return {t};
}

namespace fast {

Array prefetch(const Array& x, const std::vector<PrefetchRange>& ranges, StreamOrDevice s) {
  std::vector<Array> inputs{x};
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (const PrefetchRange& r : ranges) {
    if (r.offset < 0 || r.bytes < 0)
      raise("[prefetch] a range needs offset >= 0 and bytes >= 0, got {} and {}", r.offset,
            r.bytes);
    if (r.bytes == 0) continue;
    inputs.push_back(r.array);
    spans.emplace_back(r.offset, r.bytes);
  }
  if (spans.empty()) return x;
  return Array(x.shape(), x.dtype(),
               std::make_shared<Prefetch>(resolve_stream(s, {&x}), std::move(spans)),
               std::move(inputs));
}

}  // namespace fast
}  // namespace ingot
