// AdamStep / SumSquares on CUDA: row-major inputs (others copied to scratch first), outputs in
// the inputs' buffers where those can be donated, then the kernels of fast_optim.cu.
#include <algorithm>
#include <memory>
#include <vector>

#include "backend/cuda/fast_optim_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"

namespace ingot {
namespace {

/// out's storage: in's buffer when in is row-contiguous, of out's dtype and held only by this
/// primitive (`holders` handles), else fresh memory.
void alloc_or_donate(const Array& in, Array& out, long holders) {
  if (in.flags().row_contiguous && in.dtype() == out.dtype() && in.is_donatable(holders))
    out.move_shared_buffer(in);
  else
    cu::alloc(out);
}

}  // namespace

void AdamStep::eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const size_t n = static_cast<size_t>(n_);
  const cudaStream_t s = cu::stream(stream());
  const long holders = static_cast<long>(outputs.size());
  std::vector<std::unique_ptr<cu::Scratch>> keep;
  std::vector<cu::AdamTensor> ts(n);
  for (size_t i = 0; i < n; ++i) {
    const Array &p = inputs[i], &g = inputs[n + i], &m = inputs[2 * n + i], &v = inputs[3 * n + i];
    cu::AdamTensor& t = ts[i];
    t.p = cu::row_major_ptr(p, s, keep);
    t.g = cu::row_major_ptr(g, s, keep);
    t.m = static_cast<const float*>(cu::row_major_ptr(m, s, keep));
    t.v = static_cast<const float*>(cu::row_major_ptr(v, s, keep));
    t.n = p.size();
    t.p_dtype = p.dtype();
    t.g_dtype = g.dtype();
    // Each element is read before it is written, by the same thread: outputs may alias inputs.
    alloc_or_donate(p, outputs[i], holders);
    alloc_or_donate(m, outputs[n + i], holders);
    alloc_or_donate(v, outputs[2 * n + i], holders);
    t.p_out = outputs[i].raw_ptr();
    t.m_out = outputs[n + i].raw_ptr<float>();
    t.v_out = outputs[2 * n + i].raw_ptr<float>();
  }
  cu::AdamScalars sc{lr_, beta1_, beta2_,        one_minus_beta1_, one_minus_beta2_, eps_,
                     c1_, c2_,    weight_decay_, decay_,           decoupled_,       nullptr};
  if (has_scale_) sc.scale = static_cast<const float*>(cu::row_major_ptr(inputs.back(), s, keep));
  cu::launch_adam_step(ts.data(), n_, sc, s);
}

void SumSquares::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const cudaStream_t s = cu::stream(stream());
  std::vector<std::unique_ptr<cu::Scratch>> keep;
  std::vector<cu::SquaresInput> xs;
  for (const Array& x : inputs) {
    if (x.size() == 0) continue;
    xs.push_back({cu::row_major_ptr(x, s, keep), x.size(), x.dtype()});
  }
  const int count = static_cast<int>(xs.size());
  const int64_t np = cu::squares_partials(xs.data(), count);
  cu::Scratch partials(out.device(),
                       static_cast<size_t>(std::max<int64_t>(np, 1)) * sizeof(double));
  cu::alloc(out);
  cu::launch_sum_squares(xs.data(), count, partials.as<double>(), out.raw_ptr<float>(), s);
}

}  // namespace ingot
