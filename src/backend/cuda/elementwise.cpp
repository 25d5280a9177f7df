// CUDA evaluation of the elementwise primitives: picks the launch mode from the inputs' layouts
// (contiguous, contiguous mixed with broadcast scalars, or strided after collapsing axes), gives
// the output storage (a donated input buffer as on the CPU, else fresh) and queues the kernels.
#include "core/primitives/elementwise.h"
#include "backend/common/utils.h"
#include "backend/cuda/elementwise_kernels.h"
#include "backend/cuda/utils.h"

namespace ingot {
namespace {

// The .cu side keeps its own copy of the op lists (nvcc cannot include core headers).
#define INGOT_CU_SAME_OP(NAME)                                                      \
  static_assert(static_cast<int>(EwOp::NAME) == static_cast<int>(cu::EwKind::NAME), \
                "backend/cuda/elementwise_kernels.h op list out of sync at " #NAME);
INGOT_EW_UNARY_OPS(INGOT_CU_SAME_OP)
INGOT_EW_BINARY_OPS(INGOT_CU_SAME_OP)
#undef INGOT_CU_SAME_OP
static_assert(static_cast<int>(EwOp::Where) == static_cast<int>(cu::EwKind::count),
              "backend/cuda/elementwise_kernels.h lacks ops of core's lists");

bool all_zero(const Strides& st, const Shape& shape) {
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] > 1 && st[d] != 0) return false;
  return true;
}

bool row_major(const Strides& st, const Shape& shape) {
  int64_t expect = 1;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    if (st[d] != expect) return false;
    expect *= shape[d];
  }
  return true;
}

/// Plans one launch over `inputs` (all of out's shape) and gives `out` storage: the buffer of
/// a row-contiguous input of out's dtype that nothing else references (when `donate`; safe
/// because every output element depends only on the same element of the inputs), else fresh.
cu::EwLaunch plan(const std::vector<Array>& inputs, Array& out, bool donate) {
  const Shape& shape = out.shape();
  const size_t na = inputs.size();
  INGOT_ASSERT(na >= 1 && na <= 3);
  cu::EwLaunch l;
  l.n = out.size();
  std::vector<Strides> st;
  bool contiguous = true, flat = true;
  int donor = -1;
  for (size_t i = 0; i < na; ++i) {
    const Array& in = inputs[i];
    INGOT_ASSERT(in.shape() == shape, "elementwise inputs must have the output's shape");
    st.push_back(backend::broadcast_strides(in, shape));
    l.in[i] = in.raw_ptr();  // before a donation clears the donor's pointer
    const bool scalar = all_zero(st[i], shape);
    const bool contig = !scalar && in.size() == l.n && row_major(st[i], shape);
    l.flat_stride[i] = scalar ? 0 : 1;
    contiguous = contiguous && contig;
    flat = flat && (scalar || contig);
    if (donate && donor < 0 && contig && in.dtype() == out.dtype() && in.is_donatable())
      donor = static_cast<int>(i);
  }
  if (donor >= 0)
    out.move_shared_buffer(inputs[donor]);
  else
    cu::alloc(out);
  l.out = out.raw_ptr();
  if (l.n == 0) return l;
  if (contiguous || flat) {
    l.mode = contiguous ? cu::EwMode::contiguous : cu::EwMode::flat;
    return l;
  }
  l.mode = cu::EwMode::strided;
  st.push_back(row_major_strides(shape));  // the output, so that collapsing keeps its order
  auto [cshape, cst] = backend::collapse_contiguous_dims(shape, st);
  for (size_t i = 0; i < na; ++i) l.layout[i] = cu::make_layout(cshape, cst[i]);
  return l;
}

void eval_ew(EwOp op, const std::vector<Array>& inputs, Array& out, Stream stream) {
  const Dtype in = inputs[0].dtype();
  for (const Array& x : inputs)
    if (x.dtype() != in)
      raise<Unsupported>("[{}] inputs of different dtypes ({} and {}) on CUDA", ew_name(op),
                         dtype_name(in), dtype_name(x.dtype()));
  const auto kind = static_cast<cu::EwKind>(static_cast<int>(op));
  if (!cu::ew_supported(kind, in, out.dtype()))
    raise<Unsupported>("[{}] no CUDA kernel from {} to {}", ew_name(op), dtype_name(in),
                       dtype_name(out.dtype()));
  cudaStream_t s = cu::stream(stream);
  const cu::EwLaunch l = plan(inputs, out, true);
  cu::launch_ew(kind, in, out.dtype(), l, s);
}

}  // namespace

#define INGOT_CU_EW_EVAL(NAME)                                         \
  void NAME::eval_cuda(const std::vector<Array>& inputs, Array& out) { \
    eval_ew(EwOp::NAME, inputs, out, stream());                        \
  }
INGOT_EW_UNARY_OPS(INGOT_CU_EW_EVAL)
INGOT_EW_BINARY_OPS(INGOT_CU_EW_EVAL)
#undef INGOT_CU_EW_EVAL

void Where::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Dtype t = out.dtype();
  if (inputs[0].dtype() != Dtype::bool_ || inputs[1].dtype() != t || inputs[2].dtype() != t)
    raise<Unsupported>("[Where] no CUDA kernel for condition {}, x {}, y {} giving {}",
                       dtype_name(inputs[0].dtype()), dtype_name(inputs[1].dtype()),
                       dtype_name(inputs[2].dtype()), dtype_name(t));
  cudaStream_t s = cu::stream(stream());
  const cu::EwLaunch l = plan(inputs, out, true);
  cu::launch_where(t, l, s);
}

void AsType::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  cudaStream_t s = cu::stream(stream());
  if (in.dtype() == out.dtype()) {
    // No conversion: take the buffer over, or copy bytes.
    if (in.is_donatable()) {
      out.move_shared_buffer(in);
      return;
    }
    cu::alloc(out);
    cu::copy_to_row_major_device(in, out.raw_ptr(), s);
    return;
  }
  cu::alloc(out);
  if (out.size() == 0) return;
  auto [cshape, cst] = backend::collapse_contiguous_dims(
      out.shape(), {backend::broadcast_strides(in, out.shape()), row_major_strides(out.shape())});
  cu::launch_astype(in.dtype(), out.dtype(), in.raw_ptr(), cu::make_layout(cshape, cst[0]),
                    out.raw_ptr(), out.size(), s);
}

}  // namespace ingot
