// Launchers of the elementwise kernels (elementwise.cu), callable from host .cpp files: which
// op, dtypes, raw device pointers and layouts, decided on the host in elementwise.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/device/layout.h"
#include "core/dtype.h"

namespace ingot::cu {

// The unary and binary ops in the order of core's INGOT_EW_UNARY_OPS / INGOT_EW_BINARY_OPS
// (elementwise.cpp checks at compile time that the two lists agree, index for index).
#define INGOT_CU_EW_UNARY_OPS(X)                                                                  \
  X(Abs)                                                                                          \
  X(Negative)                                                                                     \
  X(Sign)                                                                                         \
  X(Floor)                                                                                        \
  X(Ceil)                                                                                         \
  X(Round) X(Square) X(Reciprocal) X(Exp) X(Expm1) X(Log) X(Log1p) X(Sqrt) X(Rsqrt) X(Sin) X(Cos) \
      X(Tanh) X(Sigmoid) X(Erf) X(Silu) X(Gelu) X(GeluTanh) X(LogicalNot) X(IsNan) X(IsInf)
#define INGOT_CU_EW_BINARY_OPS(X)                                                                  \
  X(Add)                                                                                           \
  X(Subtract)                                                                                      \
  X(Multiply)                                                                                      \
  X(Divide)                                                                                        \
  X(FloorDivide)                                                                                   \
  X(Remainder) X(Power) X(Maximum) X(Minimum) X(Equal) X(NotEqual) X(Less) X(LessEqual) X(Greater) \
      X(GreaterEqual) X(LogicalAnd) X(LogicalOr)

/// Unary and binary elementwise ops (same values as core's EwOp for these).
enum class EwKind : uint8_t {
#define INGOT_CU_EW_ENUM(NAME) NAME,
  INGOT_CU_EW_UNARY_OPS(INGOT_CU_EW_ENUM) INGOT_CU_EW_BINARY_OPS(INGOT_CU_EW_ENUM)
#undef INGOT_CU_EW_ENUM
      count,
};

/// How the inputs of one launch are laid out (all have the output's shape; the output is
/// row contiguous). contiguous and flat take 16-byte vector accesses when aligned.
enum class EwMode {
  contiguous,  // every input row contiguous (flat_stride 1)
  flat,        // each input row contiguous (flat_stride 1) or one broadcast value (0)
  strided,     // general: layouts (collapsed on the host, all of the same shape)
};

/// One elementwise launch over n output elements.
struct EwLaunch {
  EwMode mode = EwMode::contiguous;
  int64_t n = 0;
  const void* in[3] = {};
  int64_t flat_stride[3] = {};  // contiguous and flat modes
  Layout layout[3];             // strided mode (shape of layout[0] is the shared shape)
  void* out = nullptr;
};

/// True when the CUDA kernels implement `op` on inputs of dtype `in` giving `out` (the same
/// combinations the CPU's kernel table accepts).
bool ew_supported(EwKind op, Dtype in, Dtype out);

/// Queues op over l on stream s (the combination must be ew_supported; n may be 0).
void launch_ew(EwKind op, Dtype in, Dtype out, const EwLaunch& l, cudaStream_t s);

/// Where: in[0] the bool condition, in[1] and in[2] of dtype t, output of dtype t.
void launch_where(Dtype t, const EwLaunch& l, cudaStream_t s);

/// AsType: converts n elements of `src` (dtype `in`, laid out as `src_layout` in row-major
/// element order) into row-major `dst` of dtype `out`.
void launch_astype(Dtype in, Dtype out, const void* src, const Layout& src_layout, void* dst,
                   int64_t n, cudaStream_t s);

}  // namespace ingot::cu
