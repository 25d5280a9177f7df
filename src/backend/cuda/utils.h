// Host-side helpers of the CUDA backend (.cpp files, compiled by the host compiler): the
// cudaStream_t behind an ingot Stream, output allocation, scratch memory and layouts.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/cuda/device/layout.h"
#include "backend/cuda/indexing_kernels.h"
#include "core/array.h"

namespace ingot::cu {

/// The CUDA stream behind `s` (created on first use on its device) after making its device
/// current for this thread. All work of one ingot Stream is ordered on it.
cudaStream_t stream(Stream s);

/// Makes `d` the current CUDA device of this thread.
void set_device(Device d);

/// Cached properties of CUDA device `index`.
const cudaDeviceProp& props(int index);

/// Gives `out` fresh row-contiguous storage on its device (out.device()).
void alloc(Array& out);
/// Device scratch memory that returns to the caching allocator when the handle dies (stream
/// ordered: safe to drop right after the launches that use it are queued).
struct Scratch {
  Scratch(Device d, size_t bytes);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* ptr() const { return buf_.ptr; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(buf_.ptr);
  }

 private:
  Device device_;
  Buffer buf_;
};

/// Layout of `a` as is; throws Unsupported beyond kMaxDims.
Layout make_layout(const Shape& shape, const Strides& strides);
inline Layout make_layout(const Array& a) {
  return make_layout(a.shape(), a.strides());
}

/// Layout of the first `ndim` axes with size-1 axes dropped and runs that are contiguous among
/// themselves merged (element i in row-major order over those axes sits at elem_offset(i, l)).
Layout collapsed_layout(const Shape& shape, const Strides& strides, int ndim);
/// Layout of `a`'s leading axes (all but the last), collapsed: row r starts at elem_offset(r, l).
inline Layout row_layout(const Array& a) {
  return collapsed_layout(a.shape(), a.strides(), a.ndim() - 1);
}

/// Copies `a` (any layout, on a CUDA device) into row-major device memory at `dst` on stream s.
/// The element type is unchanged (the copy only moves bytes of size_of(dtype)).
void copy_to_row_major_device(const Array& a, void* dst, cudaStream_t s);
/// Row-major device pointer to a's elements: a's own when a is row-contiguous, else a copy in
/// scratch memory appended to `keep` (alive while `keep` is).
const void* row_major_ptr(const Array& a, cudaStream_t s,
                          std::vector<std::unique_ptr<Scratch>>& keep);
/// out = in's values, row-major: takes in's buffer when in is uniquely held (a KV cache's
/// in-place update; `holders`: see Array::is_donatable), else a fresh copy queued on s.
void copy_or_donate(const Array& in, Array& out, cudaStream_t s, long holders = 1);

/// Where indexing kernels of `op` (IndexOp) on device d record an out-of-range index.
FaultSite fault_site(Device d, int op, int axis);
/// After device d's stream synchronised: raises the CPU's InvalidArgument ("[take] index 5 is
/// out of range for axis 0 of size 5") when a kernel recorded an out-of-range index since the
/// last check, and clears the record so the next request runs normally.
void check_index_fault(Device d);

}  // namespace ingot::cu
