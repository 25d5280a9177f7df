// Iterative topological evaluation with detach-after-use so intermediates free early.
#include "core/transforms/eval.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "core/primitive.h"
#include "core/transforms/autodiff.h"
#include "core/transforms/id_set.h"

namespace ingot {

namespace {
thread_local int g_tracing = 0;

/// INGOT_TRACE_EVAL=1 prints each primitive before it runs (with CUDA_LAUNCH_BLOCKING=1 the
/// last line names a kernel that hangs or faults).
bool trace_eval() {
  static const bool on = [] {
    const char* v = std::getenv("INGOT_TRACE_EVAL");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}
/// The DFS's buffers, kept per thread between evals so a step of many small evals does not
/// allocate (and free) its tape, stack and visited set each time. A nested eval (a primitive
/// that evaluates a graph of its own) uses fresh ones.
struct EvalScratch {
  std::vector<Array> tape;
  std::vector<Array> outputs;  // the running node's outputs (empty between nodes)
  std::vector<std::pair<Array, size_t>> stack;
  detail::IdSet visited;
};
thread_local EvalScratch g_scratch;
thread_local int g_eval_depth = 0;

/// Takes the thread's scratch (or `own` when nested) and leaves it empty on exit, exceptions
/// included; a set grown past 1M slots by one huge graph is released.
class ScratchUse {
 public:
  explicit ScratchUse(EvalScratch& own) : s_(g_eval_depth++ == 0 ? g_scratch : own) {
    s_.visited.clear();
  }
  ~ScratchUse() {
    s_.tape.clear();
    s_.outputs.clear();
    s_.stack.clear();
    if (s_.visited.capacity() > (size_t{1} << 20)) s_.visited.release();
    --g_eval_depth;
  }
  ScratchUse(const ScratchUse&) = delete;
  ScratchUse& operator=(const ScratchUse&) = delete;
  EvalScratch& operator*() const { return s_; }

 private:
  EvalScratch& s_;
};

}  // namespace
bool is_tracing() {
  return g_tracing > 0;
}
void detail::set_tracing(int delta) {
  g_tracing += delta;
}

void eval(const std::vector<Array>& arrays) {
  // 1. Post-order DFS with an explicit stack over unevaluated nodes. The outputs of one
  //    multi-output primitive are one node (group_id): the first one reached goes on the tape
  //    and computes them all, and their shared inputs are walked once, not once per output.
  EvalScratch own;
  const ScratchUse use(own);
  std::vector<Array>& tape = (*use).tape;
  std::vector<std::pair<Array, size_t>>& stack = (*use).stack;
  detail::IdSet& visited = (*use).visited;
  for (const Array& root : arrays) {
    if (!root.valid() || root.is_evaluated() || !visited.insert(root.group_id())) continue;
    stack.emplace_back(root, 0);
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      const auto& ins = node.inputs();
      if (next < ins.size()) {
        const Array& in = ins[next++];
        if (!in.is_evaluated() && visited.insert(in.group_id())) stack.emplace_back(in, 0);
        continue;
      }
      tape.push_back(std::move(node));
      stack.pop_back();
    }
  }
  // 2. Run primitives in order. The tape gives up its handle as each node runs, so a node's
  //    storage is released once its last consumer has run and detached.
  std::vector<Array>& outputs = (*use).outputs;
  for (auto& slot : tape) {
    Array node = std::move(slot);
    if (node.is_evaluated()) continue;  // computed as a sibling
    if (!node.has_primitive()) raise("[eval] array has neither data nor a primitive");
    std::shared_ptr<Primitive> prim = node.primitive_ptr();
    node.outputs_into(outputs);
    // The inputs stay referenced by the node until detach, so kernels may check donation
    // (use_count == 1 means no other consumer or user handle remains).
    const std::vector<Array>& inputs = node.inputs();
    if (!prim->crosses_devices())
      for (const auto& in : inputs)
        if (in.device() != prim->device())
          raise("[eval] {} runs on {} but an input lives on {}: move arrays with to_device()",
                prim->name(), prim->device().str(), in.device().str());
    if (trace_eval()) {
      std::string shapes;
      for (const auto& in : inputs) shapes += " " + shape_str(in.shape());
      std::fprintf(stderr, "[eval] %s on %s:%s\n", prim->name(), prim->device().str().c_str(),
                   shapes.c_str());
    }
    if (prim->device().type == Device::Type::cpu)
      prim->eval_cpu(inputs, outputs);
    else
      prim->eval_cuda(inputs, outputs);
    // While a transform traces a function its graph must stay attached for differentiation.
    const bool keep = is_tracing();
    for (auto& o : outputs) {
      if (!o.valid()) continue;
      o.set_evaluated();
      if (!keep) o.detach();
    }
    outputs.clear();  // the next node's donation checks count handles: hold none of these
  }
}

void synchronize(Device d) {
  if (d.type == Device::Type::cuda) gpu::synchronize(default_stream(d));
}

}  // namespace ingot
