// CPU kernels of RmsNorm, its gradient (RmsNormGrad) and LayerNorm: one pass per row (any layout),
// float32 math (float64 for float64), rows split over the thread pool.
#include <cmath>
#include <optional>
#include <vector>

#include "backend/common/utils.h"
#include "backend/cpu/fast_kernels.h"
#include "core/primitives/elementwise.h"
#include "core/primitives/fast.h"
#include "core/primitives/linalg.h"
#include "util/thread_pool.h"

namespace ingot {

using namespace backend;
using namespace backend::fastk;

namespace {

// A norm parameter ([E], any layout and float dtype) in the compute type, plus `add`.
template <typename A>
std::vector<A> param_vector(const Array& p, A add) {
  std::vector<A> v(static_cast<size_t>(p.shape(0)));
  dispatch_dtype(p.dtype(), [&](auto t) {
    using P = decltype(t);
    gather_row(p.raw_ptr<P>(), p.strides()[0], p.shape(0), v.data());
  });
  if (add != A(0))
    for (auto& x : v) x = x + add;
  return v;
}

// Gives `out` storage: x's buffer when donatable (rows are read into scratch before writing).
void alloc_out(const Array& x, Array& out) {
  if (x.is_donatable() && x.dtype() == out.dtype())
    out.move_shared_buffer(x);
  else
    alloc_cpu(out);
}

// Gives `out` storage and runs fn(row, out_row, r) over all rows r of x: `row` is x's row
// loaded into a scratch buffer of the compute type A (modifiable), out_row the output row.
// x's buffer is donated to out when possible (each row is read before it is written).
template <typename T, typename A, typename F>
void for_rows(const Array& x, Array& out, F&& fn) {
  const int64_t E = x.shape(-1);
  const int64_t rows = E ? x.size() / E : 0;
  const RowOffsets offs(x);
  const int64_t sx = x.strides().back();
  const T* xp = x.raw_ptr<T>();
  alloc_out(x, out);
  if (rows == 0) return;
  T* op = out.raw_ptr<T>();
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(E, 1));
  parallel_for(rows, grain, [&](int64_t b, int64_t e) {
    std::vector<A> buf(static_cast<size_t>(E));
    for (int64_t r = b; r < e; ++r) {
      gather_row(xp + offs(r), sx, E, buf.data());
      fn(buf.data(), op + r * E, r);
    }
  });
}

template <typename T, typename A>
void rms_norm_impl(const RmsNorm& p, const std::vector<Array>& inputs, Array& out) {
  const Array& x = inputs[0];
  const int64_t E = x.shape(-1);
  std::vector<A> w;
  if (p.has_weight_) w = param_vector<A>(inputs[1], p.add_unit_offset_ ? A(1) : A(0));
  const Kernels& k = kernels();
  // A residual (the last input) is added to the rounded norm, then the sum rounds again.
  const Array* res = p.has_residual_ ? &inputs.back() : nullptr;
  const std::optional<RowOffsets> res_offs =
      res ? std::optional<RowOffsets>(RowOffsets(*res)) : std::nullopt;
  for_rows<T, A>(x, out, [&](A* v, T* o, int64_t row) {
    const A r = A(1) / std::sqrt(sum_squares(k, v, E) / static_cast<A>(E) + static_cast<A>(p.eps_));
    for (int64_t i = 0; i < E; ++i) v[i] *= r;
    if (!w.empty()) {
      if (!p.weight_in_float32_) round_through<T, A>(v, E);
      for (int64_t i = 0; i < E; ++i) v[i] *= w[i];
    }
    if (res) {
      thread_local std::vector<A> rb;
      rb.resize(static_cast<size_t>(E));
      gather_row(res->raw_ptr<T>() + (*res_offs)(row), res->strides().back(), E, rb.data());
      round_through<T, A>(v, E);
      for (int64_t i = 0; i < E; ++i) v[i] += rb[i];
    }
    store_row(k, v, o, E);
  });
}

// dx = r * (gw - n * mean(gw * n)) per row, n = x r, gw = g * w (RmsNormGrad).
template <typename T, typename A>
void rms_norm_grad_impl(const RmsNormGrad& p, const std::vector<Array>& inputs, Array& out) {
  const Array& x = inputs[0];
  const Array& g = inputs.back();
  const int64_t E = x.shape(-1);
  const int64_t rows = E ? x.size() / E : 0;
  std::vector<A> w;
  if (p.has_weight_) w = param_vector<A>(inputs[1], p.add_unit_offset_ ? A(1) : A(0));
  const Kernels& k = kernels();
  const RowOffsets xo(x), go(g);
  const int64_t sx = x.strides().back(), sg = g.strides().back();
  const T* xp = x.raw_ptr<T>();
  const T* gp = g.raw_ptr<T>();
  // Each row of x and g is read before its output row is written: either buffer may be donated.
  if (g.is_donatable() && g.dtype() == out.dtype())
    out.move_shared_buffer(g);
  else
    alloc_out(x, out);
  if (rows == 0) return;
  T* op = out.raw_ptr<T>();
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(E, 1));
  parallel_for(rows, grain, [&](int64_t b, int64_t e) {
    std::vector<A> xv(static_cast<size_t>(E)), gv(static_cast<size_t>(E));
    for (int64_t r = b; r < e; ++r) {
      gather_row(xp + xo(r), sx, E, xv.data());
      gather_row(gp + go(r), sg, E, gv.data());
      const A inv = A(1) / std::sqrt(sum_squares(k, xv.data(), E) / static_cast<A>(E) +
                                     static_cast<A>(p.eps_));
      A dot = 0;  // sum(gw * n), n = x r
      for (int64_t i = 0; i < E; ++i) {
        if (!w.empty()) gv[i] *= w[i];
        xv[i] *= inv;
        dot += gv[i] * xv[i];
      }
      const A m = dot / static_cast<A>(E);
      for (int64_t i = 0; i < E; ++i) gv[i] = inv * (gv[i] - xv[i] * m);
      store_row(k, gv.data(), op + r * E, E);
    }
  });
}

