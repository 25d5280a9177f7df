// compile: trace once per signature into a program of primitives, remove common
// subexpressions, fuse elementwise chains into Compiled nodes, replay per call.
#include "core/transforms/compile.h"

#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "core/primitive.h"
#include "core/primitives/compiled.h"
#include "core/primitives/elementwise.h"

namespace ingot {
namespace {

// A value of the program: a call input, a captured constant, or output `out` of node `index`.
struct Ref {
  enum Kind { input, constant, node } kind;
  int index;
  int out = 0;
  bool operator==(const Ref& o) const = default;
};

struct Node {
  std::shared_ptr<Primitive> prim;
  std::vector<Ref> inputs;
  std::vector<Shape> shapes;
  std::vector<Dtype> dtypes;
};

struct Program {
  std::vector<Node> nodes;
  std::vector<Array> constants;
  std::vector<Ref> outputs;
  CompileStats stats;
};

/// Stand-in for a traced input, bound to the input's device so traced ops run where replay
/// will. Evaluating it means the traced function read a value it cannot know yet.
class Placeholder : public UnaryPrimitive {
 public:
  using UnaryPrimitive::UnaryPrimitive;
  void eval_cpu(const std::vector<Array>&, Array&) override { fail(); }
  void eval_cuda(const std::vector<Array>&, Array&) override { fail(); }
  using UnaryPrimitive::eval_cpu;
  using UnaryPrimitive::eval_cuda;
  const char* name() const override { return "Placeholder"; }

