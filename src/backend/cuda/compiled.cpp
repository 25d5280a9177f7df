// CUDA evaluation of Compiled: the fused elementwise program becomes one generated kernel
// (NVRTC, cached per device and program signature) that loads each input through its own
// collapsed layout, computes every step in registers, rounding as the unfused ops do, and
// stores the outputs.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>
#include <vector>

#include "backend/cpu/elementwise_ops.h"  // the op/dtype traits, shared with the CPU
#include "backend/cuda/jit/nvrtc.h"
#include "backend/cuda/utils.h"
#include "core/primitives/compiled.h"
#include "util/error.h"

namespace ingot {
namespace {

constexpr int kThreads = 256;
constexpr const char* kKernel = "ingot_fused";

/// Element type of a dtype in the generated source (jit/prelude.cpp's namespace ij).
const char* device_type(Dtype t) {
  switch (t) {
    case Dtype::bool_:
      return "bool";
    case Dtype::uint8:
      return "ij::u8";
    case Dtype::int8:
      return "ij::i8";
    case Dtype::int32:
      return "int";
    case Dtype::uint32:
      return "unsigned";
    case Dtype::int64:
      return "ij::i64";
    case Dtype::float16:
      return "ij::f16";
    case Dtype::bfloat16:
      return "ij::bf16";
    case Dtype::float32:
      return "float";
    case Dtype::float64:
      return "double";
  }
  return "float";
}

/// Whether the CPU has a kernel of Op from `in` to `out` (its traits decide for both backends).
template <typename Op>
bool op_accepts(Dtype in, Dtype out) {
  return dispatch_dtype(in, [&](auto t) {
    using C = cpu::compute_t<decltype(t)>;
    if constexpr (!cpu::accepts_v<Op::accepts, C>)
      return false;
    else
      return out == (Op::bool_out ? Dtype::bool_ : in);
  });
}

bool accepts(EwOp op, Dtype in, Dtype out) {
  switch (op) {
#define INGOT_JIT_CASE(NAME) \
  case EwOp::NAME:           \
    return op_accepts<cpu::NAME##Op>(in, out);
    INGOT_EW_UNARY_OPS(INGOT_JIT_CASE)
    INGOT_EW_BINARY_OPS(INGOT_JIT_CASE)
#undef INGOT_JIT_CASE
    case EwOp::Where:
      return in == out;
    case EwOp::AsType:
      return true;
  }
  return false;
}

/// How the kernel reads one external input.
struct InputPlan {
  enum Mode : char { contiguous = 'c', scalar = 's', strided = 'g' };
  Mode mode = contiguous;
  Dtype dtype = Dtype::float32;
  const void* ptr = nullptr;
  std::vector<int64_t> shape, strides;  // strided: the collapsed layout
};

/// Size-1 axes dropped and neighbouring axes merged where the outer one steps exactly over the
/// inner one, so that views which are contiguous or one broadcast value in effect (reshapes,
/// expand_dims, full slices) take those paths and the rest index as few axes as possible.
InputPlan plan_input(const Array& a, const Shape& out_shape) {
  InputPlan p;
  p.dtype = a.dtype();
  p.ptr = a.raw_ptr();
  // One value broadcast (all strides 0): a scalar whatever its traced shape, so a shapeless
  // replay may use it for outputs of another size.
  const bool one_value = a.size() >= 1 && std::all_of(a.strides().begin(), a.strides().end(),
                                                      [](int64_t st) { return st == 0; });
  if (a.shape() != out_shape || one_value) {
    if (a.size() != 1 && !one_value)
      raise<InvalidArgument>("[compile] fused input of shape {} for outputs of shape {}",
                             shape_str(a.shape()), shape_str(out_shape));
    p.mode = InputPlan::scalar;
    return p;
  }
  for (size_t d = 0; d < a.shape().size(); ++d) {
    const int64_t n = a.shape()[d], st = a.strides()[d];
    if (n == 1) continue;
    if (!p.shape.empty() && p.strides.back() == st * n) {
      p.shape.back() *= n;
      p.strides.back() = st;
    } else {
      p.shape.push_back(n);
      p.strides.push_back(st);
    }
  }
  const bool all_zero =
      std::all_of(p.strides.begin(), p.strides.end(), [](int64_t s) { return s == 0; });
  if (all_zero)
    p.mode = InputPlan::scalar;
  else if (p.shape.size() == 1 && p.strides[0] == 1)
    p.mode = InputPlan::contiguous;
  else
    p.mode = InputPlan::strided;
  return p;
}

/// Largest |offset| in elements a strided input reaches.
int64_t reach(const InputPlan& p) {
  int64_t r = 0;
  for (size_t d = 0; d < p.shape.size(); ++d) r += (p.shape[d] - 1) * std::llabs(p.strides[d]);
  return r;
}

/// The program as the kernel sees it.
struct Plan {
  const std::vector<FusedStep>* steps = nullptr;
  const std::vector<int>* outputs = nullptr;
  std::vector<InputPlan> inputs;
  bool wide = false;  // 64-bit indices and offsets
};

/// Dtype of argument `ref` of step `s`: an input's or an earlier step's.
Dtype arg_dtype(const Plan& p, size_t s, int ref) {
  if (ref >= 0) {
    if (static_cast<size_t>(ref) >= p.inputs.size())
      raise<InvalidArgument>("[compile] fused step {} reads input {} of {}", s, ref,
                             p.inputs.size());
    return p.inputs[static_cast<size_t>(ref)].dtype;
  }
  const size_t k = static_cast<size_t>(-ref - 1);
  if (k >= s) raise<InvalidArgument>("[compile] fused step {} reads step {}", s, k);
  return (*p.steps)[k].out_dtype;
}

/// Checks arities, argument dtypes and that every op has a kernel for its dtypes, as the CPU's
/// kernel table does (the ops never build anything else).
void validate(const Plan& p, const std::vector<Array>& out) {
  const auto& steps = *p.steps;
  for (size_t s = 0; s < steps.size(); ++s) {
    const FusedStep& st = steps[s];
    if (static_cast<int>(st.args.size()) != ew_arity(st.op))
      raise<InvalidArgument>("[compile] fused step {} ({}) has {} arguments", s, ew_name(st.op),
                             st.args.size());
    for (size_t a = 0; a < st.args.size(); ++a) {
      const Dtype want = st.op == EwOp::Where && a == 0 ? Dtype::bool_ : st.in_dtype;
      const Dtype got = arg_dtype(p, s, st.args[a]);
      if (got != want)
        raise<InvalidArgument>("[compile] fused step {} ({}) reads {} where it expects {}", s,
                               ew_name(st.op), dtype_name(got), dtype_name(want));
    }
    if (!accepts(st.op, st.in_dtype, st.out_dtype))
      raise<Unsupported>("[{}] no CUDA kernel from {} to {}", ew_name(st.op),
                         dtype_name(st.in_dtype), dtype_name(st.out_dtype));
  }
  for (size_t k = 0; k < p.outputs->size(); ++k) {
    const int o = (*p.outputs)[k];
    if (o < 0 || static_cast<size_t>(o) >= steps.size() ||
        steps[static_cast<size_t>(o)].out_dtype != out[k].dtype())
      raise<InvalidArgument>("[compile] fused output {} does not match its step", k);
  }
}

/// Canonical signature of the kernel: index width, each input's dtype and access (with the
/// collapsed rank of strided ones), each step's op, wiring and dtypes, the outputs. Shapes,
/// strides and pointers are kernel arguments, so one kernel serves every size.
std::string kernel_key(const Plan& p) {
  std::string k(1, p.wide ? 'W' : 'N');
  for (const InputPlan& in : p.inputs) {
    k += static_cast<char>('a' + static_cast<int>(in.dtype));
    k += static_cast<char>(in.mode);
    if (in.mode == InputPlan::strided) k += std::to_string(in.shape.size());
  }
  k += '|';
  for (const FusedStep& st : *p.steps) {
    k += std::to_string(static_cast<int>(st.op));
    k += static_cast<char>('a' + static_cast<int>(st.in_dtype));
    k += static_cast<char>('a' + static_cast<int>(st.out_dtype));
    for (int a : st.args) {
      k += std::to_string(a);
      k += ',';
    }
    k += ';';
  }
  k += '|';
  for (int o : *p.outputs) {
    k += std::to_string(o);
    k += ',';
  }
  return k;
}

std::string value_name(int ref) {
  return ref >= 0 ? fmt::format("x{}", ref) : fmt::format("v{}", -ref - 1);
}

/// The kernel's source: the prelude, then one grid-stride loop that loads the inputs (scalars
/// once, before it), computes the steps and stores the outputs.
std::string kernel_source(const Plan& p) {
  std::string s = cu::jit_ew_prelude();
  s += "\n// ---- generated ----\n";
  s += p.wide ? "typedef unsigned long long ix;\ntypedef long long sx;\n"
              : "typedef unsigned ix;\ntypedef int sx;\n";
  s += "extern \"C\" __global__ void __launch_bounds__(" + std::to_string(kThreads) + ") " +
       kKernel + "(ix n";
  for (size_t i = 0; i < p.inputs.size(); ++i) {
    const InputPlan& in = p.inputs[i];
    const std::string id = std::to_string(i);
    s += ",\n    const " + std::string(device_type(in.dtype)) + "* __restrict__ p" + id;
    if (in.mode == InputPlan::strided)
      s += ", ij::Lay<" + std::to_string(in.shape.size()) + ", ix, sx> l" + id;
  }
  for (size_t k = 0; k < p.outputs->size(); ++k) {
    const FusedStep& st = (*p.steps)[static_cast<size_t>((*p.outputs)[k])];
    s +=
        ",\n    " + std::string(device_type(st.out_dtype)) + "* __restrict__ q" + std::to_string(k);
  }
  s += ") {\n";
  // Launched with programmatic dependent launch (cu::jit_launch): wait for the previous
  // kernel before any load, as device/launch.cuh's pdl_prologue does.
  s += "#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900\n"
       "  asm volatile(\"griddepcontrol.wait;\" ::: \"memory\");\n"
       "  asm volatile(\"griddepcontrol.launch_dependents;\" :::);\n"
       "#endif\n";
  for (size_t i = 0; i < p.inputs.size(); ++i)
    if (p.inputs[i].mode == InputPlan::scalar)
      s += "  const " + std::string(device_type(p.inputs[i].dtype)) + " x" + std::to_string(i) +
           " = p" + std::to_string(i) + "[0];\n";
  s += "  for (ix i = (ix)blockIdx.x * blockDim.x + threadIdx.x; i < n;"
       " i += (ix)blockDim.x * gridDim.x) {\n";
  for (size_t i = 0; i < p.inputs.size(); ++i) {
    const InputPlan& in = p.inputs[i];
    const std::string id = std::to_string(i);
    if (in.mode == InputPlan::contiguous)
      s += "    const " + std::string(device_type(in.dtype)) + " x" + id + " = p" + id + "[i];\n";
    else if (in.mode == InputPlan::strided)
      s += "    const " + std::string(device_type(in.dtype)) + " x" + id + " = p" + id +
           "[ij::offset(i, l" + id + ")];\n";
  }
  for (size_t k = 0; k < p.steps->size(); ++k) {
    const FusedStep& st = (*p.steps)[k];
    const std::string t = device_type(st.in_dtype), o = device_type(st.out_dtype);
    std::string expr;
    switch (st.op) {
      case EwOp::Where:
        expr = "(" + value_name(st.args[0]) + " ? " + value_name(st.args[1]) + " : " +
               value_name(st.args[2]) + ")";
        break;
      case EwOp::AsType:
        expr = "ij::convert<" + o + ", " + t + ">(" + value_name(st.args[0]) + ")";
        break;
      default:
        expr = std::string(st.args.size() == 1 ? "ij::un<ij::" : "ij::bin<ij::") + ew_name(st.op) +
               "Op, " + t + ", " + o + ">(" + value_name(st.args[0]);
        if (st.args.size() == 2) expr += ", " + value_name(st.args[1]);
        expr += ")";
        break;
    }
    s += "    const " + o + " v" + std::to_string(k) + " = " + expr + ";\n";
  }
  for (size_t k = 0; k < p.outputs->size(); ++k)
    s += "    q" + std::to_string(k) + "[i] = v" + std::to_string((*p.outputs)[k]) + ";\n";
  s += "  }\n}\n";
  return s;
}

/// Kernel arguments in declaration order, each at an 8-byte aligned slot of one buffer.
class KernelArgs {
 public:
  template <typename T>
  void add(const T& v) {
    add_bytes(&v, sizeof(T));
  }
  /// A strided input's Lay<N, ix, sx>: N shapes, then N strides, in the index width.
  void add_layout(const InputPlan& in, bool wide) {
    const size_t nd = in.shape.size();
    if (wide) {
      std::vector<int64_t> v(in.shape);
      v.insert(v.end(), in.strides.begin(), in.strides.end());
      add_bytes(v.data(), v.size() * sizeof(int64_t));
    } else {
      std::vector<int32_t> v(2 * nd);
      for (size_t d = 0; d < nd; ++d) {
        const uint32_t sh = static_cast<uint32_t>(in.shape[d]);
        std::memcpy(&v[d], &sh, sizeof(sh));
        v[nd + d] = static_cast<int32_t>(in.strides[d]);
      }
      add_bytes(v.data(), v.size() * sizeof(int32_t));
    }
  }
  /// cuLaunchKernel's kernelParams (valid until the next add).
  std::vector<void*> pointers() {
    std::vector<void*> ptrs;
    for (size_t off : offsets_) ptrs.push_back(&words_[off]);
    return ptrs;
  }

