// compile on CUDA: fused elementwise programs run as NVRTC-generated kernels and agree with the
// CPU backend (every op and AsType pair per dtype, special values, every input layout, several
// outputs, sizes past one grid), through compile() too; kernels are cached per signature.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/cuda/jit/nvrtc.h"
#include "backend/cuda_test_util.h"
#include "core/primitives/compiled.h"
#include "core/primitives/elementwise.h"

using namespace ingot;
using namespace ingot::test;

namespace {

/// Kernels the JIT has compiled so far in this process.
size_t kernels_compiled() {
  return cu::jit_cache_size();
}

/// True the first time a test asks in this process. The kernel cache lives as long as the
/// process, so under --gtest_repeat a later iteration finds its kernels already compiled: the
/// values are still checked then, the compilation counts only on the first pass.
bool first_pass(bool& seen) {
  const bool first = !seen;
  seen = true;
  return first;
}

/// A CPU-resident copy of `a` (host constants would move to whichever device uses them).
Array on_cpu(const Array& a) {
  Array r = copy(a, cpu_device);
  r.eval();
  return r;
}

/// A fused program built step by step; a value is an input index (>= 0) or a step (< 0).
struct Program {
  std::vector<FusedStep> steps;
  std::vector<int> outputs;
  std::vector<std::string> names;  // per output
  std::vector<bool> approx;        // per output: library math, compared with a tolerance

  int step(EwOp op, std::vector<int> args, Dtype in, Dtype out) {
    FusedStep s;
    s.op = op;
    s.args = std::move(args);
    s.in_dtype = in;
    s.out_dtype = out;
    steps.push_back(std::move(s));
    return -static_cast<int>(steps.size());
  }
  void output(int ref, std::string name, bool is_approx = false) {
    outputs.push_back(-ref - 1);
    names.push_back(std::move(name));
    approx.push_back(is_approx);
  }
};

std::shared_ptr<Primitive> make_prim(EwOp op, Stream s, Dtype out) {
  switch (op) {
#define INGOT_TEST_CASE(NAME) \
  case EwOp::NAME:            \
    return std::make_shared<NAME>(s);
    INGOT_EW_UNARY_OPS(INGOT_TEST_CASE)
    INGOT_EW_BINARY_OPS(INGOT_TEST_CASE)
    INGOT_TEST_CASE(Where)
#undef INGOT_TEST_CASE
    case EwOp::AsType:
      return std::make_shared<AsType>(s, out);
  }
  return nullptr;
}

/// Evaluates the program as one Compiled node on device `d` (outputs have inputs[0]'s shape).
std::vector<Array> run(const Program& p, const std::vector<Array>& inputs, Device d) {
  const Stream s = default_stream(d);
  std::vector<FusedStep> steps = p.steps;
  for (auto& st : steps) st.prim = make_prim(st.op, s, st.out_dtype);
  std::vector<Dtype> dtypes;
  for (int o : p.outputs) dtypes.push_back(steps[static_cast<size_t>(o)].out_dtype);
  auto prim = std::make_shared<Compiled>(s, std::move(steps), p.outputs);
  auto outs = Array::make_arrays(std::vector<Shape>(p.outputs.size(), inputs.at(0).shape()), dtypes,
                                 prim, inputs);
  eval(outs);
  return outs;
}

/// Tolerances of library math (exp, sin, ...) between CUDA's and the CPU's libm.
void approx_tol(Dtype t, double& atol, double& rtol) {
  switch (t) {
    case Dtype::float64:
      atol = 1e-14, rtol = 1e-13;
      break;
    case Dtype::float32:
      atol = 1e-6, rtol = 2e-6;
      break;
    default:  // one rounding of a slightly different float into a 16-bit float
      rtol = dtype_rtol(t), atol = rtol * 1e-3;
  }
}

/// Runs `p` on the CPU and on CUDA; exact outputs must agree bitwise (NaN matches NaN).
void expect_program_matches(const Program& p, const std::vector<Array>& host_inputs,
                            const std::string& what) {
  std::vector<Array> cpu_in, gpu_in;
  for (const Array& a : host_inputs) {
    cpu_in.push_back(on_cpu(a));
    gpu_in.push_back(on_cuda(a));
  }
  auto want = run(p, cpu_in, cpu_device);
  auto got = run(p, gpu_in, kCuda);
  ASSERT_EQ(got.size(), want.size());
  for (size_t k = 0; k < got.size(); ++k) {
    double atol = 0, rtol = 0;
    if (p.approx[k]) approx_tol(got[k].dtype(), atol, rtol);
    expect_close(got[k], want[k], atol, rtol, what + " " + p.names[k]);
  }
}

// ---- values ----

/// Normal(0, 2) values, after special ones (NaN, infinities, signed zeros, ties, the edges of
/// the 16-bit and integer ranges) unless `specials` is false.
std::vector<double> float_values(int64_t n, uint32_t seed, bool specials = true) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> v = {0.0,  -0.0, 1.0,  -1.0,         0.5,     -0.5,  1.5,   2.5,
                           -2.5, 3.0,  -7.0, std::nan(""), inf,     -inf,  100.0, -100.0,
                           1e-3, 1e-6, 1e-8, 65504.0,      65520.0, 255.9, 256.0, -129.0,
                           3e9,  -3e9, 1e20, -1e20,        1e30};
  if (!specials) v.clear();
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd(0.0, 2.0);
  while (static_cast<int64_t>(v.size()) < n) v.push_back(nd(gen));
  v.resize(static_cast<size_t>(n));
  std::shuffle(v.begin(), v.end(), gen);
  return v;
}