 private:
  [[noreturn]] static void fail() {
    raise(
        "[eval] array has neither data nor a computation: compile traced a function that reads "
        "an input's values (data-dependent code cannot be traced)");
  }
};

struct Signature {
  // dtype, shape, device type, device index, host constant
  std::vector<std::tuple<Dtype, Shape, int, int, bool>> items;
  bool operator<(const Signature& o) const { return items < o.items; }
};

Signature signature_of(const std::vector<Array>& in, bool shapeless) {
  Signature s;
  for (const auto& a : in)
    s.items.push_back({a.dtype(), shapeless ? Shape{static_cast<int64_t>(a.ndim())} : a.shape(),
                       static_cast<int>(a.device().type), a.device().index, a.is_host_constant()});
  return s;
}

// Post-order of the nodes reachable from `outputs` that depend on a placeholder.
std::vector<Array> dependent_tape(const std::vector<Array>& outputs,
                                  const std::unordered_map<uintptr_t, int>& placeholders,
                                  std::unordered_set<uintptr_t>& depends) {
  std::vector<Array> tape;
  std::unordered_set<uintptr_t> visited;
  std::vector<std::pair<Array, size_t>> stack;
  for (const auto& root : outputs) {
    if (!visited.insert(root.id()).second) continue;
    stack.emplace_back(root, 0);
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      const bool is_ph = placeholders.count(node.id()) > 0;
      const auto& ins = node.inputs();
      if (!is_ph && next < ins.size()) {
        const Array& in = ins[next++];
        if (visited.insert(in.id()).second) stack.emplace_back(in, 0);
        continue;
      }
      bool dep = is_ph;
      for (const auto& in : ins) dep = dep || depends.count(in.id()) > 0;
      if (dep) {
        depends.insert(node.id());
        if (!is_ph) tape.push_back(node);
      }
      stack.pop_back();
    }
  }
  return tape;
}

Dtype ref_dtype(const Program& p, const Ref& r, const std::vector<Dtype>& input_dtypes) {
  switch (r.kind) {
    case Ref::input:
      return input_dtypes[r.index];
    case Ref::constant:
      return p.constants[r.index].dtype();
    case Ref::node:
      return p.nodes[r.index].dtypes[r.out];
  }
  return float32;
}

// Builds the program from a traced graph, with common subexpressions merged.
Program build_program(const std::vector<Array>& placeholders, const std::vector<Array>& outs) {
  Program p;
  std::unordered_map<uintptr_t, int> ph;
  for (size_t i = 0; i < placeholders.size(); ++i) ph[placeholders[i].id()] = static_cast<int>(i);
  std::unordered_set<uintptr_t> depends;
  std::vector<Array> tape = dependent_tape(outs, ph, depends);
  std::unordered_map<uintptr_t, Ref> refs;
  std::unordered_map<uintptr_t, int> const_index;
  auto ref_of = [&](const Array& a) -> Ref {
    if (auto it = ph.find(a.id()); it != ph.end()) return {Ref::input, it->second};
    if (auto it = refs.find(a.id()); it != refs.end()) return it->second;
    auto [it, fresh] = const_index.emplace(a.id(), static_cast<int>(p.constants.size()));
    if (fresh) p.constants.push_back(a);
    return {Ref::constant, it->second};
  };
  std::unordered_map<const Primitive*, int> done;
  std::multimap<std::string, int> by_name;  // CSE candidates
  for (const Array& a : tape) {
    Primitive* prim = &a.primitive();
    if (auto it = done.find(prim); it != done.end()) {  // a sibling of a processed node
      refs[a.id()] = {Ref::node, it->second, a.output_index()};
      continue;
    }
    Node n;
    n.prim = a.primitive_ptr();
    for (const auto& in : a.inputs()) n.inputs.push_back(ref_of(in));
    std::vector<Array> outs_a = a.outputs();
    for (const auto& o : outs_a) {
      n.shapes.push_back(o.shape());
      n.dtypes.push_back(o.dtype());
    }
    ++p.stats.traced_nodes;
    // CSE: an earlier node with the same class, inputs, outputs and parameters.
    int same = -1;
    auto range = by_name.equal_range(prim->name());
    for (auto it = range.first; it != range.second && same < 0; ++it) {
      const Node& m = p.nodes[it->second];
      if (m.inputs == n.inputs && m.shapes == n.shapes && m.dtypes == n.dtypes &&
          m.prim->is_equivalent(*prim))
        same = it->second;
    }
    int idx = same;
    if (same < 0) {
      idx = static_cast<int>(p.nodes.size());
      p.nodes.push_back(std::move(n));
      by_name.emplace(prim->name(), idx);
    }
    done[prim] = idx;
    for (const auto& o : outs_a) refs[o.id()] = {Ref::node, idx, o.output_index()};
  }
  for (const auto& o : outs) p.outputs.push_back(ref_of(o));
  p.stats.after_cse = static_cast<int>(p.nodes.size());
  return p;
}

bool is_elementwise(const Node& n) {
  return n.shapes.size() == 1 && dynamic_cast<const Elementwise*>(n.prim.get()) != nullptr;
}

// Replaces chains of single-consumer elementwise nodes by Compiled nodes.
void fuse(Program& p, const std::vector<Dtype>& input_dtypes) {
  const int nn = static_cast<int>(p.nodes.size());
  std::vector<int> uses(nn, 0);
  for (const auto& n : p.nodes)
    for (const auto& r : n.inputs)
      if (r.kind == Ref::node) ++uses[r.index];
  for (const auto& r : p.outputs)
    if (r.kind == Ref::node) uses[r.index] += 2;  // outputs must stay materialised
  std::vector<int> group_of(nn, -1);
  std::vector<std::vector<int>> groups;
  for (int root = nn - 1; root >= 0; --root) {
    if (group_of[root] >= 0 || !is_elementwise(p.nodes[root])) continue;
    std::vector<int> members{root}, stack{root};
    group_of[root] = static_cast<int>(groups.size());
    while (!stack.empty()) {
      int k = stack.back();
      stack.pop_back();
      for (const auto& r : p.nodes[k].inputs) {
        if (r.kind != Ref::node || group_of[r.index] >= 0) continue;
        const Node& m = p.nodes[r.index];
        if (!is_elementwise(m) || uses[r.index] != 1 || m.shapes[0] != p.nodes[root].shapes[0])
          continue;
        group_of[r.index] = static_cast<int>(groups.size());
        members.push_back(r.index);
        stack.push_back(r.index);
      }
    }
    if (members.size() < 2) {
      group_of[root] = -2;  // stays as it is
      continue;
    }
    groups.push_back(members);
  }
  if (groups.empty()) return;
  // Rebuild: each group becomes one Compiled node at its root's position.
  std::vector<Node> out_nodes;
  std::vector<int> new_index(nn, -1);
  std::vector<int> root_of_group(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) root_of_group[g] = groups[g][0];
  auto remap = [&](Ref r) {
    if (r.kind == Ref::node) r.index = new_index[r.index];
    return r;
  };
  for (int i = 0; i < nn; ++i) {
    int g = group_of[i] >= 0 ? group_of[i] : -1;
    if (g >= 0 && root_of_group[g] != i) continue;  // interior member: emitted with its root
    if (g < 0) {
      Node n = p.nodes[i];
      for (auto& r : n.inputs) r = remap(r);
      new_index[i] = static_cast<int>(out_nodes.size());
      out_nodes.push_back(std::move(n));
      continue;
    }
    // Members in topological order (ascending original index).
    std::vector<int> members = groups[g];
    std::sort(members.begin(), members.end());
    std::map<int, int> step_of;
    std::vector<Ref> ext;
    std::vector<FusedStep> steps;
    for (int m : members) {
      const Node& n = p.nodes[m];
      auto* ew = static_cast<const Elementwise*>(n.prim.get());
      FusedStep s;
      s.prim = n.prim;
      s.op = ew->op();
      s.out_dtype = n.dtypes[0];
      for (const auto& r : n.inputs) {
        if (r.kind == Ref::node && step_of.count(r.index)) {
          s.args.push_back(-(step_of[r.index] + 1));
        } else {
          auto it = std::find(ext.begin(), ext.end(), r);
          if (it == ext.end()) it = ext.insert(ext.end(), r);
          s.args.push_back(static_cast<int>(it - ext.begin()));
        }
      }
      // The dtype the kernel reads: Where reads x (argument 1), others their first input.
      const Ref& data_in = n.inputs[s.op == EwOp::Where ? 1 : 0];
      s.in_dtype = ref_dtype(p, data_in, input_dtypes);
      step_of[m] = static_cast<int>(steps.size());
      steps.push_back(std::move(s));
    }
    Node fused;
    fused.prim = std::make_shared<Compiled>(p.nodes[i].prim->stream(), std::move(steps),
                                            std::vector<int>{step_of[i]});
    for (const auto& r : ext) fused.inputs.push_back(remap(r));
    fused.shapes = p.nodes[i].shapes;
    fused.dtypes = p.nodes[i].dtypes;
    new_index[i] = static_cast<int>(out_nodes.size());
    out_nodes.push_back(std::move(fused));
    ++p.stats.fused_kernels;
  }
  for (auto& r : p.outputs) r = remap(r);
  p.nodes = std::move(out_nodes);
}

std::vector<Array> replay(const Program& p, const std::vector<Array>& inputs, bool shapeless) {
  std::vector<std::vector<Array>> values(p.nodes.size());
  auto get = [&](const Ref& r) -> const Array& {
    switch (r.kind) {
      case Ref::input:
        return inputs[r.index];
      case Ref::constant:
        return p.constants[r.index];
      case Ref::node:
        return values[r.index][r.out];
    }
    return inputs[0];
  };
  for (size_t i = 0; i < p.nodes.size(); ++i) {
    const Node& n = p.nodes[i];
    std::vector<Array> ins;
    for (const auto& r : n.inputs) ins.push_back(get(r));
    std::vector<Shape> shapes = shapeless ? n.prim->output_shapes(ins) : n.shapes;
    if (shapes.size() == 1) {
      values[i] = {Array(shapes[0], n.dtypes[0], n.prim, std::move(ins))};
    } else {
      values[i] = Array::make_arrays(shapes, n.dtypes, n.prim, std::move(ins));
    }
  }
  std::vector<Array> outs;
  for (const auto& r : p.outputs) outs.push_back(get(r));
  return outs;
}

// The callable compile() returns: a cache of programs by signature.
struct CompiledFn {
  struct State {
    ArrayFn fn;
    CompileOptions opt;
    std::mutex mu;
    std::map<Signature, std::shared_ptr<Program>> cache;
    CompileStats last;
  };
  std::shared_ptr<State> st;

