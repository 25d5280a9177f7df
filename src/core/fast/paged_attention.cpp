// fast::paged_attention: argument checks and the PagedAttention node (kernels in
// backend/*/paged_attention*).
#include "core/fast/paged_attention.h"

#include <ostream>

#include "core/primitives/paged_attention.h"
#include "util/error.h"

namespace ingot {

namespace fast {

std::vector<Array> paged_attention(const Array& q, const Array& k, const Array& v,
                                   const Array& k_pool, const Array& v_pool,
                                   const Array& block_table, const Array& q_pos,
                                   const PagedAttentionOptions& opt, StreamOrDevice s) {
  const char* op = "paged_attention";
  const Dtype t = q.dtype();
  if (t != Dtype::float32 && t != Dtype::bfloat16 && t != Dtype::float16 && t != Dtype::float64)
    raise("[{}] q must be float32, bfloat16, float16 or float64, got {}", op, dtype_name(t));
  if (q.ndim() != 4 || k.ndim() != 4 || v.shape() != k.shape())
    raise("[{}] expected q [B, H, L, D] and k, v [B, Hkv, L, D] of one shape, got {}, {}, {}", op,
          shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  const int64_t b = q.shape(0), h = q.shape(1), l = q.shape(2), d = q.shape(3);
  const int64_t hk = k.shape(1);
  if (k.shape(0) != b || k.shape(2) != l || k.shape(3) != d)
    raise("[{}] k and v must be [B = {}, Hkv, L = {}, D = {}], got {}", op, b, l, d,
          shape_str(k.shape()));
  if (hk <= 0 || h % hk != 0)
    raise("[{}] the query heads ({}) must be a multiple of the key/value heads ({})", op, h, hk);
  if (k_pool.ndim() != 4 || v_pool.shape() != k_pool.shape() || k_pool.shape(1) != hk ||
      k_pool.shape(3) != d || k_pool.shape(2) < 1)
    raise("[{}] k_pool and v_pool must both be [N, Hkv = {}, P, D = {}], got {} and {}", op, hk, d,
          shape_str(k_pool.shape()), shape_str(v_pool.shape()));
  for (const Array* a : {&k, &v, &k_pool, &v_pool})
    if (a->dtype() != t)
      raise("[{}] k, v and the pools must have q's dtype {}, got {}", op, dtype_name(t),
            dtype_name(a->dtype()));
  if (block_table.ndim() != 2 || block_table.shape(0) != b || block_table.dtype() != Dtype::int32)
    raise("[{}] block_table must be int32 [B = {}, M], got {} {}", op, b,
          dtype_name(block_table.dtype()), shape_str(block_table.shape()));
  if (q_pos.ndim() != 1 || q_pos.shape(0) != b || q_pos.dtype() != Dtype::int32)
    raise("[{}] q_pos must be int32 [B = {}], got {} {}", op, b, dtype_name(q_pos.dtype()),
          shape_str(q_pos.shape()));
  if (opt.padding && (opt.padding->ndim() != 1 || opt.padding->shape(0) != b ||
                      opt.padding->dtype() != Dtype::int32))
    raise("[{}] padding must be int32 [B = {}], got {} {}", op, b, dtype_name(opt.padding->dtype()),
          shape_str(opt.padding->shape()));
  if (opt.window < 0) raise("[{}] window must be >= 0, got {}", op, opt.window);
  if (!(opt.softcap >= 0.0f)) raise("[{}] softcap must be >= 0, got {}", op, opt.softcap);
  const Stream st = resolve_stream(s, {&q, &k, &v, &k_pool, &v_pool});
  auto p = std::make_shared<PagedAttention>(st, opt.scale, opt.window, opt.softcap,
                                            opt.padding.has_value());
  std::vector<Array> inputs{q, k, v, k_pool, v_pool, block_table, q_pos};
  if (opt.padding) inputs.push_back(*opt.padding);
  return Array::make_arrays({q.shape(), k_pool.shape(), v_pool.shape()}, {t, t, t}, std::move(p),
                            std::move(inputs));
}

}  // namespace fast

std::vector<Shape> PagedAttention::output_shapes(const std::vector<Array>& inputs) {
  return {inputs[0].shape(), inputs[3].shape(), inputs[4].shape()};
}

void PagedAttention::print(std::ostream& os) const {
  os << "PagedAttention(scale=" << scale_ << ", window=" << window_ << ", softcap=" << softcap_
     << (has_padding_ ? ", padding" : "") << ")";
}

}  // namespace ingot
