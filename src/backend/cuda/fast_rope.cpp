// Rope on CUDA: validate, give out storage (x's buffer when donatable, as the CPU backend
// does), compute the inverse frequencies on the host exactly as the CPU does and launch the
// kernel of fast_rope.cu. Offsets and custom frequencies are read on the device.
#include <cmath>
#include <memory>

#include "backend/cuda/fast_rope_kernels.h"
#include "backend/cuda/fast_sdpa_args.h"
#include "backend/cuda/fast_sdpa_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"
#include "util/env.h"

namespace ingot::cu {

RopeInvFreqs host_inv_freqs(int dims, float base, bool has_freqs) {
  RopeInvFreqs inv;
  const int half = dims / 2;
  if (!has_freqs && half <= kRopeMaxInvFreqs) {
    inv.n = half;
    for (int i = 0; i < half; ++i)  // the CPU backend's expression (powf), for bitwise parity
      inv.v[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dims));
  }
  return inv;
}

}  // namespace ingot::cu

namespace ingot {
namespace {

/// Offsets input o (per-row start positions [B] or one [1]) into a.
void set_offsets(cu::RopeArgs& a, const Array& o) {
  a.offsets = o.raw_ptr();
  a.offsets_dtype = o.dtype();
  a.offsets_stride = o.ndim() && o.size() > 1 ? o.strides()[0] : 0;
  a.nb = o.size();
}

void set_freqs(cu::RopeArgs& a, const Array& f) {
  a.freqs = f.raw_ptr();
  a.freqs_dtype = f.dtype();
  a.freqs_stride = f.strides()[0];
}

}  // namespace

void Rope::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  if (!is_floating(out.dtype())) raise("[rope] unsupported dtype {}", dtype_name(out.dtype()));
  const Array& x = inputs[0];
  cu::RopeArgs a;
  a.x = x.raw_ptr();
  a.rows = cu::row_layout(x);
  a.sx = x.strides().back();
  a.D = x.shape(-1);
  a.L = x.shape(-2);
  a.n_rows = a.D ? x.size() / a.D : 0;
  a.dims = dims_;
  a.traditional = traditional_;
  a.base = base_;
  a.scale = scale_;
  a.offset = offset_;
  if (has_offsets_) set_offsets(a, inputs[1]);
  a.rows_per_b = a.nb > 1 ? a.n_rows / a.nb : a.n_rows;
  if (has_freqs_) set_freqs(a, inputs.back());
  const cu::RopeInvFreqs inv = cu::host_inv_freqs(dims_, base_, has_freqs_);
  const cudaStream_t s = cu::stream(stream());
  // Each element is read before it is written, by the same thread: x's buffer can be reused.
  if (x.is_donatable() && x.dtype() == out.dtype())
    out.move_shared_buffer(x);
  else
    cu::alloc(out);
  if (a.n_rows == 0) return;
  a.out = out.raw_ptr();
  cu::launch_rope(out.dtype(), a, inv, s);
}

namespace {

/// RopeKvUpdate's kernel arguments for its inputs, the first n of `inputs` (qkv, [norms],
/// [offsets], [freqs], keys, values, column), with the copies they need kept alive;
/// keys/values/q_out are set by the caller once its outputs exist. (The inputs are not copied
/// into a vector of their own: that would add holders to the buffers to donate.) qkv is copied to a
/// row-major scratch first when its rows are not contiguous 16-byte aligned runs, a norm weight
/// when it is not a contiguous aligned [D].
struct RopeKvPrep {
  cu::RopeKvArgs a;
  cu::RopeInvFreqs inv;
  std::unique_ptr<cu::Scratch> tmp, wtmp[2];
};

void prepare_rope_kv(const RopeKvUpdate& p, const std::vector<Array>& inputs, size_t n, Device dev,
                     cudaStream_t s, RopeKvPrep& pr) {
  const Array& qkv = inputs[0];
  const Array& keys = inputs[n - 3];
  const Array& column = inputs[n - 1];
  cu::RopeKvArgs& a = pr.a;
  a.B = qkv.shape(0);
  a.L = qkv.shape(1);
  a.D = keys.shape(3);
  a.C = keys.shape(2);
  a.H = p.n_heads_;
  a.Hkv = p.n_kv_heads_;
  const int64_t es = static_cast<int64_t>(qkv.itemsize());
  const Strides& st = qkv.strides();
  const bool aligned = reinterpret_cast<uintptr_t>(qkv.raw_ptr()) % 16 == 0 &&
                       (a.B == 1 || (st[0] * es) % 16 == 0) && (a.L == 1 || (st[1] * es) % 16 == 0);
  if (st[2] == 1 && aligned) {
    a.qkv = qkv.raw_ptr();
    a.sb = st[0];
    a.sl = st[1];
  } else {
    pr.tmp = std::make_unique<cu::Scratch>(dev, qkv.nbytes());
    cu::copy_to_row_major_device(qkv, pr.tmp->ptr(), s);
    a.qkv = pr.tmp->ptr();
    a.sl = qkv.shape(2);
    a.sb = a.L * a.sl;
  }
  size_t i = 1;
  if (p.has_norm_) {
    const void** dst[2] = {&a.q_norm, &a.k_norm};
    for (int w = 0; w < 2; ++w, ++i) {
      const Array& nw = inputs[i];
      if ((a.D == 1 || nw.strides()[0] == 1) &&
          reinterpret_cast<uintptr_t>(nw.raw_ptr()) % 16 == 0) {
        *dst[w] = nw.raw_ptr();
      } else {
        pr.wtmp[w] = std::make_unique<cu::Scratch>(dev, nw.nbytes());
        cu::copy_to_row_major_device(nw, pr.wtmp[w]->ptr(), s);
        *dst[w] = pr.wtmp[w]->ptr();
      }
    }
  }
  a.eps = p.eps_;
  a.add_unit_offset = p.add_unit_offset_;
  a.weight_in_float32 = p.weight_in_float32_;
  cu::RopeArgs& r = a.rope;
  r.D = r.dims = a.D;
  r.L = a.L;
  r.traditional = p.traditional_;
  r.base = p.base_;
  r.scale = p.scale_;
  r.offset = p.offset_;
  if (p.has_offsets_) set_offsets(r, inputs[i++]);
  if (p.has_freqs_) set_freqs(r, inputs[i++]);
  pr.inv = cu::host_inv_freqs(static_cast<int>(a.D), p.base_, p.has_freqs_);
  a.column = column.raw_ptr();
  a.column_dtype = column.dtype();
  a.site = cu::fault_site(dev, cu::kPutAlongAxis, 2);
}

/// The updated keys/values buffers (inputs n - 3 and n - 2) as the outputs (donated when the
/// outputs are their only holders) and their pointers in a.
void take_buffers(const std::vector<Array>& inputs, size_t n, std::vector<Array>& outputs,
                  cudaStream_t s, cu::RopeKvArgs& a) {
  // Each of the three outputs holds the inputs: the buffers are free when held only so.
  const long holders = static_cast<long>(outputs.size());
  cu::copy_or_donate(inputs[n - 3], outputs[1], s, holders);
  cu::copy_or_donate(inputs[n - 2], outputs[2], s, holders);
  a.keys = outputs[1].raw_ptr();
  a.values = outputs[2].raw_ptr();
}

}  // namespace

