// Shapes, printing and VJPs of the quantization primitives (see quantized.h).
#include "core/primitives/quantized.h"

#include <optional>

#include "core/ops/ops.h"
#include "core/ops/quantized.h"
#include "core/primitives/elementwise.h"
#include "core/primitives/fast.h"
#include "util/error.h"

namespace ingot {

std::vector<Shape> AffineQuantize::output_shapes(const std::vector<Array>& inputs) {
  Shape wq = inputs[0].shape(), sc = inputs[0].shape();
  wq.back() = wq.back() * bits_ / 32;
  sc.back() = sc.back() / group_size_;
  return {wq, sc, sc};
}

void AffineQuantize::print(std::ostream& os) const {
  os << "AffineQuantize(group_size=" << group_size_ << ", bits=" << bits_ << ")";
}

std::vector<Shape> AffineDequantize::output_shapes(const std::vector<Array>& inputs) {
  Shape s = inputs[0].shape();
  s.back() = s.back() * (32 / bits_);
  return {s};
}

std::vector<Array> AffineDequantize::vjp(const std::vector<Array>&, const std::vector<Array>&,
                                         const std::vector<int>&, const std::vector<Array>&) {
  raise<Unsupported>(
      "[dequantize] has no gradient: quantized weights, scales and biases are frozen");
}

void AffineDequantize::print(std::ostream& os) const {
  os << "AffineDequantize(group_size=" << group_size_ << ", bits=" << bits_ << ")";
}

std::vector<Shape> QuantizedMatmul::output_shapes(const std::vector<Array>& inputs) {
  Shape s = inputs[0].shape();
  s.back() = inputs[1].shape(0) / (fusion_.gate > 0 ? 2 : 1);
  return {s};
}

// The fused forms: the norm and the stacked product are recomputed as their primitives (the
// fused one keeps neither); a gate's multiply and activation VJPs, the product's (g @
// dequantize(w)), then RmsNorm's VJP for x and the norm weight; a residual gets the cotangent.
std::vector<Array> QuantizedMatmul::vjp(const std::vector<Array>& primals,
                                        const std::vector<Array>& cotangents,
                                        const std::vector<int>& argnums,
                                        const std::vector<Array>&) {
  const int norm_arg = fusion_.norm && fusion_.norm_weight ? 4 : -1;
  const int res_arg = fusion_.residual ? 4 + (norm_arg == 4 ? 1 : 0) : -1;
  for (int arg : argnums)
    if (arg >= 1 && arg <= 3)
      raise<Unsupported>(
          "[quantized_matmul] gradients flow to x only: the quantized weight, scales and biases "
          "are frozen (input {} was asked for)",
          arg);
  const Array& x = primals[0];
  const QuantizeOptions qo{.group_size = group_size_, .bits = bits_};
  std::shared_ptr<RmsNorm> np;
  std::vector<Array> norm_in{x};
  Array h = x;
  if (fusion_.norm) {
    if (norm_arg >= 0) norm_in.push_back(primals[static_cast<size_t>(norm_arg)]);
    np = std::make_shared<RmsNorm>(stream(), fusion_.eps, fusion_.add_unit_offset,
                                   fusion_.weight_in_float32, fusion_.norm_weight);
    h = Array(x.shape(), x.dtype(), np, norm_in);
  }
  Array dy = cotangents[0];
  if (fusion_.gate > 0) {
    Shape ys = x.shape();
    ys.back() = primals[1].shape(0);
    const int64_t i = ys.back() / 2;
    const Array y(ys, x.dtype(), product(), {h, primals[1], primals[2], primals[3]});
    Shape start(ys.size(), 0), mid = ys, up = start;
    mid.back() = i;
    up.back() = i;
    const Array g = slice(y, start, mid, stream()), u = slice(y, up, ys, stream());
    std::shared_ptr<UnaryPrimitive> ap;
    if (fusion_.gate == 1)
      ap = std::make_shared<Silu>(stream());
    else if (fusion_.gate == 2)
      ap = std::make_shared<Gelu>(stream());
    else
      ap = std::make_shared<GeluTanh>(stream());
    const Array a(g.shape(), g.dtype(), ap, {g});
    const Array dg = ap->vjp({g}, {multiply(dy, u, stream())}, {0}, {a})[0];
    dy = concatenate({dg, multiply(dy, a, stream())}, -1, stream());
  }
  std::optional<Array> dh;
  const auto grad_h = [&] {
    if (!dh)  // g [..., N] @ dequantize(w) [N, K] -> [..., K]
      dh = quantized_matmul(dy, primals[1], primals[2], primals[3], /*transpose=*/false, qo,
                            stream());
    return *dh;
  };
  std::vector<int> norm_args;
  for (int arg : argnums)
    if (fusion_.norm && (arg == 0 || arg == norm_arg)) norm_args.push_back(arg == 0 ? 0 : 1);
  std::vector<Array> norm_grads;
  if (!norm_args.empty()) norm_grads = np->vjp(norm_in, {grad_h()}, norm_args, {h});
  std::vector<Array> out;
  size_t next = 0;
  for (int arg : argnums) {
    if (arg == res_arg)
      out.push_back(cotangents[0]);
    else if (fusion_.norm)
      out.push_back(norm_grads[next++]);
    else
      out.push_back(grad_h());
  }
  return out;
}

void QuantizedMatmul::print(std::ostream& os) const {
  os << "QuantizedMatmul(group_size=" << group_size_ << ", bits=" << bits_;
  if (fusion_.norm) os << ", rms_norm(eps=" << fusion_.eps << ")";
  if (fusion_.gate > 0) os << ", gate=" << fusion_.gate;
  if (fusion_.residual) os << ", residual";
  os << ")";
}

}  // namespace ingot
