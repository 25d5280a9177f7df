// CPU kernels of Sort, ArgSort, Partition, ArgPartition and TopK: each row along the axis is
// copied to a buffer (as float for 16-bit floats), ordered with the standard algorithms
// (stable_sort, nth_element) under a NaN-last total order, and written back.
#include <algorithm>
#include <bit>
#include <numeric>

#include "backend/common/utils.h"
#include "backend/cpu/reduce_utils.h"
#include "core/primitives/reduce.h"
#include "util/thread_pool.h"

namespace ingot {

using backend::ReducePlan;
using backend::Walker;

namespace {

template <typename T>
using key_t = std::conditional_t<is_half_v<T>, float,
                                 std::conditional_t<std::is_same_v<T, bool>, uint8_t, T>>;

/// a < b with NaN after every number (NaNs equal to each other).
template <typename K>
inline bool nan_last_less(K a, K b) {
  if constexpr (std::is_floating_point_v<K>)
    return !(a != a) && ((b != b) || a < b);
  else
    return a < b;
}

/// What a row job writes.
enum class Job { sort, argsort, partition, argpartition, topk, topk_indices };

/// (key, index) pairs: sorting them directly is much faster than sorting indices indirectly.
template <typename K>
using Entry = std::pair<K, uint32_t>;

/// Orders a row's entries as the job asks, under the total order (key NaN-last, index), so
/// that sorting is stable and ties in topk keep the lower index first.
template <typename K>
void order_row(Job job, std::vector<Entry<K>>& e, int64_t param) {
  auto less = [](const Entry<K>& a, const Entry<K>& b) {
    if (nan_last_less(a.first, b.first)) return true;
    if (nan_last_less(b.first, a.first)) return false;
    return a.second < b.second;
  };
  auto greater = [](const Entry<K>& a, const Entry<K>& b) {
    if (nan_last_less(b.first, a.first)) return true;
    if (nan_last_less(a.first, b.first)) return false;
    return a.second < b.second;
  };
  switch (job) {
    case Job::sort:
    case Job::argsort:
      std::sort(e.begin(), e.end(), less);
      break;
    case Job::partition:
    case Job::argpartition:
      std::nth_element(e.begin(), e.begin() + param, e.end(), less);
      break;
    case Job::topk:
    case Job::topk_indices:
      if (param == 0) break;
      std::nth_element(e.begin(), e.begin() + (param - 1), e.end(), greater);
      std::sort(e.begin(), e.begin() + param, greater);
      break;
  }
}

/// Types whose order fits a 32-bit key (all but int64 and float64).
template <typename T>
inline constexpr bool kPacked = !std::is_same_v<T, double> && !std::is_same_v<T, int64_t>;

/// Order-preserving unsigned key: NaN last, -0 equal to +0.
template <typename T>
inline uint32_t key32(T v) {
  if constexpr (std::is_same_v<T, float> || is_half_v<T>) {
    float f = static_cast<float>(v);
    if (f != f) return 0xFFFFFFFFu;
    uint32_t u = std::bit_cast<uint32_t>(f == 0.0f ? 0.0f : f);
    return (u >> 31) ? ~u : (u | 0x80000000u);
  } else if constexpr (std::is_signed_v<T>) {
    return static_cast<uint32_t>(static_cast<int32_t>(v)) ^ 0x80000000u;
  } else {
    return static_cast<uint32_t>(v);
  }
}

/// Packed (key << 32 | index) entries ordered as integers: the same total order as order_row
/// (topk packs inverted keys), several times faster than comparing pairs.
void order_packed(Job job, std::vector<uint64_t>& e, int64_t param) {
  switch (job) {
    case Job::sort:
    case Job::argsort:
      std::sort(e.begin(), e.end());
      break;
    case Job::partition:
    case Job::argpartition:
      std::nth_element(e.begin(), e.begin() + param, e.end());
      break;
    case Job::topk:
    case Job::topk_indices:
      if (param == 0) break;
      std::nth_element(e.begin(), e.begin() + (param - 1), e.end());
      std::sort(e.begin(), e.begin() + param);
      break;
  }
}

/// Orders one row of n values (stride sx); returns the input index of output position j via
/// `index(j)` after the call.
template <typename T>
struct RowSorter {
  using K = key_t<T>;
  std::vector<uint64_t> packed;
  std::vector<Entry<K>> ent;
  void run(const T* row, int64_t n, int64_t sx, Job job, int64_t param) {
    if constexpr (kPacked<T>) {
      packed.resize(static_cast<size_t>(n));
      const bool desc = job == Job::topk || job == Job::topk_indices;
      for (int64_t i = 0; i < n; ++i) {
        uint32_t k = key32(row[i * sx]);
        packed[i] = (static_cast<uint64_t>(desc ? ~k : k) << 32) | static_cast<uint64_t>(i);
      }
      order_packed(job, packed, param);
    } else {
      ent.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        ent[i] = {static_cast<K>(row[i * sx]), static_cast<uint32_t>(i)};
      order_row(job, ent, param);
    }
  }
  uint32_t index(int64_t j) const {
    if constexpr (kPacked<T>)
      return static_cast<uint32_t>(packed[j]);
    else
      return ent[j].second;
  }
};

template <typename T>
void sort_typed(const Array& in, Array& out, int axis, Job job, int64_t param) {
  const ReducePlan p = backend::make_reduce_plan(in, {axis}, false);
  const int64_t n = in.shape()[axis];
  int64_t inner = 1;
  for (int d = axis + 1; d < in.ndim(); ++d) inner *= in.shape()[d];
  const int64_t m = out.shape()[axis];
  const int64_t sx = p.rstrides[0][0];
  const T* x = in.raw_ptr<T>();
  const bool want_idx = job == Job::argsort || job == Job::argpartition || job == Job::topk_indices;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(n, 1));
  parallel_for(p.n_out, grain, [&](int64_t b, int64_t e) {
    RowSorter<T> rs;
    Walker kw = p.kept_walker();
    kw.seek(b);
    for (int64_t r = b; r < e; ++r, kw.next()) {
      const T* row = x + kw.offset(0);
      rs.run(row, n, sx, job, param);
      const int64_t base = (r / inner) * (m * inner) + r % inner;
      if (want_idx) {
        uint32_t* o = out.raw_ptr<uint32_t>() + base;
        for (int64_t j = 0; j < m; ++j) o[j * inner] = rs.index(j);
      } else {
        T* o = out.raw_ptr<T>() + base;  // copied from the input: keeps every bit (-0.0, NaNs)
        for (int64_t j = 0; j < m; ++j) o[j * inner] = row[rs.index(j) * sx];
      }
    }
  });
}

void run_sort(const Array& in, Array& out, int axis, Job job, int64_t param) {
  backend::alloc_cpu(out);
  if (out.size() == 0) return;
  if (in.shape()[axis] > static_cast<int64_t>(UINT32_MAX))
    raise("[sort] axis {} of shape {} is too long for uint32 indices", axis, shape_str(in.shape()));
  dispatch_dtype(in.dtype(),
                 [&](auto tag) { sort_typed<decltype(tag)>(in, out, axis, job, param); });
}

}  // namespace

void Sort::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  run_sort(inputs[0], out, axis_, Job::sort, 0);
}
void ArgSort::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  run_sort(inputs[0], out, axis_, Job::argsort, 0);
}
void Partition::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  run_sort(inputs[0], out, axis_, Job::partition, kth_);
}
void ArgPartition::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  run_sort(inputs[0], out, axis_, Job::argpartition, kth_);
}
void TopK::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  run_sort(inputs[0], out, axis_, indices_ ? Job::topk_indices : Job::topk, k_);
}

}  // namespace ingot
