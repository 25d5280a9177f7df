// Affine quantization primitives on CUDA: inputs made row-contiguous, then quantized.cu's
// kernels. QuantizedMatmul runs the fused dequantize-GEMV for M < 16 rows of x; for larger M
// (prefill) the weight is dequantized into scratch memory and multiplied by the tiled GEMM of
// matmul_kernels.h (no cuBLASLt plan for it yet).
#include <memory>

#include "backend/cuda/matmul_kernels.h"
#include "backend/cuda/quantized_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/quantized.h"
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
  cu::alloc(out);
  const Array& x = inputs[0];
  const int64_t k = x.shape(-1), n = out.shape(-1);
  const int64_t m = k > 0 ? x.size() / k : 0;
  if (out.size() == 0) return;
  if (k == 0) raise<Unsupported>("[quantized_matmul] K == 0 on CUDA");
  std::unique_ptr<cu::Scratch> xt, wt, st, bt;
  const void* xp = contiguous(x, xt, s);
  const auto* wq = static_cast<const uint32_t*>(contiguous(inputs[1], wt, s));
  const void* sp = contiguous(inputs[2], st, s);
  const void* bp = contiguous(inputs[3], bt, s);
  if (m < kGemmRows) {
    cu::launch_qmv(x.dtype(), inputs[2].dtype(), xp, m, k, wq, sp, bp, n, group_size_, bits_,
                   out.raw_ptr(), s);
    return;
  }
  // Prefill: W [N, K] dequantized in x's dtype, then out = x @ W^T.
  if (inputs[2].dtype() != x.dtype())
    raise<Unsupported>(
        "[quantized_matmul] on CUDA, {} rows of x need x ({}) and the scales ({}) in one dtype", m,
        dtype_name(x.dtype()), dtype_name(inputs[2].dtype()));
  cu::Scratch dense(out.device(), static_cast<size_t>(n * k) * size_of(x.dtype()));
  cu::launch_affine_dequantize(x.dtype(), wq, sp, bp, n * k / group_size_, group_size_, bits_,
                               dense.ptr(), s);
  cu::GemmProblem p;
  p.M = m;
  p.N = n;
  p.K = k;
  p.a = xp;
  p.sa_m = k;
  p.sa_k = 1;
  p.b = dense.ptr();
  p.sb_k = 1;
  p.sb_n = k;
  p.out = out.raw_ptr();
  cu::launch_gemm_fallback(x.dtype(), p, s);
}

}  // namespace ingot