template <typename T, typename A>
void layer_norm_impl(const LayerNorm& p, const std::vector<Array>& inputs, Array& out) {
  const Array& x = inputs[0];
  const int64_t E = x.shape(-1);
  std::vector<A> w, bias;
  size_t next = 1;
  if (p.has_weight_) w = param_vector<A>(inputs[next++], A(0));
  if (p.has_bias_) bias = param_vector<A>(inputs[next++], A(0));
  const Kernels& k = kernels();
  for_rows<T, A>(x, out, [&](A* v, T* o, int64_t) {
    A sum = 0;
    for (int64_t i = 0; i < E; ++i) sum += v[i];
    const A mu = sum / static_cast<A>(E);
    for (int64_t i = 0; i < E; ++i) v[i] -= mu;
    const A r = A(1) / std::sqrt(sum_squares(k, v, E) / static_cast<A>(E) + static_cast<A>(p.eps_));
    for (int64_t i = 0; i < E; ++i) v[i] *= r;
    if (!w.empty())
      for (int64_t i = 0; i < E; ++i) v[i] *= w[i];
    if (!bias.empty())
      for (int64_t i = 0; i < E; ++i) v[i] += bias[i];
    store_row(k, v, o, E);
  });
}

// Calls f(T{}, A{}) for the float dtypes the fast kernels take.
template <typename F>
void dispatch_float(Dtype t, const char* op, F&& f) {
  switch (t) {
    case Dtype::float32:
      return f(float{}, float{});
    case Dtype::bfloat16:
      return f(bfloat16_t{}, float{});
    case Dtype::float16:
      return f(float16_t{}, float{});
    case Dtype::float64:
      return f(double{}, double{});
    default:
      raise("[{}] unsupported dtype {}", op, dtype_name(t));
  }
}

}  // namespace

void RmsNorm::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  dispatch_float(out.dtype(), "rms_norm", [&](auto t, auto a) {
    rms_norm_impl<decltype(t), decltype(a)>(*this, inputs, out);
  });
}

void RmsNormGrad::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  dispatch_float(out.dtype(), "rms_norm_grad", [&](auto t, auto a) {
    rms_norm_grad_impl<decltype(t), decltype(a)>(*this, inputs, out);
  });
}

// The norm into a temporary, then the product (the same kernels as the two separate ops).
void RmsNormLinear::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const std::vector<Array> norm_in(inputs.begin(), inputs.end() - 1);
  // The temporary carries the norm primitive, so it lives on this primitive's device.
  const std::shared_ptr<RmsNorm> np = norm();
  Array n(inputs[0].shape(), inputs[0].dtype(), np, norm_in);
  np->eval_cpu(norm_in, n);
  Matmul(stream()).eval_cpu({n, inputs.back()}, out);
}

// The stacked product into a temporary (RmsNormLinear's kernels), then the activation of its
// gate columns and the multiply by its up columns (the elementwise kernels, on column views).
void RmsNormGlu::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const std::shared_ptr<RmsNormLinear> nl = norm_linear();
  const Shape& os = out.shape();
  const int64_t n = os.back();
  Shape ys = os;
  ys.back() = 2 * n;
  Array y(ys, out.dtype(), nl, inputs);
  nl->eval_cpu(inputs, y);
  const std::shared_ptr<UnaryPrimitive> ap = activation();
  auto columns = [&](int64_t first) {  // y[..., first:first + n] (y is row-contiguous)
    const Strides& st = y.strides();
    int64_t span = out.size() == 0 ? 0 : 1;
    if (span)
      for (size_t d = 0; d < os.size(); ++d) span += (os[d] - 1) * st[d];
    Array v(os, y.dtype(), ap, {});
    v.copy_shared_buffer(y, st, backend::compute_flags(os, st), span, first);
    return v;
  };
  const Array g = columns(0), u = columns(n);
  Array a(os, out.dtype(), ap, {g});
  ap->eval_cpu({g}, a);
  Multiply(stream()).eval_cpu({a, u}, out);
}

// The two primitives' kernels one after the other (the separate ops' values exactly).
void RmsNormAddProduct::eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const auto split = inputs.begin() + static_cast<long>(add_inputs());
  add_->eval_cpu(std::vector<Array>(inputs.begin(), split), outputs[0]);
  std::vector<Array> pin{outputs[0]};
  pin.insert(pin.end(), split, inputs.end());
  product_->eval_cpu(pin, outputs[1]);
}

void LayerNorm::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  dispatch_float(out.dtype(), "layer_norm", [&](auto t, auto a) {
    layer_norm_impl<decltype(t), decltype(a)>(*this, inputs, out);
  });
}

}  // namespace ingot