  std::vector<Array> operator()(const std::vector<Array>& inputs) const {
    Signature sig = signature_of(inputs, st->opt.shapeless);
    std::shared_ptr<Program> prog;
    {
      std::lock_guard<std::mutex> lk(st->mu);
      auto it = st->cache.find(sig);
      if (it != st->cache.end()) prog = it->second;
    }
    if (!prog) {
      std::vector<Array> ph;
      std::vector<Dtype> dts;
      for (const auto& a : inputs) {
        ph.push_back(Array(a.shape(), a.dtype(),
                           std::make_shared<Placeholder>(default_stream(a.device())), {}));
        // A host constant's stand-in is one too: traced ops place it as eager ops would.
        ph.back().set_host_constant(a.is_host_constant());
        dts.push_back(a.dtype());
      }
      std::vector<Array> outs = st->fn(ph);
      prog = std::make_shared<Program>(build_program(ph, outs));
      if (st->opt.fuse) fuse(*prog, dts);
      prog->stats.final_nodes = static_cast<int>(prog->nodes.size());
      std::lock_guard<std::mutex> lk(st->mu);
      st->cache.emplace(sig, prog);
      prog->stats.cache_entries = static_cast<int>(st->cache.size());
    }
    {
      std::lock_guard<std::mutex> lk(st->mu);
      st->last = prog->stats;
    }
    return replay(*prog, inputs, st->opt.shapeless);
  }
};

}  // namespace

ArrayFn compile(ArrayFn fn, CompileOptions opt) {
  auto st = std::make_shared<CompiledFn::State>();
  st->fn = std::move(fn);
  st->opt = opt;
  return CompiledFn{st};
}

CompileStats compile_stats(const ArrayFn& f) {
  const CompiledFn* c = f.target<CompiledFn>();
  if (!c) raise("[compile] compile_stats needs a function returned by compile()");
  std::lock_guard<std::mutex> lk(c->st->mu);
  return c->st->last;
}

std::vector<Array> Compiled::unfused(const std::vector<Array>& inputs) const {
  std::vector<Array> vals;
  const Shape& shape = inputs.at(0).shape();
  for (const auto& s : steps_) {
    std::vector<Array> args;
    for (int a : s.args) args.push_back(a >= 0 ? inputs[a] : vals[-a - 1]);
    vals.push_back(Array(shape, s.out_dtype, s.prim, std::move(args)));
  }
  std::vector<Array> outs;
  for (int o : outputs_) outs.push_back(vals[o]);
  return outs;
}

std::vector<Array> Compiled::vjp(const std::vector<Array>& primals,
                                 const std::vector<Array>& cotangents,
                                 const std::vector<int>& argnums, const std::vector<Array>&) {
  auto g =
      ingot::vjp([this](const std::vector<Array>& x) { return unfused(x); }, primals, cotangents)
          .second;
  std::vector<Array> r;
  for (int a : argnums) r.push_back(g[a]);
  return r;
}

}  // namespace ingot
