// fast::gated_activation (see fast.h): argument checks, the Glu / GluGrad primitives' shapes,
// VJPs and JVP, and the reference composition.
#include <memory>
#include <ostream>

#include "core/fast/fast.h"
#include "core/ops/ops.h"
#include "core/primitives/elementwise.h"
#include "core/primitives/fast_glu.h"
#include "core/transforms/autodiff.h"

namespace ingot {

namespace {

const char* act_name(int act) {
  return act == 0 ? "silu" : act == 1 ? "gelu" : "gelu_tanh";
}

/// act(x) as its public op (act as Glu's act_).
Array activation(const Array& x, int act, StreamOrDevice s) {
  return act == 0 ? silu(x, s) : act == 1 ? gelu(x, s) : gelu_tanh(x, s);
}

/// {dg, du} of act(g) * u for cotangent dh as the separate ops' VJPs compute them: the
/// multiply's gradients, then act's (GluGrad's value, op by op; also its own gradient).
std::vector<Array> composed_grads(const Array& g, const Array& u, const Array& dh, int act) {
  return {multiply(multiply(dh, u), activation_derivative(g, act)),
          multiply(dh, activation(g, act, {}))};
}

}  // namespace

// ---- Glu ----

std::vector<Shape> Glu::output_shapes(const std::vector<Array>& inputs) {
  return {inputs[0].shape()};
}

void Glu::print(std::ostream& os) const {
  os << "Glu(" << act_name(act_) << ")";
}

std::vector<Array> Glu::vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                            const std::vector<int>& argnums, const std::vector<Array>&) {
  const Array &g = primals[0], &u = primals[1], &dh = cotangents[0];
  // A caller's cotangent of another dtype promotes as the separate ops would.
  const std::vector<Array> grads =
      dh.dtype() == g.dtype()
          ? Array::make_arrays({g.shape(), u.shape()}, {g.dtype(), u.dtype()},
                               std::make_shared<GluGrad>(stream(), act_), {g, u, dh})
          : composed_grads(g, u, dh, act_);
  std::vector<Array> out;
  for (int i : argnums) out.push_back(grads.at(static_cast<size_t>(i)));
  return out;
}

std::vector<Array> Glu::jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                            const std::vector<int>& argnums) {
  const Array &g = primals[0], &u = primals[1];
  Array t;
  for (size_t k = 0; k < argnums.size(); ++k) {
    const Array d = argnums[k] == 0
                        ? multiply(multiply(tangents[k], activation_derivative(g, act_)), u)
                        : multiply(tangents[k], activation(g, act_, stream()));
    t = k == 0 ? d : add(t, d);
  }
  return {t};
}

// ---- GluGrad ----

std::vector<Shape> GluGrad::output_shapes(const std::vector<Array>& inputs) {
  return {inputs[0].shape(), inputs[1].shape()};
}

void GluGrad::print(std::ostream& os) const {
  os << "GluGrad(" << act_name(act_) << ")";
}

// The composition's own gradient (GluGrad is its value computed in one pass).
std::vector<Array> GluGrad::vjp(const std::vector<Array>& primals,
                                const std::vector<Array>& cotangents,
                                const std::vector<int>& argnums, const std::vector<Array>&) {
  const int act = act_;
  auto f = [act](const std::vector<Array>& in) { return composed_grads(in[0], in[1], in[2], act); };
  const std::vector<Array> all = ingot::vjp(f, primals, cotangents).second;
  std::vector<Array> out;
  for (int i : argnums) out.push_back(all.at(static_cast<size_t>(i)));
  return out;
}

namespace fast {

Array gated_activation(const Array& g, const Array& u, GatedActivation act, StreamOrDevice s) {
  if (!is_floating(g.dtype()) || g.dtype() != u.dtype())
    raise("[gated_activation] g and u must share one floating-point dtype, got {} and {}",
          dtype_name(g.dtype()), dtype_name(u.dtype()));
  if (g.shape() != u.shape())
    raise("[gated_activation] g {} and u {} must have the same shape", shape_str(g.shape()),
          shape_str(u.shape()));
  const int a = static_cast<int>(act);
  if (a < 0 || a > 2) raise("[gated_activation] unknown activation {}", a);
  const std::vector<Array> inputs{g, u};
  return Array(g.shape(), g.dtype(), std::make_shared<Glu>(resolve_stream(s, inputs), a), inputs);
}

namespace ref {

Array gated_activation(const Array& g, const Array& u, GatedActivation act, StreamOrDevice s) {
  return multiply(activation(g, static_cast<int>(act), s), u, s);
}

}  // namespace ref
}  // namespace fast
}  // namespace ingot