std::vector<int64_t> int_values(Dtype t, int64_t n, uint32_t seed) {
  int64_t lo = 0, hi = 1;
  switch (t) {
    case Dtype::bool_:
      break;
    case Dtype::uint8:
      hi = 255;
      break;
    case Dtype::int8:
      lo = -128, hi = 127;
      break;
    case Dtype::int32:
      lo = INT32_MIN, hi = INT32_MAX;
      break;
    case Dtype::uint32:
      hi = UINT32_MAX;
      break;
    default:
      lo = INT64_MIN, hi = INT64_MAX;
      break;
  }
  std::vector<int64_t> v = {0, 1, lo, hi};
  if (lo < 0) v.insert(v.end(), {-1, lo + 1, -2, -7});
  if (hi > 1) v.insert(v.end(), {2, 3, 7, hi - 1});
  std::mt19937 gen(seed);
  const int64_t small_lo = std::max<int64_t>(lo, -20), small_hi = std::min<int64_t>(hi, 20);
  std::uniform_int_distribution<int64_t> small(small_lo, small_hi);
  while (static_cast<int64_t>(v.size()) < n) v.push_back(small(gen));
  v.resize(static_cast<size_t>(n));
  std::shuffle(v.begin(), v.end(), gen);
  return v;
}

Array values_array(Dtype t, const Shape& shape, uint32_t seed, bool specials = true) {
  const int64_t n = shape_size(shape);
  if (is_floating(t)) return Array(float_values(n, seed, specials), shape, t);
  return Array(int_values(t, n, seed), shape, t);
}

// ---- every op of one dtype in one program ----

const std::set<EwOp> kApproxOps = {
    EwOp::Exp,     EwOp::Expm1, EwOp::Log,  EwOp::Log1p, EwOp::Sin,      EwOp::Cos,  EwOp::Tanh,
    EwOp::Sigmoid, EwOp::Erf,   EwOp::Silu, EwOp::Gelu,  EwOp::GeluTanh, EwOp::Power};

bool accepts(EwOp op, Dtype t) {
  const bool f = is_floating(t), b = t == Dtype::bool_;
  switch (op) {
    case EwOp::Abs:
    case EwOp::Sign:
    case EwOp::Square:
    case EwOp::Add:
    case EwOp::Multiply:
    case EwOp::Maximum:
    case EwOp::Minimum:
    case EwOp::Equal:
    case EwOp::NotEqual:
    case EwOp::Less:
    case EwOp::LessEqual:
    case EwOp::Greater:
    case EwOp::GreaterEqual:
      return true;
    case EwOp::Negative:
    case EwOp::Subtract:
    case EwOp::FloorDivide:
    case EwOp::Remainder:
    case EwOp::Power:
      return !b;
    case EwOp::LogicalNot:
    case EwOp::LogicalAnd:
    case EwOp::LogicalOr:
      return b;
    default:
      return f;  // the math ops, Divide, IsNan, IsInf
  }
}

bool bool_out(EwOp op) {
  switch (op) {
    case EwOp::IsNan:
    case EwOp::IsInf:
    case EwOp::Equal:
    case EwOp::NotEqual:
    case EwOp::Less:
    case EwOp::LessEqual:
    case EwOp::Greater:
    case EwOp::GreaterEqual:
      return true;
    default:
      return false;
  }
}

