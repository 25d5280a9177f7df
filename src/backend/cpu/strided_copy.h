// Typed strided copies shared by the copying shape, indexing and random kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "core/array.h"

namespace ingot::backend {

/// Copies the elements of a `shape`-shaped region from `src` (type `src_type`, element strides
/// `src_strides`, zeros allowed for broadcasting) to `dst` (type `dst_type`, strides
/// `dst_strides`), converting values. Pointers address the region's first element. Parallel.
void strided_copy(const void* src, Dtype src_type, const Strides& src_strides, void* dst,
                  Dtype dst_type, const Strides& dst_strides, const Shape& shape);

/// Copies `a` (any layout) into `dst`, converted to dst_type, laid out with `dst_strides`
/// (row-major strides of a.shape() when empty).
void copy_array(const Array& a, void* dst, Dtype dst_type, const Strides& dst_strides = {});

/// a's elements (any layout) as float32, row-major.
inline std::vector<float> floats_of(const Array& a) {
  std::vector<float> v(static_cast<size_t>(a.size()));
  if (!v.empty()) copy_array(a, v.data(), Dtype::float32);
  return v;
}

/// Gives `out` the storage of `in` when it can be donated (same size and dtype, no other
/// owner; `holders`: see Array::is_donatable), else fresh storage holding a row-major copy.
void copy_or_donate(const Array& in, Array& out, long holders = 1);

}  // namespace ingot::backend
