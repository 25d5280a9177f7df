// CPU evaluation of PackedAttention: for each sequence the CPU kernels of the separate ops
// (RmsNorm, Rope, ScaledDotProductAttention) on views of qkv, with the prefix and the rotated
// keys copied side by side as concatenate lays them out, so the values are those of
// ref::packed_attention exactly. Many sequences run in parallel (each op serial inside); a
// sequence holding more than a thread's share of the work runs alone on the ops' own threads.
#include <algorithm>
#include <memory>
#include <numeric>
#include <type_traits>
#include <vector>

#include "backend/common/utils.h"
#include "backend/cpu/strided_copy.h"
#include "core/primitives/fast.h"
#include "util/thread_pool.h"

namespace ingot {

namespace {

// Copies `src` [1, Hkv, n, D] (any layout) into columns col .. col + n of `dst`, a row-major
// [1, Hkv, S, D] buffer.
void copy_columns(const Array& src, Array& dst, int64_t col) {
  const int64_t es = static_cast<int64_t>(dst.itemsize());
  char* base = static_cast<char*>(dst.raw_ptr()) + col * dst.shape(3) * es;
  backend::strided_copy(src.raw_ptr(), src.dtype(), src.strides(), base, dst.dtype(), dst.strides(),
                        src.shape());
}

}  // namespace

void PackedAttention::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Slots sl = slots();
  const Array& qkv = inputs[sl.qkv];
  const Dtype t = qkv.dtype();
  const int64_t h = n_heads_, hk = n_kv_heads_, heads = h + 2 * hk;
  const int64_t d = qkv.shape(1) / heads, rows = qkv.shape(0);
  const int64_t p = has_prefix_ ? inputs[sl.prefix_keys].shape(2) : 0;

  // The sequences' first rows and T.
  const Array& sa = inputs[sl.starts];
  std::vector<int64_t> starts(static_cast<size_t>(sa.size()));
  const int64_t ss = sa.ndim() ? sa.strides()[0] : 0;
  dispatch_dtype(sa.dtype(), [&](auto ty) {
    using I = decltype(ty);
    if constexpr (std::is_integral_v<I>)
      for (size_t i = 0; i < starts.size(); ++i)
        starts[i] = static_cast<int64_t>(sa.raw_ptr<I>()[static_cast<int64_t>(i) * ss]);
  });
  bool ok = starts.size() >= 2 && starts.front() == 0 && starts.back() == rows;
  for (size_t i = 1; ok && i < starts.size(); ++i) ok = starts[i] >= starts[i - 1];
  if (!ok)
    raise("[packed_attention] starts must run from 0 to T = {} without decreasing ({} entries)",
          rows, starts.size());

  backend::alloc_cpu(out);
  if (out.size() == 0) return;

  // The separate ops' primitives, as ref::packed_attention builds them.
  std::shared_ptr<RmsNorm> norm;
  if (has_qk_norm_)
    norm = std::make_shared<RmsNorm>(stream(), qk_eps_, qk_add_unit_offset_, qk_weight_in_float32_,
                                     true);
  const auto rope = std::make_shared<Rope>(stream(), static_cast<int>(d), traditional_, base_,
                                           rope_scale_, p, false, has_freqs_);
  const auto att = std::make_shared<ScaledDotProductAttention>(stream(), scale_, true, window_,
                                                               softcap_, SdpaMask::none);

  // Heads [first, first + count) of rows [r0, r0 + len) as a [1, count, len, D] view of qkv.
  const Strides& qs = qkv.strides();
  auto heads_view = [&](int64_t r0, int64_t len, int64_t first, int64_t count) {
    const Shape shape{1, count, len, d};
    const Strides st{len * qs[0], d * qs[1], qs[0], qs[1]};
    int64_t span = 1;
    for (size_t i = 0; i < shape.size(); ++i) span += (shape[i] - 1) * st[i];
    Array v(shape, t, rope, {});
    v.copy_shared_buffer(qkv, st, backend::compute_flags(shape, st), span,
                         r0 * qs[0] + first * d * qs[1]);
    return v;
  };
  // rope(rms_norm(x, w)) into a new [1, count, len, D] array.
  auto norm_rope = [&](Array x, const Array* w) {
    if (norm) {
      Array n(x.shape(), t, norm, {});
      norm->eval_cpu({x, *w}, n);
      x = n;
    }
    std::vector<Array> rin{x};
    if (has_freqs_) rin.push_back(inputs[sl.freqs]);
    Array r(x.shape(), t, rope, {});
    rope->eval_cpu(rin, r);
    return r;
  };
  // The prefix's columns, then the sequence's, in a new [1, Hkv, P + len, D] array.
  auto with_prefix = [&](const Array& prefix, const Array& x, int64_t len) {
    Array c({1, hk, p + len, d}, t, att, {});
    backend::alloc_cpu(c);
    copy_columns(prefix, c, 0);
    copy_columns(x, c, p);
    return c;
  };
  const int64_t es = static_cast<int64_t>(out.itemsize());
  auto run = [&](int64_t s) {
    const int64_t r0 = starts[s], len = starts[s + 1] - r0;
    const Array q =
        norm_rope(heads_view(r0, len, 0, h), has_qk_norm_ ? &inputs[sl.q_norm] : nullptr);
    Array k = norm_rope(heads_view(r0, len, h, hk), has_qk_norm_ ? &inputs[sl.k_norm] : nullptr);
    Array v = heads_view(r0, len, h + hk, hk);
    if (has_prefix_) {
      k = with_prefix(inputs[sl.prefix_keys], k, len);
      v = with_prefix(inputs[sl.prefix_values], v, len);
    }
    Array o({1, h, len, d}, t, att, {});
    att->eval_cpu({q, k, v}, o);
    // [1, H, len, D] -> rows r0 .. r0 + len of out [T, H D].
    backend::strided_copy(o.raw_ptr(), t, {o.strides()[1], o.strides()[2], o.strides()[3]},
                          static_cast<char*>(out.raw_ptr()) + r0 * h * d * es, t, {d, h * d, 1},
                          {h, len, d});
  };

  // Non-empty sequences, most work first; those above a thread's share run one at a time with
  // the ops' threads, the rest side by side.
  const int64_t n = static_cast<int64_t>(starts.size()) - 1;
  std::vector<int64_t> order, cost(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s) {
    const int64_t len = starts[s + 1] - starts[s];
    cost[s] = len * (p + len + d);
    if (len > 0) order.push_back(s);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return cost[a] > cost[b]; });
  const int64_t total = std::accumulate(cost.begin(), cost.end(), int64_t{0});
  const int64_t threads = pool_threads();
  size_t big = 0;
  while (big < order.size() && cost[order[big]] * threads > total) run(order[big++]);
  parallel_for_dynamic(static_cast<int64_t>(order.size() - big), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) run(order[big + static_cast<size_t>(i)]);
  });
}

}  // namespace ingot