/// Inputs a, b (dtype t) and c (bool). Outputs: every unary op of a and binary op of (a, b)
/// that t accepts, where(c, a, b), where(a < b, b, a) (a condition computed in the kernel), a
/// chain that feeds steps into steps, and a converted to every dtype.
Program all_ops_program(Dtype t) {
  Program p;
  const Dtype kDtypes[] = {bool_, uint8,   int8,     int32,   uint32,
                           int64, float16, bfloat16, float32, float64};
  for (int k = 0; k <= static_cast<int>(EwOp::AsType); ++k) {
    const EwOp op = static_cast<EwOp>(k);
    if (op == EwOp::Where || op == EwOp::AsType || !accepts(op, t)) continue;
    const Dtype out = bool_out(op) ? Dtype::bool_ : t;
    const bool approx = kApproxOps.count(op) && is_floating(t);
    if (ew_arity(op) == 1)
      p.output(p.step(op, {0}, t, out), ew_name(op), approx);
    else
      p.output(p.step(op, {0, 1}, t, out), ew_name(op), approx);
  }
  p.output(p.step(EwOp::Where, {2, 0, 1}, t, t), "where(c, a, b)");
  const int less = p.step(EwOp::Less, {0, 1}, t, Dtype::bool_);
  const int sel = p.step(EwOp::Where, {less, 1, 0}, t, t);
  p.output(sel, "where(a < b, b, a)");
  if (t != Dtype::bool_) {  // (max(a, b) + a) * max(a, b) via steps only
    const int s = p.step(EwOp::Add, {sel, 0}, t, t);
    p.output(p.step(EwOp::Multiply, {s, sel}, t, t), "chain");
  }
  for (Dtype d : kDtypes)
    p.output(p.step(EwOp::AsType, {0}, t, d), "astype to " + std::string(dtype_name(d)));
  return p;
}

void expect_all_ops_match(Dtype t) {
  const Shape shape{40, 53};
  Program p = all_ops_program(t);
  Array c = Array(int_values(Dtype::bool_, shape_size(shape), 9), shape, Dtype::bool_);
  expect_program_matches(p, {values_array(t, shape, 1), values_array(t, shape, 2), c},
                         std::string(dtype_name(t)));
}

}  // namespace

TEST(CudaCompile, EveryOpFloatDtypes) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, float64, float16, bfloat16}) expect_all_ops_match(t);
}

TEST(CudaCompile, EveryOpIntDtypes) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {int32, int64, int8, uint8, uint32}) expect_all_ops_match(t);
}

TEST(CudaCompile, EveryOpBool) {
  INGOT_REQUIRE_CUDA();
  expect_all_ops_match(bool_);
}

// Every input access path: contiguous, transposed, strided slice, row and column broadcast,
// a broadcast 0-d scalar, a reshaped (collapsible) view; several outputs, one of them also an
// intermediate.
TEST(CudaCompile, InputLayoutsAndTwoOutputs) {
  INGOT_REQUIRE_CUDA();
  Program p;  // a*b + c*d - e, max(that, f) * g, where(that > 0, that, h)
  const int ab = p.step(EwOp::Multiply, {0, 1}, float32, float32);
  const int cd = p.step(EwOp::Multiply, {2, 3}, float32, float32);
  const int sum =
      p.step(EwOp::Subtract, {p.step(EwOp::Add, {ab, cd}, float32, float32), 4}, float32, float32);
  const int mx = p.step(EwOp::Multiply, {p.step(EwOp::Maximum, {sum, 5}, float32, float32), 6},
                        float32, float32);
  const int pos = p.step(EwOp::Greater, {sum, 6}, float32, bool_);
  p.output(sum, "sum");
  p.output(mx, "max");
  p.output(p.step(EwOp::Where, {pos, sum, 7}, float32, float32), "where");
  for (int64_t rows : {int64_t{3}, int64_t{37}, int64_t{1024}}) {
    const int64_t cols = rows == 1024 ? 2048 : 129;  // 2M elements: several grid strides
    const Shape shape{rows, cols};
    auto build = [&](auto&& place) {
      return std::vector<Array>{place(values_array(float32, shape, 1)),
                                transpose(place(values_array(float32, {cols, rows}, 2))),
                                slice(place(values_array(float32, {rows, 2 * cols}, 3)), {0, 1},
                                      {rows, 2 * cols}, {1, 2}),
                                broadcast_to(place(values_array(float32, {cols}, 4)), shape),
                                broadcast_to(place(values_array(float32, {rows, 1}, 5)), shape),
                                broadcast_to(place(Array(0.25f)), shape),
                                reshape(place(values_array(float32, {rows * cols}, 6)), shape),
                                broadcast_to(place(values_array(float32, {1, 1}, 7)), shape)};
    };
    auto want = run(p, build(on_cpu), cpu_device);
    auto got = run(p, build(on_cuda), kCuda);
    for (size_t k = 0; k < got.size(); ++k)
      expect_close(got[k], want[k], 0, 0, p.names[k] + " rows=" + std::to_string(rows));
  }
}

