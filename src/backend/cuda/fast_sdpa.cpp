// ScaledDotProductAttention::eval_cuda: reads q, k, v (and the mask) in place through their
// strides, copying only operands whose last axis is strided (or, for the tensor-core kernel,
// misaligned), then queues the kernels of fast_sdpa{,_decode}.cu on the primitive's stream.
#include <optional>

#include "backend/cuda/fast_sdpa_args.h"
#include "backend/cuda/fast_sdpa_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"

namespace ingot {

namespace {

// Pointer and (batch, head, position) strides of a 4-d operand with a unit-stride last axis,
// copied row-major into `copy` when the kernel cannot read it in place. Size-1 axes get stride 0
// so that their arbitrary strides do not defeat the alignment test.
const void* operand(const Array& a, bool need_aligned, std::optional<cu::Scratch>& copy,
                    int64_t st[3], cudaStream_t s) {
  for (int d = 0; d < 3; ++d) st[d] = a.shape(d) == 1 ? 0 : a.strides()[d];
  const bool unit_last = a.shape(3) <= 1 || a.strides()[3] == 1;
  bool ok = unit_last;
  if (ok && need_aligned) {
    const int64_t isz = static_cast<int64_t>(a.itemsize());
    ok = reinterpret_cast<uintptr_t>(a.raw_ptr()) % 16 == 0;
    for (int d = 0; d < 3; ++d) ok = ok && (st[d] * isz) % 16 == 0;
  }
  if (ok) return a.raw_ptr();
  copy.emplace(a.device(), a.nbytes());
  cu::copy_to_row_major_device(a, copy->ptr(), s);
  st[2] = a.shape(3);
  st[1] = a.shape(2) * st[2];
  st[0] = a.shape(1) * st[1];
  return copy->ptr();
}

}  // namespace

void ScaledDotProductAttention::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  constexpr const char* op = "[scaled_dot_product_attention]";
  const Array &q = inputs[0], &k = inputs[1], &v = inputs[2];
  const Dtype t = out.dtype();
  if (!is_floating(t)) raise("{} unsupported dtype {}", op, dtype_name(t));
  cu::SdpaArgs a;
  a.dtype = t;
  a.B = q.shape(0), a.H = q.shape(1), a.L = q.shape(2), a.D = q.shape(3);
  a.Hkv = k.shape(1), a.S = k.shape(2), a.Dv = v.shape(3);
  if (a.D > cu::kSdpaMaxHeadDim || a.Dv > cu::kSdpaMaxHeadDim)
    raise<Unsupported>("{} head dims above {} are not supported on CUDA (q {}, v {})", op,
                       cu::kSdpaMaxHeadDim, shape_str(q.shape()), shape_str(v.shape()));
  cu::alloc(out);
  if (out.size() == 0) return;
  cudaStream_t s = cu::stream(stream());
  if (a.S == 0) {  // no keys: every row is fully masked, which gives zeros
    INGOT_CUDA_CHECK(cudaMemsetAsync(out.raw_ptr(), 0, out.nbytes(), s));
    return;
  }
  const bool aligned = cu::sdpa_uses_mma(t, a.D, a.Dv) || cu::sdpa_uses_decode(a);
  std::optional<cu::Scratch> copies[3];
  a.q = operand(q, aligned, copies[0], a.q_st, s);
  a.k = operand(k, aligned, copies[1], a.k_st, s);
  a.v = operand(v, aligned, copies[2], a.v_st, s);
  a.out = out.raw_ptr();
  a.scale = scale_;
  a.softcap = softcap_;
  a.causal = causal_;
  a.window = window_;
  if (mask_ != SdpaMask::none) cu::set_sdpa_mask(a, inputs[3], mask_);
  const int dev = out.device().index;
  const cudaDeviceProp& pr = cu::props(dev);
  const cu::SdpaPlan plan = cu::plan_sdpa(a, pr.multiProcessorCount);
  if (plan.smem > pr.sharedMemPerBlockOptin)
    raise<Unsupported>("{} D = {}, Dv = {} needs {} bytes of shared memory; cuda:{} has {}", op,
                       a.D, a.Dv, plan.smem, dev, pr.sharedMemPerBlockOptin);
  std::optional<cu::Scratch> partials;
  if (plan.partial_bytes > 0) partials.emplace(out.device(), plan.partial_bytes);
  cu::launch_sdpa(a, plan, partials ? partials->ptr() : nullptr, s);
}

}  // namespace ingot
