// Affine quantization primitives on CUDA: inputs made row-contiguous, then quantized.cu's
// kernels. QuantizedMatmul runs up to 8 rows of x (x and scales of one dtype) on the quantized
// mode of the decode GEMV (matmul_kernels.h), with its fusion (norm prologue, GLU pairs,
// residual epilogue) in that one launch; other rows below 16 take the plain dequantize-GEMV,
// and a fusion that does not fit the GEMV runs as the separate kernels. Prefill (M >= 16)
// dequantizes the weight into a temporary and multiplies through the matmul's cuBLASLt path.
#include <cstdlib>
#include <cstring>
#include <memory>

#include "backend/cuda/matmul_kernels.h"
#include "backend/cuda/quantized_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"
#include "core/primitives/linalg.h"
#include "core/primitives/quantized.h"
#include "util/env.h"
#include "util/error.h"

namespace ingot {
namespace {

constexpr int64_t kGemmRows = 16;

/// Pointer to row-major device data of `a`: a itself, or a copy held by `tmp`.
const void* contiguous(const Array& a, std::unique_ptr<cu::Scratch>& tmp, cudaStream_t s) {
  if (a.flags().row_contiguous) return a.raw_ptr();
  tmp = std::make_unique<cu::Scratch>(a.device(), a.nbytes());
  cu::copy_to_row_major_device(a, tmp->ptr(), s);
  return tmp->ptr();
}

/// INGOT_CUDA_GEMV=0 sends few-row products to the plain kernels too (as matmul.cpp reads it).
bool gemv_enabled() {
  static const bool on = env::flag("INGOT_CUDA_GEMV", true);
  return on;
}

}  // namespace

void AffineQuantize::eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const cudaStream_t s = cu::stream(stream());
  for (Array& o : outputs) cu::alloc(o);
  const int64_t groups = inputs[0].size() / group_size_;
  if (groups == 0) return;
  std::unique_ptr<cu::Scratch> wt;
  cu::launch_affine_quantize(inputs[0].dtype(), contiguous(inputs[0], wt, s), groups, group_size_,
                             bits_, outputs[0].raw_ptr<uint32_t>(), outputs[1].raw_ptr(),
                             outputs[2].raw_ptr(), s);
}

void AffineDequantize::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const cudaStream_t s = cu::stream(stream());
  cu::alloc(out);
  const int64_t groups = out.size() / group_size_;
  if (groups == 0) return;
  std::unique_ptr<cu::Scratch> wt, st, bt;
  cu::launch_affine_dequantize(out.dtype(),
                               static_cast<const uint32_t*>(contiguous(inputs[0], wt, s)),
                               contiguous(inputs[1], st, s), contiguous(inputs[2], bt, s), groups,
                               group_size_, bits_, out.raw_ptr(), s);
}

