// Function transforms: vjp, jvp, grad, value_and_grad (over arrays or named parameter maps),
// stop_gradient, custom_vjp and checkpoint. Gradients are graphs of public ops, so
// grad-of-grad works.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/array.h"

namespace ingot {

using ArrayFn = std::function<std::vector<Array>(const std::vector<Array>&)>;
/// Flat parameter tree: dotted names ("layers.0.attn.q_proj.weight") to arrays.
using ParamMap = std::map<std::string, Array>;

/// Outputs of fn(primals) and the cotangents of the primals given the outputs' cotangents.
std::pair<std::vector<Array>, std::vector<Array>> vjp(const ArrayFn& fn,
                                                      const std::vector<Array>& primals,
                                                      const std::vector<Array>& cotangents);
/// Outputs of fn(primals) and their tangents given the primals' tangents (forward mode).
std::pair<std::vector<Array>, std::vector<Array>> jvp(const ArrayFn& fn,
                                                      const std::vector<Array>& primals,
                                                      const std::vector<Array>& tangents);

/// fn's outputs and the gradients of its first output (a scalar) w.r.t. the inputs in argnums.
using ValueAndGradFn =
    std::function<std::pair<std::vector<Array>, std::vector<Array>>(const std::vector<Array>&)>;
ValueAndGradFn value_and_grad(const ArrayFn& fn, std::vector<int> argnums = {0});
/// Gradient of a scalar function of one array.
std::function<Array(const Array&)> grad(const std::function<Array(const Array&)>& fn);
/// Gradients of fn's first output w.r.t. the inputs in argnums.
std::function<std::vector<Array>(const std::vector<Array>&)> grad(const ArrayFn& fn,
                                                                   std::vector<int> argnums);

/// Value and gradient of a scalar function of a parameter map (gradients for every entry).
using ParamLossFn = std::function<Array(const ParamMap&)>;
std::pair<Array, ParamMap> value_and_grad(const ParamLossFn& fn, const ParamMap& params);

/// Identity whose gradient is zero.
Array stop_gradient(const Array& a, StreamOrDevice s = {});

/// Custom VJP rule: (primals, cotangents of outputs, outputs) -> cotangents of primals.
using VjpFn = std::function<std::vector<Array>(
    const std::vector<Array>&, const std::vector<Array>&, const std::vector<Array>&)>;
/// fn whose reverse-mode derivative is vjp_fn instead of differentiating fn's graph.
ArrayFn custom_vjp(ArrayFn fn, VjpFn vjp_fn);
/// fn that keeps only its inputs for the backward pass and recomputes its forward graph there
/// (gradient checkpointing).
ArrayFn checkpoint(ArrayFn fn);

/// True while a transform is tracing a function (eval then keeps graphs attached).
bool is_tracing();
namespace detail {
/// Enters (+1) or leaves (-1) a tracing scope on this thread.
void set_tracing(int delta);
}  // namespace detail

}  // namespace ingot
