// Creation ops: validation and graph construction for full/zeros/ones/arange/linspace/eye and
// the copies.
#include "core/ops/creation.h"

#include <cmath>
#include <memory>

#include "core/ops/elementwise.h"
#include "core/ops/shape.h"
#include "core/primitives/creation.h"

namespace ingot {
namespace {

// Largest element count a creation op accepts (guards against absurd sizes before allocating).
constexpr double kMaxElements = 9.0e15;

void check_shape(const Shape& shape, const char* op) {
  for (auto d : shape)
    if (d < 0) raise("[{}] negative dimension in shape {}", op, shape_str(shape));
}

}  // namespace

namespace {
Array full_node(const Shape& shape, const Array& value, Dtype dtype, StreamOrDevice s, bool zero) {
  check_shape(shape, "full");
  if (broadcast_shapes(value.shape(), shape, "full") != shape)
    raise("[full] cannot broadcast the value of shape {} to {}", shape_str(value.shape()),
          shape_str(shape));
  Stream st = resolve_stream(s, {&value});
  Array v = broadcast_to(astype(value, dtype, st), shape, st);
  return Array(shape, dtype, std::make_shared<Full>(st, zero), {v});
}
}  // namespace

Array full(const Shape& shape, const Array& value, Dtype dtype, StreamOrDevice s) {
  return full_node(shape, value, dtype, s, false);
}

Array full(const Shape& shape, const Array& value, StreamOrDevice s) {
  return full(shape, value, value.dtype(), s);
}

Array zeros(const Shape& shape, Dtype dtype, StreamOrDevice s) {
  return full_node(shape, Array(0, dtype), dtype, s, true);
}

Array ones(const Shape& shape, Dtype dtype, StreamOrDevice s) {
  return full(shape, Array(1, dtype), dtype, s);
}

// The *_like ops run on a's device unless told otherwise.
Array zeros_like(const Array& a, StreamOrDevice s) {
  return zeros(a.shape(), a.dtype(), resolve_stream(s, {&a}));
}
Array ones_like(const Array& a, StreamOrDevice s) {
  return ones(a.shape(), a.dtype(), resolve_stream(s, {&a}));
}
Array full_like(const Array& a, const Array& value, StreamOrDevice s) {
  return full(a.shape(), value, a.dtype(), resolve_stream(s, {&a, &value}));
}

Array arange(double start, double stop, double step, Dtype dtype, StreamOrDevice s) {
  if (!std::isfinite(start) || !std::isfinite(stop) || !std::isfinite(step))
    raise("[arange] start, stop and step must be finite, got {}, {}, {}", start, stop, step);
  if (step == 0) raise("[arange] step must be non-zero (start {}, stop {})", start, stop);
  if (dtype == Dtype::bool_) raise("[arange] bool dtype is not supported");
  double n = std::ceil((stop - start) / step);
  if (!(n > 0)) n = 0;
  if (n > kMaxElements)
    raise("[arange] {} elements from start {}, stop {}, step {} is too many", n, start, stop, step);
  return Array({static_cast<int64_t>(n)}, dtype, std::make_shared<Arange>(s.resolve(), start, step),
               {});
}

Array arange(int64_t n, Dtype dtype, StreamOrDevice s) {
  if (n < 0) raise("[arange] negative length {}", n);
  return arange(0.0, static_cast<double>(n), 1.0, dtype, s);
}

Array linspace(double start, double stop, int64_t num, Dtype dtype, StreamOrDevice s) {
  if (num < 0) raise("[linspace] number of samples must be non-negative, got {}", num);
  if (!std::isfinite(start) || !std::isfinite(stop))
    raise("[linspace] start and stop must be finite, got {} and {}", start, stop);
  if (dtype == Dtype::bool_) raise("[linspace] bool dtype is not supported");
  return Array({num}, dtype, std::make_shared<Linspace>(s.resolve(), start, stop), {});
}

Array eye(int64_t n, int64_t m, int64_t k, Dtype dtype, StreamOrDevice s) {
  if (m < 0) m = n;
  if (n < 0) raise("[eye] number of rows must be non-negative, got {}", n);
  if (static_cast<double>(n) * static_cast<double>(m) > kMaxElements)
    raise("[eye] shape [{}, {}] is too large", n, m);
  return Array({n, m}, dtype, std::make_shared<Eye>(s.resolve(), k), {});
}

Array copy(const Array& a, StreamOrDevice s) {
  return Array(a.shape(), a.dtype(), std::make_shared<Copy>(resolve_stream(s, {&a})), {a});
}

Array to_device(const Array& a, Device d) {
  if (d.type == Device::Type::cuda && d.index >= gpu::device_count())
    raise("[to_device] {} requested but {} CUDA device(s) are available", d.str(),
          gpu::device_count());
  if (a.device() == d) {
    // A host constant "on the CPU" would still follow the ops that use it: pin it with a copy.
    return a.is_host_constant() ? copy(a, d) : a;
  }
  return Array(a.shape(), a.dtype(), std::make_shared<ToDevice>(default_stream(d)), {a});
}

Array contiguous(const Array& a, StreamOrDevice s) {
  if (a.is_evaluated() && a.flags().row_contiguous) return a;
  return Array(a.shape(), a.dtype(), std::make_shared<Contiguous>(resolve_stream(s, {&a})), {a});
}

}  // namespace ingot