// One kernel: q/k norms, rotation and the key/value writes (fast_rope.cu).
void RopeKvUpdate::eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const cudaStream_t s = cu::stream(stream());
  RopeKvPrep pr;
  prepare_rope_kv(*this, inputs, inputs.size(), outputs[0].device(), s, pr);
  cu::alloc(outputs[0]);
  take_buffers(inputs, inputs.size(), outputs, s, pr.a);
  pr.a.q_out = outputs[0].raw_ptr();
  cu::launch_rope_kv(inputs[0].dtype(), pr.a, pr.inv, s);
}

// The one kernel of fast_sdpa_decode.cu when the cluster decode kernel takes the attention
// (one new token a row, 16-bit, sm_90); otherwise RopeKvUpdate's kernel into a temporary q,
// then the attention's kernels.
void RopeKvAttention::eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const size_t n = kv_inputs(inputs.size());
  const Array& qkv = inputs[0];
  const Dtype t = qkv.dtype();
  const Device dev = outputs[0].device();
  const cudaStream_t s = cu::stream(stream());
  RopeKvPrep pr;
  prepare_rope_kv(*kv_, inputs, n, dev, s, pr);
  take_buffers(inputs, n, outputs, s, pr.a);
  const Array& keys = outputs[1];
  cu::SdpaArgs a;
  a.dtype = t;
  a.B = pr.a.B, a.H = pr.a.H, a.L = pr.a.L, a.D = a.Dv = pr.a.D;
  a.Hkv = pr.a.Hkv, a.S = pr.a.C;
  // keys'/values' are row-major [B, Hkv, C, D] buffers.
  a.k_st[0] = a.v_st[0] = a.Hkv * a.S * a.D;
  a.k_st[1] = a.v_st[1] = a.S * a.D;
  a.k_st[2] = a.v_st[2] = a.D;
  a.k = keys.raw_ptr();
  a.v = outputs[2].raw_ptr();
  a.scale = scale_;
  if (mask_ != SdpaMask::none) cu::set_sdpa_mask(a, inputs.back(), mask_);
  static const bool fused_on = env::flag("INGOT_CUDA_ROPE_KV_ATTENTION", true);
  if (fused_on && a.S > 0 && a.L == 1 && cu::sdpa_uses_decode(a)) {
    cu::alloc(outputs[0]);
    a.out = outputs[0].raw_ptr();
    const cudaDeviceProp& props = cu::props(dev.index);
    const cu::SdpaPlan plan = cu::plan_sdpa(a, props.multiProcessorCount);
    if (plan.smem <= props.sharedMemPerBlockOptin &&
        cu::launch_rope_kv_attention(a, plan, pr.a, pr.inv, s))
      return;
  }
  Array q({pr.a.B, pr.a.H, pr.a.L, pr.a.D}, t, kv_, {});
  cu::alloc(q);
  pr.a.q_out = q.raw_ptr();
  cu::launch_rope_kv(t, pr.a, pr.inv, s);
  std::vector<Array> ain{q, outputs[1], outputs[2]};
  if (n < inputs.size()) ain.push_back(inputs.back());
  attention()->eval_cuda(ain, outputs[0]);
}

}  // namespace ingot
