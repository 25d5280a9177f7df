// Launchers of the CUDA indexing kernels (take/gather, take/put/scatter-add along an axis,
// scatter-add), declared for indexing.cpp without fmt or core/array.h so that nvcc reads them.
// Indices are wrapped when negative; out-of-range ones are clamped by gathers and dropped by
// writes, and the first one met is recorded in the device's IndexFault so that the host raises
// the CPU's error ("[take] index 5 is out of range for axis 0 of size 5") at the next
// synchronisation (device indices are never read on the host while the work is queued).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/device/layout.h"
#include "core/dtype.h"

namespace ingot::cu {

/// The indexing ops that record out-of-range indices (names as in the CPU's messages).
enum IndexOp : int {
  kTake,
  kGather,
  kTakeAlongAxis,
  kPutAlongAxis,
  kScatterAddAlongAxis,
  kScatterAdd,
  kCrossEntropy  // a target of CrossEntropy / CrossEntropyGrad
};
inline const char* index_op_name(int op) {
  constexpr const char* names[] = {
      "take",        "gather",       "take_along_axis", "put_along_axis", "scatter_add_along_axis",
      "scatter_add", "cross_entropy"};
  return op >= 0 && op <= kCrossEntropy ? names[op] : "indexing";
}

/// The first out-of-range index a kernel met on a device, in host-mapped pinned memory (read by
/// the host after the stream synchronises). `set` is written last.
struct IndexFault {
  int set;
  int op;
  int axis;
  int pad;
  int64_t index;  // as given (before negative indices wrap)
  int64_t size;   // the axis size
};

/// Where a launch records a fault: `claim` (device memory, 0 while no fault is pending) elects
/// the one thread that writes `fault`; op and axis name the failing op.
struct FaultSite {
  IndexFault* fault = nullptr;
  unsigned int* claim = nullptr;
  int op = 0;
  int axis = 0;
};

/// take/gather with a contiguous inner block: out row r = (o, j) of K elements is the row of a
/// at outer position o and index idx[j] (row-major over idx's layout).
struct TakeRows {
  const void* src = nullptr;  // a at its first element
  void* dst = nullptr;        // row-major [O, J, K]
  int elem_size = 4;
  Layout outer;             // a's axes before the axis (strides in elements)
  int64_t outer_count = 1;  // O
  int64_t axis_size = 0;    // a.shape[axis]
  int64_t axis_stride = 0;  // a.strides[axis]
  int64_t inner = 1;        // K, contiguous in a
  const void* idx = nullptr;
  Dtype idx_type = Dtype::int32;
  Layout idx_layout;
  int64_t idx_count = 0;  // J
  FaultSite site;
};

/// Runs take over rows on stream s: one block per row with 16-byte moves where the row and
/// strides allow (the embedding lookup), else one thread per moved unit.
void launch_take_rows(const TakeRows& p, cudaStream_t s);

/// An indexed elementwise map over one shape (ndim <= kMaxDims): at every position the dense
/// operand sits at `dense` strides, the index at `index` strides, and the indexed operand at
/// `indexed` strides plus index * axis_stride. Gathers copy indexed -> dense, scatters add
/// dense -> indexed. Put (lines) walks the last `line_len` positions of each line in order.
struct IndexMap {
  const void* src = nullptr;
  void* dst = nullptr;
  const void* idx = nullptr;
  Dtype idx_type = Dtype::int32;
  Dtype dtype = Dtype::float32;  // element type of src/dst (dst holds scatter_acc_type)
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t dense[kMaxDims] = {};
  int64_t index[kMaxDims] = {};
  int64_t indexed[kMaxDims] = {};
  int64_t axis_size = 0;
  int64_t axis_stride = 0;
  // put_along_axis and the scatter-adds: each position of `shape` starts a line of line_len
  // updates.
  int64_t line_len = 1;
  int64_t dense_line_stride = 0;
  int64_t index_line_stride = 0;
  FaultSite site;
};

/// dst[dense] = src[indexed + clamp(idx) * axis_stride] (src/dst of m.dtype).
void launch_gather(const IndexMap& m, cudaStream_t s);
/// For each line in order: dst[indexed + idx * axis_stride] = src[dense] (last write wins,
/// as on the CPU; out-of-range indices skipped).
void launch_put_lines(const IndexMap& m, cudaStream_t s);
/// For each line, in order: dst[indexed + idx * axis_stride] += src[dense] into an accumulator
/// of scatter_acc_type(m.dtype) (bool: logical or); out-of-range indices skipped. One thread per
/// line, so the sums are reproducible and equal the CPU's.
void launch_scatter_add(const IndexMap& m, cudaStream_t s);

/// Accumulator dtype of scatter-add: float32 for 16-bit floats (rounded once, as the CPU),
/// uint32 for 8-bit integers (wrapping sums truncate exactly), else the dtype itself.
inline Dtype scatter_acc_type(Dtype t) {
  switch (t) {
    case Dtype::float16:
    case Dtype::bfloat16:
      return Dtype::float32;
    case Dtype::int8:
    case Dtype::uint8:
      return Dtype::uint32;
    default:
      return t;
  }
}

/// Copies n elements of a (dtype t, read through `layout` in row-major order) into the
/// row-major accumulator of scatter_acc_type(t) (only for dtypes where that type differs).
void launch_to_acc(const void* a, Dtype t, const Layout& layout, void* acc, int64_t n,
                   cudaStream_t s);
/// Rounds (16-bit floats) or truncates (8-bit integers, wrapping sums) the accumulator back.
void launch_from_acc(const void* acc, Dtype t, void* out, int64_t n, cudaStream_t s);

}  // namespace ingot::cu
