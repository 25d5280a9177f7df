// Elementwise ops: validation, dtype promotion (with weak scalars) and graph construction.
// Inputs are converted to the compute dtype and broadcast (as views) before the node is built,
// so every Elementwise primitive sees inputs of the output's shape.
#include "core/ops/elementwise.h"

#include <memory>

#include "core/ops/creation.h"
#include "core/ops/shape.h"
#include "core/primitives/elementwise.h"

namespace ingot {
namespace {

// bool < integers < floats.
int kind(Dtype t) {
  return t == Dtype::bool_ ? 0 : (is_floating(t) ? 2 : 1);
}

/// Result dtype of a binary op: promote_types, except that a weak scalar (0-d array made from
/// a C++ scalar) facing a non-weak array adopts the array's dtype when its kind is not higher
/// (int with int or float, float with float, bool with anything); a float weak scalar meeting
/// an integer or bool array gives float32.
Dtype binary_dtype(const Array& a, const Array& b) {
  bool wa = a.is_weak_scalar(), wb = b.is_weak_scalar();
  if (wa == wb) return promote_types(a.dtype(), b.dtype());
  const Array& w = wa ? a : b;
  const Array& t = wa ? b : a;
  if (kind(w.dtype()) <= kind(t.dtype())) return t.dtype();
  if (is_floating(w.dtype())) return Dtype::float32;
  return w.dtype();  // int scalar with a bool array
}

/// Integers (and bool) become float32 for ops whose result is not an integer.
Dtype float_dtype(Dtype t) {
  return is_floating(t) ? t : Dtype::float32;
}

template <typename P>
Array unary_node(const Array& a, Dtype in, Dtype out, StreamOrDevice s) {
  Stream st = resolve_stream(s, {&a});
  Array x = astype(a, in, st);
  return Array(x.shape(), out, std::make_shared<P>(st), {x});
}

/// Converts each input to its dtype and broadcasts it to the common shape.
std::vector<Array> prepare(const std::vector<Array>& ins, const std::vector<Dtype>& dtypes,
                           const Shape& shape, Stream st) {
  std::vector<Array> r;
  for (size_t i = 0; i < ins.size(); ++i) {
    Array x = astype(ins[i], dtypes[i], st);
    if (x.shape() != shape) x = broadcast_to(x, shape, st);
    r.push_back(std::move(x));
  }
  return r;
}

template <typename P>
Array binary_node(const char* name, const Array& a, const Array& b, Dtype in, Dtype out,
                  StreamOrDevice s) {
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Stream st = resolve_stream(s, {&a, &b});
  return Array(shape, out, std::make_shared<P>(st), prepare({a, b}, {in, in}, shape, st));
}

/// Arithmetic binary op in the promoted dtype; `bool_ok` false rejects bool results.
template <typename P>
Array arith(const char* name, const Array& a, const Array& b, bool bool_ok, StreamOrDevice s) {
  Dtype t = binary_dtype(a, b);
  if (!bool_ok && t == Dtype::bool_)
    raise("[{}] is not supported for bool arrays (shapes {} and {})", name, shape_str(a.shape()),
          shape_str(b.shape()));
  return binary_node<P>(name, a, b, t, t, s);
}

template <typename P>
Array compare(const char* name, const Array& a, const Array& b, StreamOrDevice s) {
  return binary_node<P>(name, a, b, binary_dtype(a, b), Dtype::bool_, s);
}

template <typename P>
Array float_unary(const Array& a, StreamOrDevice s) {
  Dtype t = float_dtype(a.dtype());
  return unary_node<P>(a, t, t, s);
}

}  // namespace

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      raise("[{}] cannot broadcast {} and {}", op, shape_str(a), shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Array astype(const Array& a, Dtype dtype, StreamOrDevice s) {
  if (a.dtype() == dtype) return a;
  return Array(a.shape(), dtype, std::make_shared<AsType>(resolve_stream(s, {&a}), dtype), {a});
}

// ---- unary ----

Array abs(const Array& a, StreamOrDevice s) {
  if (a.dtype() == Dtype::bool_ || is_unsigned_int(a.dtype())) return a;
  return unary_node<Abs>(a, a.dtype(), a.dtype(), s);
}

Array negative(const Array& a, StreamOrDevice s) {
  if (a.dtype() == Dtype::bool_)
    raise("[negative] is not supported for bool arrays (shape {}); use logical_not",
          shape_str(a.shape()));
  return unary_node<Negative>(a, a.dtype(), a.dtype(), s);
}

Array sign(const Array& a, StreamOrDevice s) {
  if (a.dtype() == Dtype::bool_) return a;
  return unary_node<Sign>(a, a.dtype(), a.dtype(), s);
}

Array floor(const Array& a, StreamOrDevice s) {
  if (!is_floating(a.dtype())) return a;
  return unary_node<Floor>(a, a.dtype(), a.dtype(), s);
}

Array ceil(const Array& a, StreamOrDevice s) {
  if (!is_floating(a.dtype())) return a;
  return unary_node<Ceil>(a, a.dtype(), a.dtype(), s);
}

Array round(const Array& a, StreamOrDevice s) {
  if (!is_floating(a.dtype())) return a;
  return unary_node<Round>(a, a.dtype(), a.dtype(), s);
}

Array square(const Array& a, StreamOrDevice s) {
  return unary_node<Square>(a, a.dtype(), a.dtype(), s);
}

Array reciprocal(const Array& a, StreamOrDevice s) {
  return float_unary<Reciprocal>(a, s);
}
Array exp(const Array& a, StreamOrDevice s) {
  return float_unary<Exp>(a, s);
}
Array expm1(const Array& a, StreamOrDevice s) {
  return float_unary<Expm1>(a, s);
}
Array log(const Array& a, StreamOrDevice s) {
  return float_unary<Log>(a, s);
}
Array log1p(const Array& a, StreamOrDevice s) {
  return float_unary<Log1p>(a, s);
}
Array sqrt(const Array& a, StreamOrDevice s) {
  return float_unary<Sqrt>(a, s);
}
Array rsqrt(const Array& a, StreamOrDevice s) {
  return float_unary<Rsqrt>(a, s);
}
Array sin(const Array& a, StreamOrDevice s) {
  return float_unary<Sin>(a, s);
}
Array cos(const Array& a, StreamOrDevice s) {
  return float_unary<Cos>(a, s);
}
Array tanh(const Array& a, StreamOrDevice s) {
  return float_unary<Tanh>(a, s);
}
Array sigmoid(const Array& a, StreamOrDevice s) {
  return float_unary<Sigmoid>(a, s);
}
Array erf(const Array& a, StreamOrDevice s) {
  return float_unary<Erf>(a, s);
}
Array silu(const Array& a, StreamOrDevice s) {
  return float_unary<Silu>(a, s);
}
Array gelu(const Array& a, StreamOrDevice s) {
  return float_unary<Gelu>(a, s);
}
Array gelu_tanh(const Array& a, StreamOrDevice s) {
  return float_unary<GeluTanh>(a, s);
}

Array logical_not(const Array& a, StreamOrDevice s) {
  return unary_node<LogicalNot>(a, Dtype::bool_, Dtype::bool_, s);
}

Array isnan(const Array& a, StreamOrDevice s) {
  if (!is_floating(a.dtype())) return zeros(a.shape(), Dtype::bool_, resolve_stream(s, {&a}));
  return unary_node<IsNan>(a, a.dtype(), Dtype::bool_, s);
}

Array isinf(const Array& a, StreamOrDevice s) {
  if (!is_floating(a.dtype())) return zeros(a.shape(), Dtype::bool_, resolve_stream(s, {&a}));
  return unary_node<IsInf>(a, a.dtype(), Dtype::bool_, s);
}

// ---- binary ----

Array add(const Array& a, const Array& b, StreamOrDevice s) {
  return arith<Add>("add", a, b, true, s);
}
Array subtract(const Array& a, const Array& b, StreamOrDevice s) {
  return arith<Subtract>("subtract", a, b, false, s);
}
Array multiply(const Array& a, const Array& b, StreamOrDevice s) {
  return arith<Multiply>("multiply", a, b, true, s);
}
Array divide(const Array& a, const Array& b, StreamOrDevice s) {
  Dtype t = float_dtype(binary_dtype(a, b));
  return binary_node<Divide>("divide", a, b, t, t, s);
}
Array floor_divide(const Array& a, const Array& b, StreamOrDevice s) {
  return arith<FloorDivide>("floor_divide", a, b, false, s);
}
Array remainder(const Array& a, const Array& b, StreamOrDevice s) {
  return arith<Remainder>("remainder", a, b, false, s);
}
Array power(const Array& a, const Array& b, StreamOrDevice s) {
  return arith<Power>("power", a, b, false, s);
}
Array maximum(const Array& a, const Array& b, StreamOrDevice s) {
  return arith<Maximum>("maximum", a, b, true, s);
}
Array minimum(const Array& a, const Array& b, StreamOrDevice s) {
  return arith<Minimum>("minimum", a, b, true, s);
}
Array equal(const Array& a, const Array& b, StreamOrDevice s) {
  return compare<Equal>("equal", a, b, s);
}
Array not_equal(const Array& a, const Array& b, StreamOrDevice s) {
  return compare<NotEqual>("not_equal", a, b, s);
}
Array less(const Array& a, const Array& b, StreamOrDevice s) {
  return compare<Less>("less", a, b, s);
}
Array less_equal(const Array& a, const Array& b, StreamOrDevice s) {
  return compare<LessEqual>("less_equal", a, b, s);
}
Array greater(const Array& a, const Array& b, StreamOrDevice s) {
  return compare<Greater>("greater", a, b, s);
}
Array greater_equal(const Array& a, const Array& b, StreamOrDevice s) {
  return compare<GreaterEqual>("greater_equal", a, b, s);
}
Array logical_and(const Array& a, const Array& b, StreamOrDevice s) {
  return binary_node<LogicalAnd>("logical_and", a, b, Dtype::bool_, Dtype::bool_, s);
}
Array logical_or(const Array& a, const Array& b, StreamOrDevice s) {
  return binary_node<LogicalOr>("logical_or", a, b, Dtype::bool_, Dtype::bool_, s);
}

Array where(const Array& cond, const Array& a, const Array& b, StreamOrDevice s) {
  Shape shape;
  try {
    shape =
        broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  } catch (const InvalidArgument&) {
    raise("[where] cannot broadcast condition {}, x {} and y {}", shape_str(cond.shape()),
          shape_str(a.shape()), shape_str(b.shape()));
  }
  Dtype t = binary_dtype(a, b);
  Stream st = resolve_stream(s, {&cond, &a, &b});
  return Array(shape, t, std::make_shared<Where>(st),
               prepare({cond, a, b}, {Dtype::bool_, t, t}, shape, st));
}

Array clip(const Array& a, const Array& lo, const Array& hi, StreamOrDevice s) {
  return minimum(maximum(a, lo, s), hi, s);
}

Array operator-(const Array& a) {
  return negative(a);
}
Array operator+(const Array& a, const Array& b) {
  return add(a, b);
}
Array operator-(const Array& a, const Array& b) {
  return subtract(a, b);
}
Array operator*(const Array& a, const Array& b) {
  return multiply(a, b);
}
Array operator/(const Array& a, const Array& b) {
  return divide(a, b);
}
Array operator<(const Array& a, const Array& b) {
  return less(a, b);
}
Array operator<=(const Array& a, const Array& b) {
  return less_equal(a, b);
}
Array operator>(const Array& a, const Array& b) {
  return greater(a, b);
}
Array operator>=(const Array& a, const Array& b) {
  return greater_equal(a, b);
}
Array operator&&(const Array& a, const Array& b) {
  return logical_and(a, b);
}
Array operator||(const Array& a, const Array& b) {
  return logical_or(a, b);
}
Array operator!(const Array& a) {
  return logical_not(a);
}

}  // namespace ingot