TEST(CudaCompile, ZeroSizeCompilesNothing) {
  INGOT_REQUIRE_CUDA();
  Program p;
  p.output(p.step(EwOp::Exp, {p.step(EwOp::Add, {0, 1}, float32, float32)}, float32, float32),
           "exp");
  const size_t before = kernels_compiled();
  Array x = on_cuda(Array(std::vector<float>{}, {0, 5}, float32));
  auto out = run(p, {x, x}, kCuda);
  EXPECT_EQ(out[0].shape(), (Shape{0, 5}));
  EXPECT_EQ(out[0].to_vector<float>().size(), 0u);
  EXPECT_EQ(kernels_compiled(), before);
}

TEST(CudaCompile, RejectsWhatTheCpuRejects) {
  INGOT_REQUIRE_CUDA();
  Array x = on_cuda(Array(std::vector<int32_t>{1, 2, 3}, {3}, int32));
  Program exp_int;
  exp_int.output(exp_int.step(EwOp::Exp, {0}, int32, int32), "exp");
  EXPECT_THROW(run(exp_int, {x}, kCuda), Unsupported);
  Program wrong_dtype;  // reads an int32 input as float32
  wrong_dtype.output(wrong_dtype.step(EwOp::Negative, {0}, float32, float32), "neg");
  EXPECT_THROW(run(wrong_dtype, {x}, kCuda), InvalidArgument);
}

// The kernel cache: one compilation per signature (ops, dtypes, input access), none for new
// values or shapes, a new one for a new dtype or a new input layout.
TEST(CudaCompile, KernelCacheBySignature) {
  INGOT_REQUIRE_CUDA();
  Program p;  // unique to this test: cos(sin(a)) * b - a
  const int cs = p.step(EwOp::Cos, {p.step(EwOp::Sin, {0}, float32, float32)}, float32, float32);
  p.output(p.step(EwOp::Subtract, {p.step(EwOp::Multiply, {cs, 1}, float32, float32), 0}, float32,
                  float32),
           "out", true);
  auto inputs = [](const Shape& s, uint32_t seed) {
    return std::vector<Array>{values_array(float32, s, seed), values_array(float32, s, seed + 1)};
  };
  static bool seen = false;
  const bool count = first_pass(seen);
  const size_t n0 = kernels_compiled();
  expect_program_matches(p, inputs({8, 9}, 1), "first");
  if (count) {
    EXPECT_EQ(kernels_compiled(), n0 + 1);
  }
  expect_program_matches(p, inputs({8, 9}, 3), "new values");
  expect_program_matches(p, inputs({300, 7}, 5), "new shape");
  expect_program_matches(p, inputs({5}, 7), "new rank");
  if (count) {
    EXPECT_EQ(kernels_compiled(), n0 + 1);
  }
  // A transposed input reads through a layout: another kernel, then cached too.
  for (int rep = 0; rep < 2; ++rep) {
    Array a = on_cuda(values_array(float32, {9, 8}, 11));
    Array b = on_cuda(values_array(float32, {8, 9}, 12));
    auto got = run(p, {transpose(a), b}, kCuda);
    auto want = run(p,
                    {transpose(on_cpu(values_array(float32, {9, 8}, 11))),
                     on_cpu(values_array(float32, {8, 9}, 12))},
                    cpu_device);
    expect_close(got[0], want[0], 1e-6, 2e-6, "transposed");
  }
  if (count) {
    EXPECT_EQ(kernels_compiled(), n0 + 2);
  }
  Program q = p;  // the same program in float64
  for (auto& st : q.steps) st.in_dtype = st.out_dtype = float64;
  expect_program_matches(q, {values_array(float64, {8, 9}, 1), values_array(float64, {8, 9}, 2)},
                         "float64");
  if (count) {
    EXPECT_EQ(kernels_compiled(), n0 + 3);
  }
}

// ---- through compile() ----

