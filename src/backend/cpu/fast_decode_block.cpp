// CPU evaluation of DecodeBlock: the CPU kernels of the separate ops one after the other
// (RmsNormLinear, RopeKvUpdate, ScaledDotProductAttention, AddMM, RmsNormGlu, AddMM) on
// temporaries and views, so the values are those of ref::decode_block exactly.
#include <memory>
#include <type_traits>
#include <vector>

#include "backend/common/utils.h"
#include "backend/common/views.h"
#include "backend/cpu/fast_kernels.h"
#include "core/primitives/fast.h"
#include "core/primitives/linalg.h"

namespace ingot {

void DecodeBlock::eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const Slots sl = slots();
  const Array& x = inputs[sl.x];
  const Array& keys = inputs[sl.keys];
  const Array& values = inputs[sl.values];
  const Dtype t = x.dtype();
  const int64_t b = x.shape(0), e = x.shape(2), d = keys.shape(3);
  const int64_t h = n_heads_, hk = n_kv_heads_;
  const int64_t inter = inputs[sl.w_down].shape(1), c = keys.shape(2);
  const Array& column = inputs[sl.column];
  int64_t col = -1;
  dispatch_dtype(column.dtype(), [&](auto ty) {
    using I = decltype(ty);
    if constexpr (std::is_integral_v<I>) col = static_cast<int64_t>(*column.raw_ptr<I>());
  });
  if (col < 0 || col >= c)
    raise("[decode_block] column {} is outside the cache's {} columns", col, c);
  // add_matmul's primitive: the product rounded to the dtype, then the residual added.
  const auto addmm = std::make_shared<AddMM>(stream(), 1.0f, 1.0f, true);
  // A Linear weight [N, K] as its transposed [K, N] view (what transpose(w) evaluates to).
  auto transposed = [&](const Array& w) {
    Array v({w.shape(1), w.shape(0)}, w.dtype(), addmm, {});
    backend::transpose_view(w, v, {1, 0});
    return v;
  };

  // qkv = rms_norm_linear(x, input_norm, w_qkv) [B, 1, (H + 2 Hkv) D].
  const std::shared_ptr<RmsNormLinear> nl = qkv_product();
  Array qkv({b, 1, (h + 2 * hk) * d}, t, nl, {});
  nl->eval_cpu({x, inputs[sl.input_norm], transposed(inputs[sl.w_qkv])}, qkv);

  // q/k norms, rotary and the cache writes; keys/values are passed by reference so that the
  // buffers are donated exactly when RopeKvUpdate would donate them (each of this primitive's
  // outputs holds the inputs once).
  const std::shared_ptr<RopeKvUpdate> kv = kv_update();
  std::vector<Array> rope_params{inputs[sl.offsets]};
  if (has_freqs_) rope_params.push_back(inputs[sl.freqs]);
  Array q({b, h, 1, d}, t, kv, {});
  backend::fastk::rope_kv_update(*kv, qkv, has_qk_norm_ ? &inputs[sl.q_norm] : nullptr,
                                 has_qk_norm_ ? &inputs[sl.k_norm] : nullptr, rope_params, keys,
                                 values, inputs[sl.column], q, outputs[1], outputs[2],
                                 static_cast<long>(outputs.size()));

  // o = attention [B, H, 1, D]; with L = 1 its rows are already [B, 1, H D] row-major (the
  // transpose + reshape of the composition), so that is a view.
  const std::shared_ptr<ScaledDotProductAttention> at = attention();
  Array o4({b, h, 1, d}, t, at, {});
  at->eval_cpu({q, outputs[1], outputs[2], inputs[sl.mask]}, o4);
  const Shape os{b, 1, h * d};
  const Strides ost{h * d, h * d, 1};
  Array o(os, t, addmm, {});
  o.copy_shared_buffer(o4, ost, backend::compute_flags(os, ost), o4.data_size());

  // h = x + o @ w_o^T, then out = h + glu(h) @ w_down^T.
  Array hid({b, 1, e}, t, addmm, {});
  addmm->eval_cpu({x, o, transposed(inputs[sl.w_o])}, hid);
  const std::shared_ptr<RmsNormGlu> gl = glu();
  Array g({b, 1, inter}, t, gl, {});
  gl->eval_cpu({hid, inputs[sl.post_norm], transposed(inputs[sl.w_gate_up])}, g);
  addmm->eval_cpu({hid, g, transposed(inputs[sl.w_down])}, outputs[0]);
}

}  // namespace ingot
