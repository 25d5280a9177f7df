// ScaledDotProductAttentionGrad::eval_cuda: copies q, k, v, out and d_out to row-major scratch
// when they are not row-contiguous and 16-byte aligned (the mma kernels read unit-stride rows at
// any 16-byte aligned strides in place), then queues the backward kernels of
// fast_sdpa_bwd.cu (row statistics into float scratch, dk/dv, dq) on the primitive's stream.
#include <optional>

#include "backend/cuda/fast_sdpa_args.h"
#include "backend/cuda/fast_sdpa_bwd_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"

namespace ingot {

namespace {

// a [B, H, L, D]'s data and its (batch, head, position) element strides: in place when a is
// row-contiguous, or (`strided`: the kernels take strides) when its rows are unit-stride and
// every stride keeps 16-byte alignment, both at a 16-byte aligned address; else a row-major copy
// into `copy` queued on s.
const void* rows_of(const Array& a, bool strided, int64_t (&st)[3],
                    std::optional<cu::Scratch>& copy, cudaStream_t s) {
  const bool aligned = reinterpret_cast<uintptr_t>(a.raw_ptr()) % 16 == 0;
  bool ok = aligned && a.flags().row_contiguous;
  if (!ok && strided && aligned && a.strides()[3] == 1) {
    ok = true;
    for (int d = 0; d < 3; ++d) ok = ok && (a.shape(d) == 1 || a.strides()[d] % 8 == 0);
  }
  if (ok) {
    for (int d = 0; d < 3; ++d) st[d] = a.strides()[d];
    return a.raw_ptr();
  }
  st[2] = a.shape(3), st[1] = a.shape(2) * st[2], st[0] = a.shape(1) * st[1];
  copy.emplace(a.device(), a.nbytes());
  cu::copy_to_row_major_device(a, copy->ptr(), s);
  return copy->ptr();
}

}  // namespace

void ScaledDotProductAttentionGrad::eval_cuda(const std::vector<Array>& inputs,
                                              std::vector<Array>& outputs) {
  constexpr const char* op = "[scaled_dot_product_attention_grad]";
  const Array &q = inputs[0], &k = inputs[1], &v = inputs[2];
  const Dtype t = q.dtype();
  for (int i = 1; i < 5; ++i)
    if (inputs[i].dtype() != t)
      raise("{} q, k, v, out and d_out must have one dtype, got {} and {}", op, dtype_name(t),
            dtype_name(inputs[i].dtype()));
  if (!cu::sdpa_bwd_supported(t, q.shape(3), v.shape(3)))
    raise<Unsupported>(
        "{} CUDA takes bfloat16/float16 with D == Dv in {{64, 128, 256}}, got {} q {}, v {}", op,
        dtype_name(t), shape_str(q.shape()), shape_str(v.shape()));
  for (Array& o : outputs) cu::alloc(o);
  cu::SdpaBwdArgs a;
  a.dtype = t;
  a.B = q.shape(0), a.H = q.shape(1), a.L = q.shape(2), a.D = q.shape(3);
  a.Hkv = k.shape(1), a.S = k.shape(2);
  if (a.B == 0 || a.H == 0 || a.Hkv == 0) return;  // empty outputs
  cudaStream_t s = cu::stream(stream());
  if (a.L == 0 || a.S == 0) {  // no queries: dk = dv = 0; no keys: dq = 0 (fully masked rows)
    for (Array& o : outputs)
      if (o.nbytes() > 0) INGOT_CUDA_CHECK(cudaMemsetAsync(o.raw_ptr(), 0, o.nbytes(), s));
    return;
  }
  const int dev = q.device().index;
  const cudaDeviceProp& pr = cu::props(dev);
  const size_t smem = cu::sdpa_bwd_smem(a.D);
  if (smem > pr.sharedMemPerBlockOptin)
    raise<Unsupported>("{} D = {} needs {} bytes of shared memory; cuda:{} has {}", op, a.D, smem,
                       dev, pr.sharedMemPerBlockOptin);
  a.scale = scale_;
  a.causal = causal_;
  a.window = window_;
  if (mask_ != SdpaMask::none) cu::set_sdpa_mask(a, inputs[5], mask_);
  // The mma kernels read the transposed views attention passes ([B, L, H, D] storage) in place.
  const bool strided = cu::sdpa_bwd_mma_takes(a);
  std::optional<cu::Scratch> copies[5];
  a.q = rows_of(q, strided, a.q_st, copies[0], s);
  a.k = rows_of(k, strided, a.k_st, copies[1], s);
  a.v = rows_of(v, strided, a.v_st, copies[2], s);
  a.out = rows_of(inputs[3], strided, a.o_st, copies[3], s);
  a.d_out = rows_of(inputs[4], strided, a.g_st, copies[4], s);
  a.dq = outputs[0].raw_ptr();
  a.dk = outputs[1].raw_ptr();
  a.dv = outputs[2].raw_ptr();
  const cu::Scratch stats(q.device(), static_cast<size_t>(2 * a.B * a.H * a.L) * sizeof(float));
  a.lse = stats.as<float>();
  a.delta = a.lse + a.B * a.H * a.L;
  cu::launch_sdpa_bwd(a, s);
}

}  // namespace ingot