namespace {

/// f on CPU copies of the inputs vs compile(f) on CUDA copies; returns the compiled function.
ArrayFn expect_compiled_matches(const ArrayFn& f, const std::vector<Array>& cpu_in,
                                const std::vector<Array>& gpu_in, double atol, double rtol,
                                const std::string& what) {
  ArrayFn cf = compile(f);
  auto want = f(cpu_in);
  auto got = cf(gpu_in);
  EXPECT_GE(compile_stats(cf).fused_kernels, 1) << what;
  EXPECT_EQ(got.size(), want.size()) << what;
  for (size_t k = 0; k < got.size() && k < want.size(); ++k)
    expect_close(got[k], want[k], atol, rtol, what + " output " + std::to_string(k));
  return cf;
}

std::vector<Array> gelu_mul_add(const std::vector<Array>& in) {
  return {gelu(in[0]) * in[1] + 1.0f};
}

}  // namespace

TEST(CudaCompile, CompiledGeluMulAddAndItsCache) {
  INGOT_REQUIRE_CUDA();
  Array x = values_array(float32, {64, 300}, 1, false), y = values_array(float32, {300}, 2, false);
  static bool seen = false;
  const bool count = first_pass(seen);
  ArrayFn cf = expect_compiled_matches(gelu_mul_add, {on_cpu(x), on_cpu(y)},
                                       {on_cuda(x), on_cuda(y)}, 1e-6, 1e-5, "gelu*y+1");
  const size_t n0 = kernels_compiled();
  // Same signature: no compilation, also through a second compile() of the same function and
  // for another shape of the same rank.
  cf({on_cuda(values_array(float32, {64, 300}, 3, false)),
      on_cuda(values_array(float32, {300}, 4, false))});
  expect_compiled_matches(gelu_mul_add, {on_cpu(x), on_cpu(y)}, {on_cuda(x), on_cuda(y)}, 1e-6,
                          1e-5, "again");
  Array x2 = values_array(float32, {7, 33}, 5, false), y2 = values_array(float32, {33}, 6, false);
  expect_compiled_matches(gelu_mul_add, {on_cpu(x2), on_cpu(y2)}, {on_cuda(x2), on_cuda(y2)}, 1e-6,
                          1e-5, "other shape");
  EXPECT_EQ(kernels_compiled(), n0);
  // bfloat16 in and out: a new kernel.
  Array xb = values_array(bfloat16, {64, 300}, 7, false),
        yb = values_array(bfloat16, {300}, 8, false);
  expect_compiled_matches(gelu_mul_add, {on_cpu(xb), on_cpu(yb)}, {on_cuda(xb), on_cuda(yb)}, 2e-2,
                          2.0 / 128, "bfloat16");
  if (count) {
    EXPECT_GT(kernels_compiled(), n0);
  }
}

TEST(CudaCompile, CompiledWhereAsTypeChainTwoOutputs) {
  INGOT_REQUIRE_CUDA();
  auto f = [](const std::vector<Array>& in) {
    const Array &x = in[0], &y = in[1];
    Array t = x * 3.0f;
    Array w = where(greater(t, y), t, -y);
    Array i = remainder(astype(w * 10.0f, int32), Array(7));
    return std::vector<Array>{astype(w, bfloat16), astype(i, float32) + x};
  };
  Array x = values_array(float32, {33, 65}, 1, false),
        y = values_array(float32, {33, 65}, 2, false);
  expect_compiled_matches(f, {on_cpu(x), on_cpu(y)}, {on_cuda(x), on_cuda(y)}, 0, 0, "chain");
}

TEST(CudaCompile, CompiledOnViewsAndHalfInputs) {
  INGOT_REQUIRE_CUDA();
  auto f = [](const std::vector<Array>& in) {
    Array t = silu(in[0]) * in[1] - in[0];
    return std::vector<Array>{t, maximum(t, in[2])};
  };
  for (Dtype d : {float16, bfloat16, float32}) {
    Array x = values_array(d, {48, 80}, 1, false), y = values_array(d, {80, 48}, 2, false);
    Array z = values_array(d, {48, 1}, 3, false);
    auto views = [&](auto&& place) {
      Array yt = transpose(place(y));  // evaluated views are the function's inputs
      Array zb = broadcast_to(place(z), {48, 80});
      eval({yt, zb});
      return std::vector<Array>{place(x), yt, zb};
    };
    // silu's library exp may round differently: one 16-bit ulp of |x| <= ~8 where t cancels.
    const double rtol = d == float32 ? 1e-5 : 2 * dtype_rtol(d);
    const double atol = d == float32 ? 1e-5 : 8 * dtype_rtol(d);
    expect_compiled_matches(f, views(on_cpu), views(on_cuda), atol, rtol,
                            std::string(dtype_name(d)));
  }
}
