// Shapes, printing and VJPs of the quantization primitives (see quantized.h).
#include "core/primitives/quantized.h"

#include "core/ops/quantized.h"
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
  s.back() = inputs[1].shape(0);
  return {s};
}

std::vector<Array> QuantizedMatmul::vjp(const std::vector<Array>& primals,
                                        const std::vector<Array>& cotangents,
                                        const std::vector<int>& argnums,
                                        const std::vector<Array>&) {
  std::vector<Array> out;
  for (int arg : argnums) {
    if (arg != 0)
      raise<Unsupported>(
          "[quantized_matmul] gradients flow to x only: the quantized weight, scales and biases "
          "are frozen (input {} was asked for)",
          arg);
    // g [..., N] @ dequantize(w) [N, K] -> [..., K]
    out.push_back(quantized_matmul(cotangents[0], primals[1], primals[2], primals[3],
                                   /*transpose=*/false, {.group_size = group_size_, .bits = bits_},
                                   stream()));
  }
  return out;
}

void QuantizedMatmul::print(std::ostream& os) const {
  os << "QuantizedMatmul(group_size=" << group_size_ << ", bits=" << bits_ << ")";
}

}  // namespace ingot
