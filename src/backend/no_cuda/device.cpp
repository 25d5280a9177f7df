// GPU hooks of a build without CUDA: no devices; any GPU request throws Unsupported.
#include "core/device.h"
#include "core/allocator.h"
#include "core/array.h"
#include "util/error.h"

namespace ingot::gpu {

int device_count() {
  return 0;
}

void synchronize(Stream) {}

void copy_to_host(const Array&, void*) {
  raise<Unsupported>("[cuda] a GPU array was read but ingot was built without CUDA");
}

Allocator& allocator(int index) {
  raise<Unsupported>("[cuda] cuda:{} requested but ingot was built without CUDA", index);
}

}  // namespace ingot::gpu
