// eval_cuda of the random primitives: the key stays a device array that the kernels read, so a
// seed gives the CPU's bits without a host round trip (see random.cu).
#include "core/primitives/random.h"
#include "backend/common/utils.h"
#include "backend/cuda/random_kernels.h"
#include "backend/cuda/utils.h"

namespace ingot {

namespace {

/// Output descriptor of a random primitive after allocating `out` (key = inputs[0]).
cu::RandomOut random_out(const Array& key, Array& out) {
  cu::alloc(out);
  cu::RandomOut r;
  r.key = key.raw_ptr<uint32_t>();
  r.key_stride = key.strides()[0];
  r.out = out.raw_ptr();
  r.dtype = out.dtype();
  r.n = out.size();
  return r;
}

cu::Layout collapsed_layout(const Shape& shape, const Strides& strides, const char* op) {
  auto [sh, st] = backend::collapse_contiguous_dims(shape, {strides});
  if (sh.size() > static_cast<size_t>(cu::kMaxDims))
    raise<Unsupported>("[{}] cuda: {} non-mergeable axes (shape {}) exceed the limit of {}", op,
                       sh.size(), shape_str(shape), cu::kMaxDims);
  return cu::make_layout(sh, st[0]);
}

}  // namespace

void RandomBits::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  cudaStream_t s = cu::stream(stream());
  cu::launch_random_bits(random_out(inputs[0], out), s);
}

void Uniform::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  cudaStream_t s = cu::stream(stream());
  cu::launch_uniform(random_out(inputs[0], out), {.low = low_, .high = high_, .lo = lo_, .hi = hi_},
                     s);
}

void Normal::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  cudaStream_t s = cu::stream(stream());
  cu::launch_normal(random_out(inputs[0], out), loc_, scale_, s);
}

void RandInt::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  cudaStream_t s = cu::stream(stream());
  cu::launch_randint(random_out(inputs[0], out), low_, high_, s);
}

void Bernoulli::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  cudaStream_t s = cu::stream(stream());
  const Array& p = inputs[1];
  const cu::RandomOut r = random_out(inputs[0], out);
  if (r.n == 0) return;
  cu::launch_bernoulli(
      r, p.raw_ptr(), p.dtype(),
      collapsed_layout(out.shape(), backend::broadcast_strides(p, out.shape()), "bernoulli"), s);
}

void Gumbel::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  cudaStream_t s = cu::stream(stream());
  cu::launch_gumbel(random_out(inputs[0], out), s);
}

void Categorical::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  cudaStream_t s = cu::stream(stream());
  const Array& logits = inputs[1];
  const cu::RandomOut r = random_out(inputs[0], out);
  if (r.n == 0) return;
  const Shape& sh = logits.shape();
  cu::CategoricalArgs c;
  c.logits = logits.raw_ptr();
  c.dtype = logits.dtype();
  c.contiguous = logits.flags().row_contiguous;
  if (!c.contiguous) c.layout = collapsed_layout(sh, logits.strides(), "categorical");
  c.axis = sh[axis_];
  for (int d = 0; d < axis_; ++d) c.outer *= sh[d];
  for (size_t d = static_cast<size_t>(axis_) + 1; d < sh.size(); ++d) c.inner *= sh[d];
  cu::launch_categorical(r, c, s);
}

}  // namespace ingot