 private:
  void add_bytes(const void* v, size_t bytes) {
    offsets_.push_back(words_.size());
    words_.resize(words_.size() + (bytes + 7) / 8);
    std::memcpy(&words_[offsets_.back()], v, bytes);
  }
  std::vector<uint64_t> words_;
  std::vector<size_t> offsets_;
};

}  // namespace

void Compiled::eval_cuda(const std::vector<Array>& in, std::vector<Array>& out) {
  if (out.size() != outputs_.size())
    raise<InvalidArgument>("[compile] fused program has {} outputs, got {}", outputs_.size(),
                           out.size());
  for (const Array& a : in)
    if (a.device() != device())
      raise<InvalidArgument>("[compile] fused kernel on {} got an input on {}", device().str(),
                             a.device().str());
  for (Array& o : out) cu::alloc(o);
  Plan p;
  p.steps = &steps_;
  p.outputs = &outputs_;
  const Shape& shape = out[0].shape();
  for (const Array& a : in) p.inputs.push_back(plan_input(a, shape));
  validate(p, out);
  const int64_t n = out[0].size();
  if (n == 0) return;

  cudaStream_t s = cu::stream(stream());
  const int dev = device().index;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads,
                                           int64_t{cu::props(dev).multiProcessorCount} * 32);
  // 32-bit index math (far cheaper divisions) while the grid-stride index and every strided
  // offset fit.
  p.wide = n + blocks * kThreads > int64_t{UINT32_MAX};
  for (const InputPlan& x : p.inputs)
    if (x.mode == InputPlan::strided && reach(x) > int64_t{INT32_MAX}) p.wide = true;

  CUfunc_st* f = cu::jit_function(
      dev, kernel_key(p), [&] { return kernel_source(p); }, kKernel);
  KernelArgs args;
  if (p.wide)
    args.add(static_cast<uint64_t>(n));
  else
    args.add(static_cast<uint32_t>(n));
  for (const InputPlan& x : p.inputs) {
    args.add(x.ptr);
    if (x.mode == InputPlan::strided) args.add_layout(x, p.wide);
  }
  for (Array& o : out) args.add(static_cast<void*>(o.raw_ptr()));
  std::vector<void*> ptrs = args.pointers();
  cu::jit_launch(f, dev, static_cast<unsigned>(blocks), kThreads, ptrs.data(), s);
}

}  // namespace ingot
