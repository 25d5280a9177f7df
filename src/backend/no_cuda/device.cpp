// GPU hooks of a build without CUDA: no devices; any GPU request throws Unsupported.
#include "core/device.h"
#include "core/allocator.h"
#include "util/error.h"

namespace ingot::gpu {

int device_count() {
  return 0;
}

void synchronize(Stream) {}

Allocator& allocator(int index) {
  raise<Unsupported>("[cuda] cuda:{} requested but ingot was built without CUDA", index);
}

}  // namespace ingot::gpu
