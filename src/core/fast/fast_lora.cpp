// fast::lora_branch (see lora.h): argument checks, the primitives' shapes and VJP, the switch
// and the reference composition.
#include <cstdlib>
#include <ostream>
#include <string>

#include "core/fast/lora.h"
#include "core/ops/ops.h"
#include "core/primitives/fast_lora.h"
#include "util/env.h"

namespace ingot {

std::vector<Shape> LoraBranch::output_shapes(const std::vector<Array>& inputs) {
  Shape t = inputs[1].shape();
  t.back() = inputs[2].shape(0);
  return {inputs[0].shape(), t};
}

std::vector<Array> LoraBranch::vjp(const std::vector<Array>& primals,
                                   const std::vector<Array>& cotangents,
                                   const std::vector<int>& argnums,
                                   const std::vector<Array>& outputs) {
  const Array& g = cotangents[0];
  std::vector<Array> grads;
  for (int i : argnums)
    if (i > 0) {
      const Array &x = primals[1], &a = primals[2], &b = primals[3];
      // INGOT_LORA_KEEP_PRODUCT=0: the backward recomputes t from x (A/B runs); read once.
      static const bool keep = env::flag("INGOT_LORA_KEEP_PRODUCT", true);
      std::vector<Array> in{g, x, a, b};
      // The kept t (out holds it until evaluated). Never a stand-in from outputs() (a fresh
      // node of this primitive alone, which would run it with one output): then recompute.
      if (keep && outputs.size() == 2 &&
          (outputs[1].is_evaluated() || !outputs[1].siblings().empty()))
        in.push_back(outputs[1]);
      grads =
          Array::make_arrays({x.shape(), a.shape(), b.shape()}, {x.dtype(), a.dtype(), b.dtype()},
                             std::make_shared<LoraBranchGrad>(stream(), scale_), std::move(in));
      break;
    }
  std::vector<Array> out;
  for (int i : argnums)
    out.push_back(i == 0 ? astype(g, primals[0].dtype(), stream())
                         : grads.at(static_cast<size_t>(i - 1)));
  return out;
}

void LoraBranch::print(std::ostream& os) const {
  os << "LoraBranch(scale=" << scale_ << ")";
}

std::vector<Shape> LoraBranchGrad::output_shapes(const std::vector<Array>& inputs) {
  return {inputs[1].shape(), inputs[2].shape(), inputs[3].shape()};
}

std::vector<Array> LoraBranchGrad::vjp(const std::vector<Array>&, const std::vector<Array>&,
                                       const std::vector<int>&, const std::vector<Array>&) {
  raise<Unsupported>(
      "[lora_branch] the fused backward has no gradient of its own; set INGOT_FUSED_LORA=0 for "
      "higher-order gradients of a LoRA layer");
}

void LoraBranchGrad::print(std::ostream& os) const {
  os << "LoraBranchGrad(scale=" << scale_ << ")";
}

namespace fast {
namespace {

bool float_dtype(Dtype t) {
  return t == float32 || t == bfloat16 || t == float16;
}

void check_lora_args(const Array& y, const Array& x, const Array& a, const Array& b) {
  if (!float_dtype(y.dtype()) || !float_dtype(x.dtype()))
    raise("[lora_branch] y and x must be float32, bfloat16 or float16, got {} and {}",
          dtype_name(y.dtype()), dtype_name(x.dtype()));
  if (a.dtype() != float32 || b.dtype() != float32)
    raise("[lora_branch] the factors must be float32, got a {} and b {}", dtype_name(a.dtype()),
          dtype_name(b.dtype()));
  if (y.ndim() < 1 || x.ndim() != y.ndim() || a.ndim() != 2 || b.ndim() != 2)
    raise(
        "[lora_branch] expected y [..., N], x [..., K], a [R, K], b [N, R]; got y {}, x {}, a {}, "
        "b {}",
        shape_str(y.shape()), shape_str(x.shape()), shape_str(a.shape()), shape_str(b.shape()));
  for (int i = 0; i + 1 < y.ndim(); ++i)
    if (x.shape(i) != y.shape(i))
      raise("[lora_branch] x {} and y {} differ in their leading axes", shape_str(x.shape()),
            shape_str(y.shape()));
  const int64_t r = a.shape(0);
  if (a.shape(1) != x.shape(-1) || b.shape(0) != y.shape(-1) || b.shape(1) != r)
    raise("[lora_branch] a {} and b {} do not fit x {} -> y {} (a [R, K], b [N, R])",
          shape_str(a.shape()), shape_str(b.shape()), shape_str(x.shape()), shape_str(y.shape()));
  if (r < 1 || r > kLoraMaxRank)
    raise<Unsupported>("[lora_branch] rank {} is outside 1..{} (use ref::lora_branch)", r,
                       kLoraMaxRank);
}

}  // namespace

Array lora_branch(const Array& y, const Array& x, const Array& a, const Array& b, float scale,
                  StreamOrDevice s) {
  check_lora_args(y, x, a, b);
  const std::vector<Array> inputs{y, x, a, b};
  auto p = std::make_shared<LoraBranch>(resolve_stream(s, inputs), scale);
  std::vector<Shape> shapes = p->output_shapes(inputs);
  std::vector<Array> outs =
      Array::make_arrays(std::move(shapes), {y.dtype(), float32}, std::move(p), inputs);
  outs[0].hold(outs[1]);  // t lives until the VJP has taken it (or out is evaluated)
  return outs[0];
}

bool lora_branch_enabled(Device d) {
  const char* v = std::getenv("INGOT_FUSED_LORA");
  if (!v || !*v) return d.type == Device::Type::cuda;
  return std::string(v) != "0";
}

namespace ref {

Array lora_branch(const Array& y, const Array& x, const Array& a, const Array& b, float scale,
                  StreamOrDevice s) {
  const Dtype dt = a.dtype();
  Array h = x.dtype() == dt ? x : astype(x, dt, s);
  return astype(
      addmm(astype(y, dt, s), matmul(h, transpose(a, s), s), transpose(b, s), scale, 1.0f, s),
      y.dtype(), s);
}

}  // namespace ref
}  // namespace fast
}  // namespace ingot
