// quantize / dequantize / quantized_matmul ops: validation and node construction.
#include "core/ops/quantized.h"

#include <memory>

#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/shape.h"
#include "core/primitives/quantized.h"
#include "util/error.h"

namespace ingot {
namespace {

std::string describe(const Array& x) {
  return fmt::format("{} ({})", shape_str(x.shape()), dtype_name(x.dtype()));
}

/// Checks wq / scales / biases against each other; returns K (the unpacked last axis).
int64_t check_packed(const Array& w, const Array& scales, const Array& biases,
                     const QuantizeOptions& opt, const char* op) {
  check_quantize_options(opt, op);
  if (w.dtype() != uint32)
    raise("[{}] the quantized weight must be uint32, got {}", op, describe(w));
  if (!is_floating(scales.dtype()) || scales.dtype() == float64 || biases.dtype() != scales.dtype())
    raise("[{}] scales {} and biases {} must share one float dtype (float32, bfloat16, float16)",
          op, describe(scales), describe(biases));
  if (w.ndim() < 1 || scales.shape() != biases.shape() || scales.ndim() != w.ndim())
    raise("[{}] scales {} and biases {} do not fit the quantized weight {}", op, describe(scales),
          describe(biases), describe(w));
  const int64_t k = w.shape(-1) * (32 / opt.bits);
  for (int d = 0; d + 1 < w.ndim(); ++d)
    if (scales.shape(d) != w.shape(d))
      raise("[{}] scales {} do not fit the quantized weight {}", op, describe(scales), describe(w));
  if (scales.shape(-1) * opt.group_size != k)
    raise(
        "[{}] scales {} do not fit the quantized weight {}: {} values per row in groups of {} "
        "need {} scales per row",
        op, describe(scales), describe(w), k, opt.group_size, k / opt.group_size);
  return k;
}

}  // namespace

void check_quantize_options(const QuantizeOptions& opt, const char* op) {
  if (opt.bits != 4 && opt.bits != 8)
    raise<Unsupported>("[{}] bits must be 4 or 8, got {}", op, opt.bits);
  if (opt.group_size != 32 && opt.group_size != 64 && opt.group_size != 128)
    raise<Unsupported>("[{}] group_size must be 32, 64 or 128, got {}", op, opt.group_size);
}

QuantizedWeight quantize(const Array& w, QuantizeOptions opt, StreamOrDevice s) {
  check_quantize_options(opt, "quantize");
  if (!is_floating(w.dtype()) || w.dtype() == float64)
    raise("[quantize] w must be float32, bfloat16 or float16, got {}", describe(w));
  if (w.ndim() < 1 || w.shape(-1) % opt.group_size != 0)
    raise("[quantize] the last axis of w {} must be a multiple of the group size {}", describe(w),
          opt.group_size);
  Stream stream = resolve_stream(s, {&w});
  auto prim = std::make_shared<AffineQuantize>(stream, opt.group_size, opt.bits);
  std::vector<Shape> shapes = prim->output_shapes({w});
  auto outs = Array::make_arrays(shapes, {uint32, w.dtype(), w.dtype()}, prim, {w});
  return {outs[0], outs[1], outs[2]};
}

Array dequantize(const Array& w, const Array& scales, const Array& biases, QuantizeOptions opt,
                 StreamOrDevice s) {
  const int64_t k = check_packed(w, scales, biases, opt, "dequantize");
  Stream stream = resolve_stream(s, {&w, &scales, &biases});
  Shape shape = w.shape();
  shape.back() = k;
  return Array(std::move(shape), scales.dtype(),
               std::make_shared<AffineDequantize>(stream, opt.group_size, opt.bits),
               {w, scales, biases});
}

Array quantized_matmul(const Array& x, const Array& w, const Array& scales, const Array& biases,
                       bool transpose, QuantizeOptions opt, StreamOrDevice s) {
  const int64_t k = check_packed(w, scales, biases, opt, "quantized_matmul");
  if (!is_floating(x.dtype()) || x.dtype() == float64)
    raise("[quantized_matmul] x must be float32, bfloat16 or float16, got {}", describe(x));
  if (w.ndim() != 2)
    raise("[quantized_matmul] the quantized weight must be 2-d, got {}", describe(w));
  if (x.ndim() < 1)
    raise("[quantized_matmul] x must have at least one dimension, got {}", describe(x));
  if (!transpose) {
    // x @ W with W [K', N] quantized along N: no dedicated kernel (the VJP of the transposed
    // form and rare uses); dequantize, then a float matmul.
    Array dw = dequantize(w, scales, biases, opt, s);
    if (x.shape(-1) != w.shape(0))
      raise("[quantized_matmul] x {} does not fit w {} (transpose=false: x's last axis must be {})",
            describe(x), describe(w), w.shape(0));
    return matmul(x, astype(dw, x.dtype(), s), s);
  }
  if (x.shape(-1) != k)
    raise("[quantized_matmul] x {} does not fit the quantized weight {} holding {} x {} values",
          describe(x), describe(w), w.shape(0), k);
  Stream stream = resolve_stream(s, {&x, &w, &scales, &biases});
  Shape shape = x.shape();
  shape.back() = w.shape(0);
  return Array(std::move(shape), x.dtype(),
               std::make_shared<QuantizedMatmul>(stream, opt.group_size, opt.bits),
               {x, w, scales, biases});
}

}  // namespace ingot