void QuantizedMatmul::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const cudaStream_t s = cu::stream(stream());
  const QuantizedMatmulFusion& f = fusion_;
  const Array& x = inputs[0];
  const Dtype t = out.dtype();
  const int64_t k = x.shape(-1), n = inputs[1].shape(0);
  const int64_t m = k > 0 ? x.size() / k : 0;
  if (out.size() == 0) return cu::alloc(out);
  if (k == 0) raise<Unsupported>("[quantized_matmul] K == 0 on CUDA");
  std::unique_ptr<cu::Scratch> xt, wt, st, bt, nt, rt;
  const auto* wq = static_cast<const uint32_t*>(contiguous(inputs[1], wt, s));
  const void* sp = contiguous(inputs[2], st, s);
  const void* bp = contiguous(inputs[3], bt, s);
  // Decode: one GEMV (the quantized mode of matmul_kernels.h's) with the fusion in its
  // prologue / pairs / epilogue.
  if (m <= cu::kGemvMaxRows && gemv_enabled() && inputs[2].dtype() == t) {
    cu::GemvProblem p;
    p.M = m;
    p.N = f.gate > 0 ? n / 2 : n;
    p.K = k;
    p.x = contiguous(x, xt, s);
    p.sx_m = k;
    p.w = wq;
    p.sw_n = inputs[1].shape(1);
    p.bits = bits_;
    p.group_size = group_size_;
    p.scales = sp;
    p.biases = bp;
    p.ss_n = inputs[2].shape(1);
    if (f.norm) {
      p.norm = true;
      p.norm_w = f.norm_weight ? contiguous(inputs[4], nt, s) : nullptr;
      p.eps = f.eps;
      p.add_unit_offset = f.add_unit_offset;
      p.weight_in_float32 = f.weight_in_float32;
    }
    if (f.gate > 0) {
      p.pair = n / 2;
      p.gate = f.gate;
    }
    if (f.residual) {  // residual + round(y): the separate add's result
      p.accumulate = true;
      p.round_product = true;
      p.beta = 1.0f;
      p.c = contiguous(inputs.back(), rt, s);
      p.sc_m = p.N;
      p.sc_n = 1;
    }
    if (cu::gemv_supported(t, p)) {
      cu::alloc(out);
      p.out = out.raw_ptr();
      cu::launch_gemv(t, p, s, 0);
      return;
    }
  }
  if (f.any()) {
    // The separate primitives' kernels: the norm into a temporary, the plain product, then the
    // gated-rows kernel over its column halves or the add of the residual.
    Array h = x;
    if (f.norm) {
      std::vector<Array> norm_in{x};
      if (f.norm_weight) norm_in.push_back(inputs[4]);
      auto np = std::make_shared<RmsNorm>(stream(), f.eps, f.add_unit_offset, f.weight_in_float32,
                                          f.norm_weight);
      h = Array(x.shape(), x.dtype(), np, norm_in);
      np->eval_cuda(norm_in, h);
    }
    const std::shared_ptr<QuantizedMatmul> pp = product();
    const std::vector<Array> prod_in{h, inputs[1], inputs[2], inputs[3]};
    if (f.gate == 0 && !f.residual) return pp->eval_cuda(prod_in, out);
    Shape ys = x.shape();
    ys.back() = n;
    Array y(ys, t, pp, prod_in);
    pp->eval_cuda(prod_in, y);
    cu::alloc(out);
    if (f.gate > 0) {
      const int64_t half = n / 2;
      cu::launch_gated_rows(t, f.gate, y.raw_ptr(), n,
                            static_cast<const char*>(y.raw_ptr()) + half * out.itemsize(), n,
                            out.raw_ptr(), m, half, s);
      return;
    }
    const Array& r = inputs.back();
    if (r.flags().row_contiguous)
      INGOT_CUDA_CHECK(
          cudaMemcpyAsync(out.raw_ptr(), r.raw_ptr(), out.nbytes(), cudaMemcpyDeviceToDevice, s));
    else
      cu::copy_to_row_major_device(r, out.raw_ptr(), s);
    cu::launch_add_product(t, out.raw_ptr(), nullptr, y.raw_ptr(), out.size(), 1.0f, s);
    return;
  }
  if (m < kGemmRows) {
    cu::alloc(out);
    cu::launch_qmv(x.dtype(), inputs[2].dtype(), contiguous(x, xt, s), m, k, wq, sp, bp, n,
                   group_size_, bits_, out.raw_ptr(), s);
    return;
  }
  // Prefill: W [N, K] dequantized in x's dtype into a temporary, then x @ W^T through the
  // matmul's cuBLASLt path (its tiled fallback where cuBLASLt has no algorithm).
  if (inputs[2].dtype() != x.dtype())
    raise<Unsupported>(
        "[quantized_matmul] on CUDA, {} rows of x need x ({}) and the scales ({}) in one dtype", m,
        dtype_name(x.dtype()), dtype_name(inputs[2].dtype()));
  auto dq = std::make_shared<AffineDequantize>(stream(), group_size_, bits_);
  Array dense({n, k}, t, dq, {inputs[1], inputs[2], inputs[3]});
  cu::alloc(dense);
  cu::launch_affine_dequantize(t, wq, sp, bp, n * k / group_size_, group_size_, bits_,
                               dense.raw_ptr(), s);
  auto mm = std::make_shared<Matmul>(stream());
  Array wt_view({k, n}, t, mm, {});  // dense^T, a view
  wt_view.copy_shared_buffer(
      dense, {1, k},
      Flags{.contiguous = true, .row_contiguous = n == 1 || k == 1, .col_contiguous = true}, n * k);
  mm->eval_cuda({x, wt_view}, out);
}

}  // namespace ingot
