// fast::adam_step and fast::sum_squares (see fast.h): argument checks, the primitives'
// shapes and VJP, and the reference compositions (the separate ops nn's optimizers and
// gradient clipping used before the fused primitives).
#include <ostream>

#include "core/fast/fast.h"
#include "core/ops/ops.h"
#include "core/primitives/fast.h"

namespace ingot {

std::vector<Shape> AdamStep::output_shapes(const std::vector<Array>& inputs) {
  std::vector<Shape> out;
  for (int k = 0; k < 3; ++k)
    for (int i = 0; i < n_; ++i) out.push_back(inputs[static_cast<size_t>(i)].shape());
  return out;
}

void AdamStep::print(std::ostream& os) const {
  os << "AdamStep(n=" << n_ << ", lr=" << lr_ << (decoupled_ ? ", decoupled" : "")
     << (has_scale_ ? ", scaled" : "") << ")";
}

std::vector<Shape> SumSquares::output_shapes(const std::vector<Array>&) {
  return {Shape{}};
}

std::vector<Array> SumSquares::vjp(const std::vector<Array>& primals,
                                   const std::vector<Array>& cotangents,
                                   const std::vector<int>& argnums, const std::vector<Array>&) {
  std::vector<Array> out;
  for (int i : argnums) {
    const Array& x = primals.at(static_cast<size_t>(i));
    out.push_back(astype(cotangents[0] * (astype(x, float32) * Array(2.0f)), x.dtype()));
  }
  return out;
}

namespace fast {
namespace {

bool optim_dtype(Dtype t) {
  return t == float32 || t == bfloat16 || t == float16;
}

void check_adam_args(const std::vector<Array>& params, const std::vector<Array>& grads,
                     const std::vector<Array>& m, const std::vector<Array>& v,
                     const std::optional<Array>& grad_scale) {
  const size_t n = params.size();
  if (grads.size() != n || m.size() != n || v.size() != n)
    raise("[adam_step] expected as many gradients, m and v as parameters ({}), got {}, {}, {}", n,
          grads.size(), m.size(), v.size());
  for (size_t i = 0; i < n; ++i) {
    const Array &p = params[i], &g = grads[i];
    if (!optim_dtype(p.dtype()) || !optim_dtype(g.dtype()))
      raise("[adam_step] parameter {} is {} with a {} gradient (float32, bfloat16 or float16)", i,
            dtype_name(p.dtype()), dtype_name(g.dtype()));
    if (g.shape() != p.shape() || m[i].shape() != p.shape() || v[i].shape() != p.shape())
      raise("[adam_step] parameter {} has shape {} but its gradient, m and v have {}, {}, {}", i,
            shape_str(p.shape()), shape_str(g.shape()), shape_str(m[i].shape()),
            shape_str(v[i].shape()));
    if (m[i].dtype() != float32 || v[i].dtype() != float32)
      raise("[adam_step] the state of parameter {} must be float32, got m {} and v {}", i,
            dtype_name(m[i].dtype()), dtype_name(v[i].dtype()));
  }
  if (grad_scale && (grad_scale->dtype() != float32 || grad_scale->size() != 1))
    raise("[adam_step] grad_scale must be one float32 value, got {} of shape {}",
          dtype_name(grad_scale->dtype()), shape_str(grad_scale->shape()));
}

}  // namespace

std::vector<Array> adam_step(const std::vector<Array>& params, const std::vector<Array>& grads,
                             const std::vector<Array>& m, const std::vector<Array>& v,
                             const AdamStepOptions& opt, const std::optional<Array>& grad_scale,
                             StreamOrDevice s) {
  check_adam_args(params, grads, m, v, grad_scale);
  if (params.empty()) return {};
  std::vector<Array> inputs;
  for (const auto* list : {&params, &grads, &m, &v})
    inputs.insert(inputs.end(), list->begin(), list->end());
  if (grad_scale) inputs.push_back(*grad_scale);
  const Stream st = resolve_stream(s, inputs);
  std::vector<Shape> shapes;
  std::vector<Dtype> dtypes;
  for (int k = 0; k < 3; ++k)
    for (const Array& p : params) {
      shapes.push_back(p.shape());
      dtypes.push_back(k == 0 ? p.dtype() : float32);
    }
  auto prim = std::make_shared<AdamStep>(st, static_cast<int>(params.size()), opt.lr, opt.beta1,
                                         opt.beta2, opt.one_minus_beta1, opt.one_minus_beta2,
                                         opt.eps, opt.c1, opt.c2, opt.weight_decay, opt.decay,
                                         opt.decoupled, grad_scale.has_value());
  return Array::make_arrays(std::move(shapes), std::move(dtypes), std::move(prim),
                            std::move(inputs));
}

Array sum_squares(const std::vector<Array>& xs, StreamOrDevice s) {
  for (size_t i = 0; i < xs.size(); ++i)
    if (!is_floating(xs[i].dtype()))
      raise("[sum_squares] input {} is {} (floating-point only)", i, dtype_name(xs[i].dtype()));
  if (xs.empty()) return Array(0.0f, float32);
  return Array(Shape{}, float32, std::make_shared<SumSquares>(resolve_stream(s, xs)), xs);
}

namespace ref {

std::vector<Array> adam_step(const std::vector<Array>& params, const std::vector<Array>& grads,
                             const std::vector<Array>& m, const std::vector<Array>& v,
                             const AdamStepOptions& opt, const std::optional<Array>& grad_scale,
                             StreamOrDevice s) {
  check_adam_args(params, grads, m, v, grad_scale);
  const size_t n = params.size();
  std::vector<Array> out(3 * n);
  for (size_t i = 0; i < n; ++i) {
    const Array& p = params[i];
    Array g = astype(grads[i], float32, s);
    if (grad_scale) g = astype(astype(g * *grad_scale, grads[i].dtype(), s), float32, s);
    Array pf = astype(p, float32, s);
    if (opt.decoupled)
      pf = pf * opt.decay;
    else if (opt.weight_decay != 0)
      g = g + opt.weight_decay * pf;
    Array mi = opt.beta1 * m[i] + opt.one_minus_beta1 * g;
    Array vi = opt.beta2 * v[i] + opt.one_minus_beta2 * square(g);
    Array dir = (mi / opt.c1) / (sqrt(vi / opt.c2) + opt.eps);
    out[i] = astype(pf - opt.lr * dir, p.dtype(), s);
    out[n + i] = mi;
    out[2 * n + i] = vi;
  }
  return out;
}

Array sum_squares(const std::vector<Array>& xs, StreamOrDevice s) {
  Array total(0.0f, float32);  // a host constant: follows the inputs' device
  for (const Array& x : xs) total = total + sum(square(astype(x, float32, s)));
  return total;
}

}  // namespace ref
}  // namespace fast
}  // namespace ingot
