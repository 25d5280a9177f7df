// VJPs and JVPs of the elementwise primitives, written with public ops only (so grad of grad
// works), plus the EwOp helpers.
#include "core/primitives/elementwise.h"

#include <cstdlib>
#include <cstring>

#include "core/ops/creation.h"
#include "core/ops/elementwise.h"
#include "core/primitives/fast.h"
#include "util/env.h"

namespace ingot {

int ew_arity(EwOp op) {
  if (op == EwOp::Where) return 3;
  if (op == EwOp::AsType) return 1;
  return op >= EwOp::Add ? 2 : 1;
}

const char* ew_name(EwOp op) {
  switch (op) {
#define INGOT_EW_NAME(NAME) \
  case EwOp::NAME:          \
    return #NAME;
    INGOT_EW_UNARY_OPS(INGOT_EW_NAME)
    INGOT_EW_BINARY_OPS(INGOT_EW_NAME)
#undef INGOT_EW_NAME
    case EwOp::Where:
      return "Where";
    case EwOp::AsType:
      return "AsType";
  }
  return "?";
}

namespace {

using Arrays = std::vector<Array>;
constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kTwoOverSqrtPi = 1.12837916709551257390;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kGeluC = 0.79788456080286535588;  // sqrt(2/pi)
constexpr double kGeluK = 0.044715;

Array zero_like(const Array& a) {
  return zeros_like(a);
}

/// Cotangent of each input in argnums: f(i) for input i.
template <typename F>
Arrays per_arg(const std::vector<int>& argnums, F&& f) {
  Arrays r;
  for (int i : argnums) r.push_back(f(i));
  return r;
}

/// Output tangent of a primitive given the partial tangent of each differentiated input.
template <typename F>
Array sum_tangents(const Arrays& tangents, const std::vector<int>& argnums, F&& f) {
  Array r = f(argnums[0], tangents[0]);
  for (size_t j = 1; j < argnums.size(); ++j) r = add(r, f(argnums[j], tangents[j]));
  return r;
}

}  // namespace

// ---- unary: cotangent * f'(x), with y the output ----
#define INGOT_UNARY_GRAD(NAME, FN, DERIV)                                                    \
  Arrays NAME::vjp(const Arrays& primals, const Arrays& cotangents, const std::vector<int>&, \
                   const Arrays& outputs) {                                                  \
    const Array& x = primals[0];                                                             \
    const Array& y = outputs[0];                                                             \
    (void)x;                                                                                 \
    (void)y;                                                                                 \
    return {multiply(cotangents[0], DERIV)};                                                 \
  }                                                                                          \
  Arrays NAME::jvp(const Arrays& primals, const Arrays& tangents, const std::vector<int>&) { \
    const Array& x = primals[0];                                                             \
    Array y = FN(x);                                                                         \
    (void)y;                                                                                 \
    return {multiply(tangents[0], DERIV)};                                                   \
  }

INGOT_UNARY_GRAD(Abs, abs, sign(x))
INGOT_UNARY_GRAD(Negative, negative, Array(-1, x.dtype()))
INGOT_UNARY_GRAD(Square, square, multiply(Array(2), x))
INGOT_UNARY_GRAD(Reciprocal, reciprocal, negative(square(y)))
INGOT_UNARY_GRAD(Exp, exp, y)
INGOT_UNARY_GRAD(Expm1, expm1, add(y, Array(1)))
INGOT_UNARY_GRAD(Log, log, reciprocal(x))
INGOT_UNARY_GRAD(Log1p, log1p, reciprocal(add(x, Array(1))))
INGOT_UNARY_GRAD(Sqrt, sqrt, divide(Array(0.5), y))
INGOT_UNARY_GRAD(Rsqrt, rsqrt, multiply(Array(-0.5), divide(y, x)))
INGOT_UNARY_GRAD(Sin, sin, cos(x))
INGOT_UNARY_GRAD(Cos, cos, negative(sin(x)))
INGOT_UNARY_GRAD(Tanh, tanh, subtract(Array(1), square(y)))
INGOT_UNARY_GRAD(Sigmoid, sigmoid, multiply(y, subtract(Array(1), y)))
INGOT_UNARY_GRAD(Erf, erf, multiply(Array(kTwoOverSqrtPi), exp(negative(square(x)))))
#undef INGOT_UNARY_GRAD

Array activation_derivative(const Array& x, int act) {
  if (act == 0) {
    Array s = sigmoid(x);
    return multiply(s, add(Array(1), multiply(x, subtract(Array(1), s))));
  }
  if (act == 1) {
    Array cdf = multiply(Array(0.5), add(Array(1), erf(multiply(x, Array(kSqrt1_2)))));
    Array pdf = multiply(Array(kInvSqrt2Pi), exp(multiply(Array(-0.5), square(x))));
    return add(cdf, multiply(x, pdf));
  }
  Array x2 = square(x);
  Array t = tanh(multiply(Array(kGeluC), add(x, multiply(Array(kGeluK), multiply(x2, x)))));
  Array du = multiply(Array(kGeluC), add(Array(1), multiply(Array(3 * kGeluK), x2)));
  Array half_x = multiply(Array(0.5), x);
  return add(multiply(Array(0.5), add(Array(1), t)),
             multiply(half_x, multiply(subtract(Array(1), square(t)), du)));
}

namespace {

// INGOT_FUSED_ACT_GRAD: unset, empty or anything but "0" = one ActivationGrad; "0" = the
// composition (A/B runs). Read at every call so that tests can switch it.
bool fused_act_grad() {
  return env::flag("INGOT_FUSED_ACT_GRAD", true);
}

/// g * act'(x): one ActivationGrad when g and x share dtype and shape, else the composition.
Array activation_vjp(const Array& x, const Array& g, int act, Stream s) {
  if (fused_act_grad() && is_floating(x.dtype()) && g.dtype() == x.dtype() &&
      g.shape() == x.shape())
    return Array(x.shape(), x.dtype(), std::make_shared<ActivationGrad>(s, act), {x, g});
  return multiply(g, activation_derivative(x, act));
}

}  // namespace

// ---- the GLU activations: the VJP as one ActivationGrad ----
#define INGOT_ACT_GRAD(NAME, ACT)                                                            \
  Arrays NAME::vjp(const Arrays& primals, const Arrays& cotangents, const std::vector<int>&, \
                   const Arrays&) {                                                          \
    return {activation_vjp(primals[0], cotangents[0], ACT, stream())};                       \
  }                                                                                          \
  Arrays NAME::jvp(const Arrays& primals, const Arrays& tangents, const std::vector<int>&) { \
    return {multiply(tangents[0], activation_derivative(primals[0], ACT))};                  \
  }
INGOT_ACT_GRAD(Silu, 0)
INGOT_ACT_GRAD(Gelu, 1)
INGOT_ACT_GRAD(GeluTanh, 2)
#undef INGOT_ACT_GRAD

// Piecewise-constant or boolean ops: zero derivative.
#define INGOT_ZERO_GRAD(NAME)                                                             \
  Arrays NAME::vjp(const Arrays& primals, const Arrays&, const std::vector<int>& argnums, \
                   const Arrays&) {                                                       \
    return per_arg(argnums, [&](int i) { return zero_like(primals[i]); });                \
  }                                                                                       \
  Arrays NAME::jvp(const Arrays& primals, const Arrays&, const std::vector<int>&) {       \
    return {zeros(primals[0].shape(), Dtype::float32, stream())};                         \
  }
INGOT_ZERO_GRAD(Sign)
INGOT_ZERO_GRAD(Floor)
INGOT_ZERO_GRAD(Ceil)
INGOT_ZERO_GRAD(Round)
INGOT_ZERO_GRAD(LogicalNot)
INGOT_ZERO_GRAD(IsNan)
INGOT_ZERO_GRAD(IsInf)
INGOT_ZERO_GRAD(FloorDivide)
INGOT_ZERO_GRAD(Equal)
INGOT_ZERO_GRAD(NotEqual)
INGOT_ZERO_GRAD(Less)
INGOT_ZERO_GRAD(LessEqual)
INGOT_ZERO_GRAD(Greater)
INGOT_ZERO_GRAD(GreaterEqual)
INGOT_ZERO_GRAD(LogicalAnd)
INGOT_ZERO_GRAD(LogicalOr)
#undef INGOT_ZERO_GRAD

// ---- binary: partial derivative of input i times the cotangent / tangent ----
#define INGOT_BINARY_GRAD(NAME, FN, PARTIAL)                                                  \
  Arrays NAME::vjp(const Arrays& primals, const Arrays& cotangents,                           \
                   const std::vector<int>& argnums, const Arrays& outputs) {                  \
    const Array &a = primals[0], &b = primals[1], &y = outputs[0];                            \
    (void)a, (void)b, (void)y;                                                                \
    return per_arg(argnums, [&](int i) {                                                      \
      const Array& g = cotangents[0];                                                         \
      return PARTIAL;                                                                         \
    });                                                                                       \
  }                                                                                           \
  Arrays NAME::jvp(const Arrays& primals, const Arrays& tangents,                             \
                   const std::vector<int>& argnums) {                                         \
    const Array &a = primals[0], &b = primals[1];                                             \
    Array y = FN(a, b);                                                                       \
    (void)a, (void)b, (void)y;                                                                \
    return {sum_tangents(tangents, argnums, [&](int i, const Array& g) { return PARTIAL; })}; \
  }

INGOT_BINARY_GRAD(Add, add, g)
INGOT_BINARY_GRAD(Subtract, subtract, i == 0 ? g : negative(g))
INGOT_BINARY_GRAD(Multiply, multiply, multiply(g, i == 0 ? b : a))
INGOT_BINARY_GRAD(Divide, divide, i == 0 ? divide(g, b) : negative(multiply(g, divide(y, b))))
INGOT_BINARY_GRAD(Remainder, remainder, i == 0 ? g : negative(multiply(g, floor_divide(a, b))))
INGOT_BINARY_GRAD(Power, power,
                  i == 0 ? multiply(g, multiply(b, power(a, subtract(b, Array(1)))))
                         : where(greater(a, Array(0)), multiply(g, multiply(y, log(a))),
                                 Array(0, g.dtype())))
INGOT_BINARY_GRAD(Maximum, maximum,
                  i == 0 ? where(greater_equal(a, b), g, Array(0, g.dtype()))
                         : where(greater_equal(a, b), Array(0, g.dtype()), g))
INGOT_BINARY_GRAD(Minimum, minimum,
                  i == 0 ? where(less_equal(a, b), g, Array(0, g.dtype()))
                         : where(less_equal(a, b), Array(0, g.dtype()), g))
#undef INGOT_BINARY_GRAD

// ---- Where and AsType ----

Arrays Where::vjp(const Arrays& primals, const Arrays& cotangents, const std::vector<int>& argnums,
                  const Arrays&) {
  const Array& c = primals[0];
  const Array& g = cotangents[0];
  return per_arg(argnums, [&](int i) {
    if (i == 0) return zero_like(c);
    Array z(0, g.dtype());
    return i == 1 ? where(c, g, z) : where(c, z, g);
  });
}

Arrays Where::jvp(const Arrays& primals, const Arrays& tangents, const std::vector<int>& argnums) {
  const Array& c = primals[0];
  Array ta = zeros_like(primals[1]), tb = zeros_like(primals[2]);
  for (size_t j = 0; j < argnums.size(); ++j) {
    if (argnums[j] == 1) ta = tangents[j];
    if (argnums[j] == 2) tb = tangents[j];
  }
  return {where(c, ta, tb)};
}

Arrays AsType::vjp(const Arrays& primals, const Arrays& cotangents, const std::vector<int>&,
                   const Arrays&) {
  return {astype(cotangents[0], primals[0].dtype())};
}

Arrays AsType::jvp(const Arrays&, const Arrays& tangents, const std::vector<int>&) {
  return {astype(tangents[0], dtype_)};
}

}  // namespace ingot
