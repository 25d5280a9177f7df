// Reverse- and forward-mode autodiff over the lazy graph, custom VJPs and checkpointing.
#include "core/transforms/autodiff.h"

#include <cstdlib>
#include <optional>
#include <string_view>
#include <typeinfo>
#include <unordered_map>

#include "core/ops/creation.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/shape.h"
#include "core/primitive.h"
#include "core/primitives/creation.h"
#include "core/primitives/linalg.h"
#include "core/primitives/shape.h"
#include "core/primitives/transforms.h"
#include "core/transforms/id_set.h"
#include "util/env.h"

namespace ingot {
namespace {

struct TraceGuard {
  TraceGuard() { detail::set_tracing(+1); }
  ~TraceGuard() { detail::set_tracing(-1); }
};

Stream stream_of(const Array& a) {
  return a.has_primitive() ? a.primitive().stream() : default_stream(op_device(a));
}

// A fresh node standing for a primal, so the tape can find it.
Array make_tracer(const Array& p) {
  return Array(p.shape(), p.dtype(), std::make_shared<Identity>(stream_of(p)), {p});
}

bool is_stop_gradient(const Array& a) {
  return a.has_primitive() && dynamic_cast<StopGradient*>(&a.primitive()) != nullptr;
}

// Nodes reachable from `outputs` that depend on a tracer, in topological (post) order.
std::vector<Array> build_tape(const std::vector<Array>& outputs, const detail::IdSet& tracers,
                              detail::IdSet& depends) {
  std::vector<Array> tape;
  detail::IdSet visited;
  struct Frame {
    Array node;
    size_t next;
    bool leaf;  // a tracer or a stop_gradient: its inputs are not walked
  };
  std::vector<Frame> stack;
  auto push = [&](const Array& a) {
    const bool tracer = tracers.contains(a.id());
    stack.push_back({a, 0, tracer || is_stop_gradient(a)});
  };
  for (const Array& root : outputs) {
    if (!visited.insert(root.id())) continue;
    push(root);
    while (!stack.empty()) {
      Frame& f = stack.back();
      const auto& ins = f.node.inputs();
      if (!f.leaf && f.next < ins.size()) {
        const Array& in = ins[f.next++];
        if (visited.insert(in.id())) push(in);
        continue;
      }
      bool dep = tracers.contains(f.node.id());
      if (!f.leaf)
        for (const auto& in : ins) dep = dep || depends.contains(in.id());
      if (dep) {
        depends.insert(f.node.id());
        for (auto& sib : f.node.siblings()) depends.insert(sib.id());
        tape.push_back(f.node);
      }
      stack.pop_back();
    }
  }
  return tape;
}

/// c + g where both are zero-padded slices of one array (the cotangents of q/k/v or gate/up
/// column slices of a stacked projection): g's slice written into c (one fill and copies, in
/// place when c's buffer is free) instead of a second full-size fill and an add. Exact: the
/// regions are disjoint, so every element is the one nonzero term. Empty when not that case.
std::optional<Array> merge_padded(const Array& c, const Array& g) {
  // INGOT_MERGE_SLICE_GRADS=0: always the add (A/B runs); read once.
  static const bool on = env::flag("INGOT_MERGE_SLICE_GRADS", true);
  if (!on || c.shape() != g.shape() || c.dtype() != g.dtype()) return std::nullopt;
  const auto gr = zero_padded(g);
  if (!gr || gr->size() != 1) return std::nullopt;
  const auto cr = zero_padded(c);
  if (!cr || cr->empty()) return std::nullopt;
  const auto& u = static_cast<const SliceUpdate&>(gr->front().primitive());
  for (const Array& r : *cr)
    if (!disjoint(c.shape(), static_cast<const SliceUpdate&>(r.primitive()), u))
      return std::nullopt;
  return slice_update(c, g.inputs()[1], u.start_, u.stop_, u.strides_);
}

/// The products a_i @ b_i of x when x is a sum of them not evaluated yet: a Matmul, or an AddMM
/// (alpha = beta = 1, one rounding) over such a sum (a chain matmul_vjp builds for a stacked
/// product's column blocks). Each as the Matmul / AddMM node whose last two inputs are a_i, b_i.
std::optional<std::vector<Array>> product_terms(const Array& x) {
  std::vector<Array> terms;
  for (Array cur = x;;) {
    if (!cur.has_primitive() || cur.is_evaluated()) return std::nullopt;
    const Primitive& p = cur.primitive();
    const size_t n = cur.inputs().size();
    if (n < 2 || cur.inputs()[n - 2].dtype() != cur.dtype() ||
        cur.inputs()[n - 1].dtype() != cur.dtype())
      return std::nullopt;
    terms.push_back(cur);
    if (typeid(p) == typeid(Matmul) && n == 2) return terms;
    const auto* m = dynamic_cast<const AddMM*>(&p);
    if (!m || n != 3 || m->alpha() != 1.0f || m->beta() != 1.0f || m->round_product() ||
        cur.inputs()[0].dtype() != cur.dtype() || cur.inputs()[0].shape() != cur.shape())
      return std::nullopt;
    cur = cur.inputs()[0];
  }
}

/// c + g where one of them is a product a @ b not evaluated yet, or a sum of such products (a
/// linear layer's input gradient next to its LoRA branch's, or to another consumer's): AddMMs,
/// c + a @ b, whose GEMMs add into c's buffer (no separate add pass reading both and writing a
/// third). Each product's sum is rounded once. Empty when neither is such a product.
std::optional<Array> fold_product(const Array& c, const Array& g) {
  // INGOT_FOLD_PRODUCT_GRADS=0: always the add (A/B runs); read once.
  static const bool on = env::flag("INGOT_FOLD_PRODUCT_GRADS", true);
  if (!on || c.shape() != g.shape() || c.dtype() != g.dtype() || !is_floating(c.dtype()))
    return std::nullopt;
  std::optional<std::vector<Array>> terms = product_terms(g);
  const bool pg = terms.has_value();
  if (!pg) terms = product_terms(c);
  if (!terms) return std::nullopt;
  Array sum = pg ? c : g;
  for (size_t i = terms->size(); i-- > 0;) {  // innermost (first) product first
    const Array& t = (*terms)[i];
    const size_t n = t.inputs().size();
    sum = addmm(sum, t.inputs()[n - 2], t.inputs()[n - 1], 1.0f, 1.0f, t.primitive().stream());
  }
  return sum;
}

void accumulate(std::unordered_map<uintptr_t, Array>& cots, const Array& target, const Array& g) {
  auto it = cots.find(target.id());
  if (it == cots.end()) {
    cots.emplace(target.id(), g);
  } else if (auto m = merge_padded(it->second, g)) {
    it->second = *m;
  } else if (auto f = fold_product(it->second, g)) {
    it->second = *f;
  } else {
    it->second = add(it->second, g);
  }
}

using CotangentSeed = std::function<std::vector<Array>(const std::vector<Array>&)>;

std::pair<std::vector<Array>, std::vector<Array>> vjp_impl(const ArrayFn& fn,
                                                           const std::vector<Array>& primals,
                                                           const CotangentSeed& seed) {
  TraceGuard guard;
  std::vector<Array> tracers;
  detail::IdSet tracer_ids;
  for (const auto& p : primals) {
    tracers.push_back(make_tracer(p));
    tracer_ids.insert(tracers.back().id());
  }
  std::vector<Array> outputs = fn(tracers);
  std::vector<Array> seeds = seed(outputs);

  detail::IdSet depends;
  std::vector<Array> tape = build_tape(outputs, tracer_ids, depends);

  std::unordered_map<uintptr_t, Array> cots;
  cots.reserve(2 * tape.size() + outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i)
    if (seeds[i].valid()) accumulate(cots, outputs[i], seeds[i]);

  // A multi-output primitive's VJP runs once, at its output earliest on the tape: the consumers
  // of every output come after that one, so all its cotangents are in by then (at the latest
  // one, an output consumed in between would count as zero).
  std::vector<bool> first(tape.size(), false);
  {
    detail::IdSet seen;
    for (size_t i = 0; i < tape.size(); ++i)
      if (tape[i].has_primitive())
        first[i] = seen.insert(reinterpret_cast<uintptr_t>(&tape[i].primitive()));
  }
  for (size_t i = tape.size(); i-- > 0;) {
    const Array& node = tape[i];
    if (tracer_ids.contains(node.id()) || !node.has_primitive()) continue;
    Primitive* prim = &node.primitive();
    if (!first[i]) continue;
    std::vector<Array> outs = node.outputs();
    std::vector<Array> out_cots;
    bool any = false;
    for (auto& o : outs) {
      auto c = cots.find(o.id());
      if (c != cots.end()) {
        out_cots.push_back(c->second);
        any = true;
      } else {
        out_cots.push_back(zeros_like(o));
      }
    }
    if (!any) continue;
    std::vector<int> argnums;
    const auto& ins = node.inputs();
    for (size_t i = 0; i < ins.size(); ++i)
      if (depends.contains(ins[i].id())) argnums.push_back(static_cast<int>(i));
    if (argnums.empty()) continue;
    std::vector<Array> in_cots = prim->vjp(ins, out_cots, argnums, outs);
    if (in_cots.size() != argnums.size())
      raise("[vjp] internal: {} returned {} cotangents for {} inputs", prim->name(), in_cots.size(),
            argnums.size());
    for (size_t k = 0; k < argnums.size(); ++k) accumulate(cots, ins[argnums[k]], in_cots[k]);
  }

  std::vector<Array> grads;
  for (size_t i = 0; i < tracers.size(); ++i) {
    auto c = cots.find(tracers[i].id());
    grads.push_back(c != cots.end() ? c->second : zeros_like(primals[i]));
  }
  return {outputs, grads};
}

}  // namespace

std::pair<std::vector<Array>, std::vector<Array>> vjp(const ArrayFn& fn,
                                                      const std::vector<Array>& primals,
                                                      const std::vector<Array>& cotangents) {
  return vjp_impl(fn, primals, [&](const std::vector<Array>& outs) {
    if (outs.size() != cotangents.size())
      raise("[vjp] function returned {} outputs but {} cotangents were given", outs.size(),
            cotangents.size());
    for (size_t i = 0; i < outs.size(); ++i)
      if (outs[i].shape() != cotangents[i].shape())
        raise("[vjp] cotangent {} has shape {} but output {} has shape {}", i,
              shape_str(cotangents[i].shape()), i, shape_str(outs[i].shape()));
    return cotangents;
  });
}

std::pair<std::vector<Array>, std::vector<Array>> jvp(const ArrayFn& fn,
                                                      const std::vector<Array>& primals,
                                                      const std::vector<Array>& tangents) {
  if (primals.size() != tangents.size())
    raise("[jvp] {} primals but {} tangents", primals.size(), tangents.size());
  for (size_t i = 0; i < primals.size(); ++i)
    if (primals[i].shape() != tangents[i].shape())
      raise("[jvp] tangent {} has shape {} but primal {} has shape {}", i,
            shape_str(tangents[i].shape()), i, shape_str(primals[i].shape()));
  TraceGuard guard;
  std::vector<Array> tracers;
  detail::IdSet tracer_ids;
  std::unordered_map<uintptr_t, Array> tans;
  for (size_t i = 0; i < primals.size(); ++i) {
    tracers.push_back(make_tracer(primals[i]));
    tracer_ids.insert(tracers.back().id());
    tans.emplace(tracers.back().id(), tangents[i]);
  }
  std::vector<Array> outputs = fn(tracers);
  detail::IdSet depends;
  std::vector<Array> tape = build_tape(outputs, tracer_ids, depends);
  detail::IdSet done;
  for (const Array& node : tape) {
    if (tracer_ids.contains(node.id()) || !node.has_primitive()) continue;
    Primitive* prim = &node.primitive();
    if (!done.insert(reinterpret_cast<uintptr_t>(prim))) continue;
    const auto& ins = node.inputs();
    std::vector<int> argnums;
    std::vector<Array> in_tans;
    for (size_t i = 0; i < ins.size(); ++i) {
      auto t = tans.find(ins[i].id());
      if (t != tans.end()) {
        argnums.push_back(static_cast<int>(i));
        in_tans.push_back(t->second);
      }
    }
    if (argnums.empty()) continue;
    std::vector<Array> out_tans = prim->jvp(ins, in_tans, argnums);
    std::vector<Array> outs = node.outputs();
    for (size_t k = 0; k < outs.size() && k < out_tans.size(); ++k)
      tans.insert_or_assign(outs[k].id(), out_tans[k]);
  }
  std::vector<Array> out_tans;
  for (const auto& o : outputs) {
    auto t = tans.find(o.id());
    out_tans.push_back(t != tans.end() ? t->second : zeros_like(o));
  }
  return {outputs, out_tans};
}

ValueAndGradFn value_and_grad(const ArrayFn& fn, std::vector<int> argnums) {
  return [fn, argnums](const std::vector<Array>& inputs) {
    std::vector<Array> diff;
    for (int a : argnums) {
      if (a < 0 || a >= static_cast<int>(inputs.size()))
        raise("[value_and_grad] argnum {} is out of range for {} inputs", a, inputs.size());
      diff.push_back(inputs[a]);
    }
    auto inner = [&](const std::vector<Array>& d) {
      std::vector<Array> in = inputs;
      for (size_t i = 0; i < argnums.size(); ++i) in[argnums[i]] = d[i];
      return fn(in);
    };
    return vjp_impl(inner, diff, [](const std::vector<Array>& outs) {
      if (outs.empty()) raise("[value_and_grad] function returned no outputs");
      if (outs[0].size() != 1)
        raise("[value_and_grad] the first output must be a scalar, got shape {}",
              shape_str(outs[0].shape()));
      std::vector<Array> seeds(outs.size());
      seeds[0] = ones_like(outs[0]);
      return seeds;
    });
  };
}

std::function<Array(const Array&)> grad(const std::function<Array(const Array&)>& fn) {
  auto vg =
      value_and_grad([fn](const std::vector<Array>& x) { return std::vector<Array>{fn(x[0])}; });
  return [vg](const Array& x) { return vg({x}).second[0]; };
}

std::function<std::vector<Array>(const std::vector<Array>&)> grad(const ArrayFn& fn,
                                                                  std::vector<int> argnums) {
  auto vg = value_and_grad(fn, std::move(argnums));
  return [vg](const std::vector<Array>& x) { return vg(x).second; };
}

std::pair<Array, ParamMap> value_and_grad(const ParamLossFn& fn, const ParamMap& params) {
  std::vector<std::string> names;
  std::vector<Array> values;
  for (const auto& [k, v] : params) {
    names.push_back(k);
    values.push_back(v);
  }
  std::vector<int> argnums(values.size());
  for (size_t i = 0; i < argnums.size(); ++i) argnums[i] = static_cast<int>(i);
  auto vg = value_and_grad(
      [&](const std::vector<Array>& v) {
        ParamMap m;
        for (size_t i = 0; i < v.size(); ++i) m.emplace(names[i], v[i]);
        return std::vector<Array>{fn(m)};
      },
      argnums);
  auto [outs, grads] = vg(values);
  ParamMap g;
  for (size_t i = 0; i < names.size(); ++i) g.emplace(names[i], grads[i]);
  return {outs[0], g};
}

Array stop_gradient(const Array& a, StreamOrDevice s) {
  return Array(a.shape(), a.dtype(), std::make_shared<StopGradient>(resolve_stream(s, {&a})), {a});
}

ArrayFn custom_vjp(ArrayFn fn, VjpFn vjp_fn) {
  return [fn, vjp_fn](const std::vector<Array>& inputs) {
    std::vector<Array> outs = fn(inputs);
    if (outs.empty()) return outs;
    std::vector<Array> node_inputs = inputs;
    std::vector<Shape> shapes;
    std::vector<Dtype> dtypes;
    for (const auto& o : outs) {
      node_inputs.push_back(stop_gradient(o));
      shapes.push_back(o.shape());
      dtypes.push_back(o.dtype());
    }
    Stream s = stream_of(outs[0]);
    auto prim = std::make_shared<CustomVjp>(s, static_cast<int>(inputs.size()), vjp_fn);
    return Array::make_arrays(shapes, dtypes, prim, node_inputs);
  };
}

ArrayFn checkpoint(ArrayFn fn) {
  return custom_vjp(fn, [fn](const std::vector<Array>& primals,
                             const std::vector<Array>& cotangents, const std::vector<Array>&) {
    // Recompute only once the cotangents exist, so one block's activations live at a time.
    auto g = vjp(fn, depends(primals, cotangents), cotangents).second;
    // Tie the block's cotangents together: whichever is read first completes the whole
    // backward of the block, so its recomputed activations are freed before the next block.
    return depends(g, g);
  });
}

}  // namespace ingot
