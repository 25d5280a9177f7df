// Identity, StopGradient and CustomVjp: buffer-sharing evaluation (device independent) and
// their derivative rules.
#include "core/primitives/transforms.h"

#include "core/ops/creation.h"

namespace ingot {

void Identity::eval_cpu(const std::vector<Array>& in, Array& out) {
  out.copy_shared_buffer(in[0]);
}
void Identity::eval_cuda(const std::vector<Array>& in, Array& out) {
  out.copy_shared_buffer(in[0]);
}
std::vector<Array> Identity::vjp(const std::vector<Array>&, const std::vector<Array>& cot,
                                 const std::vector<int>&, const std::vector<Array>&) {
  return {cot[0]};
}
std::vector<Array> Identity::jvp(const std::vector<Array>&, const std::vector<Array>& tan,
                                 const std::vector<int>&) {
  return {tan[0]};
}

void StopGradient::eval_cpu(const std::vector<Array>& in, Array& out) {
  out.copy_shared_buffer(in[0]);
}
void StopGradient::eval_cuda(const std::vector<Array>& in, Array& out) {
  out.copy_shared_buffer(in[0]);
}
std::vector<Array> StopGradient::vjp(const std::vector<Array>& primals, const std::vector<Array>&,
                                     const std::vector<int>&, const std::vector<Array>&) {
  return {zeros_like(primals[0])};
}
std::vector<Array> StopGradient::jvp(const std::vector<Array>& primals, const std::vector<Array>&,
                                     const std::vector<int>&) {
  return {zeros_like(primals[0])};
}

void CustomVjp::eval_cpu(const std::vector<Array>& in, std::vector<Array>& out) {
  for (size_t i = 0; i < out.size(); ++i) out[i].copy_shared_buffer(in[num_primals_ + i]);
}
void CustomVjp::eval_cuda(const std::vector<Array>& in, std::vector<Array>& out) {
  eval_cpu(in, out);
}
std::vector<Array> CustomVjp::vjp(const std::vector<Array>& primals,
                                  const std::vector<Array>& cotangents,
                                  const std::vector<int>& argnums,
                                  const std::vector<Array>& outputs) {
  std::vector<Array> p(primals.begin(), primals.begin() + num_primals_);
  std::vector<Array> g = fn_(p, cotangents, outputs);
  if (static_cast<int>(g.size()) != num_primals_)
    raise("[custom_vjp] the vjp function returned {} cotangents for {} inputs", g.size(),
          num_primals_);
  std::vector<Array> r;
  for (int a : argnums) r.push_back(a < num_primals_ ? g[a] : zeros_like(primals[a]));
  return r;
}

void Depends::eval_cpu(const std::vector<Array>& in, std::vector<Array>& out) {
  for (size_t i = 0; i < out.size(); ++i) out[i].copy_shared_buffer(in[i]);
}
void Depends::eval_cuda(const std::vector<Array>& in, std::vector<Array>& out) {
  eval_cpu(in, out);
}
std::vector<Array> Depends::vjp(const std::vector<Array>& primals,
                                const std::vector<Array>& cotangents,
                                const std::vector<int>& argnums, const std::vector<Array>&) {
  std::vector<Array> r;
  for (int a : argnums) r.push_back(a < num_inputs_ ? cotangents[a] : zeros_like(primals[a]));
  return r;
}

std::vector<Array> depends(const std::vector<Array>& inputs, const std::vector<Array>& deps) {
  if (inputs.empty()) return {};
  std::vector<Array> all = inputs;
  all.insert(all.end(), deps.begin(), deps.end());
  std::vector<Shape> shapes;
  std::vector<Dtype> dtypes;
  for (const auto& a : inputs) {
    shapes.push_back(a.shape());
    dtypes.push_back(a.dtype());
  }
  Stream s = inputs[0].has_primitive() ? inputs[0].primitive().stream()
                                       : default_stream(op_device(inputs[0]));
  return Array::make_arrays(shapes, dtypes,
                            std::make_shared<Depends>(s, static_cast<int>(inputs.size())), all);
}

}  // namespace ingot
