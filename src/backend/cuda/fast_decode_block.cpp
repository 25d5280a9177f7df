// fast::decode_block on CUDA: the persistent decoder-block kernel (decode_block.cu) where it
// takes the problem (16-bit, one row, head dimension 64/128/256, float32 rotary frequencies);
// otherwise the separate primitives' CUDA kernels one after another (ref::decode_block's
// values; the cache buffers are then copied rather than donated).
#include <memory>
#include <vector>

#include "backend/common/utils.h"
#include "backend/common/views.h"
#include "backend/cuda/decode_block_kernels.h"
#include "backend/cuda/indexing_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"
#include "core/primitives/linalg.h"

namespace ingot {
namespace {

/// A row-contiguous, 16-byte aligned copy of a (or a itself when it is one), kept alive in
/// `keep` until the launch is queued.
const void* contiguous(const Array& a, std::vector<std::unique_ptr<cu::Scratch>>& keep,
                       cudaStream_t s) {
  if (a.flags().row_contiguous && reinterpret_cast<uintptr_t>(a.raw_ptr()) % 16 == 0)
    return a.raw_ptr();
  keep.push_back(std::make_unique<cu::Scratch>(a.device(), a.nbytes()));
  cu::copy_to_row_major_device(a, keep.back()->ptr(), s);
  return keep.back()->ptr();
}

/// The separate primitives' CUDA kernels one after another (as DecodeBlock::eval_cpu chains
/// the CPU ones).
void composed(const DecodeBlock& p, const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const DecodeBlock::Slots sl = p.slots();
  const Array& x = inputs[sl.x];
  const Dtype t = x.dtype();
  const int64_t b = x.shape(0), e = x.shape(2), d = inputs[sl.keys].shape(3);
  const int64_t h = p.n_heads_, hk = p.n_kv_heads_, inter = inputs[sl.w_down].shape(1);
  const auto addmm = std::make_shared<AddMM>(p.stream(), 1.0f, 1.0f, true);
  auto transposed = [&](const Array& w) {
    Array v({w.shape(1), w.shape(0)}, w.dtype(), addmm, {});
    backend::transpose_view(w, v, {1, 0});
    return v;
  };
  const std::shared_ptr<RmsNormLinear> nl = p.qkv_product();
  Array qkv({b, 1, (h + 2 * hk) * d}, t, nl, {});
  nl->eval_cuda({x, inputs[sl.input_norm], transposed(inputs[sl.w_qkv])}, qkv);
  const std::shared_ptr<RopeKvUpdate> kv = p.kv_update();
  std::vector<Array> kin{qkv};
  if (sl.q_norm >= 0) {
    kin.push_back(inputs[sl.q_norm]);
    kin.push_back(inputs[sl.k_norm]);
  }
  kin.push_back(inputs[sl.offsets]);
  if (sl.freqs >= 0) kin.push_back(inputs[sl.freqs]);
  kin.push_back(inputs[sl.keys]);
  kin.push_back(inputs[sl.values]);
  kin.push_back(inputs[sl.column]);
  std::vector<Array> kout{Array({b, h, 1, d}, t, kv, {}), outputs[1], outputs[2]};
  kv->eval_cuda(kin, kout);  // kout[1], kout[2] are outputs[1], outputs[2] (shared handles)
  const std::shared_ptr<ScaledDotProductAttention> at = p.attention();
  Array o4({b, h, 1, d}, t, at, {});
  at->eval_cuda({kout[0], outputs[1], outputs[2], inputs[sl.mask]}, o4);
  const Shape os{b, 1, h * d};
  const Strides ost{h * d, h * d, 1};
  Array o(os, t, addmm, {});
  o.copy_shared_buffer(o4, ost, backend::compute_flags(os, ost), o4.data_size());
  Array hid({b, 1, e}, t, addmm, {});
  addmm->eval_cuda({x, o, transposed(inputs[sl.w_o])}, hid);
  const std::shared_ptr<RmsNormGlu> gl = p.glu();
  Array g({b, 1, inter}, t, gl, {});
  gl->eval_cuda({hid, inputs[sl.post_norm], transposed(inputs[sl.w_gate_up])}, g);
  addmm->eval_cuda({hid, g, transposed(inputs[sl.w_down])}, outputs[0]);
}

}  // namespace

void DecodeBlock::eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const Slots sl = slots();
  const Array& x = inputs[sl.x];
  const Array& keys = inputs[sl.keys];
  const Dtype t = x.dtype();
  const Device dev = outputs[0].device();
  const cudaStream_t s = cu::stream(stream());
  const int sms = cu::props(dev.index).multiProcessorCount;
  cu::DecodeBlockArgs a;
  a.dtype = t;
  a.B = static_cast<int>(x.shape(0));
  a.E = static_cast<int>(x.shape(2));
  a.H = n_heads_;
  a.Hkv = n_kv_heads_;
  a.D = static_cast<int>(keys.shape(3));
  a.C = static_cast<int>(keys.shape(2));
  a.I = static_cast<int>(inputs[sl.w_down].shape(1));
  const bool freqs_ok = sl.freqs < 0 || inputs[sl.freqs].dtype() == float32;
  if (!cu::decode_block_supported(a, sms) || !freqs_ok) return composed(*this, inputs, outputs);
  std::vector<std::unique_ptr<cu::Scratch>> keep;
  a.x = contiguous(x, keep, s);
  a.in_norm = contiguous(inputs[sl.input_norm], keep, s);
  a.w_qkv = contiguous(inputs[sl.w_qkv], keep, s);
  if (sl.q_norm >= 0) {
    a.q_norm = contiguous(inputs[sl.q_norm], keep, s);
    a.k_norm = contiguous(inputs[sl.k_norm], keep, s);
  }
  a.w_o = contiguous(inputs[sl.w_o], keep, s);
  a.post_norm = contiguous(inputs[sl.post_norm], keep, s);
  a.w_gu = contiguous(inputs[sl.w_gate_up], keep, s);
  a.w_down = contiguous(inputs[sl.w_down], keep, s);
  a.mask = static_cast<const bool*>(contiguous(inputs[sl.mask], keep, s));
  const Array& offsets = inputs[sl.offsets];
  a.positions = offsets.raw_ptr();
  a.positions_dtype = offsets.dtype();
  a.positions_stride = offsets.ndim() && offsets.size() > 1 ? offsets.strides()[0] : 0;
  if (sl.freqs >= 0) {
    a.freqs = inputs[sl.freqs].raw_ptr();
    a.freqs_stride = inputs[sl.freqs].strides()[0];
  }
  a.column = inputs[sl.column].raw_ptr();
  a.column_dtype = inputs[sl.column].dtype();
  a.eps = eps_;
  a.add_unit_offset = add_unit_offset_;
  a.weight_in_float32 = weight_in_float32_;
  a.qk_eps = qk_eps_;
  a.qk_add_unit_offset = qk_add_unit_offset_;
  a.qk_weight_in_float32 = qk_weight_in_float32_;
  a.traditional = traditional_;
  a.rope_scale = rope_scale_;
  a.scale = scale_;
  a.gate = act_ + 1;  // GatedActivation silu/gelu/gelu_tanh -> the GEMV's gate codes 1/2/3
  cu::alloc(outputs[0]);
  // Each of the three outputs holds the inputs: the buffers are free when held only so.
  const long holders = static_cast<long>(outputs.size());
  cu::copy_or_donate(keys, outputs[1], s, holders);
  cu::copy_or_donate(inputs[sl.values], outputs[2], s, holders);
  a.keys = outputs[1].raw_ptr();
  a.values = outputs[2].raw_ptr();
  a.out = outputs[0].raw_ptr();
  a.site = cu::fault_site(dev, cu::kPutAlongAxis, 2);
  const cu::RopeInvFreqs inv = cu::host_inv_freqs(a.D, base_, sl.freqs >= 0);
  cu::Scratch scratch(dev, cu::decode_block_scratch_bytes(a, sms));
  cu::launch_decode_block(a, inv, scratch.ptr(), s, sms);
}

}  // namespace ingot
