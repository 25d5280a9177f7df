// CPU kernels of Glu and GluGrad (fast::gated_activation): the operands as rows of unit column
// stride (read in place, or copied row-major when their axes do not allow it), walked in tiles
// of a few KiB. Each tile's act(g) comes from the activation's own elementwise kernel and the
// products from the multiply's, so the forward and du are the separate ops' values bit for bit
// (the AVX2 copies included); dg is evaluated in the compute type and rounded once.
#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "backend/common/activation_grad.h"
#include "backend/common/utils.h"
#include "backend/cpu/elementwise_kernels.h"
#include "backend/cpu/strided_copy.h"
#include "core/cast.h"
#include "core/primitives/fast_glu.h"
#include "util/thread_pool.h"

namespace ingot {

using namespace backend;

namespace {

constexpr int64_t kTile = 512;     // elements a tile (its act(g) stays in L1)
constexpr int64_t kGrain = 16384;  // elements per thread chunk at least

/// An operand as rows of unit column stride: its first element and the row stride (elements).
struct Rows {
  const std::byte* p;
  int64_t stride;
};

/// a (cols elements a row) as Rows: in place when its last axis has unit stride and its leading
/// axes merge into one stride (the column halves of a stacked product, row slices); otherwise
/// a row-major copy into `copy`.
Rows rows_of(const Array& a, int64_t cols, std::vector<std::byte>& copy) {
  const size_t nd = a.shape().size();
  if (nd == 0 || cols <= 1 || a.strides().back() == 1) {
    const size_t lead = nd == 0 ? 0 : nd - 1;
    const Shape sh(a.shape().begin(), a.shape().begin() + static_cast<std::ptrdiff_t>(lead));
    const Strides st(a.strides().begin(), a.strides().begin() + static_cast<std::ptrdiff_t>(lead));
    const auto [cs, cst] = collapse_contiguous_dims(sh, {st});
    if (cs.size() == 1) return {static_cast<const std::byte*>(a.raw_ptr()), cst[0][0]};
  }
  copy.resize(static_cast<size_t>(a.size()) * a.itemsize());
  copy_array(a, copy.data(), a.dtype());
  return {copy.data(), cols};
}

/// The operands of one eval as `rows` x `cols` (one flat row when every operand is contiguous).
struct Plan {
  std::vector<Rows> in;
  int64_t rows = 0, cols = 0;
};

Plan plan_of(const std::vector<Array>& inputs, const Array& out,
             std::vector<std::vector<std::byte>>& copies) {
  Plan p;
  const int64_t n = out.size();
  p.cols = out.ndim() == 0 ? 1 : out.shape().back();
  p.rows = n / p.cols;
  copies.resize(inputs.size());
  bool flat = true;
  for (size_t i = 0; i < inputs.size(); ++i) {
    p.in.push_back(rows_of(inputs[i], p.cols, copies[i]));
    flat = flat && p.in.back().stride == p.cols;
  }
  if (flat || p.rows == 1) {
    p.cols = n;
    p.rows = 1;
    for (Rows& r : p.in) r.stride = n;
  }
  return p;
}

/// f(row, first column, length) over every tile of kTile columns or fewer, across threads.
template <typename F>
void for_tiles(int64_t rows, int64_t cols, F&& f) {
  const int64_t per_row = (cols + kTile - 1) / kTile;
  parallel_for(rows * per_row, std::max<int64_t>(1, kGrain / kTile), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t r = t / per_row, c0 = (t - r * per_row) * kTile;
      f(r, c0, std::min(kTile, cols - c0));
    }
  });
}

/// The elementwise kernel of the activation act (0 silu, 1 gelu, 2 gelu_tanh) for dtype t.
cpu::EwKernel act_kernel(int act, Dtype t) {
  const EwOp op = act == 0 ? EwOp::Silu : act == 1 ? EwOp::Gelu : EwOp::GeluTanh;
  return cpu::ew_kernel(op, t, t);
}

template <typename T, typename A>
void glu_grad_tiles(int act, const Plan& p, T* dg, T* du) {
  const Dtype t = dtype_of<T>();
  const cpu::EwKernel ak = act_kernel(act, t), mul = cpu::ew_kernel(EwOp::Multiply, t, t);
  const Rows &g = p.in[0], &u = p.in[1], &dh = p.in[2];
  for_tiles(p.rows, p.cols, [&](int64_t r, int64_t c0, int64_t len) {
    const T* gp = reinterpret_cast<const T*>(g.p) + r * g.stride + c0;
    const T* up = reinterpret_cast<const T*>(u.p) + r * u.stride + c0;
    const T* hp = reinterpret_cast<const T*>(dh.p) + r * dh.stride + c0;
    T* dgp = dg + r * p.cols + c0;
    T* dup = du + r * p.cols + c0;
    alignas(64) std::byte ab[kTile * sizeof(T)];
    T* a = reinterpret_cast<T*>(ab);
    const cpu::EwArg ga{gp, 1};
    ak(&ga, a, len);
    for (int64_t i = 0; i < len; ++i)
      dgp[i] = static_cast<T>(static_cast<A>(hp[i]) * static_cast<A>(up[i]) *
                              actgrad::derivative<A>(act, static_cast<A>(gp[i])));
    // Last: du may be dh's buffer, which the loop above reads.
    const cpu::EwArg m[2] = {{hp, 1}, {a, 1}};
    mul(m, dup, len);
  });
}

}  // namespace

void Glu::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Dtype t = out.dtype();
  if (!is_floating(t)) raise("[gated_activation] unsupported dtype {}", dtype_name(t));
  alloc_cpu(out);
  if (out.size() == 0) return;
  std::vector<std::vector<std::byte>> copies;
  const Plan p = plan_of(inputs, out, copies);
  const cpu::EwKernel ak = act_kernel(act_, t), mul = cpu::ew_kernel(EwOp::Multiply, t, t);
  const int64_t es = static_cast<int64_t>(out.itemsize());
  std::byte* o = static_cast<std::byte*>(out.raw_ptr());
  const Rows &g = p.in[0], &u = p.in[1];
  for_tiles(p.rows, p.cols, [&](int64_t r, int64_t c0, int64_t len) {
    alignas(64) std::byte a[kTile * sizeof(double)];
    const cpu::EwArg ga{g.p + (r * g.stride + c0) * es, 1};
    ak(&ga, a, len);
    const cpu::EwArg m[2] = {{a, 1}, {u.p + (r * u.stride + c0) * es, 1}};
    mul(m, o + (r * p.cols + c0) * es, len);
  });
}

void GluGrad::eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const Dtype t = outputs[0].dtype();
  if (!is_floating(t)) raise("[gated_activation] unsupported dtype {}", dtype_name(t));
  alloc_cpu(outputs[0]);
  if (outputs[0].size() == 0) {
    alloc_cpu(outputs[1]);
    return;
  }
  std::vector<std::vector<std::byte>> copies;
  const Plan p = plan_of(inputs, outputs[0], copies);  // before dh's buffer moves
  // du in dh's buffer when nothing else holds it (each output holds the inputs once).
  const Array& dh = inputs[2];
  if (dh.dtype() == t && dh.is_donatable(static_cast<long>(outputs.size())))
    outputs[1].move_shared_buffer(dh);
  else
    alloc_cpu(outputs[1]);
  dispatch_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T> || is_half_v<T>) {
      using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
      glu_grad_tiles<T, A>(act_, p, outputs[0].raw_ptr<T>(), outputs[1].raw_ptr<T>());
    }
  });
}

}  // namespace ingot
