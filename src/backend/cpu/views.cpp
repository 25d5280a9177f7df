// CPU evaluation of the view primitives: share the input buffer with new strides, or copy
// when a reshape cannot be expressed with strides.
#include "core/primitives/views.h"
#include "backend/common/utils.h"
#include "backend/common/views.h"

namespace ingot {

void Reshape::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  if (backend::reshape_view(inputs[0], out)) return;
  backend::alloc_cpu(out);
  copy_to_row_major(inputs[0], out.raw_ptr());
}

void Transpose::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  backend::transpose_view(inputs[0], out, axes_);
}

void Broadcast::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  backend::broadcast_view(inputs[0], out);
}

void Slice::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  if (out.size() == 0) {
    backend::alloc_cpu(out);
    return;
  }
  backend::slice_view(inputs[0], out, start_, strides_);
}

}  // namespace ingot
