// Elementwise ops: unary math, binary arithmetic/comparison/logic with full broadcasting,
// where, astype. Binary ops promote dtypes (promote_types); a 0-d operand made from a C++
// scalar takes the other operand's dtype when both are of the same kind (float with float,
// int with int), so `x * 0.5f` keeps a bfloat16 x in bfloat16, as MLX does.
#pragma once

#include "core/array.h"

namespace ingot {

/// Converts to dtype (round-to-nearest-even for 16-bit floats). No-op if already dtype.
Array astype(const Array& a, Dtype dtype, StreamOrDevice s = {});

// ---- unary ----
Array abs(const Array& a, StreamOrDevice s = {});
Array negative(const Array& a, StreamOrDevice s = {});
Array sign(const Array& a, StreamOrDevice s = {});
Array floor(const Array& a, StreamOrDevice s = {});
Array ceil(const Array& a, StreamOrDevice s = {});
Array round(const Array& a, StreamOrDevice s = {});  // half to even
Array square(const Array& a, StreamOrDevice s = {});
Array reciprocal(const Array& a, StreamOrDevice s = {});
Array exp(const Array& a, StreamOrDevice s = {});
Array expm1(const Array& a, StreamOrDevice s = {});
Array log(const Array& a, StreamOrDevice s = {});
Array log1p(const Array& a, StreamOrDevice s = {});
Array sqrt(const Array& a, StreamOrDevice s = {});
Array rsqrt(const Array& a, StreamOrDevice s = {});
Array sin(const Array& a, StreamOrDevice s = {});
Array cos(const Array& a, StreamOrDevice s = {});
Array tanh(const Array& a, StreamOrDevice s = {});
Array sigmoid(const Array& a, StreamOrDevice s = {});
Array erf(const Array& a, StreamOrDevice s = {});
/// x * sigmoid(x)
Array silu(const Array& a, StreamOrDevice s = {});
/// 0.5 x (1 + erf(x / sqrt 2))
Array gelu(const Array& a, StreamOrDevice s = {});
/// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), "gelu_pytorch_tanh"
Array gelu_tanh(const Array& a, StreamOrDevice s = {});
Array logical_not(const Array& a, StreamOrDevice s = {});
Array isnan(const Array& a, StreamOrDevice s = {});
Array isinf(const Array& a, StreamOrDevice s = {});
/// Integer-valued or float input of float dtype (integers are promoted to float32) for the
/// transcendental ops above: exp/log/sqrt/... of an int array gives float32.

// ---- binary (broadcasting) ----
Array add(const Array& a, const Array& b, StreamOrDevice s = {});
Array subtract(const Array& a, const Array& b, StreamOrDevice s = {});
Array multiply(const Array& a, const Array& b, StreamOrDevice s = {});
/// True division: integer inputs give float32.
Array divide(const Array& a, const Array& b, StreamOrDevice s = {});
/// Floor division (Python semantics for integers and floats).
Array floor_divide(const Array& a, const Array& b, StreamOrDevice s = {});
/// Remainder with the sign of the divisor (Python %).
Array remainder(const Array& a, const Array& b, StreamOrDevice s = {});
Array power(const Array& a, const Array& b, StreamOrDevice s = {});
Array maximum(const Array& a, const Array& b, StreamOrDevice s = {});  // NaN propagates
Array minimum(const Array& a, const Array& b, StreamOrDevice s = {});
Array equal(const Array& a, const Array& b, StreamOrDevice s = {});
Array not_equal(const Array& a, const Array& b, StreamOrDevice s = {});
Array less(const Array& a, const Array& b, StreamOrDevice s = {});
Array less_equal(const Array& a, const Array& b, StreamOrDevice s = {});
Array greater(const Array& a, const Array& b, StreamOrDevice s = {});
Array greater_equal(const Array& a, const Array& b, StreamOrDevice s = {});
Array logical_and(const Array& a, const Array& b, StreamOrDevice s = {});
Array logical_or(const Array& a, const Array& b, StreamOrDevice s = {});
/// cond ? a : b with broadcasting of all three; cond is converted to bool.
Array where(const Array& cond, const Array& a, const Array& b, StreamOrDevice s = {});
/// min(max(a, lo), hi)
Array clip(const Array& a, const Array& lo, const Array& hi, StreamOrDevice s = {});

/// Shape of broadcasting a and b together; throws InvalidArgument "[op] ..." naming both.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op = "broadcast");

Array operator-(const Array& a);
Array operator+(const Array& a, const Array& b);
Array operator-(const Array& a, const Array& b);
Array operator*(const Array& a, const Array& b);
Array operator/(const Array& a, const Array& b);
Array operator<(const Array& a, const Array& b);
Array operator<=(const Array& a, const Array& b);
Array operator>(const Array& a, const Array& b);
Array operator>=(const Array& a, const Array& b);
Array operator&&(const Array& a, const Array& b);
Array operator||(const Array& a, const Array& b);
Array operator!(const Array& a);

}  // namespace ingot
