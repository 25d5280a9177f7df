// compile(fn): traces fn once per input signature into a graph, removes common
// subexpressions, fuses chains of elementwise ops into one kernel pass (no intermediate
// buffers), and replays the optimised graph on later calls.
#pragma once

#include "core/transforms/autodiff.h"

namespace ingot {

/// Options of compile.
struct CompileOptions {
  /// Cache by dtypes and ranks only (not sizes): output shapes are recomputed per call.
  /// Shape-dependent parameters inside fn (a reshape target, the shape an operand is broadcast
  /// to) stay as first traced; a broadcast that no longer fits throws.
  bool shapeless = false;
  /// Fuse elementwise chains (off: only CSE and replay).
  bool fuse = true;
};

/// A function computing the same outputs as fn, with the graph optimised once per signature.
/// fn must be a pure function of its inputs (arrays it captures are treated as constants).
ArrayFn compile(ArrayFn fn, CompileOptions opt = {});

/// Statistics of the graph compile made for the most recent signature (for tests/benchmarks).
struct CompileStats {
  int traced_nodes = 0;   // nodes in the traced graph
  int after_cse = 0;      // after common-subexpression elimination
  int fused_kernels = 0;  // Compiled primitives created
  int final_nodes = 0;    // nodes replayed per call
  int cache_entries = 0;  // traced signatures
};
/// Stats of the compiled function `f` (must come from compile()).
CompileStats compile_stats(const ArrayFn& f);

}  // namespace ingot
